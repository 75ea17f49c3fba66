package main

// End-to-end tests of the operator paths that docs/operators.md describes
// beyond the STARTTLS submission of postfix_e2e_test.go, each through a
// private Postfix instance configured from contrib/postfix/main.cf.snippet:
//
//   - TestPostfixPathsSendmail: mail handed to Postfix's sendmail(1), as
//     webmail and scripts do. Postfix gives it to non_smtpd_milters (the
//     snippet's "$smtpd_milters"), from cleanup(8), over the unix socket
//     that contrib/systemd describes, with securemail running as an
//     unprivileged user; with securemail down such mail waits in the queue
//     and is sealed once it is back.
//   - TestPostfixPathsDKIM: opendkim signing as a second milter after
//     securemail; the delivered sealed message verifies. In the opposite
//     order it does not, which is why the guide says "securemail first".
//   - TestPostfixPathsImplicitTLS: port 465 (implicit TLS) made as the
//     master.cf snippet's comment says.

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/internal/syncbuf"
)

// TestPostfixPathsSendmail sends mail with "sendmail -C DIR" into a private
// Postfix instance whose milters come from main.cf.snippet.
//
// What Postfix 3.7 tells a milter about sendmail(1) mail (observed with a
// macro-printing milter): connect from host "localhost", address
// 127.0.0.1; at MAIL FROM only i and {client_addr}=127.0.0.1, no
// {auth_authen} and no {tls_version}. So securemail treats such mail as a
// submission only because 127.0.0.0/8 is in policy.trusted_networks, and
// lets it pass without TLS only because 127.0.0.0/8 is in
// policy.tls_exempt_networks: both as in the embedded default, which is why
// the config here leaves both keys out.
//
// The milter socket is the hardened Postfix setup of contrib/systemd: a
// unix socket in a directory inside Postfix's queue directory with the
// owner, group and mode of contrib/systemd/securemail-postfix.tmpfiles
// (owner nobody here, standing in for user securemail), named relative to
// the queue directory in smtpd_milters, with milter.socket_mode "0660", and
// securemail running as nobody: only the directory's group lets cleanup
// (user postfix) connect.
func TestPostfixPathsSendmail(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix and the securemail binary")
	}
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	began := time.Now()

	bin := e2eBuild(t)
	pathsShareBinary(t, bin)
	runAs := pathsLookupUser(t, "nobody")
	sink := mtatest.StartSink(t)
	pf := mtatest.NewPostfix(t, mtatest.PostfixOptions{
		RelayHost: sink.Addr,
		MainCF:    e2eReadSnippet(t, "main.cf.snippet"),
	})
	e2eCheckSnippets(t, pf)

	// The socket directory, made as the tmpfiles file says.
	dirMode, dirGroup := pathsTmpfilesSocketDir(t)
	sockDir := filepath.Join(pf.QueueDir, "securemail")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	gid := pathsLookupGroup(t, dirGroup)
	if err := os.Chown(sockDir, int(runAs.Uid), gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sockDir, dirMode); err != nil {
		t.Fatal(err)
	}
	sockPath := filepath.Join(sockDir, "milter.sock")
	// Relative to queue_directory: works for a chrooted cleanup too.
	pf.Postconf(t, "-e", "smtpd_milters=unix:securemail/milter.sock")

	dataDir := filepath.Join(mtatest.MustTempDir(t), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dataDir, int(runAs.Uid), int(runAs.Gid)); err != nil {
		t.Fatal(err)
	}
	config := pathsWriteConfig(t, fmt.Sprintf(`data_dir: %s
log:
  level: debug
milter:
  listen: unix:%s
  socket_mode: "0660"
portal:
  listen: 127.0.0.1:%d
  url: https://secure.example.test
policy:
  internal_domains: [%s]
  # trusted_networks and tls_exempt_networks: the embedded default
  # (127.0.0.0/8, ::1/128), which sendmail(1) mail needs.
`, dataDir, sockPath, mtatest.FreePort(t), e2eInternal))
	srv := e2eStartServeAs(t, bin, config, "unix", sockPath, runAs)

	st, err := os.Stat(sockPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o660 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Errorf("milter socket: mode %v gid %d, want a socket 0660 with group %s (%d) from the set-group-ID directory",
			st.Mode(), st.Sys().(*syscall.Stat_t).Gid, dirGroup, gid)
	}
	pf.Start(t)
	t.Logf("paths: build, serve and postfix up in %v", time.Since(began).Round(time.Millisecond))

	type msgCase struct {
		name, from string
		rcpts      []string
		headers    string // extra header lines, LF-terminated
		subject    string
		marker     string
		sealed     bool
		wantSubj   string
	}
	cases := []msgCase{
		{name: "subject tag", from: "zoe@example.test", rcpts: []string{"alice@external.test"},
			subject: "Quarterly [encrypt] numbers", marker: "PATHS-MARKER-tag", sealed: true, wantSubj: "Quarterly numbers"},
		{name: "webmail header", from: "yann@example.test", rcpts: []string{"bob@external.test", "carol@example.test"},
			headers: "X-Secure-Send: yes\n", subject: "Contract draft", marker: "PATHS-MARKER-header", sealed: true,
			wantSubj: "Contract draft"},
		{name: "untagged", from: "xavier@example.test", rcpts: []string{"dave@external.test"},
			subject: "Lunch on Friday", marker: "PATHS-MARKER-plain", wantSubj: "Lunch on Friday"},
	}
	originals := map[string][]byte{}
	delivered := map[string]mtatest.Message{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// What a local program writes: LF line ends, all the usual
			// header fields, so cleanup adds none the milter would see.
			msg := []byte("From: <" + tc.from + ">\n" +
				"To: " + strings.Join(tc.rcpts, ", ") + "\n" +
				"Subject: " + tc.subject + "\n" +
				"Date: Mon, 02 Mar 2026 10:00:00 +0000\n" +
				"Message-ID: <" + strings.ReplaceAll(tc.name, " ", "-") + "@example.test>\n" +
				tc.headers +
				"MIME-Version: 1.0\n" +
				"Content-Type: text/plain; charset=utf-8\n" +
				"\n" +
				"Hello,\n\n" + tc.marker + "\n\nregards\n")
			originals[tc.name] = msg
			args := append([]string{"-f", tc.from, "-i", "--"}, tc.rcpts...)
			if out, err := pf.Sendmail(t, msg, args...); err != nil {
				t.Fatalf("sendmail %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			m, err := sink.WaitFor(func(m mtatest.Message) bool { return m.From == tc.from }, e2eDeliveryWait)
			if err != nil {
				t.Fatalf("%v\npostfix log:\n%s", err, pf.Log())
			}
			if got, want := slices.Sorted(slices.Values(m.Rcpts)), slices.Sorted(slices.Values(tc.rcpts)); !slices.Equal(got, want) {
				t.Errorf("envelope recipients %v, want %v", got, want)
			}
			if tc.sealed {
				e2eCheckSealed(t, m, tc.marker, tc.wantSubj)
				if bytes.Contains(m.Data, []byte("X-Secure-Send")) {
					t.Errorf("the trigger header left the server:\n%s", e2eHead(m.Data))
				}
				delivered[tc.name] = m
			} else {
				e2eCheckPlain(t, m, tc.marker, tc.wantSubj)
			}
		})
	}
	if err := pf.WaitQueueEmpty(t, e2eDeliveryWait); err != nil {
		t.Error(err)
	}

	code, err := srv.stop(10 * time.Second)
	if err != nil || code != 0 {
		t.Errorf("serve after SIGTERM: exit %d, %v; want exit 0", code, err)
	}
	// The verdict lines, as docs/operators.md quotes them (go test -v).
	for _, line := range strings.Split(srv.log.String(), "\n") {
		if strings.Contains(line, `msg="message decided"`) || strings.Contains(line, `msg="securemail started"`) {
			t.Logf("serve: %s", line)
		}
	}
	for _, tc := range cases {
		m, ok := delivered[tc.name]
		if !ok {
			continue
		}
		t.Run("open "+tc.name, func(t *testing.T) {
			out := e2eOpen(t, bin, config, m.Path)
			// The milter gets the message from cleanup with CRLF line
			// ends; the envelope holds exactly that.
			got := strings.ReplaceAll(out, "\r\n", "\n")
			if got != string(originals[tc.name]) {
				t.Errorf("securemail open did not give back the original.\ngot:\n%s\nwant:\n%s", got, originals[tc.name])
			}
			if _, err := mail.ReadMessage(strings.NewReader(out)); err != nil {
				t.Errorf("opened message does not parse: %v", err)
			}
		})
	}

	// With securemail down, sendmail(1) still succeeds (postdrop only
	// writes the maildrop queue), but cleanup cannot reach the milter and,
	// with milter_default_action = tempfail, leaves the message where it
	// is: nothing leaves. Once securemail is back the message is sealed.
	t.Run("securemail down", func(t *testing.T) {
		const from, marker = "wendy@example.test", "PATHS-MARKER-down"
		msg := []byte("From: <" + from + ">\nTo: <erin@external.test>\nSubject: Offline [encrypt] plan\n" +
			"Date: Mon, 02 Mar 2026 10:00:00 +0000\nMessage-ID: <down@example.test>\n\n" + marker + "\n")
		before := sink.Count()
		if out, err := pf.Sendmail(t, msg, "-f", from, "-i", "--", "erin@external.test"); err != nil {
			t.Fatalf("sendmail: %v\n%s", err, out)
		}
		// cleanup logs the failed milter connection for every attempt.
		if err := pf.WaitLog("connect to Milter service unix:securemail/milter.sock", 10*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, pf.Log())
		}
		// No sleep before this check: a plaintext copy that left later
		// would still be in the sink once the queue is empty, below.
		if n := sink.Count(); n != before {
			t.Fatalf("a message left while securemail was down: sink has %d, had %d", n, before)
		}
		if ids := pf.QueueIDs(t); len(ids) == 0 {
			t.Fatal("the message is not in the queue any more, and was not delivered")
		} else {
			t.Logf("waiting in the queue: %v", ids)
		}
		for _, line := range strings.Split(pf.Log(), "\n") {
			if strings.Contains(line, "Milter") || strings.Contains(line, "milter") {
				t.Logf("postfix: %s", line)
			}
		}

		srv := e2eStartServeAs(t, bin, config, "unix", sockPath, runAs)
		pf.Flush(t)
		m, err := sink.WaitFor(func(m mtatest.Message) bool { return m.From == from }, e2eDeliveryWait)
		if err != nil {
			t.Fatalf("%v\npostfix log:\n%s", err, pf.Log())
		}
		e2eCheckSealed(t, m, marker, "Offline plan")
		if err := pf.WaitQueueEmpty(t, e2eDeliveryWait); err != nil {
			t.Fatal(err)
		}
		if got := sink.FromSender(from); len(got) != 1 {
			t.Fatalf("%d messages from %s reached the sink, want only the sealed one", len(got), from)
		}
		if code, err := srv.stop(10 * time.Second); err != nil || code != 0 {
			t.Errorf("serve after SIGTERM: exit %d, %v; want exit 0", code, err)
		}
		if out := e2eOpen(t, bin, config, m.Path); strings.ReplaceAll(out, "\r\n", "\n") != string(msg) {
			t.Errorf("securemail open did not give back the original:\n%s", out)
		}
	})
	t.Logf("paths: total %v", time.Since(began).Round(time.Millisecond))
}

// TestPostfixPathsDKIM runs opendkim (Debian's package, Mode s, a key made
// with opendkim-genkey) as a second milter. Postfix applies smtpd_milters
// in the order listed, and each milter sees the message as the ones before
// it left it:
//
//	smtpd_milters = inet:<securemail>, inet:<opendkim>
//
// so opendkim signs the sealed message that leaves, and its signature
// verifies (checked with "opendkim -t" in verify mode reading the public
// key from a TestPublicKeys file instead of DNS). A second smtpd service
// runs the two the other way round: there opendkim signs the original, and
// securemail's new body and subject break the signature.
func TestPostfixPathsDKIM(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix, opendkim and the securemail binary")
	}
	pathsRequireTools(t, "apt-get install opendkim opendkim-tools", "opendkim", "opendkim-genkey")
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	began := time.Now()

	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	dkimAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	wrongOrderAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	// The submission service of master.cf.snippet (milters from main.cf),
	// and a copy of it whose milters run in the wrong order.
	wrongOrder := fmt.Sprintf(`%s inet n - n - - smtpd
  -o syslog_name=postfix/wrongorder
  -o smtpd_tls_security_level=may
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_milters=inet:%s,inet:%s
`, wrongOrderAddr, dkimAddr, milterAddr)
	pf := e2eNewPostfix(t, sink, wrongOrder)
	e2eCheckSnippets(t, pf)
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr+", inet:"+dkimAddr)

	dk := pathsStartOpenDKIM(t, "example.test", "e2e", dkimAddr)
	srv := e2eStartServe(t, bin, e2eWriteConfig(t, milterAddr, pf.SMTPAddr()), milterAddr)
	pf.Start(t)
	if err := mtatest.WaitListening(wrongOrderAddr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("dkim: build, opendkim, serve and postfix up in %v", time.Since(began).Round(time.Millisecond))
	user, pass := pf.Credentials()

	send := func(t *testing.T, server, from, marker string) mtatest.Message {
		t.Helper()
		res := mtatest.Submission{
			Server: server, From: from, To: []string{"alice@external.test"},
			Subject: "Signed [encrypt] report", Body: "Hello,\r\n\r\n" + marker + "\r\n",
			STARTTLS: true, Auth: "PLAIN", User: user, Password: pass,
		}.Send(t)
		if res.ExitCode != mtatest.SwaksOK {
			t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		m, err := sink.WaitFor(func(m mtatest.Message) bool { return m.From == from }, e2eDeliveryWait)
		if err != nil {
			t.Fatalf("%v\npostfix log:\n%s\nopendkim:\n%s", err, pf.Log(), dk.log.String())
		}
		e2eCheckSealed(t, m, marker, "Signed report")
		sig := pathsHeader(m.Data, "DKIM-Signature")
		if !strings.Contains(sig, "d=example.test") || !strings.Contains(sig, "s=e2e") {
			t.Fatalf("delivered message has no DKIM-Signature of example.test (got %q):\n%s\nopendkim:\n%s",
				sig, e2eHead(m.Data), dk.log.String())
		}
		return m
	}

	t.Run("securemail then opendkim", func(t *testing.T) {
		m := send(t, pf.SubmissionAddr(), "zoe@example.test", "DKIM-MARKER-right")
		if res := dk.verify(t, m.Data); !res.pass {
			t.Fatalf("DKIM signature of the delivered sealed message does not verify:\n%s\nmessage:\n%s", res.out, e2eHead(m.Data))
		} else {
			t.Logf("opendkim -t: %s", res.line)
		}
		// The verifier does check: one changed byte of the body fails.
		head, body, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
		i := bytes.LastIndexByte(body, 'a')
		if i < 0 {
			t.Fatal("no 'a' in the body to change")
		}
		tampered := append(append(append([]byte{}, head...), "\r\n\r\n"...), body...)
		tampered[len(head)+4+i] = 'b'
		if res := dk.verify(t, tampered); res.pass {
			t.Errorf("a tampered body still verifies, so the check proves nothing:\n%s", res.out)
		}
	})

	t.Run("opendkim then securemail breaks the signature", func(t *testing.T) {
		m := send(t, wrongOrderAddr, "yann@example.test", "DKIM-MARKER-wrong")
		res := dk.verify(t, m.Data)
		if res.pass {
			t.Fatalf("signing before sealing verified; the guide's reason for the order is wrong:\n%s", res.out)
		}
		t.Logf("opendkim -t (wrong order, as expected): %s", res.line)
	})

	if code, err := srv.stop(10 * time.Second); err != nil || code != 0 {
		t.Errorf("serve after SIGTERM: exit %d, %v; want exit 0", code, err)
	}
	t.Logf("dkim: total %v", time.Since(began).Round(time.Millisecond))
}

// TestPostfixPathsImplicitTLS follows the comment of master.cf.snippet for
// port 465: the submission entry copied under the name "submissions" with
// -o smtpd_tls_wrappermode=yes. A client that speaks TLS from the first
// byte (swaks --tlsc) and authenticates gets its tagged message sealed:
// Postfix passes {tls_version} to the milter at MAIL FROM there too, so
// policy.require_tls is satisfied without STARTTLS.
func TestPostfixPathsImplicitTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix and the securemail binary")
	}
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	began := time.Now()

	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	// The snippet's entry, renamed and with implicit TLS, as its comment
	// says.
	var b strings.Builder
	for _, line := range strings.Split(e2eReadSnippet(t, "master.cf.snippet"), "\n") {
		switch {
		case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
			continue
		case strings.HasPrefix(line, "submission "):
			line = "submissions " + strings.TrimPrefix(line, "submission ")
		case strings.Contains(line, "syslog_name=postfix/submission"):
			line = strings.Replace(line, "postfix/submission", "postfix/submissions", 1)
		}
		b.WriteString(line + "\n")
	}
	b.WriteString("  -o smtpd_tls_wrappermode=yes\n")
	pf := mtatest.NewPostfix(t, mtatest.PostfixOptions{
		RelayHost:         sink.Addr,
		MainCF:            e2eReadSnippet(t, "main.cf.snippet"),
		MasterCF:          b.String(),
		SubmissionService: "submissions/inet",
	})
	e2eCheckSnippets(t, pf)
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)
	srv := e2eStartServe(t, bin, e2eWriteConfig(t, milterAddr, pf.SMTPAddr()), milterAddr)
	pf.Start(t)
	user, pass := pf.Credentials()

	const from, marker = "zoe@example.test", "TLSC-MARKER"
	res := mtatest.Submission{
		Server: pf.SubmissionAddr(), From: from, To: []string{"alice@external.test"},
		Subject: "Port 465 [encrypt] test", Body: "Hello,\r\n" + marker + "\r\n",
		Auth: "PLAIN", User: user, Password: pass, Extra: []string{"--tlsc"},
	}.Send(t)
	if res.ExitCode != mtatest.SwaksOK {
		t.Fatalf("swaks --tlsc exit %d:\n%s", res.ExitCode, res.Transcript)
	}
	if !strings.Contains(res.Transcript, "TLS started") || strings.Contains(res.Transcript, "STARTTLS\n") {
		t.Errorf("not an implicit-TLS session:\n%s", res.Transcript)
	}
	m, err := sink.WaitFor(func(m mtatest.Message) bool { return m.From == from }, e2eDeliveryWait)
	if err != nil {
		t.Fatalf("%v\npostfix log:\n%s", err, pf.Log())
	}
	e2eCheckSealed(t, m, marker, "Port 465 test")
	if err := pf.WaitLog("postfix/submissions/smtpd", 5*time.Second); err != nil {
		t.Error(err)
	}
	if code, err := srv.stop(10 * time.Second); err != nil || code != 0 {
		t.Errorf("serve after SIGTERM: exit %d, %v; want exit 0", code, err)
	}
	t.Logf("implicit TLS: total %v", time.Since(began).Round(time.Millisecond))
}

// pathsRequireTools skips the test when a program is missing (fails it
// with CI set), naming what to install.
func pathsRequireTools(t *testing.T, install string, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, err := mtatest.LookTool(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "paths: missing " + strings.Join(missing, ", ") + " (Debian: " + install + ")"
	mtatest.SkipUnlessCI(t, msg)
}

// pathsShareBinary makes the directories above the built binary
// traversable, so that an unprivileged user can run it.
func pathsShareBinary(t *testing.T, bin string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(bin), filepath.Dir(filepath.Dir(bin))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func pathsLookupUser(t *testing.T, name string) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("paths: user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

func pathsLookupGroup(t *testing.T, name string) int {
	t.Helper()
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatalf("paths: group %s: %v", name, err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

// pathsTmpfilesSocketDir reads the mode and group of the socket directory
// from contrib/systemd/securemail-postfix.tmpfiles.
func pathsTmpfilesSocketDir(t *testing.T) (os.FileMode, string) {
	t.Helper()
	text := sysdReadFile(t, sysdTmpfilesPath)
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[0] == "d" && f[1] == sysdSocketDir {
			m, err := strconv.ParseUint(f[2], 8, 32)
			if err != nil {
				t.Fatalf("%s: mode %q: %v", sysdTmpfilesPath, f[2], err)
			}
			mode := os.FileMode(m & 0o777)
			if m&0o2000 != 0 {
				mode |= os.ModeSetgid
			}
			return mode, f[4]
		}
	}
	t.Fatalf("%s has no \"d %s ...\" line", sysdTmpfilesPath, sysdSocketDir)
	return 0, ""
}

func pathsWriteConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(mtatest.MustTempDir(t), "securemail.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pathsHeader returns the unfolded value of the first header field name
// of a message.
func pathsHeader(data []byte, name string) string {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(msg.Header.Get(name)), " ")
}

// pathsDKIM is a running signing opendkim and what verifying needs.
type pathsDKIM struct {
	dir          string
	verifyConfig string
	log          *syncbuf.Buffer
}

type pathsVerifyResult struct {
	pass bool
	line string // opendkim's one-line verdict
	out  string
}

// pathsStartOpenDKIM makes a key with opendkim-genkey and starts opendkim
// in the foreground as a signing milter on addr. It also writes the
// verify-mode configuration that reads the public key from a file.
func pathsStartOpenDKIM(t *testing.T, domain, selector, addr string) *pathsDKIM {
	t.Helper()
	dir := t.TempDir()
	genkey, _ := mtatest.LookTool("opendkim-genkey")
	if out, err := exec.Command(genkey, "-D", dir, "-d", domain, "-s", selector, "-b", "2048").CombinedOutput(); err != nil {
		t.Fatalf("opendkim-genkey: %v\n%s", err, out)
	}
	keyFile := filepath.Join(dir, selector+".private")
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// The TXT record opendkim-genkey writes to selector.txt, as one line of
	// the TestPublicKeys file: "selector._domainkey.domain v=DKIM1; ...".
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatalf("%s is not PEM", keyFile)
	}
	var pub any
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		pub = &k.PublicKey
	} else if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		pub = &k.(*rsa.PrivateKey).PublicKey
	} else {
		t.Fatalf("%s: %v", keyFile, err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "public-keys")
	line := fmt.Sprintf("%s._domainkey.%s v=DKIM1; k=rsa; p=%s\n", selector, domain, base64.StdEncoding.EncodeToString(der))
	if err := os.WriteFile(keys, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}

	host, port, _ := net.SplitHostPort(addr)
	signConf := filepath.Join(dir, "opendkim-sign.conf")
	// InternalHosts is left at its default, 127.0.0.1: mail from there is
	// signed. Canonicalization as in Debian's /etc/opendkim.conf.
	// RequireSafeKeys is off only because the key lies below /tmp, which
	// other users can write: opendkim refuses such a path otherwise.
	sign := fmt.Sprintf(`Syslog no
Mode s
Domain %s
Selector %s
KeyFile %s
Socket inet:%s@%s
Canonicalization relaxed/simple
SignatureAlgorithm rsa-sha256
RequireSafeKeys false
`, domain, selector, keyFile, port, host)
	verifyConf := filepath.Join(dir, "opendkim-verify.conf")
	verify := fmt.Sprintf("Syslog no\nMode v\nTestPublicKeys %s\n", keys)
	for p, text := range map[string]string{signConf: sign, verifyConf: verify} {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	d := &pathsDKIM{dir: dir, verifyConfig: verifyConf, log: new(syncbuf.Buffer)}
	bin, _ := mtatest.LookTool("opendkim")
	cmd := exec.Command(bin, "-f", "-x", signConf)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("opendkim: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		// Killed, not stopped: libmilter takes about 4 s to act on
		// SIGTERM, and nothing here depends on a clean exit.
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("opendkim output:\n%s", d.log.String())
		}
	})
	if err := mtatest.WaitListening(addr, 10*time.Second); err != nil {
		t.Fatalf("opendkim: %v\n%s", err, d.log.String())
	}
	return d
}

var pathsVerdictRE = regexp.MustCompile(`(?m)^opendkim: .*: verification .*$`)

// verify runs "opendkim -x verify.conf -t FILE" on a message. opendkim
// exits 0 either way; its verdict is the line "FILE: verification (s=...,
// d=..., ...) succeeded" or "... failed: REASON".
func (d *pathsDKIM) verify(t *testing.T, msg []byte) pathsVerifyResult {
	t.Helper()
	f, err := os.CreateTemp(d.dir, "verify-*.eml")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(msg)
	f.Close()
	bin, _ := mtatest.LookTool("opendkim")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-x", d.verifyConfig, "-t", f.Name()).CombinedOutput()
	if err != nil {
		t.Fatalf("opendkim -t: %v\n%s", err, out)
	}
	line := pathsVerdictRE.FindString(string(out))
	return pathsVerifyResult{
		pass: strings.HasSuffix(line, " succeeded") && strings.Contains(line, "d=example.test"),
		line: line,
		out:  string(out),
	}
}
