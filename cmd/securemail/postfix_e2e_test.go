package main

// End-to-end test: the securemail binary as a milter behind a real, private
// Postfix instance whose configuration is built from contrib/postfix/*.snippet,
// driven by swaks and net/smtp, delivering to an in-process SMTP sink.
// See package cmd/securemail/internal/mtatest for the harness.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/internal/syncbuf"
)

const (
	e2eTag           = "[encrypt]"
	e2eInternal      = "example.test"
	e2eMaxSize       = 1 << 20 // policy.max_message_size in the test config
	e2eDeliveryWait  = 15 * time.Second
	e2eSnippetMilter = "inet:127.0.0.1:8894" // smtpd_milters as shipped in main.cf.snippet
)

// TestPostfixE2E runs the policy cases (e2eRunPolicyCases) through a
// private Postfix instance configured from contrib/postfix/*.snippet, with
// only smtpd_milters rewritten to the test's port.
func TestPostfixE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix and the securemail binary")
	}
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	began := time.Now()

	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	pf := e2eNewPostfix(t, sink, "")
	e2eCheckSnippets(t, pf)
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)

	built := time.Now()
	srv := e2eStartServe(t, bin, e2eWriteConfig(t, milterAddr, pf.SMTPAddr()), milterAddr)
	pf.Start(t)
	t.Logf("e2e: go build %v, serve and postfix up %v", built.Sub(began).Round(time.Millisecond),
		time.Since(built).Round(time.Millisecond))

	e2eRunPolicyCases(t, bin, pf, sink, srv)
	t.Logf("e2e: total %v", time.Since(began).Round(time.Millisecond))
}

// e2eRunPolicyCases runs the policy of DESIGN.md section 3 through a real
// MTA whose milter is srv and whose relay host is sink. It stops srv.
//
//	a  STARTTLS+AUTH, tagged, external rcpt   -> sealed; "securemail open" gives back the original
//	b  AUTH without STARTTLS                  -> 530 5.7.0 at MAIL FROM, nothing delivered
//	c  tagged, internal rcpt only             -> delivered as is, tag stripped
//	d  tagged, body over max_message_size     -> 552 5.3.4, nothing delivered
//	g  tagged, from the internet (no AUTH)    -> delivered untouched, tag kept
//	e  three messages on one SMTP connection  -> sealed, plain, sealed: each decided on its own,
//	                                             and no header of one in another (Sendmail
//	                                             sends the milter no ABORT between them)
//	f  serve stopped (SIGTERM, exit 0)        -> 4xx, nothing delivered
func e2eRunPolicyCases(t *testing.T, bin string, mta mtatest.MTA, sink *mtatest.Sink, srv *e2eServe) {
	user, pass := mta.Credentials()
	bigBody := filepath.Join(t.TempDir(), "big-body.txt")
	e2eWriteBigBody(t, bigBody, e2eMaxSize+64<<10, "E2E-MARKER-d")

	type outcome int
	const (
		rejected outcome = iota // swaks fails, nothing from this sender reaches the sink
		sealed                  // arrives as notice + SecureMessageATT.html, body gone
		plain                   // arrives with its body, tag stripped
	)
	cases := []struct {
		name     string
		from     string // unique per case: how the sink's messages are told apart
		to       string
		subject  string
		marker   string // in the body; must not survive sealing
		bodyFile string // instead of a small body with the marker
		starttls bool
		mx       bool // to the MTA's unauthenticated port (mail from the internet), no AUTH
		wantExit int
		wantText string // in the swaks transcript
		want     outcome
		wantSubj string // Subject as delivered, whitespace-normalised
	}{
		{name: "a sealed external", from: "case-a@example.test", to: "alice@external.test",
			subject: "Quarterly [encrypt] numbers", marker: "E2E-MARKER-a", starttls: true,
			wantExit: mtatest.SwaksOK, want: sealed, wantSubj: "Quarterly numbers"},
		{name: "b no starttls", from: "case-b@example.test", to: "alice@external.test",
			subject: "Quarterly [encrypt] numbers", marker: "E2E-MARKER-b", starttls: false,
			wantExit: mtatest.SwaksFailedMail, wantText: "530 5.7.0", want: rejected},
		{name: "c internal only", from: "case-c@example.test", to: "bob@example.test",
			subject: "Team [ENCRYPT] lunch", marker: "E2E-MARKER-c", starttls: true,
			wantExit: mtatest.SwaksOK, want: plain, wantSubj: "Team lunch"},
		{name: "d oversized", from: "case-d@example.test", to: "alice@external.test",
			subject: "Big [encrypt] file", marker: "E2E-MARKER-d", bodyFile: bigBody, starttls: true,
			wantExit: mtatest.SwaksFailedDataBody, wantText: "552 5.3.4", want: rejected},
		{name: "g internet mail untouched", from: "case-g@partner.test", to: "alice@external.test",
			subject: "Inbound [encrypt] memo", marker: "E2E-MARKER-g", mx: true,
			wantExit: mtatest.SwaksOK, want: plain, wantSubj: "Inbound [encrypt] memo"},
	}
	// Sealed deliveries, opened with "securemail open" once serve is stopped.
	type sealedMsg struct {
		name, path, marker, subject string
		absent                      []string // must not be in the opened original
	}
	var toOpen []sealedMsg
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sub := mtatest.Submission{
				Server: mta.SubmissionAddr(), From: tc.from, To: []string{tc.to},
				Subject: tc.subject, Body: "Hello,\r\n\r\n" + tc.marker + "\r\n\r\nregards\r\n", BodyFile: tc.bodyFile,
				STARTTLS: tc.starttls, Auth: "PLAIN", User: user, Password: pass,
			}
			if tc.mx {
				sub.Server, sub.Auth = mta.SMTPAddr(), ""
			}
			res := sub.Send(t)
			if res.ExitCode != tc.wantExit || !strings.Contains(res.Transcript, tc.wantText) {
				t.Fatalf("swaks exit %d, want %d with %q in the transcript:\n%s",
					res.ExitCode, tc.wantExit, tc.wantText, res.Transcript)
			}
			switch tc.want {
			case rejected:
				// The reply must come from the milter, not from the MTA's
				// own checks.
				if err := mta.WaitMilterReject(tc.from, 5*time.Second); err != nil {
					t.Error(err)
				}
				if tc.wantText == "530 5.7.0" && !regexp.MustCompile(`530 5\.7\.0 .*TLS`).MatchString(res.Transcript) {
					t.Errorf("530 reply does not tell the user to turn on TLS:\n%s", res.Transcript)
				}
				return // nothing delivered: checked for all cases below
			}
			m, err := sink.WaitFor(func(m mtatest.Message) bool { return m.From == tc.from }, e2eDeliveryWait)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Rcpts) != 1 || m.Rcpts[0] != tc.to {
				t.Errorf("envelope recipients %v, want [%s]", m.Rcpts, tc.to)
			}
			if tc.want == sealed {
				e2eCheckSealed(t, m, tc.marker, tc.wantSubj)
				toOpen = append(toOpen, sealedMsg{name: tc.name, path: m.Path, marker: tc.marker, subject: tc.subject})
			} else {
				e2eCheckPlain(t, m, tc.marker, tc.wantSubj)
			}
		})
	}

	t.Run("e three messages one connection", func(t *testing.T) {
		c := mtatest.DialSubmission(t, mta)
		msgs := []struct{ from, subject, marker string }{
			{"case-e1@example.test", "Contract [encrypt] draft", "E2E-MARKER-e1"},
			{"case-e2@example.test", "Lunch on Friday", "E2E-MARKER-e2"},
			{"case-e3@example.test", "Payroll [encrypt] update", "E2E-MARKER-e3"},
		}
		for _, msg := range msgs {
			data := "From: <" + msg.from + ">\r\nTo: <carol@external.test>\r\nSubject: " + msg.subject +
				"\r\nMessage-ID: <" + msg.from + ">\r\nX-E2E-Header: only-in-" + msg.from +
				"\r\n\r\nHello,\r\n" + msg.marker + "\r\n"
			if err := mtatest.SendOne(c, msg.from, []string{"carol@external.test"}, data); err != nil {
				t.Fatalf("%s: %v", msg.from, err)
			}
		}
		if err := c.Quit(); err != nil {
			t.Error(err)
		}
		var got []mtatest.Message
		for _, msg := range msgs {
			m, err := sink.WaitFor(func(m mtatest.Message) bool { return m.From == msg.from }, e2eDeliveryWait)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m)
		}
		e2eCheckSealed(t, got[0], msgs[0].marker, "Contract draft")
		e2eCheckPlain(t, got[1], msgs[1].marker, "Lunch on Friday")
		e2eCheckSealed(t, got[2], msgs[2].marker, "Payroll update")
		// The plain one carries no header of the message before it.
		if bytes.Contains(got[1].Data, []byte(msgs[0].from)) {
			t.Errorf("message 2 %s contains a header of message 1 (%s):\n%s", got[1].Path, msgs[0].from, e2eHead(got[1].Data))
		}
		toOpen = append(toOpen,
			sealedMsg{name: "e1", path: got[0].Path, marker: msgs[0].marker, subject: msgs[0].subject},
			sealedMsg{name: "e3", path: got[2].Path, marker: msgs[2].marker, subject: msgs[2].subject,
				absent: []string{msgs[0].from, msgs[1].from, msgs[0].marker, msgs[1].marker}})
	})

	// Everything accepted so far has left the queue; rejected cases left
	// nothing behind.
	if err := mta.WaitQueueEmpty(t, e2eDeliveryWait); err != nil {
		t.Error(err)
	}
	for _, tc := range cases {
		if got := sink.FromSender(tc.from); tc.want == rejected && len(got) != 0 {
			t.Errorf("%s: rejected message was delivered anyway: %s", tc.name, got[0].Path)
		}
	}
	delivered := sink.Count()

	t.Run("f serve stopped", func(t *testing.T) {
		code, err := srv.stop(10 * time.Second)
		if err != nil || code != 0 {
			t.Errorf("serve after SIGTERM: exit %d, %v; want exit 0", code, err)
		}
		res := mtatest.Submission{
			Server: mta.SubmissionAddr(), From: "case-f@example.test", To: []string{"alice@external.test"},
			Subject: "Down [encrypt] time", Body: "E2E-MARKER-f", STARTTLS: true,
			Auth: "PLAIN", User: user, Password: pass,
		}.Send(t)
		// With the milter down the MTA must tempfail (Postfix with
		// milter_default_action = tempfail answers 454 to STARTTLS, or
		// 451 to MAIL without STARTTLS; Sendmail with F=T answers
		// "454 4.7.0" to STARTTLS).
		if res.ExitCode == mtatest.SwaksOK || !regexp.MustCompile(`(?m)^ *<[~*]{1,2} +4\d\d `).MatchString(res.Transcript) {
			t.Errorf("swaks exit %d, want a 4xx reply:\n%s", res.ExitCode, res.Transcript)
		}
		if err := mta.WaitQueueEmpty(t, 5*time.Second); err != nil {
			t.Error(err)
		}
		if n := sink.Count(); n != delivered {
			t.Errorf("sink has %d messages, want still %d", n, delivered)
		}
	})

	// serve is stopped, so the keystore is free for "securemail open".
	for _, sm := range toOpen {
		t.Run("open "+sm.name, func(t *testing.T) {
			if srv.running() {
				t.Fatal("serve still running; open needs the keystore")
			}
			out := e2eOpen(t, bin, srv.config, sm.path)
			if !strings.Contains(out, sm.marker) {
				t.Errorf("opened message lacks body marker %q:\n%s", sm.marker, out)
			}
			msg, err := mail.ReadMessage(strings.NewReader(out))
			if err != nil {
				t.Fatalf("opened message does not parse: %v\n%s", err, out)
			}
			if got := e2eSubject(msg.Header); got != sm.subject {
				t.Errorf("opened message Subject %q, want the original %q", got, sm.subject)
			}
			for _, a := range sm.absent {
				if strings.Contains(out, a) {
					t.Errorf("opened message contains %q, which belongs to another message on its connection:\n%s", a, out)
				}
			}
		})
	}
}

// e2eBuild builds the securemail binary into a temporary directory.
func e2eBuild(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short: needs the securemail binary built (go build)")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("e2e: the go command is not on PATH: %v", err)
	}
	out := filepath.Join(t.TempDir(), "securemail")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("e2e: go build ./cmd/securemail: %v\n%s", err, b)
	}
	return out
}

// e2eReadSnippet reads a file of contrib/postfix from the module root.
// e2eNewPostfix configures a private Postfix from contrib/'s snippets,
// with extraMasterCF appended to master.cf, relaying everything to sink.
func e2eNewPostfix(t *testing.T, sink *mtatest.Sink, extraMasterCF string) *mtatest.Postfix {
	t.Helper()
	return mtatest.NewPostfix(t, mtatest.PostfixOptions{
		RelayHost:         sink.Addr,
		MainCF:            e2eReadSnippet(t, "main.cf.snippet"),
		MasterCF:          e2eReadSnippet(t, "master.cf.snippet") + "\n" + extraMasterCF,
		SubmissionService: "submission/inet",
	})
}

func e2eReadSnippet(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "contrib", "postfix", name))
	if err != nil {
		t.Fatalf("e2e: %v", err)
	}
	return string(b)
}

// e2eCheckSnippets verifies that the settings the product depends on come
// from the snippets themselves, so that the test's one rewrite
// (smtpd_milters) cannot hide a snippet that lacks them.
func e2eCheckSnippets(t *testing.T, pf *mtatest.Postfix) {
	t.Helper()
	get := func(name string) string { return strings.TrimSpace(pf.Postconf(t, "-h", name)) }
	if got := get("smtpd_milters"); got != e2eSnippetMilter {
		t.Errorf("main.cf.snippet: smtpd_milters = %q, want the default %q", got, e2eSnippetMilter)
	}
	if got := get("non_smtpd_milters"); got != "$smtpd_milters" && got != e2eSnippetMilter {
		t.Errorf("main.cf.snippet: non_smtpd_milters = %q, want $smtpd_milters", got)
	}
	if got := get("milter_default_action"); got != "tempfail" {
		t.Errorf("main.cf.snippet: milter_default_action = %q, want tempfail", got)
	}
	macros := " " + get("milter_mail_macros") + " "
	for _, m := range []string{"i", "{auth_type}", "{auth_authen}", "{tls_version}", "{cipher}", "{client_addr}"} {
		if !strings.Contains(macros, " "+m+" ") {
			t.Errorf("main.cf.snippet: milter_mail_macros lacks %s: %q", m, macros)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// e2eWriteConfig writes the securemail config for the policy tests and
// returns its path: debug log, no trusted or TLS-exempt networks (so every
// swaks submission from 127.0.0.1 is judged by its SMTP AUTH), a small size
// limit so the oversize case is fast.
func e2eWriteConfig(t *testing.T, milterAddr, smtpRelay string) string {
	t.Helper()
	return e2eWriteConfigWith(t, milterAddr, smtpRelay, e2eConfig{
		logLevel: "debug", networks: "[]", maxSize: fmt.Sprint(e2eMaxSize),
	})
}

// e2eConfig is what differs between the end-to-end tests' configs.
type e2eConfig struct {
	logLevel string
	networks string // YAML list for trusted_networks and tls_exempt_networks
	maxSize  string
	// internal is the one internal domain, also smtp.from's; e2eInternal
	// when empty.
	internal string
	// portalListen is portal.listen; a free loopback port when empty.
	portalListen string
	// portalURL is portal.url; http:// and portalListen when empty.
	portalURL string
	// portalExtra is added to the portal section as it is: YAML lines
	// indented by two spaces, each ending in a newline.
	portalExtra string
}

func e2eWriteConfigWith(t *testing.T, milterAddr, smtpRelay string, c e2eConfig) string {
	t.Helper()
	dir := t.TempDir()
	portal := c.portalListen
	if portal == "" {
		portal = fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	}
	internal := c.internal
	if internal == "" {
		internal = e2eInternal
	}
	url := c.portalURL
	if url == "" {
		url = "http://" + portal
	}
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
log:
  level: %[8]s
milter:
  listen: inet:%[2]s
portal:
  listen: %[3]s
  url: %[11]s
%[10]spolicy:
  internal_domains: [%[4]s]
  trusted_networks: %[9]s
  tls_exempt_networks: %[9]s
  require_tls: true
  max_message_size: %[5]s
  subject_tag: %[6]q
  trigger_header: X-Secure-Send
keystore:
  master_key_file: %[1]s/master.key
  key_lifetime: 2160h
smtp:
  relay: %[7]s
  from: securemail@%[4]s
`, dir, milterAddr, portal, internal, c.maxSize, e2eTag, smtpRelay, c.logLevel, c.networks, c.portalExtra, url)
	path := filepath.Join(dir, "securemail.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	return path
}

// e2eServe is a running "securemail serve".
type e2eServe struct {
	config string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // from cmd.Wait, valid once done is closed
	log    *syncbuf.Buffer
}

// e2eStartServe starts "securemail serve --config config" and waits until
// its milter accepts connections on TCP milterAddr.
func e2eStartServe(t *testing.T, bin, config, milterAddr string) *e2eServe {
	t.Helper()
	return e2eStartServeAs(t, bin, config, "tcp", milterAddr, nil)
}

// e2eStartServeAs starts serve as the user cred (nil: as the test runs),
// in the config file's folder, with env added to the test's environment,
// and waits until its milter accepts connections on network/address.
func e2eStartServeAs(t *testing.T, bin, config, network, address string, cred *syscall.Credential, env ...string) *e2eServe {
	t.Helper()
	s := &e2eServe{config: config, done: make(chan struct{}), log: new(syncbuf.Buffer)}
	s.cmd = exec.Command(bin, "serve", "--config", config)
	if len(env) > 0 {
		s.cmd.Env = append(os.Environ(), env...)
	}
	if cred != nil {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	s.cmd.Dir = filepath.Dir(config)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("e2e: start serve: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		if s.running() {
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("e2e: securemail serve log:\n%s", s.log.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if !s.running() {
			t.Fatalf("e2e: serve exited during start-up: %v\n%s", s.err, s.log.String())
		}
		if c, err := net.DialTimeout(network, address, time.Second); err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("e2e: serve's milter not accepting on %s %s after 15s\n%s", network, address, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *e2eServe) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the exit code.
func (s *e2eServe) stop(timeout time.Duration) (int, error) {
	if !s.running() {
		return s.exitCode()
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return -1, err
	}
	select {
	case <-s.done:
		return s.exitCode()
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.done
		return -1, fmt.Errorf("no exit within %v of SIGTERM; killed", timeout)
	}
}

func (s *e2eServe) exitCode() (int, error) {
	var ee *exec.ExitError
	if s.err == nil {
		return 0, nil
	}
	if errors.As(s.err, &ee) {
		return ee.ExitCode(), nil
	}
	return -1, s.err
}

// e2eOpen runs "securemail open" on a delivered message file and returns
// what it printed.
func e2eOpen(t *testing.T, bin, config, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "open", "--config", config, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("e2e: securemail open %s: %v\nstderr:\n%s", path, err, stderr.String())
	}
	return stdout.String()
}

// e2eWriteBigBody writes a text body of at least size bytes that contains
// marker.
func e2eWriteBigBody(t *testing.T, path string, size int, marker string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(marker + "\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%06d the quick brown fox jumps over the lazy dog, again and again and again\r\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatalf("e2e: %v", err)
	}
}

// e2eSubject returns the decoded Subject with runs of white space collapsed.
func e2eSubject(h mail.Header) string {
	raw := h.Get("Subject")
	dec, err := new(mime.WordDecoder).DecodeHeader(raw)
	if err != nil {
		dec = raw
	}
	return strings.Join(strings.Fields(dec), " ")
}

var e2eTextareaRE = regexp.MustCompile(`(?is)<textarea[^>]*\bname="envelope"[^>]*>(.*?)</textarea>`)

// e2eCheckSealed checks a delivered message that must have been sealed: no
// trace of the body, the tag gone from the Subject, and a 7-bit
// SecureMessageATT.html attachment that carries base64 in its envelope
// textarea.
func e2eCheckSealed(t *testing.T, m mtatest.Message, marker, wantSubj string) {
	t.Helper()
	if bytes.Contains(m.Data, []byte(marker)) {
		t.Errorf("sealed message %s contains the plaintext body marker %q", m.Path, marker)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("sealed message %s does not parse: %v", m.Path, err)
	}
	if got := e2eSubject(msg.Header); got != wantSubj {
		t.Errorf("sealed message Subject %q, want %q", got, wantSubj)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("sealed message %s: Content-Type %q (%v), want multipart/mixed", m.Path, msg.Header.Get("Content-Type"), err)
	}
	var page []byte
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("sealed message %s: MIME: %v", m.Path, err)
		}
		_, dp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		_, cp, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if dp["filename"] != "SecureMessageATT.html" && cp["name"] != "SecureMessageATT.html" {
			continue
		}
		if cte := part.Header.Get("Content-Transfer-Encoding"); !strings.EqualFold(cte, "7bit") {
			t.Errorf("SecureMessageATT.html: Content-Transfer-Encoding %q, want 7bit", cte)
		}
		if page, err = io.ReadAll(part); err != nil {
			t.Fatalf("sealed message %s: MIME: %v", m.Path, err)
		}
	}
	if page == nil {
		t.Fatalf("sealed message %s has no SecureMessageATT.html attachment:\n%s", m.Path, e2eHead(m.Data))
	}
	for i, c := range page {
		if c >= 0x80 || c == 0 {
			t.Errorf("SecureMessageATT.html is not 7-bit clean: byte %#x at %d", c, i)
			break
		}
	}
	ta := e2eTextareaRE.FindSubmatch(page)
	if ta == nil {
		t.Fatalf("SecureMessageATT.html has no <textarea name=\"envelope\">:\n%s", e2eHead(page))
	}
	b64 := strings.Join(strings.Fields(string(ta[1])), "")
	if raw, err := base64.StdEncoding.DecodeString(b64); err != nil || len(raw) == 0 {
		t.Errorf("envelope textarea is not base64 (%d chars): %v", len(b64), err)
	}
}

// e2eCheckPlain checks a delivered message that must have passed unsealed:
// body intact, tag gone from the Subject, no attachment.
func e2eCheckPlain(t *testing.T, m mtatest.Message, marker, wantSubj string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("message %s does not parse: %v", m.Path, err)
	}
	body, _ := io.ReadAll(msg.Body)
	if !bytes.Contains(body, []byte(marker)) {
		t.Errorf("message %s lost its body marker %q:\n%s", m.Path, marker, e2eHead(m.Data))
	}
	if got := e2eSubject(msg.Header); got != wantSubj {
		t.Errorf("message %s: Subject %q, want %q", m.Path, got, wantSubj)
	}
	if bytes.Contains(m.Data, []byte("SecureMessageATT.html")) {
		t.Errorf("message %s was sealed, want it plain:\n%s", m.Path, e2eHead(m.Data))
	}
}

// e2eHead is the start of b, for failure messages.
func e2eHead(b []byte) string {
	const max = 3000
	if len(b) > max {
		return string(b[:max]) + "\n[...]"
	}
	return string(b)
}
