package mtatest

import (
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestSendmail checks the harness itself, without a milter: a private
// Sendmail starts from the unpacked packages, takes authenticated
// submissions with and without STARTTLS, refuses a wrong password and
// unauthenticated submission, accepts mail on its MX port, relays
// everything to the sink, and its syslog reaches Log.
func TestSendmail(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs a real Sendmail")
	}
	sink := StartSink(t)
	sm := NewSendmail(t, SendmailOptions{RelayHost: sink.Addr})
	start := time.Now()
	sm.Start(t)
	t.Logf("sendmail started in %v", time.Since(start))
	checkHarness(t, sm, sink, []harnessCase{
		{"starttls auth plain", Submission{From: "tls@example.test", STARTTLS: true, Auth: "PLAIN"}, SwaksOK, "TLS"},
		{"plaintext auth login", Submission{From: "plain@example.test", Auth: "LOGIN"}, SwaksOK, ""},
		{"wrong password", Submission{From: "wrong@example.test", STARTTLS: true, Auth: "PLAIN", Password: "nope"}, SwaksFailedAuth, "535"},
		// M=a: the MSA refuses mail without AUTH at MAIL FROM.
		{"no auth on submission", Submission{From: "noauth@example.test", STARTTLS: true}, SwaksFailedMail, "530 5.7.0"},
		{"mx port", Submission{From: "mx@example.test", Server: sm.SMTPAddr()}, SwaksOK, ""},
	})
	// The log is Sendmail's syslog: a delivery to the sink, and the
	// authenticated submission's login.
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`to=<rcpt@external\.test>.*relay=\[127\.0\.0\.1\].*stat=Sent`),
		regexp.MustCompile(`AUTH=server, relay=.*, authid=sender@example\.test, mech=PLAIN`),
	} {
		if err := sm.WaitLogMatch(re, 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	stopped := time.Now()
	sm.Stop(t)
	t.Logf("sendmail stopped in %v", time.Since(stopped))
}

// TestSendmailBrokenMC checks that a broken MC fails the test that uses
// it: m4 syntax errors in NewSendmail, a misspelt macro (m4 copies it into
// the .cf as text) in Start.
func TestSendmailBrokenMC(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs a real Sendmail")
	}
	RequireSendmail(t)
	sink := StartSink(t)
	for _, tc := range []struct {
		name, mc, want string
	}{
		{"unterminated quote", "INPUT_MAIL_FILTER(`x', `S=inet:1@127.0.0.1)dnl\n", "m4"},
		{"misspelt macro", "INPUT_MAIL_FILTR(`x', `S=inet:1@127.0.0.1')dnl\n", "unknown configuration line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := &fatalRecorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				NewSendmail(ft, SendmailOptions{RelayHost: sink.Addr, MC: tc.mc}).Start(ft)
			}()
			<-done
			if !ft.failed {
				t.Fatalf("an instance built with MC %q started", tc.mc)
			}
			if !strings.Contains(ft.msg, tc.want) {
				t.Errorf("failure does not say %q: %s", tc.want, ft.msg)
			}
		})
	}
}

// fatalRecorder is a testing.TB whose Fatal/Fatalf record the failure and
// end the goroutine instead of failing the test.
type fatalRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.failed, f.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
