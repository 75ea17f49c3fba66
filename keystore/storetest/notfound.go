package storetest

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/securemail/securemail/keystore"
)

// checkNotFound fails unless err is ErrNotFound for errors.Is and its
// message names every one of names and holds none of secrets (a code, a
// cookie, a digest: a log line must never carry them).
func checkNotFound(t *testing.T, op string, err error, names, secrets []string) {
	t.Helper()
	if !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("%s: %v, want ErrNotFound", op, err)
		return
	}
	msg := err.Error()
	for _, n := range names {
		if !strings.Contains(msg, n) {
			t.Errorf("%s: %q does not name %q", op, msg, n)
		}
	}
	for _, s := range secrets {
		if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
			t.Errorf("%s: %q reveals %q", op, msg, s)
		}
	}
}

// digestSecrets is what a message about the session with cookie may not
// carry: the cookie, its digest in hex (whole or the first 8 bytes).
func digestSecrets(cookie string) []string {
	d := hex.EncodeToString(Digest(cookie))
	return []string{cookie, d, d[:16]}
}
