package mtatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/poll"
)

// PostfixOptions configure a private Postfix instance.
type PostfixOptions struct {
	// RelayHost is the 127.0.0.1:port every message is relayed to, usually
	// Sink.Addr. Required. Nothing is delivered locally: mydestination is
	// empty, so every domain, internal or not, ends up at the relay host.
	RelayHost string
	// Hostname is myhostname; default "mta.example.test". mydomain is the
	// part after the first dot.
	Hostname string
	// MainCF is written to main.cf before the instance's own settings,
	// typically an operator snippet from contrib/. The instance's settings
	// (paths, listeners, loopback-only, relayhost, TLS, SASL) are then
	// applied with "postconf -e" and win over it; everything else, such as
	// smtpd_milters, comes from MainCF. Rewrite single parameters with
	// [Postfix.Postconf] before [Postfix.Start].
	MainCF string
	// MasterCF is appended to the instance's master.cf, which holds the
	// internal services and an unauthenticated listener (see SMTPAddr).
	MasterCF string
	// SubmissionService names a service that MasterCF defines, such as
	// "submission/inet"; the instance binds it to a free loopback port and
	// makes it the submission listener. Empty: the instance defines its own
	// submission listener.
	SubmissionService string
	// SubmissionParams are applied to the submission service as "-o"
	// overrides (postconf -P), on top of these defaults, which make it
	// possible to test what the milter does with a plaintext submission:
	//
	//	smtpd_sasl_auth_enable = yes
	//	smtpd_tls_security_level = may   (STARTTLS offered, not required)
	//	smtpd_tls_auth_only = no         (AUTH also without TLS)
	//	smtpd_client_restrictions = permit_sasl_authenticated, reject
	//
	// A value "" removes the default.
	SubmissionParams map[string]string
	// User and Password are the SASL credentials accepted on the submission
	// listener; defaults "sender@example.test" and a random password.
	User, Password string
}

// Postfix is a private Postfix instance: its own config_directory,
// queue_directory, data_directory and maillog_file below a temporary
// directory, listening on 127.0.0.1 only, relaying all mail to RelayHost.
type Postfix struct {
	Dir       string // root of the instance's files
	ConfigDir string // main.cf, master.cf, sasl/, tls/
	QueueDir  string
	LogFile   string

	opts     PostfixOptions
	smtpAddr string
	subAddr  string
	tls      *TLSCert
	started  bool
	stopped  bool
}

var _ MTA = (*Postfix)(nil)

// Tools a Postfix test needs, for RequireTools.
var PostfixTools = []string{"postfix", "postconf", "saslpasswd2", "swaks"}

// NewPostfix writes the configuration of a private Postfix instance. It does
// not start it: adjust the configuration with Postconf, then call Start.
// The test is skipped (failed with CI set) if Postfix, swaks or saslpasswd2
// is missing or the test does not run as root.
func NewPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	RequireTools(t, PostfixTools...)
	RequireRoot(t)
	if opts.RelayHost == "" {
		t.Fatal("mtatest: PostfixOptions.RelayHost is required")
	}
	if opts.Hostname == "" {
		opts.Hostname = "mta.example.test"
	}
	if opts.User == "" {
		opts.User = "sender@example.test"
	}
	if opts.Password == "" {
		var b [12]byte
		rand.Read(b[:])
		opts.Password = hex.EncodeToString(b[:])
	}
	dir := MustTempDir(t)
	p := &Postfix{
		Dir:       dir,
		ConfigDir: filepath.Join(dir, "etc"),
		QueueDir:  filepath.Join(dir, "spool"),
		LogFile:   filepath.Join(dir, "log", "maillog"),
		opts:      opts,
		smtpAddr:  fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		subAddr:   fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
	}
	for _, d := range []string{p.ConfigDir, p.QueueDir, filepath.Dir(p.LogFile),
		filepath.Join(p.ConfigDir, "sasl"), filepath.Join(p.ConfigDir, "tls")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("mtatest: %v", err)
		}
	}
	p.tls = NewTLSCert(t, filepath.Join(p.ConfigDir, "tls"), opts.Hostname)
	p.writeSASL(t)

	mainCF := "# main.cf of a private test instance written by mtatest\n" + opts.MainCF + "\n"
	if err := os.WriteFile(filepath.Join(p.ConfigDir, "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	master := postfixMasterCF(p.smtpAddr, opts.SubmissionService == "") + "\n" + opts.MasterCF + "\n"
	if err := os.WriteFile(filepath.Join(p.ConfigDir, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatalf("mtatest: %v", err)
	}

	relayHost, relayPort, err := net.SplitHostPort(opts.RelayHost)
	if err != nil {
		t.Fatalf("mtatest: RelayHost %q: %v", opts.RelayHost, err)
	}
	_, domain, _ := strings.Cut(opts.Hostname, ".")
	settings := []string{
		"compatibility_level=3.6",
		"queue_directory=" + p.QueueDir,
		"data_directory=" + filepath.Join(dir, "data"),
		"maillog_file=" + p.LogFile,
		// postfix start exits 1 without a word if maillog_file is outside
		// maillog_file_prefixes (default /var, /dev/stdout).
		"maillog_file_prefixes=" + filepath.Dir(p.LogFile),
		"mail_owner=postfix",
		"setgid_group=postdrop",
		"myhostname=" + opts.Hostname,
		"mydomain=" + domain,
		"myorigin=$mydomain",
		"mydestination=",
		"local_recipient_maps=",
		"alias_maps=",
		"alias_database=",
		"relayhost=[" + relayHost + "]:" + relayPort,
		"inet_interfaces=127.0.0.1",
		"inet_protocols=ipv4",
		"mynetworks=127.0.0.0/8",
		"smtpd_peername_lookup=no",
		"smtp_dns_support_level=disabled",
		"smtp_tls_security_level=none",
		"smtpd_tls_security_level=may",
		"smtpd_tls_cert_file=" + p.tls.CertFile,
		"smtpd_tls_key_file=" + p.tls.KeyFile,
		"smtpd_tls_loglevel=1",
		"smtpd_sasl_type=cyrus",
		"smtpd_sasl_path=smtpd",
		"cyrus_sasl_config_path=" + filepath.Join(p.ConfigDir, "sasl"),
		"smtpd_sasl_auth_enable=no",
		"smtpd_relay_restrictions=permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
		// Fast tests: no penalty sleeps after rejects, quick retries.
		"smtpd_error_sleep_time=0",
		"in_flow_delay=0",
		"queue_run_delay=1s",
		"minimal_backoff_time=1s",
		"maximal_backoff_time=2s",
		"delay_warning_time=0",
		"biff=no",
		"append_dot_mydomain=no",
	}
	p.Postconf(t, append([]string{"-e"}, settings...)...)
	// Every service unchrooted: the chroot jail would need copies of
	// the SASL database, resolver files and so on.
	p.Postconf(t, "-F", "-e", "*/*/chroot=n")

	sub := "submission/inet"
	if opts.SubmissionService != "" {
		sub = opts.SubmissionService
		// Postconf fails on "unmatched request" if MasterCF lacks it.
		if strings.TrimSpace(p.Postconf(t, "-M", sub)) == "" {
			t.Fatalf("mtatest: SubmissionService %q is not defined in MasterCF:\n%s", sub, opts.MasterCF)
		}
	}
	params := map[string]string{
		"smtpd_sasl_auth_enable":    "yes",
		"smtpd_tls_security_level":  "may",
		"smtpd_tls_auth_only":       "no",
		"smtpd_client_restrictions": "permit_sasl_authenticated,reject",
	}
	for k, v := range opts.SubmissionParams {
		params[k] = v
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if params[k] == "" {
			p.Postconf(t, "-P", "-X", sub+"/"+k)
			continue
		}
		p.Postconf(t, "-P", "-e", sub+"/"+k+"="+params[k])
	}
	// Bind the submission service to its port last: until now it is
	// addressed by name, "submission/inet".
	p.Postconf(t, "-F", "-e", sub+"/service="+p.subAddr)
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			t.Logf("mtatest: postfix maillog %s:\n%s", p.LogFile, p.Log())
		}
	})
	return p
}

// postfixMasterCF is master.cf with the internal services (Postfix 3.7's
// default set, without chroot), an unauthenticated smtpd on smtpAddr and,
// if ownSubmission, a "submission" smtpd, which NewPostfix later binds to
// its port.
func postfixMasterCF(smtpAddr string, ownSubmission bool) string {
	var b strings.Builder
	b.WriteString(`# master.cf of a private test instance written by mtatest
# service type  private unpriv  chroot  wakeup  maxproc command + args
`)
	fmt.Fprintf(&b, "%s inet n - n - - smtpd\n", smtpAddr)
	if ownSubmission {
		fmt.Fprintf(&b, "submission inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n")
		fmt.Fprintf(&b, "  -o milter_macro_daemon_name=ORIGINATING\n")
	}
	b.WriteString(`pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
  -o syslog_name=postfix/$service_name
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`)
	return b.String()
}

func (p *Postfix) writeSASL(t testing.TB) {
	t.Helper()
	saslDir := filepath.Join(p.ConfigDir, "sasl")
	db := filepath.Join(saslDir, "sasldb2")
	// smtpd reads $cyrus_sasl_config_path/smtpd.conf (smtpd_sasl_path).
	conf := fmt.Sprintf("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: %s\n", db)
	if err := os.WriteFile(filepath.Join(saslDir, "smtpd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	WriteSASLDB(t, db, p.opts.User, p.opts.Password, "postfix")
}

// Postconf runs "postconf -c ConfigDir args..." and returns its output.
// Use it between NewPostfix and Start to rewrite single parameters:
//
//	p.Postconf(t, "-e", "smtpd_milters=inet:127.0.0.1:12345")
//	p.Postconf(t, "-P", "-e", "submission/inet/smtpd_tls_security_level=encrypt")
//
// and at any time to read them ("-h", "-n", "-M", "-P").
func (p *Postfix) Postconf(t testing.TB, args ...string) string {
	t.Helper()
	stdout, stderr, err := p.run("postconf", append([]string{"-c", p.ConfigDir}, args...)...)
	if err != nil {
		t.Fatalf("mtatest: postconf %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
	}
	// postconf exits 0 when a service or parameter named in the request
	// does not exist; it only warns "unmatched request" (-M, -P, -F) or
	// "unmatched service_name/type" (-e). A request for something that
	// is not there is a broken configuration here.
	if strings.Contains(stderr, "unmatched") {
		t.Fatalf("mtatest: postconf %s: %s", strings.Join(args, " "), stderr)
	}
	return stdout
}

// Start checks the configuration and starts the instance, returning when
// its listeners accept connections.
func (p *Postfix) Start(t testing.TB) {
	t.Helper()
	if p.started {
		t.Fatal("mtatest: postfix already started")
	}
	p.started = true
	if out, errOut, err := p.run("postfix", "-c", p.ConfigDir, "start"); err != nil {
		t.Fatalf("mtatest: postfix start: %v\n%s%s\nmaillog:\n%s", err, out, errOut, p.Log())
	}
	for _, addr := range []string{p.smtpAddr, p.subAddr} {
		if err := WaitListening(addr, 10*time.Second); err != nil {
			t.Fatalf("mtatest: postfix: %v\nmaillog:\n%s", err, p.Log())
		}
	}
}

// Stop stops the instance and waits for its master process to exit. It is
// called by t.Cleanup; calling it earlier is fine.
func (p *Postfix) Stop(t testing.TB) {
	t.Helper()
	if !p.started || p.stopped {
		return
	}
	p.stopped = true
	pid := p.masterPID()
	// "postfix stop" sends SIGTERM to the master and then polls once a
	// second; "postfix abort" sends the same SIGTERM without the polling,
	// and we wait for the master ourselves, which saves about a second.
	if out, errOut, err := p.run("postfix", "-c", p.ConfigDir, "abort"); err != nil {
		t.Errorf("mtatest: postfix abort: %v\n%s%s", err, out, errOut)
	}
	if pid > 0 {
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				syscall.Kill(-pid, syscall.SIGKILL)
				t.Errorf("mtatest: postfix master %d still running after stop; killed", pid)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (p *Postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.QueueDir, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// Name implements MTA.
func (p *Postfix) Name() string { return "postfix" }

// SMTPAddr implements MTA: an unauthenticated smtpd (SASL off, STARTTLS
// offered), like port 25 of a production host.
func (p *Postfix) SMTPAddr() string { return p.smtpAddr }

// SubmissionAddr implements MTA.
func (p *Postfix) SubmissionAddr() string { return p.subAddr }

// Credentials implements MTA.
func (p *Postfix) Credentials() (string, string) { return p.opts.User, p.opts.Password }

// TLS implements MTA.
func (p *Postfix) TLS() *TLSCert { return p.tls }

// Log implements MTA: the contents of maillog_file.
func (p *Postfix) Log() string {
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		return fmt.Sprintf("(no maillog: %v)", err)
	}
	return string(b)
}

// WaitLog waits until the maillog contains substr. Postfix writes its log
// through postlogd, a little after the event.
func (p *Postfix) WaitLog(substr string, timeout time.Duration) error {
	if poll.Wait(timeout, "", func() bool { return strings.Contains(p.Log(), substr) }) != nil {
		return fmt.Errorf("mtatest: postfix maillog has no %q after %v", substr, timeout)
	}
	return nil
}

// WaitLogMatch waits until a line of the maillog matches re.
func (p *Postfix) WaitLogMatch(re *regexp.Regexp, timeout time.Duration) error {
	return waitLogLine("postfix maillog", p.Log, re, timeout)
}

// WaitMilterReject implements MTA: Postfix logs a milter's refusal as
// "milter-reject: MAIL from ...; from=<sender> ..." (or RCPT,
// END-OF-MESSAGE, ...).
func (p *Postfix) WaitMilterReject(from string, timeout time.Duration) error {
	return p.WaitLogMatch(regexp.MustCompile(`milter-reject: .*from=<`+regexp.QuoteMeta(from)+`>`), timeout)
}

// QueueIDs returns the queue ids of the messages in the instance's queue
// (all queues: active, deferred, hold, incoming, maildrop).
func (p *Postfix) QueueIDs(t testing.TB) []string {
	t.Helper()
	var ids []string
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		filepath.WalkDir(filepath.Join(p.QueueDir, q), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				ids = append(ids, q+"/"+d.Name())
			}
			return nil
		})
	}
	return ids
}

// WaitQueueEmpty waits until the instance's queue is empty: every message
// delivered (or bounced) and removed. The sink answers 250 a moment before
// Postfix removes its queue file.
func (p *Postfix) WaitQueueEmpty(t testing.TB, timeout time.Duration) error {
	t.Helper()
	return waitQueueEmpty("postfix", func() []string { return p.QueueIDs(t) }, timeout)
}

func (p *Postfix) run(tool string, args ...string) (stdout, stderr string, err error) {
	bin, err := LookTool(tool)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// WaitListening polls until addr accepts TCP connections.
func WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sendmail runs the instance's sendmail(1) command, "sendmail -C ConfigDir
// args...", with msg on its standard input: mail submitted the way a local
// program or webmail does, which Postfix hands to non_smtpd_milters (not
// smtpd_milters). It returns the command's output; a non-zero exit is an
// error for the caller to judge. Typical args: "-f", sender, "-i", "--",
// recipients... The instance must be running for the message to leave the
// maildrop queue.
func (p *Postfix) Sendmail(t testing.TB, msg []byte, args ...string) (string, error) {
	t.Helper()
	// Postfix's own sendmail(1), not whichever "sendmail" PATH finds first.
	bin := strings.TrimSpace(p.Postconf(t, "-h", "sendmail_path"))
	if bin == "" {
		t.Fatal("mtatest: postconf sendmail_path is empty")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-C", p.ConfigDir}, args...)...)
	cmd.Stdin = bytes.NewReader(msg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Flush runs "postqueue -c ConfigDir -f": pickup takes what waits in the
// maildrop queue (sendmail(1) mail that cleanup could not take yet) and
// qmgr retries deferred mail, now instead of at their next wakeup.
func (p *Postfix) Flush(t testing.TB) {
	t.Helper()
	if out, errOut, err := p.run("postqueue", "-c", p.ConfigDir, "-f"); err != nil {
		t.Fatalf("mtatest: postqueue -f: %v\n%s%s", err, out, errOut)
	}
}
