package milter

import (
	"context"
	"strings"
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore/pgstore"
)

// On the PostgreSQL backend, a database that goes away (killed, or a
// primary lost before its standby is promoted) costs a tagged message a
// 451 4.3.0, never plaintext, and mail seals again once it is back.
func TestPostgresDownTempfails(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"fsync": "off"}})
	store, err := pgstore.Open(context.Background(), pgstore.Options{DSN: srv.DSN(srv.NewDatabase(t)), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := newTestEnv(t, store, nil)
	m := tagged("Before [encrypt]", "alice@external.test", secretBody())
	assertSealed(t, e, m, e.send(t, e.newSession(t), m))

	srv.Stop(t)
	for i := range 3 { // pooled connections are dead, new ones refused
		m := tagged("Down [encrypt]", "alice@external.test", secretBody())
		o := e.send(t, e.newSession(t), m)
		if o.action.Code != gomilter.ActReplyCode || o.action.SMTPCode != 451 || !strings.HasPrefix(o.action.SMTPText, "4.3.0 ") {
			t.Fatalf("message %d with the database down: %+v, want 451 4.3.0", i, o.action)
		}
		if o.bodyReplaced() || len(o.mods) != 0 {
			t.Fatalf("a refused message was modified: %d modifications", len(o.mods))
		}
	}
	logs := e.logBuf.String()
	if strings.Contains(logs, secretMarker) {
		t.Fatal("plaintext in the log")
	}
	if !strings.Contains(logs, "store unavailable") {
		t.Fatalf("the log does not say the store is unavailable:\n%s", logs)
	}

	srv.Restart(t)
	m = tagged("After [encrypt]", "alice@external.test", secretBody())
	assertSealed(t, e, m, e.send(t, e.newSession(t), m))
}
