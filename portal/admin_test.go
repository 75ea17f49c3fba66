package portal

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// A read logs the key, the reader and the client, never content.
func TestReadLogNamesKeyReaderAndClient(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.open(s)
	if page := b.register(s, bob); page.status != http.StatusOK {
		t.Fatalf("read page: %d", page.status)
	}
	var line string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `msg="portal: message read"`) {
			line = l
		}
	}
	if !strings.Contains(line, "key_id="+s.form.KeyID.String()) || !strings.Contains(line, "reader="+bob) || !strings.Contains(line, "remote=127.0.0.1") {
		t.Fatalf("read log line %q", line)
	}
	if strings.Contains(e.logs.String(), "Revenue is up") {
		t.Fatal("message content in the log")
	}
}

// After "securemail accounts reset" the old password no longer signs in,
// and the portal treats it as a wrong password, not a broken hash.
func TestAdminResetRefusesTheOldPassword(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.open(s)
	if page := b.register(s, bob); page.status != http.StatusOK {
		t.Fatalf("read page: %d", page.status)
	}
	if _, err := e.store.RequirePasswordReset(context.Background(), bob); err != nil {
		t.Fatal(err)
	}
	again := e.browser()
	again.open(s)
	if r := again.signin(s, bob, testPassword); r.status != http.StatusUnauthorized {
		t.Fatalf("sign-in with the old password after a reset: %d", r.status)
	}
	if strings.Contains(e.logs.String(), "stored password hash unusable") {
		t.Fatalf("a required reset was logged as a broken hash:\n%s", e.logs.String())
	}
}
