package mtatest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/testport"
)

// MTA is what a test needs from a running mail server, whichever it is.
type MTA interface {
	// Name is a short label for logs ("postfix").
	Name() string
	// SMTPAddr is the host:port of the unauthenticated listener (the MX,
	// port 25 in production).
	SMTPAddr() string
	// SubmissionAddr is the host:port of the submission listener (port 587
	// in production): SMTP AUTH, STARTTLS offered.
	SubmissionAddr() string
	// Credentials returns the SASL user name and password accepted on the
	// submission listener.
	Credentials() (user, password string)
	// TLS returns the certificate the MTA presents for STARTTLS.
	TLS() *TLSCert
	// Log returns the MTA's mail log so far.
	Log() string
	// WaitLogMatch waits until a line of the log matches re.
	WaitLogMatch(re *regexp.Regexp, timeout time.Duration) error
	// WaitMilterReject waits until the log shows that a milter refused
	// mail from envelope sender from: proof that a reply came from the
	// milter and not from the MTA's own checks.
	WaitMilterReject(from string, timeout time.Duration) error
	// WaitQueueEmpty waits until the MTA's queue holds no message.
	WaitQueueEmpty(t testing.TB, timeout time.Duration) error
}

// SkipUnlessCI skips t with msg, which says what is missing and how to
// install it, or fails t when the CI environment variable is set: in CI a
// test that needs a real MTA, browser or tool never passes by skipping.
func SkipUnlessCI(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI is set, so this is a failure, not a skip")
	}
	t.Skip(msg)
}

// RequireTools makes sure every named program is on PATH (or in /usr/sbin,
// /usr/lib/postfix/sbin, where Debian puts MTA tools). When one is missing the
// test is skipped with a message that says what to install, unless the CI
// environment variable is set: in CI a missing tool is a failure, so that an
// end-to-end test never passes by skipping.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, name := range names {
		if _, err := LookTool(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "mtatest: missing " + strings.Join(missing, ", ") +
		" (Debian: apt-get install postfix swaks libnet-ssleay-perl sasl2-bin libsasl2-modules)"
	SkipUnlessCI(t, msg)
}

// RequireToolsHint is RequireTools for tools that are not part of an MTA;
// hint says how to install them.
func RequireToolsHint(t testing.TB, hint string, names ...string) {
	t.Helper()
	var missing []string
	for _, name := range names {
		if _, err := LookTool(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		SkipUnlessCI(t, "missing "+strings.Join(missing, ", ")+" ("+hint+")")
	}
}

// RequireRoot skips (or, with CI set, fails) a test that is not run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "mtatest: real-MTA tests must run as root (the MTA drops privileges itself)"
	SkipUnlessCI(t, msg)
}

// LookTool finds a program on PATH or in the sbin directories that a
// non-login root shell may not have on PATH.
func LookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		cand := dir + "/" + name
		if st, serr := os.Stat(cand); serr == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", err
}

// FreePort returns a TCP port on 127.0.0.1 for a daemon a test starts; no
// other test on this machine gets it while this process runs (see testport).
func FreePort(t testing.TB) int {
	t.Helper()
	return testport.Free(t)
}

// MustTempDir is t.TempDir made traversable by other users: MTAs run their
// daemons as unprivileged users (postfix, nobody, smmsp) which must reach
// their queue and configuration below it. t.TempDir's parent is created 0700.
func MustTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("mtatest: chmod %s: %v", d, err)
		}
	}
	return dir
}
