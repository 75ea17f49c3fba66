package webmailtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/internal/syncbuf"
)

// Dovecot is a private Dovecot IMAP server with one user.
type Dovecot struct {
	Addr    string // 127.0.0.1:port of the IMAP listener (no TLS)
	User    string // login name, an email address
	Dir     string // the instance's files
	LogFile string
	Maildir string // the user's Maildir (INBOX)

	uid, gid int
	cmd      *exec.Cmd
	done     chan struct{}
	seq      atomic.Int64
}

// mailUser owns the test user's mail: any unprivileged account will do,
// Dovecot refuses to run mail processes as root.
const mailUser = "nobody"

// StartDovecot starts "dovecot -F" with its own configuration, a
// passwd-file holding user and password, and an IMAP listener on a free
// loopback port; it returns when the listener accepts connections.
func StartDovecot(t testing.TB, userName, password string) *Dovecot {
	t.Helper()
	RequireTools(t)
	mtatest.RequireRoot(t)
	bin, err := mtatest.LookTool("dovecot")
	if err != nil {
		t.Fatalf("webmailtest: %v", err)
	}
	u, err := user.Lookup(mailUser)
	if err != nil {
		t.Fatalf("webmailtest: user %s: %v", mailUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	dir := mtatest.MustTempDir(t)
	d := &Dovecot{
		Addr:    fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t)),
		User:    userName,
		Dir:     dir,
		LogFile: filepath.Join(dir, "dovecot.log"),
		uid:     uid,
		gid:     gid,
		done:    make(chan struct{}),
	}
	home := filepath.Join(dir, "home", userName)
	d.Maildir = filepath.Join(home, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(d.Maildir, sub), 0o700); err != nil {
			t.Fatalf("webmailtest: %v", err)
		}
	}
	for _, p := range []string{home, d.Maildir, filepath.Join(d.Maildir, "cur"),
		filepath.Join(d.Maildir, "new"), filepath.Join(d.Maildir, "tmp")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatalf("webmailtest: %v", err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "home"), 0o755); err != nil {
		t.Fatalf("webmailtest: %v", err)
	}

	passwd := filepath.Join(dir, "users")
	if err := os.WriteFile(passwd, []byte(userName+":{PLAIN}"+password+"::::::\n"), 0o640); err != nil {
		t.Fatalf("webmailtest: %v", err)
	}
	// Dovecot's auth process runs as user dovecot and reads the file
	// through its group, as with Debian's own /etc/dovecot/users.
	authGroup, err := user.LookupGroup("dovecot")
	if err != nil {
		t.Fatalf("webmailtest: group dovecot (made by the dovecot-core package): %v", err)
	}
	authGID, _ := strconv.Atoi(authGroup.Gid)
	if err := os.Chown(passwd, 0, authGID); err != nil {
		t.Fatalf("webmailtest: %v", err)
	}
	port := d.Addr[len("127.0.0.1:"):]
	conf := fmt.Sprintf(`# dovecot.conf of a private test instance written by webmailtest
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
info_log_path = %[2]s
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  mailbox Drafts {
    special_use = \Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = subscribe
  }
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[3]s
}
userdb {
  driver = static
  args = uid=%[4]d gid=%[5]d home=%[1]s/home/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[6]s
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, d.LogFile, passwd, uid, gid, port)
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatalf("webmailtest: %v", err)
	}

	d.cmd = exec.Command(bin, "-F", "-c", confPath)
	out := new(syncbuf.Buffer)
	d.cmd.Stdout, d.cmd.Stderr = out, out
	// Its own process group: a kill reaches every Dovecot child.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("webmailtest: start dovecot: %v", err)
	}
	go func() {
		d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("webmailtest: dovecot output:\n%s\ndovecot log %s:\n%s", out.String(), d.LogFile, readFile(d.LogFile))
		}
	})
	if err := mtatest.WaitListening(d.Addr, 10*time.Second); err != nil {
		t.Fatalf("webmailtest: dovecot: %v\n%s\n%s", err, out.String(), readFile(d.LogFile))
	}
	return d
}

func (d *Dovecot) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// Deliver puts msg (a whole RFC 5322 message) into the user's INBOX as a
// new, unread message, the way a local delivery agent writes a Maildir:
// into tmp/, then renamed into new/.
func (d *Dovecot) Deliver(t testing.TB, msg []byte) {
	t.Helper()
	name := fmt.Sprintf("%d.M%dP%d.webmailtest", time.Now().Unix(), d.seq.Add(1), os.Getpid())
	tmp := filepath.Join(d.Maildir, "tmp", name)
	if err := os.WriteFile(tmp, msg, 0o600); err != nil {
		t.Fatalf("webmailtest: deliver: %v", err)
	}
	if err := os.Chown(tmp, d.uid, d.gid); err != nil {
		t.Fatalf("webmailtest: deliver: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(d.Maildir, "new", name)); err != nil {
		t.Fatalf("webmailtest: deliver: %v", err)
	}
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(b)
}
