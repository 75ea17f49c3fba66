package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/securemail/securemail/internal/poll"
)

func TestStartServesUnixAndTCP(t *testing.T) {
	s := Start(t, Options{TCP: true})
	db := s.NewDatabase(t)
	ctx := context.Background()
	for _, dsn := range []string{s.DSN(db), s.TCPDSN(db)} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		var name string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil || name != db {
			t.Fatalf("%s: database %q %v", dsn, name, err)
		}
		conn.Close(ctx)
	}
}

func TestServerCPU(t *testing.T) {
	s := Start(t, Options{})
	before, err := s.CPU()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// About a second of the server's processor time.
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM generate_series(1, 5000000) a, generate_series(1, 2) b"); err != nil {
		t.Fatal(err)
	}
	after, err := s.CPU()
	if err != nil {
		t.Fatal(err)
	}
	if used := after - before; used < 100*time.Millisecond {
		t.Fatalf("server CPU went from %v to %v after a query that keeps a backend busy", before, after)
	}
}

// TestPin: after Pin, a backend that was running before and one started
// after are both allowed only the processor given.
func TestPin(t *testing.T) {
	s := Start(t, Options{})
	ctx := context.Background()
	backend := func() (*pgx.Conn, int) {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		var pid int
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return conn, pid
	}
	allowed := func(pid int) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("no Cpus_allowed_list for %d", pid)
		return ""
	}
	_, before := backend()
	if err := s.Pin("0"); err != nil {
		t.Fatal(err)
	}
	_, after := backend()
	for _, pid := range []int{before, after} {
		if got := allowed(pid); got != "0" {
			t.Errorf("backend %d may run on %q after Pin(\"0\")", pid, got)
		}
	}
}

// reapChildEnv makes TestServerStoppedWhenTestProcessDies, run by its own
// test binary as a child, start a server, say where it is and wait to be
// killed.
const reapChildEnv = "PGTEST_REAP_CHILD"

// TestServerStoppedWhenTestProcessDies kills, with SIGKILL, a test process
// that started a server (so none of its cleanup runs) and checks that the
// server stops and its folder goes anyway.
func TestServerStoppedWhenTestProcessDies(t *testing.T) {
	if os.Getenv(reapChildEnv) != "" {
		s := Start(t, Options{})
		fmt.Printf("pgtest-child: %d %s\n", s.postmasterPID(t), s.Dir)
		time.Sleep(time.Hour)
		return
	}
	if testing.Short() {
		t.Skip("skipped in -short: needs PostgreSQL (starts a private server)")
	}
	Require(t)
	child := exec.Command(os.Args[0], "-test.run", "^TestServerStoppedWhenTestProcessDies$", "-test.v", "-test.timeout", "5m")
	child.Env = append(os.Environ(), reapChildEnv+"=1")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	said := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "pgtest-child: "); ok {
				said <- rest
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	var line string
	select {
	case line = <-said:
	case <-time.After(2 * time.Minute):
		t.Fatal("the child test process did not start its server within two minutes")
	}
	var pid int
	var dir string
	if _, err := fmt.Sscanf(line, "%d %s", &pid, &dir); err != nil {
		t.Fatalf("child said %q: %v", line, err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the child's postmaster %d is not running before the child is killed: %v", pid, err)
	}
	// Should the watchdog fail, this test does not leave the server behind.
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGQUIT)
		os.RemoveAll(dir)
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	poll.Until(t, time.Minute, "the server stopped and its folder gone after its test process was killed", func() bool {
		_, statErr := os.Stat(dir)
		return syscall.Kill(pid, 0) != nil && errors.Is(statErr, fs.ErrNotExist)
	})
}
