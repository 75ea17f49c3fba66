package mtatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/syncbuf"
)

// Sendmail cannot be installed next to Postfix (the Debian packages
// conflict), so the tests run it from the unpacked packages under a private
// root: SECUREMAIL_SENDMAIL_ROOT, or DefaultSendmailRoot. .ci/run fills it
// with
//
//	apt-get download sendmail-bin sendmail-cf sendmail-base
//	dpkg-deb -x PACKAGE.deb "$SECUREMAIL_SENDMAIL_ROOT"   (for each)
const (
	SendmailRootEnv     = "SECUREMAIL_SENDMAIL_ROOT"
	DefaultSendmailRoot = "/opt/securemail-ci/sendmail"
)

// Below the root: the daemon and the m4 files that build a sendmail.cf.
const (
	sendmailBinRel = "usr/libexec/sendmail/sendmail"
	sendmailCFRel  = "usr/share/sendmail/cf"
)

// SendmailTools are the programs a Sendmail test needs besides the unpacked
// Sendmail: m4 builds the .cf, unshare/mount/hostname give the daemon a
// qualified host name, a /dev/log and a Cyrus SASL config path of its own,
// saslpasswd2 writes the sasldb, swaks is the client.
var SendmailTools = []string{"m4", "unshare", "mount", "hostname", "saslpasswd2", "swaks"}

// SendmailRoot is where the unpacked Sendmail packages are: the value of
// SECUREMAIL_SENDMAIL_ROOT, or DefaultSendmailRoot when that is unset.
func SendmailRoot() string {
	if r := os.Getenv(SendmailRootEnv); r != "" {
		return r
	}
	return DefaultSendmailRoot
}

// RequireSendmail skips the test (fails it when CI is set) unless the
// unpacked Sendmail, the SendmailTools and root privileges are there.
func RequireSendmail(t testing.TB) {
	t.Helper()
	root := SendmailRoot()
	var missing []string
	for _, rel := range []string{sendmailBinRel, filepath.Join(sendmailCFRel, "m4", "cf.m4")} {
		if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
			missing = append(missing, filepath.Join(root, rel))
		}
	}
	for _, name := range SendmailTools {
		if _, err := LookTool(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) != 0 {
		msg := "mtatest: sendmail: missing " + strings.Join(missing, ", ") +
			" (unpack the Debian packages sendmail-bin sendmail-cf sendmail-base into $" + SendmailRootEnv +
			" (default " + DefaultSendmailRoot + ") as .ci/run does, and apt-get install m4 liblockfile1 libwrap0" +
			" sasl2-bin libsasl2-modules swaks libnet-ssleay-perl)"
		SkipUnlessCI(t, msg)
	}
	RequireRoot(t)
}

// SendmailOptions configure a private Sendmail instance.
type SendmailOptions struct {
	// RelayHost is the 127.0.0.1:port every message is relayed to (the
	// smart host), usually Sink.Addr. Required. Nothing is delivered
	// locally.
	RelayHost string
	// Hostname is the daemon's host name ($j); default "mta.example.test".
	// It must be qualified: Sendmail hangs at start-up for over a minute
	// trying to qualify a short one.
	Hostname string
	// MC is m4 text placed into the instance's .mc after the instance's own
	// settings and before the MAILER lines, typically an operator snippet:
	// "include(`/path/to/contrib/sendmail/securemail.mc')". Its defines
	// win over the instance's. Rewrite the built sendmail.cf with
	// [Sendmail.RewriteCF] before [Sendmail.Start].
	MC string
	// User and Password are the SASL credentials accepted on the
	// submission listener; defaults "sender@example.test" and a random
	// password.
	User, Password string
}

// Sendmail is a private Sendmail 8 daemon run from the unpacked packages
// (SendmailRoot), with its .cf, queue, pid file, TLS and SASL files below a
// directory of its own, listening on 127.0.0.1 only and relaying every
// message to RelayHost.
//
// It runs in its own UTS and mount namespaces (unshare): there it has its
// qualified host name, a /dev whose "log" is a socket this process reads
// (Sendmail logs only through syslog(3), and there is no syslog daemon), and
// its Cyrus SASL configuration (Sendmail.conf) at the library's default
// path, which Sendmail offers no option to change and which it reads with
// a cleared environment (SASL_CONF_PATH does not reach it).
type Sendmail struct {
	Dir      string // root of the instance's files; parents not group/world-writable
	Root     string // the unpacked packages (SendmailRoot)
	MCFile   string // the .mc the instance is built from
	CFFile   string // the sendmail.cf built from MCFile with m4
	QueueDir string
	LogFile  string // copy of everything the daemon logged to syslog

	opts     SendmailOptions
	smtpAddr string
	subAddr  string
	tls      *TLSCert

	syslog     *net.UnixConn
	syslogDone chan struct{}
	logMu      sync.Mutex
	log        bytes.Buffer
	logFile    *os.File

	cmd     *exec.Cmd
	out     syncbuf.Buffer // the daemon's stdout and stderr
	done    chan struct{}
	waitErr error
	started bool
	stopped bool
}

var _ MTA = (*Sendmail)(nil)

// sendmailBaseDir holds the instances' directories. Sendmail treats files
// below a group- or world-writable directory as unsafe, which rules out
// t.TempDir() under /tmp: there it logs "STARTTLS=server: file .../cert.pem
// unsafe: World writable directory" and starts without STARTTLS. And the
// syslog socket's path must fit into sun_path (108 bytes).
const sendmailBaseDir = "/run/securemail-mtatest"

// NewSendmail writes the configuration of a private Sendmail instance and
// builds its sendmail.cf with m4 (a broken MC fails the test here). It does
// not start it: adjust the .cf with RewriteCF, then call Start. The test is
// skipped (failed with CI set) if Sendmail or a tool is missing or the test
// does not run as root.
func NewSendmail(t testing.TB, opts SendmailOptions) *Sendmail {
	t.Helper()
	RequireSendmail(t)
	if opts.RelayHost == "" {
		t.Fatal("mtatest: SendmailOptions.RelayHost is required")
	}
	relayHost, relayPort, err := net.SplitHostPort(opts.RelayHost)
	if err != nil || net.ParseIP(relayHost) == nil {
		t.Fatalf("mtatest: RelayHost %q: want IP:port (%v)", opts.RelayHost, err)
	}
	if opts.Hostname == "" {
		opts.Hostname = "mta.example.test"
	}
	if !strings.Contains(opts.Hostname, ".") {
		t.Fatalf("mtatest: Sendmail host name %q is not qualified", opts.Hostname)
	}
	if opts.User == "" {
		opts.User = "sender@example.test"
	}
	if opts.Password == "" {
		var b [12]byte
		rand.Read(b[:])
		opts.Password = hex.EncodeToString(b[:])
	}

	dir := sendmailDir(t)
	s := &Sendmail{
		Dir:      dir,
		Root:     SendmailRoot(),
		MCFile:   filepath.Join(dir, "etc", "sendmail.mc"),
		CFFile:   filepath.Join(dir, "etc", "sendmail.cf"),
		QueueDir: filepath.Join(dir, "mqueue"),
		LogFile:  filepath.Join(dir, "maillog"),
		opts:     opts,
		smtpAddr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		subAddr:  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		done:     make(chan struct{}),
	}
	for _, d := range []string{"etc", "mqueue", "run", "tls", "sasl", "dev"} {
		mode := os.FileMode(0o755)
		if d == "mqueue" {
			mode = 0o700
		}
		if err := os.Mkdir(filepath.Join(dir, d), mode); err != nil {
			t.Fatalf("mtatest: %v", err)
		}
	}
	s.tls = NewTLSCert(t, filepath.Join(dir, "tls"), opts.Hostname)
	s.writeSASL(t)
	files := map[string]string{
		// No DNS anywhere: host names from /etc/hosts only.
		"etc/service.switch": "hosts files\naliases files\n",
		"etc/aliases":        "",
		"etc/helpfile":       "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatalf("mtatest: %v", err)
		}
	}
	mc := sendmailMC(s, relayHost, relayPort)
	if err := os.WriteFile(s.MCFile, []byte(mc), 0o644); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	s.buildCF(t)
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("mtatest: sendmail log %s:\n%s", s.LogFile, s.Log())
			if out := s.out.String(); out != "" {
				t.Logf("mtatest: sendmail stdout/stderr:\n%s", out)
			}
		}
	})
	return s
}

// sendmailDir makes a new directory below sendmailBaseDir, removed by
// t.Cleanup, and checks that no directory above it is writable by group
// or others.
func sendmailDir(t testing.TB) string {
	t.Helper()
	var dir string
	var err error
	// Another test's cleanup may remove the (empty) base directory
	// between MkdirAll and MkdirTemp.
	for try := 0; try < 3; try++ {
		if err = os.MkdirAll(sendmailBaseDir, 0o755); err != nil {
			continue
		}
		if dir, err = os.MkdirTemp(sendmailBaseDir, "sm"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		os.Remove(sendmailBaseDir) // only if empty: another test may use it
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatalf("mtatest: %v", err)
		}
		if st.Mode().Perm()&0o022 != 0 {
			t.Fatalf("mtatest: %s is group- or world-writable (%v): Sendmail treats files below it as unsafe", d, st.Mode().Perm())
		}
		if d == "/" {
			break
		}
	}
	return dir
}

// sendmailMC is the .mc of the instance.
func sendmailMC(s *Sendmail, relayHost, relayPort string) string {
	cf := filepath.Join(s.Root, sendmailCFRel)
	_, smtpPort, _ := net.SplitHostPort(s.smtpAddr)
	_, subPort, _ := net.SplitHostPort(s.subAddr)
	d := s.Dir
	var b strings.Builder
	fmt.Fprintf(&b, "divert(-1)\n# sendmail.mc of a private test instance written by mtatest\n")
	// Every file Sendmail looks for by default (aliases, helpfile,
	// local-host-names, service.switch, ...) below the instance.
	fmt.Fprintf(&b, "define(`MAIL_SETTINGS_DIR', `%s/etc/')\ndivert(0)dnl\n", d)
	fmt.Fprintf(&b, "include(`%s/m4/cf.m4')dnl\n", cf)
	b.WriteString("VERSIONID(`mtatest private instance')dnl\n")
	b.WriteString("OSTYPE(`linux')dnl\n")
	b.WriteString("FEATURE(`no_default_msa')dnl\n")
	for _, kv := range [][2]string{
		{"confDOMAIN_NAME", s.opts.Hostname},
		{"QUEUE_DIR", s.QueueDir},
		{"confPID_FILE", d + "/run/sendmail.pid"},
		{"confSTATUS_FILE", d + "/run/statistics"},
		{"confDEAD_LETTER_DROP", d + "/run/dead.letter"},
		{"confHOST_STATUS_DIRECTORY", ""},
		{"confSERVICE_SWITCH_FILE", d + "/etc/service.switch"},
		{"ALIAS_FILE", d + "/etc/aliases"},
		{"HELP_FILE", d + "/etc/helpfile"},
		// Loopback only, and no waiting for what is not there.
		{"confTO_IDENT", "0"},
		{"confDONT_PROBE_INTERFACES", "True"},
		{"confBIND_OPTS", "-DNSRCH -DEFNAMES"},
		// A busy CI machine must not make Sendmail queue or refuse mail.
		{"confQUEUE_LA", "999"},
		{"confREFUSE_LA", "999"},
		// Log enough to see milter verdicts with their queue ids.
		{"confLOG_LEVEL", "13"},
		{"confMILTER_LOG_LEVEL", "13"},
		// STARTTLS: without these files Sendmail silently offers none.
		{"confCACERT_PATH", d + "/tls"},
		{"confCACERT", s.tls.CertFile},
		{"confSERVER_CERT", s.tls.CertFile},
		{"confSERVER_KEY", s.tls.KeyFile},
		// SMTP AUTH with Cyrus SASL (Sendmail.conf, see writeSASL); PLAIN
		// also without TLS, so that the milter can be tested with it.
		{"confAUTH_MECHANISMS", "PLAIN LOGIN"},
		// Every message to the sink.
		{"SMART_HOST", "esmtp:[" + relayHost + "]"},
		{"ESMTP_MAILER_ARGS", "TCP $h " + relayPort},
		{"RELAY_MAILER_ARGS", "TCP $h " + relayPort},
	} {
		fmt.Fprintf(&b, "define(`%s', `%s')dnl\n", kv[0], kv[1])
	}
	b.WriteString("TRUST_AUTH_MECH(`PLAIN LOGIN')dnl\n")
	b.WriteString("FEATURE(`nocanonify')dnl\n")
	b.WriteString("FEATURE(`accept_unresolvable_domains')dnl\n")
	// The MX: no AUTH (M=A), STARTTLS offered. The submission port
	// (Debian's MSA): AUTH required (M=a), STARTTLS offered.
	fmt.Fprintf(&b, "DAEMON_OPTIONS(`Name=MTA, Family=inet, Addr=127.0.0.1, Port=%s, M=A')dnl\n", smtpPort)
	fmt.Fprintf(&b, "DAEMON_OPTIONS(`Name=MSA, Family=inet, Addr=127.0.0.1, Port=%s, M=Ea')dnl\n", subPort)
	if s.opts.MC != "" {
		b.WriteString("dnl # ---- SendmailOptions.MC ----\n")
		b.WriteString(s.opts.MC)
		if !strings.HasSuffix(s.opts.MC, "\n") {
			b.WriteString("\n")
		}
		b.WriteString("dnl # ---- end of SendmailOptions.MC ----\n")
	}
	b.WriteString("MAILER(`local')dnl\nMAILER(`smtp')dnl\n")
	return b.String()
}

// buildCF runs m4 on MCFile and writes CFFile. Any m4 diagnostic, and any
// "*** ERROR" that Sendmail's m4 files put into the output, fails the test.
func (s *Sendmail) buildCF(t testing.TB) {
	t.Helper()
	m4, err := LookTool("m4")
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, m4, s.MCFile)
	cmd.Dir = filepath.Dir(s.MCFile)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil || errOut.Len() != 0 {
		t.Fatalf("mtatest: m4 %s: %v\n%s\n.mc:\n%s", s.MCFile, err, errOut.String(), numberLines(s.mc(t)))
	}
	if i := bytes.Index(out.Bytes(), []byte("*** ERROR")); i >= 0 {
		line := out.Bytes()[i:]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		t.Fatalf("mtatest: m4 %s: the .cf says %q\n.mc:\n%s", s.MCFile, line, numberLines(s.mc(t)))
	}
	if err := os.WriteFile(s.CFFile, out.Bytes(), 0o644); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
}

func (s *Sendmail) mc(t testing.TB) string {
	b, err := os.ReadFile(s.MCFile)
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	return string(b)
}

func numberLines(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintf(&b, "%4d  %s\n", i+1, l)
	}
	return b.String()
}

// writeSASL writes the Cyrus SASL configuration Sendmail reads as
// "Sendmail.conf" and the sasldb with the instance's one user. Sendmail
// checks both files like its own: owned by root, not group- or
// world-readable (the sasldb), in directories only root can write.
func (s *Sendmail) writeSASL(t testing.TB) {
	t.Helper()
	saslDir := filepath.Join(s.Dir, "sasl")
	db := filepath.Join(saslDir, "sasldb2")
	conf := fmt.Sprintf("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: %s\n", db)
	if err := os.WriteFile(filepath.Join(saslDir, "Sendmail.conf"), []byte(conf), 0o644); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	WriteSASLDB(t, db, s.opts.User, s.opts.Password, "root")
	if err := os.Chmod(db, 0o600); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
}

// CF returns the built sendmail.cf.
func (s *Sendmail) CF(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(s.CFFile)
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	return string(b)
}

// RewriteCF replaces old with new in the built sendmail.cf, before Start;
// old must occur exactly once. Tests use it to point an operator snippet's
// milter at the test's port, so that the snippet itself goes through m4
// unchanged.
func (s *Sendmail) RewriteCF(t testing.TB, old, new string) {
	t.Helper()
	if s.started {
		t.Fatal("mtatest: RewriteCF after Start")
	}
	cf := s.CF(t)
	if n := strings.Count(cf, old); n != 1 {
		t.Fatalf("mtatest: RewriteCF: %q occurs %d times in %s, want once", old, n, s.CFFile)
	}
	if err := os.WriteFile(s.CFFile, []byte(strings.Replace(cf, old, new, 1)), 0o644); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
}

// sendmailNamespaceScript runs as root inside new UTS and mount namespaces
// (private propagation: nothing leaks to the host) and becomes the daemon.
//
//	$1 host name  $2 instance directory  $3 sendmail binary  $4 sendmail.cf
//	$5 queue-run interval
//
// /dev is replaced by a small tmpfs with the few devices Sendmail uses and
// "log", a symlink to the socket this process reads; the SASL directories
// Cyrus searches (its default path; Sendmail has no option for it) show the
// instance's sasl directory.
const sendmailNamespaceScript = `set -e
hostname "$1"
dev="$2/dev"
mount -t tmpfs -o mode=0755,size=64k mtatest-dev "$dev"
for f in null zero full random urandom tty; do
	if [ -e "/dev/$f" ]; then
		touch "$dev/$f"
		mount --bind "/dev/$f" "$dev/$f"
	fi
done
ln -s "$2/syslog.sock" "$dev/log"
mount --bind "$dev" /dev
found=
for d in /etc/sasl2 /etc/sasl /usr/lib/sasl2; do
	if [ -d "$d" ]; then
		mount --bind "$2/sasl" "$d"
		found=1
	fi
done
if [ -z "$found" ]; then
	echo "mtatest: none of /etc/sasl2 /etc/sasl /usr/lib/sasl2 exists to hold Sendmail.conf (install sasl2-bin)" >&2
	exit 1
fi
exec "$3" -L sm-mta-test -C "$4" -bD -q"$5"
`

// Start starts the daemon (in the foreground, -bD, as a child of the test
// process) and returns when both listeners accept connections.
func (s *Sendmail) Start(t testing.TB) {
	t.Helper()
	if s.started {
		t.Fatal("mtatest: sendmail already started")
	}
	s.started = true
	s.startSyslog(t)
	unshare, err := LookTool("unshare")
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	bin := filepath.Join(s.Root, sendmailBinRel)
	s.cmd = exec.Command(unshare, "--uts", "--mount", "--propagation", "private",
		"sh", "-c", sendmailNamespaceScript, "sh",
		s.opts.Hostname, s.Dir, bin, s.CFFile, "1m")
	// The tools the script runs live in /usr/sbin and /usr/bin.
	s.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	s.cmd.Dir = s.Dir
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	// Its own process group, so that Stop can end the daemon's children
	// (deliveries, queue runs) too.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("mtatest: start sendmail: %v", err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range []string{s.smtpAddr, s.subAddr} {
		for {
			if s.exited() {
				t.Fatalf("mtatest: sendmail exited during start-up: %v\n%s\nlog:\n%s", s.waitErr, s.out.String(), s.Log())
			}
			if WaitListening(addr, 50*time.Millisecond) == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("mtatest: sendmail not listening on %s after 20s\n%s\nlog:\n%s", addr, s.out.String(), s.Log())
			}
		}
	}
	// Sendmail starts even when it could not use parts of its
	// configuration: without its certificate it offers no STARTTLS,
	// without Sendmail.conf or the SASL plugins no AUTH. Say so now
	// rather than in a confusing failure later.
	if err := s.WaitLogMatch(regexp.MustCompile(`starting daemon`), 5*time.Second); err != nil {
		t.Fatalf("mtatest: %v\n%s", err, s.out.String())
	}
	if err := s.checkEHLO(); err != nil {
		t.Fatalf("mtatest: sendmail start-up: %v\nlog:\n%s", err, s.Log())
	}
	// With -bD the daemon prints nothing unless its .cf has errors
	// ("sendmail.cf: line N: unknown configuration line ..."), which it
	// reports and then ignores.
	if out := s.out.String(); out != "" {
		t.Fatalf("mtatest: sendmail start-up: %s\n.cf errors are numbered by the lines of %s", out, s.CFFile)
	}
	for _, line := range strings.Split(s.Log(), "\n") {
		if strings.Contains(line, "SYSERR") {
			t.Fatalf("mtatest: sendmail start-up: %s\nlog:\n%s", line, s.Log())
		}
	}
}

// checkEHLO checks that the submission listener offers STARTTLS and AUTH
// PLAIN LOGIN.
func (s *Sendmail) checkEHLO() error {
	c, err := smtp.Dial(s.subAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("mtatest.example.test"); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return fmt.Errorf("submission listener %s offers no STARTTLS (certificate files?)", s.subAddr)
	}
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
		return fmt.Errorf("submission listener %s offers AUTH %q, want PLAIN LOGIN (Sendmail.conf, libsasl2-modules?)", s.subAddr, mechs)
	}
	return c.Quit()
}

// startSyslog listens on Dir/syslog.sock, which is /dev/log for the
// daemon, and copies every message to the log.
func (s *Sendmail) startSyslog(t testing.TB) {
	t.Helper()
	path := filepath.Join(s.Dir, "syslog.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("mtatest: syslog socket: %v", err)
	}
	// Sendmail's children may run as other users.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	f, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	s.syslog, s.logFile, s.syslogDone = conn, f, make(chan struct{})
	go func() {
		defer close(s.syslogDone)
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.appendLog(buf[:n])
		}
	}()
}

// syslogPRI is the "<priority>" a syslog(3) datagram starts with.
var syslogPRI = regexp.MustCompile(`^<\d{1,3}>`)

func (s *Sendmail) appendLog(msg []byte) {
	msg = syslogPRI.ReplaceAll(bytes.TrimRight(msg, "\x00\r\n"), nil)
	msg = append(msg, '\n')
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.log.Write(msg)
	s.logFile.Write(msg)
}

func (s *Sendmail) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stop stops the daemon (SIGTERM, then SIGKILL to its process group after
// 10 s) and the log reader. It is called by t.Cleanup; calling it earlier
// is fine.
func (s *Sendmail) Stop(t testing.TB) {
	t.Helper()
	if !s.started || s.stopped {
		return
	}
	s.stopped = true
	pid := s.cmd.Process.Pid
	if !s.exited() {
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Errorf("mtatest: sendmail %d still running 10s after SIGTERM; killed", pid)
		}
	}
	// Children that outlive the daemon (a delivery, a queue run) are in
	// its process group, which this test created.
	syscall.Kill(-pid, syscall.SIGKILL)
	<-s.done
	// Read what is still queued on the socket, then stop.
	s.syslog.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	<-s.syslogDone
	s.syslog.Close()
	s.logMu.Lock()
	s.logFile.Close()
	s.logMu.Unlock()
}

// Name implements MTA.
func (s *Sendmail) Name() string { return "sendmail" }

// SMTPAddr implements MTA: the daemon "MTA" (AUTH off, STARTTLS offered),
// like port 25 of a production host.
func (s *Sendmail) SMTPAddr() string { return s.smtpAddr }

// SubmissionAddr implements MTA: the daemon "MSA" (M=Ea: AUTH required,
// STARTTLS offered, AUTH PLAIN/LOGIN also without TLS).
func (s *Sendmail) SubmissionAddr() string { return s.subAddr }

// Credentials implements MTA.
func (s *Sendmail) Credentials() (string, string) { return s.opts.User, s.opts.Password }

// TLS implements MTA.
func (s *Sendmail) TLS() *TLSCert { return s.tls }

// Log implements MTA: what the daemon and its children logged through
// syslog(3), one message a line, without the syslog priority.
func (s *Sendmail) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// WaitLogMatch implements MTA.
func (s *Sendmail) WaitLogMatch(re *regexp.Regexp, timeout time.Duration) error {
	return waitLogLine("sendmail log", s.Log, re, timeout)
}

// sendmailLogLine splits "Mon DD HH:MM:SS sm-mta-test[PID]: QUEUEID: text".
var sendmailLogLine = regexp.MustCompile(`^.*? sm-mta-test\[\d+\]: ([0-9A-Za-z]{14}): (.*)$`)

// WaitMilterReject implements MTA. Sendmail logs a milter's refusal as
// "QID: Milter: from=<sender>, reject=530 ..." at MAIL FROM, and at end of
// message as "QID: Milter: data, reject=552 ..." without the sender, which
// only another line of the same queue id names ("QID: from=<sender>,
// size=..."). So: some queue id must have both a "Milter: ... reject="
// line and the sender.
func (s *Sendmail) WaitMilterReject(from string, timeout time.Duration) error {
	sender := "from=<" + from + ">"
	deadline := time.Now().Add(timeout)
	for {
		rejected := map[string]bool{}
		named := map[string]bool{}
		for _, line := range strings.Split(s.Log(), "\n") {
			m := sendmailLogLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			qid, text := m[1], m[2]
			if strings.HasPrefix(text, "Milter") && strings.Contains(text, "reject=") {
				rejected[qid] = true
			}
			if strings.Contains(strings.ToLower(text), strings.ToLower(sender)) {
				named[qid] = true
			}
		}
		for qid := range rejected {
			if named[qid] {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mtatest: the sendmail log shows no milter reject of mail from <%s> after %v", from, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// QueueFiles returns the names of the files in the queue directory: qf
// (control), df (data), tf/xf (temporary, transcript), Qf (lost), hf.
func (s *Sendmail) QueueFiles(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(s.QueueDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mtatest: %v", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// WaitQueueEmpty implements MTA: the queue directory holds no file, every
// message delivered (or bounced) and removed.
func (s *Sendmail) WaitQueueEmpty(t testing.TB, timeout time.Duration) error {
	t.Helper()
	return waitQueueEmpty("sendmail", func() []string { return s.QueueFiles(t) }, timeout)
}
