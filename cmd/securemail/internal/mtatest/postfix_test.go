package mtatest

import (
	"testing"
	"time"
)

// TestPostfix checks the harness itself, without a milter: a private
// instance starts, takes authenticated submissions with and without
// STARTTLS, refuses a wrong password, and relays everything to the sink.
func TestPostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs a real Postfix instance")
	}
	sink := StartSink(t)
	pf := NewPostfix(t, PostfixOptions{RelayHost: sink.Addr})
	start := time.Now()
	pf.Start(t)
	t.Logf("postfix started in %v", time.Since(start))
	checkHarness(t, pf, sink, []harnessCase{
		{"starttls auth plain", Submission{From: "tls@example.test", STARTTLS: true, Auth: "PLAIN"}, SwaksOK, ""},
		{"plaintext auth login", Submission{From: "plain@example.test", Auth: "LOGIN"}, SwaksOK, ""},
		{"wrong password", Submission{From: "wrong@example.test", STARTTLS: true, Auth: "PLAIN", Password: "nope"}, SwaksFailedAuth, ""},
		{"no auth on submission", Submission{From: "noauth@example.test", STARTTLS: true}, SwaksFailedRcpt, ""},
		{"mx port", Submission{From: "mx@example.test", Server: pf.SMTPAddr()}, SwaksOK, ""},
	})
}
