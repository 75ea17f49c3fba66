package main

// End-to-end: the encryption feature per account, and reload without
// restart, through a real private Postfix, with the securemail binary as
// its milter.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

// e2eEntitlementConfig writes the config of the entitlement test. tag is
// policy.subject_tag; policyExtra are more YAML lines of the policy section.
func e2eEntitlementConfig(t *testing.T, path, dataDir, milterAddr, smtpRelay, tag, policyExtra string) {
	t.Helper()
	cfg := fmt.Sprintf(`data_dir: %[1]s
log:
  level: info
milter:
  listen: inet:%[2]s
portal:
  listen: 127.0.0.1:%[6]d
  url: http://127.0.0.1:%[6]d
policy:
  internal_domains: [%[3]s]
  trusted_networks: []
  tls_exempt_networks: []
  require_tls: true
  subject_tag: %[4]q
  trigger_header: X-Secure-Send
%[5]skeystore:
  master_key_file: %[1]s/master.key
smtp:
  relay: %[7]s
  from: securemail@%[3]s
metrics:
  listen: 127.0.0.1:%[8]d
`, dataDir, milterAddr, e2eInternal, tag, policyExtra, e2ePortalPort, smtpRelay, e2eMetricsPort)
	writeFile(t, path, cfg)
}

// The ports of the portal and the metrics listener, the same in every
// config the test writes (they need a restart to change).
var e2ePortalPort, e2eMetricsPort int

// TestPostfixEntitlementAndReload:
//
//	a  entitled (inline entry), tagged, external     -> sealed
//	b  not entitled, tagged                          -> 550 5.7.1 with the sentence, nothing delivered
//	c  not entitled, untagged                        -> delivered as usual
//	d  list file edited, SIGHUP                      -> b's sender now sealed (inline + file combine)
//	e  bad list file, SIGHUP                         -> refused, logged, old lists stay in force
//	f  40 messages on 4 connections while the config flips between two
//	   policies and SIGHUP is sent every few ms      -> none refused, each decided under one policy
//	g  one inbound and one plaintext submission, then /metrics scraped
//	                                                 -> every counter moved by exactly the mix sent;
//	                                                    promtool check metrics passes; /readyz 200
func TestPostfixEntitlementAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix and the securemail binary")
	}
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)

	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	pf := e2eNewPostfix(t, sink, "")
	user, pass := pf.Credentials()
	const basic = "basic@example.test" // an account without the feature
	basicPass := "basic-" + pass
	mtatest.WriteSASLDB(t, filepath.Join(pf.ConfigDir, "sasl", "sasldb2"), basic, basicPass, "postfix")
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)
	e2ePortalPort, e2eMetricsPort = mtatest.FreePort(t), mtatest.FreePort(t)

	dir := t.TempDir()
	config := filepath.Join(dir, "securemail.yaml")
	sendersFile := filepath.Join(dir, "senders.txt")
	writeFile(t, sendersFile, "# written by billing\nsomeone@example.test\n")
	listed := fmt.Sprintf("  senders: [%s]\n  senders_files: [%s]\n", user, sendersFile)
	e2eEntitlementConfig(t, config, filepath.Join(dir, "data"), milterAddr, pf.SMTPAddr(), e2eTag, listed)
	srv := e2eStartServe(t, bin, config, milterAddr)
	pf.Start(t)

	send := func(from, u, p, subject, marker string) mtatest.SwaksResult {
		return mtatest.Submission{
			Server: pf.SubmissionAddr(), From: from, To: []string{"alice@external.test"},
			Subject: subject, Body: "Hello,\r\n\r\n" + marker + "\r\n", STARTTLS: true,
			Auth: "PLAIN", User: u, Password: p,
		}.Send(t)
	}
	delivered := func(t *testing.T, from string) mtatest.Message {
		t.Helper()
		m, err := sink.WaitFor(func(m mtatest.Message) bool { return m.From == from }, e2eDeliveryWait)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	sighup := func(t *testing.T, want string) {
		t.Helper()
		n := strings.Count(srv.log.String(), want)
		if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(srv.log.String(), want) == n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", want, srv.log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("a entitled sealed", func(t *testing.T) {
		res := send("ent-a@example.test", user, pass, "Offer [encrypt] attached", "E2E-ENT-a")
		if res.ExitCode != mtatest.SwaksOK {
			t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		e2eCheckSealed(t, delivered(t, "ent-a@example.test"), "E2E-ENT-a", "Offer attached")
	})
	t.Run("b not entitled refused", func(t *testing.T) {
		// The envelope sender and From name the entitled user: only the
		// AUTH identity counts.
		res := send(user, basic, basicPass, "Offer [encrypt] attached", "E2E-ENT-b")
		if res.ExitCode != mtatest.SwaksFailedDataBody || !strings.Contains(res.Transcript, "550 5.7.1 Encrypted email is not enabled for your account; remove [encrypt] from the subject to send it unencrypted, or ask your provider") {
			t.Fatalf("swaks exit %d, want 550 5.7.1 with the sentence:\n%s", res.ExitCode, res.Transcript)
		}
		if err := pf.WaitMilterReject(user, 5*time.Second); err != nil {
			t.Error(err)
		}
	})
	t.Run("c not entitled untagged delivered", func(t *testing.T) {
		res := send("ent-c@example.test", basic, basicPass, "Offer attached", "E2E-ENT-c")
		if res.ExitCode != mtatest.SwaksOK {
			t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		e2eCheckPlain(t, delivered(t, "ent-c@example.test"), "E2E-ENT-c", "Offer attached")
	})
	t.Run("d list file edited and SIGHUP", func(t *testing.T) {
		writeFile(t, sendersFile, "someone@example.test\n"+basic+"\n")
		sighup(t, "configuration reloaded")
		res := send("ent-d@example.test", basic, basicPass, "Offer [encrypt] attached", "E2E-ENT-d")
		if res.ExitCode != mtatest.SwaksOK {
			t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		e2eCheckSealed(t, delivered(t, "ent-d@example.test"), "E2E-ENT-d", "Offer attached")
		// The inline entry still counts beside the file.
		if res := send("ent-d2@example.test", user, pass, "Offer [encrypt] attached", "E2E-ENT-d2"); res.ExitCode != mtatest.SwaksOK {
			t.Fatalf("inline sender after reload: swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		e2eCheckSealed(t, delivered(t, "ent-d2@example.test"), "E2E-ENT-d2", "Offer attached")
	})
	t.Run("e bad list refused whole", func(t *testing.T) {
		writeFile(t, sendersFile, "someone@example.test\nthis is not an address\n")
		sighup(t, "reload refused")
		if !strings.Contains(srv.log.String(), "line 2") {
			t.Errorf("the log does not name the bad line:\n%s", srv.log.String())
		}
		res := send("ent-e@example.test", basic, basicPass, "Offer [encrypt] attached", "E2E-ENT-e")
		if res.ExitCode != mtatest.SwaksOK {
			t.Fatalf("the old list left force after a refused reload: swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		e2eCheckSealed(t, delivered(t, "ent-e@example.test"), "E2E-ENT-e", "Offer attached")
		writeFile(t, sendersFile, basic+"\n")
	})
	var loadSealed, loadPlain int
	t.Run("f reload under load", func(t *testing.T) {
		// Policy A seals "[encrypt]" for the user; policy B knows only the
		// tag "[secure]" and lets nobody seal. Under A a message is sealed,
		// under B it passes with its subject as written; only a mix (A's
		// tag with B's list) would refuse it.
		configA, configB := config+".a", config+".b"
		e2eEntitlementConfig(t, configA, filepath.Join(dir, "data"), milterAddr, pf.SMTPAddr(), e2eTag, listed)
		e2eEntitlementConfig(t, configB, filepath.Join(dir, "data"), milterAddr, pf.SMTPAddr(), "[secure]", "  senders: [nobody@example.test]\n")
		a, _ := os.ReadFile(configA)
		b, _ := os.ReadFile(configB)
		writeFile(t, sendersFile, user+"\n")

		stop := make(chan struct{})
		var flips sync.WaitGroup
		flips.Add(1)
		nFlips := 0
		go func() {
			defer flips.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(15 * time.Millisecond):
				}
				next := a
				if nFlips%2 == 0 {
					next = b
				}
				writeFile(t, config, string(next))
				srv.cmd.Process.Signal(syscall.SIGHUP)
				nFlips++
			}
		}()
		const conns, perConn = 4, 10
		var wg sync.WaitGroup
		errs := make(chan error, conns*perConn)
		for c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := mtatest.DialSubmission(t, pf)
				for i := range perConn {
					from := fmt.Sprintf("load-%d-%d@example.test", c, i)
					data := "From: <" + from + ">\r\nTo: <carol@external.test>\r\nSubject: Load [encrypt] " + from +
						"\r\nMessage-ID: <" + from + ">\r\n\r\nHello,\r\nE2E-LOAD-MARKER\r\n"
					if err := mtatest.SendOne(cl, from, []string{"carol@external.test"}, data); err != nil {
						errs <- fmt.Errorf("%s: %w", from, err)
					}
				}
				cl.Quit()
			}()
		}
		wg.Wait()
		close(stop)
		flips.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("message refused during reloads: %v", err)
		}
		nSealed, nPlain := &loadSealed, &loadPlain
		for c := range conns {
			for i := range perConn {
				from := fmt.Sprintf("load-%d-%d@example.test", c, i)
				m := delivered(t, from)
				if strings.Contains(string(m.Data), "SecureMessageATT.html") {
					e2eCheckSealed(t, m, "E2E-LOAD-MARKER", "Load "+from)
					*nSealed++
				} else {
					e2eCheckPlain(t, m, "E2E-LOAD-MARKER", "Load [encrypt] "+from)
					*nPlain++
				}
			}
		}
		t.Logf("%d config flips with SIGHUP during %d messages: %d sealed, %d passed; %d reloads logged",
			nFlips, conns*perConn, loadSealed, loadPlain, strings.Count(srv.log.String(), "configuration reloaded"))
		if strings.Contains(srv.log.String(), "reload refused") && strings.Count(srv.log.String(), "reload refused") > 1 {
			t.Errorf("a reload of a good config was refused:\n%s", srv.log.String())
		}
	})

	t.Run("g metrics", func(t *testing.T) {
		if res := (mtatest.Submission{Server: pf.SMTPAddr(), From: "ent-g@partner.test", To: []string{"alice@external.test"},
			Subject: "Inbound [encrypt]", Body: "E2E-ENT-g"}).Send(t); res.ExitCode != mtatest.SwaksOK {
			t.Fatalf("inbound: swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		if res := (mtatest.Submission{Server: pf.SubmissionAddr(), From: "ent-g2@example.test", To: []string{"alice@external.test"},
			Subject: "No TLS [encrypt]", Body: "E2E-ENT-g2", Auth: "PLAIN", User: user, Password: pass}).Send(t); res.ExitCode != mtatest.SwaksFailedMail {
			t.Fatalf("no TLS: swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		delivered(t, "ent-g@partner.test")
		base := fmt.Sprintf("http://127.0.0.1:%d", e2eMetricsPort)
		scrape := e2eGet(t, base+"/metrics", 200)
		// The mix: sealed a, d, d2, e and the sealed ones of f; plain c and
		// f's others; internal none; inbound g; refused b (not entitled)
		// and g2 (no TLS).
		want := map[string]float64{
			`securemail_milter_messages_total{verdict="sealed"}`:     float64(4 + loadSealed),
			`securemail_milter_messages_total{verdict="plain"}`:      float64(1 + loadPlain),
			`securemail_milter_messages_total{verdict="internal"}`:   0,
			`securemail_milter_messages_total{verdict="inbound"}`:    1,
			`securemail_milter_messages_total{verdict="refused"}`:    2,
			`securemail_milter_refused_total{reason="not_entitled"}`: 1,
			`securemail_milter_refused_total{reason="tls_required"}`: 1,
			`securemail_milter_refused_total{reason="tempfail"}`:     0,
			`securemail_milter_seal_duration_seconds_count`:          float64(4 + loadSealed),
			`securemail_keystore_commit_duration_seconds_count`:      float64(4 + loadSealed),
			`securemail_config_reloads_total{result="refused"}`:      1,
			`securemail_config_reloads_total{result="ok"}`:           float64(strings.Count(srv.log.String(), "configuration reloaded")),
			`securemail_portal_opens_total`:                          0,
		}
		for series, v := range want {
			got, ok := e2eSample(scrape, series)
			if !ok || got != v {
				t.Errorf("%s = %v (found %v), want %v", series, got, ok, v)
			}
		}
		for _, series := range []string{"securemail_build_info", "go_goroutines", "process_resident_memory_bytes", `securemail_spool_bytes{spool="milter"}`, "securemail_milter_sessions", "securemail_milter_sealed_bytes_total"} {
			if !strings.Contains(scrape, "\n"+series+" ") && !strings.Contains(scrape, "\n"+series+"{") {
				t.Errorf("/metrics lacks %s", series)
			}
		}
		if strings.Contains(scrape, "@example.test") || strings.Contains(scrape, "@external.test") {
			t.Error("/metrics carries an address")
		}
		e2ePromtool(t, strings.NewReader(scrape), "check", "metrics")
		e2eGet(t, base+"/healthz", 200)
		e2eGet(t, base+"/readyz", 200)
	})

	if err := pf.WaitQueueEmpty(t, e2eDeliveryWait); err != nil {
		t.Error(err)
	}
	if got := sink.FromSender(user); len(got) != 0 {
		t.Errorf("the refused message was delivered: %s", got[0].Path)
	}
	if code, err := srv.stop(10 * time.Second); err != nil || code != 0 {
		t.Errorf("serve after SIGTERM: exit %d, %v", code, err)
	}
}

func e2eGet(t *testing.T, url string, want int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %s, want %d:\n%s", url, resp.Status, want, b)
	}
	return string(b)
}

// e2eSample finds the value of one series (name and labels exactly as
// written) in a Prometheus text scrape.
func e2eSample(scrape, series string) (float64, bool) {
	for _, line := range strings.Split(scrape, "\n") {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// e2ePromtool runs promtool with args and stdin, and fails t on any
// complaint (promtool exits 0 with lint warnings on stderr... it prints
// them; those count as failures too).
func e2ePromtool(t *testing.T, stdin io.Reader, args ...string) {
	t.Helper()
	mtatest.RequireToolsHint(t, "apt-get install prometheus", "promtool")
	cmd := exec.Command("promtool", args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil || (args[1] == "metrics" && len(bytes.TrimSpace(out)) > 0) {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
