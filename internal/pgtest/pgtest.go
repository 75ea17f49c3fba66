// Package pgtest starts a private PostgreSQL server for tests: initdb into
// a fresh folder, pg_ctl start listening on a unix socket in that folder
// (and, if asked, on a free loopback port), torn down when the test ends,
// or by a watchdog when the test process dies without its cleanup.
// It uses the Debian postgresql package's binaries; nothing of the system
// cluster is touched. PostgreSQL refuses to run as root, so under root the
// server runs as the user postgres.
//
// Without the binaries a test skips with a message that says what to
// install, unless the CI environment variable is set: then it fails.
// Under go test -short every test that starts a server skips.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/securemail/securemail/internal/testport"
)

// Options tunes the server. The zero value is a durable server (fsync and
// synchronous_commit on, as in production) on a unix socket only.
type Options struct {
	// TCP also listens on 127.0.0.1 at a free port.
	TCP bool
	// Settings are extra postgresql.conf settings, name -> value.
	Settings map[string]string
}

// Server is a running private PostgreSQL.
type Server struct {
	Dir     string // holds data/, the socket and the log
	Socket  string // the unix socket folder (libpq's host)
	Port    int    // the port; the socket file is .s.PGSQL.<Port>
	TCPAddr string // 127.0.0.1:<Port> when Options.TCP, else ""
	bin     string
	cred    *syscall.Credential
	dbs     atomic.Int64
	running bool
}

// SkipUnlessCI skips t with msg, or fails it when CI is set.
func SkipUnlessCI(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI is set, so this is a failure, not a skip")
	}
	t.Skip(msg)
}

// Require skips t (fails it when CI is set) unless Start could start a
// server: the binaries are installed and, under root, the user postgres
// exists. A test calls it before expensive set-up.
func Require(t testing.TB) {
	t.Helper()
	if BinDir() == "" {
		SkipUnlessCI(t, "pgtest: PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
	}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			SkipUnlessCI(t, "pgtest: running as root and there is no user postgres to run the server as (Debian: apt-get install postgresql)")
		}
	}
}

// BinDir returns the folder of the newest installed PostgreSQL server
// binaries, or "" if there is none.
func BinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start starts a server and stops it (and deletes its files) when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short: needs PostgreSQL (starts a private server)")
	}
	bin := BinDir()
	if bin == "" {
		SkipUnlessCI(t, "pgtest: PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
	}
	// Unix socket paths are limited to about 100 bytes, and t.TempDir
	// names can be long and are private to root: use a short folder that
	// the server's user owns.
	dir, err := os.MkdirTemp("", "pgt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{Dir: dir, Socket: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			SkipUnlessCI(t, "pgtest: running as root and there is no user postgres to run the server as (Debian: apt-get install postgresql)")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.reapOnExit(t)
	s.Port = 5432
	if opts.TCP {
		s.Port = freePort(t)
		s.TCPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	}
	data := filepath.Join(dir, "data")
	s.run(t, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	conf := []string{
		"unix_socket_directories = '" + dir + "'",
		"port = " + strconv.Itoa(s.Port),
		"listen_addresses = ''",
		"max_connections = 200",
		"shared_buffers = 32MB",
		"logging_collector = off",
	}
	if opts.TCP {
		conf = append(conf, "listen_addresses = '127.0.0.1'")
	}
	for k, v := range opts.Settings {
		conf = append(conf, k+" = "+v)
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\n# pgtest\n" + strings.Join(conf, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	t.Cleanup(func() {
		if !s.running {
			return
		}
		// Immediate: the files are deleted next, nothing needs a checkpoint.
		cmd := s.command("pg_ctl", "stop", "-D", s.data(), "-m", "immediate", "-w")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("pgtest: pg_ctl stop: %v\n%s", err, out)
		}
	})
	return s
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

// reapOnExit starts a watchdog that stops the server in s.Dir and deletes
// the folder once this process has ended, however it ended. A test's
// cleanup does not run when the test binary is killed by a signal or
// panics at go test's -timeout, and pg_ctl's server outlives it; so the
// watchdog, a shell in its own process group (a Ctrl-C to the test does
// not reach it), waits for end of file on a pipe whose writing end only
// this process holds, which the kernel closes when the process exits.
// After a normal cleanup it finds the server already stopped. It runs as
// the server's user, since pg_ctl refuses root.
func (s *Server) reapOnExit(t testing.TB) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	const script = `read -r _; "$0" stop -D "$1" -m immediate -w >/dev/null 2>&1; rm -rf "$2"`
	cmd := exec.Command("/bin/sh", "-c", script, filepath.Join(s.bin, "pg_ctl"), s.data(), s.Dir)
	cmd.Stdin = r
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		t.Fatalf("pgtest: starting the watchdog: %v", err)
	}
	t.Cleanup(func() {
		w.Close()
		cmd.Wait()
	})
}

// Stop stops the server at once, as a crash would (pg_ctl stop -m
// immediate): clients see their connections drop and new ones refused.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.run(t, "pg_ctl", "stop", "-D", s.data(), "-m", "immediate", "-w")
	s.running = false
}

// Restart starts a stopped server again on the same files, socket and
// port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.run(t, "pg_ctl", "start", "-D", s.data(), "-l", filepath.Join(s.Dir, "server.log"), "-w", "-t", "60")
	s.running = true
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

func (s *Server) run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := s.command(name, args...).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
		t.Fatalf("pgtest: %s: %v\n%s\n%s", name, err, out, log)
	}
}

// DSN returns a connection string for database db over the unix socket.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.Socket, s.Port, db)
}

// TCPDSN returns a connection string for database db over loopback TCP;
// the server must have been started with Options.TCP.
func (s *Server) TCPDSN(db string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable", s.Port, db)
}

// NewDatabase creates an empty database and returns its name.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	s.Exec(t, "postgres", "CREATE DATABASE "+name)
	return name
}

// Exec runs one SQL statement in database db.
func (s *Server) Exec(t testing.TB, db, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// Log returns the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	return string(b)
}

func freePort(t testing.TB) int {
	t.Helper()
	return testport.Free(t)
}

// StartStandby makes a streaming standby of s (pg_basebackup -R) named
// name, in its own folder with its own socket, starts it, and stops it
// when t ends. The standby connects with application_name name, so
// synchronous_standby_names on s can name it; see SetSynchronous.
func (s *Server) StartStandby(t testing.TB, name string) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st := &Server{Dir: dir, Socket: dir, Port: s.Port, bin: s.bin, cred: s.cred}
	if s.cred != nil {
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	st.reapOnExit(t)
	st.run(t, "pg_basebackup", "-h", s.Socket, "-p", strconv.Itoa(s.Port), "-U", "postgres", "-D", st.data(), "-R", "-X", "stream", "-c", "fast", "--no-sync")
	f, err := os.OpenFile(filepath.Join(st.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "\n# pgtest standby\nunix_socket_directories = '%s'\ncluster_name = '%s'\n", dir, name)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	st.Restart(t)
	t.Cleanup(func() {
		if st.running {
			st.command("pg_ctl", "stop", "-D", st.data(), "-m", "immediate", "-w").Run()
		}
	})
	return st
}

// SetSynchronous makes s wait for the standby named name at every commit
// (synchronous_standby_names) and waits until that standby streams in
// sync.
func (s *Server) SetSynchronous(t testing.TB, name string) {
	t.Helper()
	s.Exec(t, "postgres", "ALTER SYSTEM SET synchronous_standby_names = '"+name+"'")
	s.Exec(t, "postgres", "SELECT pg_reload_conf()")
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND sync_state = 'sync'", name).Scan(&n)
		conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: standby %s is not in sync after 60s\n%s", name, s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Kill sends SIGKILL to the postmaster, by the PID in postmaster.pid: a
// crash, with no shutdown of any kind.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := syscall.Kill(s.postmasterPID(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.running = false
}

// postmasterPID is s.postmaster that fails t.
func (s *Server) postmasterPID(t testing.TB) int {
	t.Helper()
	pid, err := s.postmaster()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return pid
}

// Promote turns a standby into a primary (pg_ctl promote) and waits for it
// to accept writes.
func (s *Server) Promote(t testing.TB) {
	t.Helper()
	s.run(t, "pg_ctl", "promote", "-D", s.data(), "-w", "-t", "60")
}
