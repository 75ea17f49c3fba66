package main

// End-to-end test: the securemail binary as a milter behind a real, private
// Sendmail whose sendmail.cf is built with m4 from a minimal .mc that
// includes contrib/sendmail/securemail.mc, driven by swaks and net/smtp,
// delivering to an in-process SMTP sink. Sendmail runs from the unpacked
// Debian packages under $SECUREMAIL_SENDMAIL_ROOT (see .ci/run and
// mtatest.NewSendmail).

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

// sendmailE2ESnippetMilter is the milter address as shipped in
// contrib/sendmail/securemail.mc: the default milter.listen,
// inet:127.0.0.1:8894, in Sendmail's syntax.
const sendmailE2ESnippetMilter = "S=inet:8894@127.0.0.1"

// TestSendmailE2E runs the policy cases (e2eRunPolicyCases) through a
// private Sendmail configured from contrib/sendmail/securemail.mc, with only
// the milter's address rewritten to the test's port in the built .cf.
// Sendmail, unlike Postfix, sends no ABORT between two messages on one
// connection, which case "e" covers.
func TestSendmailE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Sendmail and the securemail binary")
	}
	mtatest.RequireSendmail(t)
	began := time.Now()

	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	snippet, err := filepath.Abs(filepath.Join("..", "..", "contrib", "sendmail", "securemail.mc"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(snippet); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	sm := mtatest.NewSendmail(t, mtatest.SendmailOptions{
		RelayHost: sink.Addr,
		// The operator's snippet, as is: m4 fails the test if it is broken.
		MC: "include(`" + snippet + "')dnl\n",
	})
	sendmailE2ECheckCF(t, sm.CF(t))
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	_, milterPort, _ := strings.Cut(milterAddr, ":")
	sm.RewriteCF(t, sendmailE2ESnippetMilter+",", "S=inet:"+milterPort+"@127.0.0.1,")

	built := time.Now()
	srv := e2eStartServe(t, bin, e2eWriteConfig(t, milterAddr, sm.SMTPAddr()), milterAddr)
	sm.Start(t)
	t.Logf("e2e: go build %v, serve and sendmail up %v", built.Sub(began).Round(time.Millisecond),
		time.Since(built).Round(time.Millisecond))

	e2eRunPolicyCases(t, bin, sm, sink, srv)
	t.Logf("e2e: total %v", time.Since(began).Round(time.Millisecond))
}

// sendmailE2ECheckCF verifies that what the product depends on comes from
// the snippet itself, so that the test's one rewrite (the milter address)
// cannot hide a snippet that lacks it.
func sendmailE2ECheckCF(t *testing.T, cf string) {
	t.Helper()
	filters := regexp.MustCompile(`(?m)^Xsecuremail, (.*)$`).FindAllStringSubmatch(cf, -1)
	if len(filters) != 1 {
		t.Fatalf("sendmail.cf: %d filter definitions named securemail, want 1 (INPUT_MAIL_FILTER in the snippet)", len(filters))
	}
	fields := map[string]string{}
	for _, f := range strings.Split(filters[0][1], ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	if got := "S=" + fields["S"]; got != sendmailE2ESnippetMilter {
		t.Errorf("snippet: milter %s, want the default %s (= milter.listen inet:127.0.0.1:8894)", got, sendmailE2ESnippetMilter)
	}
	// F=T: tempfail when the milter is down. Without it (or with F=R)
	// Sendmail passes mail through unfiltered.
	if fields["F"] != "T" {
		t.Errorf("snippet: F=%q, want F=T", fields["F"])
	}
	if t.Failed() {
		t.Logf("filter: Xsecuremail, %s", filters[0][1])
	}
	if !regexp.MustCompile(`(?m)^O InputMailFilters=(.*, *)?securemail(,.*)?$`).MatchString(cf) {
		t.Errorf("sendmail.cf: securemail is not among InputMailFilters")
	}
	m := regexp.MustCompile(`(?m)^O Milter\.macros\.envfrom=(.*)$`).FindStringSubmatch(cf)
	if m == nil {
		t.Fatal("sendmail.cf: no Milter.macros.envfrom (confMILTER_MACROS_ENVFROM)")
	}
	have := map[string]bool{}
	for _, name := range strings.Split(m[1], ",") {
		have[strings.TrimSpace(name)] = true
	}
	// What securemail decides with at MAIL FROM, and Sendmail's own
	// defaults, which the snippet must keep.
	for _, name := range []string{"i", "{auth_authen}", "{tls_version}", "{cipher}", "{client_addr}",
		"{auth_type}", "{auth_ssf}", "{auth_author}", "{mail_mailer}", "{mail_host}", "{mail_addr}"} {
		if !have[name] {
			t.Errorf("snippet: confMILTER_MACROS_ENVFROM lacks %s: %q", name, m[1])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}
