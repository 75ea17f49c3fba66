package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/pgstore"
	"github.com/securemail/securemail/milter"
)

// newPostgresHosts builds n portal hosts, each with its own connection
// pool to one PostgreSQL database, as separate portal machines would
// have, sharing one master key, one SMTP sink and one clock. The first
// host's filter seals messages into the same database.
func newPostgresHosts(t testing.TB, n int, opts ...envOption) ([]*testEnv, *pgtest.Server) {
	return newPostgresHostsOn(t, pgtest.Options{Settings: map[string]string{"fsync": "off", "full_page_writes": "off"}}, n, opts...)
}

// newPostgresHostsOn is newPostgresHosts on a server started with pgOpts.
func newPostgresHostsOn(t testing.TB, pgOpts pgtest.Options, n int, opts ...envOption) ([]*testEnv, *pgtest.Server) {
	t.Helper()
	srv := pgtest.Start(t, pgOpts)
	dsn := srv.DSN(srv.NewDatabase(t))
	dir := t.TempDir()
	// The milter spools a large message here while sealing it.
	if err := os.MkdirAll(filepath.Join(dir, "spool"), 0o700); err != nil {
		t.Fatal(err)
	}
	mk, err := keystore.CreateMasterKey(filepath.Join(dir, "master.key"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sink := newSMTPSink(t)
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var hosts []*testEnv
	for i := range n {
		store, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn, MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		e := &testEnv{t: t, dir: dir, sink: sink, clock: clk, logs: logs, mk: mk}
		e.srv = httptest.NewServer(nil)
		t.Cleanup(e.srv.Close)
		if i == 0 {
			if e.filter, err = milter.NewFilter(milter.Config{
				Policy:      milter.Policy{InternalDomains: []string{"example.com"}, SubjectTag: "[encrypt]", MaxMessageSize: 20 << 20},
				PortalURL:   e.srv.URL,
				KeyLifetime: 90 * 24 * time.Hour,
				SpoolDir:    filepath.Join(dir, "spool"),
				Store:       store,
				MasterKey:   mk,
				Logger:      logger,
				Now:         clk.Now,
			}); err != nil {
				t.Fatal(err)
			}
		}
		o := Options{
			PortalURL:      e.srv.URL,
			Keys:           store,
			Store:          store,
			MasterKey:      mk,
			SharedSpool:    store,
			SpoolDir:       filepath.Join(dir, fmt.Sprintf("portal-spool-%d", i)), // each host its own
			MaxMessageSize: 20 << 20,
			Mailer:         &SMTPMailer{Addr: sink.ln.Addr().String()},
			From:           "securemail@example.com",
			SubjectTag:     "[encrypt]",
			Hasher:         NewHasher(handlerArgon2, 2),
			Logger:         logger,
			Now:            clk.Now,
		}
		for _, f := range opts {
			f(&o)
		}
		if e.portal, err = New(o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.portal.Close() })
		e.srv.Config.Handler = e.portal
		hosts = append(hosts, e)
	}
	sink.settle = func() {
		for _, h := range hosts {
			h.portal.h.mail.wait()
		}
	}
	return hosts, srv
}

// TestSharedSpoolAnyHostServesAnyStep: with the PostgreSQL spool, a
// recipient whose every request lands on the other portal host than the
// one before opens, registers, reads and signs in again; what is stored
// is ciphertext only.
func TestSharedSpoolAnyHostServesAnyStep(t *testing.T) {
	hosts, _ := newPostgresHosts(t, 2)
	a, b := hosts[0], hosts[1]
	s := a.seal(alice, []string{bob}, plainMessage)
	br := a.browser()
	on := func(h *testEnv) *browser { br.e = h; return br }

	opened := on(a).open(s)
	if opened.status != http.StatusSeeOther {
		t.Fatalf("open on host A: %d\n%s", opened.status, opened.body)
	}
	page := on(b).follow(opened)
	if !strings.Contains(page.body, `action="/email"`) {
		t.Fatalf("host B does not find the envelope uploaded on host A:\n%s", page.body)
	}
	page = on(b).follow(on(a).email(bob))
	page = on(a).follow(on(b).post("/register/send-code", nil))
	code := a.sink.code(t, bob)
	page = on(a).follow(on(b).post("/register/code", url.Values{"code": {code}}))
	if !strings.Contains(page.body, "Create your account") {
		t.Fatalf("code sent through host B not accepted on host A:\n%s", page.body)
	}
	page = on(b).follow(on(a).post("/register/password", registrationForm(testPassword)))
	if !strings.Contains(page.body, "Quarterly") {
		t.Fatalf("message not shown on host B after registering on host A:\n%s", page.body)
	}
	if again := on(a).get(opened.header.Get("Location")); !strings.Contains(again.body, "Quarterly") {
		t.Fatalf("message not shown on host A:\n%s", again.body)
	}

	// The same envelope uploaded again, on the other host, reuses its
	// entry; a fresh browser signs in across hosts.
	other := b.browser()
	reopened := other.open(s)
	if reopened.header.Get("Location") != opened.header.Get("Location") {
		t.Fatalf("same envelope on host B: token %q, on host A %q", reopened.header.Get("Location"), opened.header.Get("Location"))
	}
	other.e = a
	other.follow(reopened)
	other.e = b
	other.follow(other.email(bob))
	other.e = a
	if signed := other.follow(other.post("/signin", url.Values{"password": {testPassword}})); !strings.Contains(signed.body, "Quarterly") {
		t.Fatalf("sign-in across hosts:\n%s", signed.body)
	}

	store := a.portal.h.opts.Keys.(*pgstore.Store)
	var envelopes, chunks int
	store.Pool().QueryRow(context.Background(), "SELECT count(*) FROM spool_envelopes").Scan(&envelopes)
	rows, err := store.Pool().Query(context.Background(), "SELECT data FROM spool_chunks")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var data []byte
		rows.Scan(&data)
		chunks++
		if bytes.Contains(data, []byte("Quarterly")) || bytes.Contains(data, []byte("Revenue")) {
			t.Error("plaintext in the shared spool")
		}
	}
	if envelopes != 1 || chunks == 0 {
		t.Fatalf("shared spool holds %d envelopes in %d chunks, want one", envelopes, chunks)
	}

	// Past the TTL either host's sweep removes it, and neither serves it.
	a.clock.Advance(25 * time.Hour)
	a.portal.h.sweep(context.Background())
	if r := on(b).get(opened.header.Get("Location")); r.status != http.StatusNotFound {
		t.Fatalf("swept envelope on host B: %d, want 404", r.status)
	}
	store.Pool().QueryRow(context.Background(), "SELECT count(*) FROM spool_chunks").Scan(&chunks)
	if chunks != 0 {
		t.Fatalf("%d chunks left after the sweep", chunks)
	}
}

// TestSharedSpoolCopies: each host reads its own copy of an envelope
// (the one it received, or one it copied from the store at its first
// read), while the store alone says whether the envelope is spooled and
// how old it is; a copy cut short is copied again, an envelope the store
// lost is stored again from a host's copy when it is posted again there,
// and a copy lives as long as the store's entry, however the hosts took
// turns.
func TestSharedSpoolCopies(t *testing.T) {
	hosts, _ := newPostgresHosts(t, 2)
	a, b := hosts[0], hosts[1]
	store := a.portal.h.opts.Keys.(*pgstore.Store)
	ctx := context.Background()
	s := a.seal(alice, []string{bob}, plainMessage)
	br := a.browser()
	on := func(h *testEnv) *browser { br.e = h; return br }
	if page := on(a).register(s, bob); !strings.Contains(page.body, "Quarterly") {
		t.Fatalf("not registered on host A:\n%s", page.body)
	}
	token := br.token
	copyOf := func(h *testEnv) string { return spoolPath(h.portal.h.opts.SpoolDir, token) }
	reads := func(h *testEnv, step string) {
		t.Helper()
		if page := on(h).get("/m/" + token); page.status != http.StatusOK || !strings.Contains(page.body, "Quarterly") {
			t.Fatalf("%s: read on %s: %d\n%s", step, h.srv.URL, page.status, page.body)
		}
	}
	// found: the envelope is spooled (once the session has ended, the
	// page asks for the address again).
	found := func(h *testEnv, step string) {
		t.Helper()
		if page := on(h).get("/m/" + token); page.status != http.StatusOK && page.status != http.StatusSeeOther {
			t.Fatalf("%s: %s: %d, want the envelope found\n%s", step, h.srv.URL, page.status, page.body)
		}
	}
	gone := func(h *testEnv, step string) {
		t.Helper()
		if page := on(h).get("/m/" + token); page.status != http.StatusNotFound {
			t.Fatalf("%s: read on %s: %d, want 404\n%s", step, h.srv.URL, page.status, page.body)
		}
	}
	if _, err := os.Stat(copyOf(a)); err != nil {
		t.Fatalf("no copy on the host that received the upload: %v", err)
	}
	if _, err := os.Stat(copyOf(b)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a copy on the other host before it read the envelope: %v", err)
	}
	reads(b, "first read on B")
	if _, err := os.Stat(copyOf(b)); err != nil {
		t.Fatalf("host B kept no copy of what it read from the store: %v", err)
	}

	// The store's chunks gone behind the hosts' backs: both read their
	// copies, so neither reads the chunks again.
	if _, err := store.Pool().Exec(ctx, "DELETE FROM spool_chunks"); err != nil {
		t.Fatal(err)
	}
	reads(a, "chunks gone")
	reads(b, "chunks gone")

	// Lost by the store (a failover lost its last asynchronous commits):
	// no host serves its copy, and posting the attachment again on A
	// stores it again from there, for B to copy.
	if _, err := store.Pool().Exec(ctx, "DELETE FROM spool_envelopes"); err != nil {
		t.Fatal(err)
	}
	gone(a, "entry gone")
	gone(b, "entry gone")
	if r := on(a).open(s); r.header.Get("Location") != "/m/"+token {
		t.Fatalf("open again on A: %d %q", r.status, r.header.Get("Location"))
	}
	os.Remove(copyOf(b))
	reads(b, "stored again from A's copy")

	// A copy cut short (a crash before the disk had it all) is copied
	// again.
	if err := os.Truncate(copyOf(a), 100); err != nil {
		t.Fatal(err)
	}
	reads(a, "copy cut short")
	if st, err := os.Stat(copyOf(a)); err != nil || st.Size() != int64(len(s.form.Envelope)) {
		t.Fatalf("copy on A not copied again: %v, %v; want %d bytes", st, err, len(s.form.Envelope))
	}

	// Posted again on B 20 hours later: 25 hours after the first upload A
	// still reads it, and its sweep keeps its copy; past the TTL after the
	// second upload, the store's entry and both copies are swept.
	a.clock.Advance(20 * time.Hour)
	if r := on(b).open(s); r.header.Get("Location") != "/m/"+token {
		t.Fatalf("open again on B: %d", r.status)
	}
	a.clock.Advance(5 * time.Hour)
	found(a, "25 hours after the first upload, 5 after the second")
	a.portal.h.sweep(ctx)
	b.portal.h.sweep(ctx)
	if _, err := os.Stat(copyOf(a)); err != nil {
		t.Fatalf("host A swept its copy of an envelope the store still holds: %v", err)
	}
	a.clock.Advance(20 * time.Hour)
	a.portal.h.sweep(ctx)
	b.portal.h.sweep(ctx)
	for _, h := range []*testEnv{a, b} {
		if _, err := os.Stat(copyOf(h)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("copy on %s not swept: %v", h.srv.URL, err)
		}
	}
	gone(a, "after the sweep")

	// Dropped by one host (a damaged upload, say): the other does not
	// serve its copy either.
	if r := on(a).open(s); r.header.Get("Location") != "/m/"+token {
		t.Fatalf("open after the sweep: %d", r.status)
	}
	found(b, "after opening again")
	b.portal.h.spool.drop(ctx, token)
	gone(a, "dropped by B")
}

// TestSharedSpoolDatabaseDown: with the database gone, an upload and a
// read answer 503 "try again", not "damaged" nor "open it again".
func TestSharedSpoolDatabaseDown(t *testing.T) {
	hosts, srv := newPostgresHosts(t, 1)
	e := hosts[0]
	s := e.seal(alice, []string{bob}, plainMessage)
	br := e.browser()
	opened := br.open(s)
	if opened.status != http.StatusSeeOther {
		t.Fatalf("open: %d", opened.status)
	}
	srv.Stop(t)
	if r := br.get(opened.header.Get("Location")); r.status != http.StatusServiceUnavailable {
		t.Errorf("read with the database down: %d, want 503\n%s", r.status, r.body)
	}
	if r := e.browser().open(s); r.status != http.StatusServiceUnavailable {
		t.Errorf("upload with the database down: %d, want 503\n%s", r.status, r.body)
	}
	if strings.Contains(e.logs.String(), "Quarterly") {
		t.Error("plaintext in the log")
	}
}

// BenchmarkOpenRead1MiB: a signed-in recipient posts the attachment of a
// 1 MiB message and reads it, on bbolt with the local spool and on
// PostgreSQL (fsync on, as in production) with the shared spool.
func BenchmarkOpenRead1MiB(b *testing.B) {
	unlimited := func(o *Options) {
		o.Uploads.PerClient = 1000
		o.Limits.UploadsPerClient = Rate{1 << 30, time.Hour}
	}
	body := strings.Repeat("The quarterly figures, line after line of them.\n", (1<<20)/49)
	msg := strings.Replace(plainMessage, "Revenue is up", body+"Revenue is up", 1)
	for _, backend := range []string{"bolt", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			var e *testEnv
			if backend == "bolt" {
				e = newTestEnv(b, unlimited)
				if err := os.MkdirAll(filepath.Join(e.dir, "spool"), 0o700); err != nil {
					b.Fatal(err)
				}
			} else {
				hosts, _ := newPostgresHostsOn(b, pgtest.Options{}, 1, unlimited)
				e = hosts[0]
			}
			s := e.seal(alice, []string{bob}, msg)
			br := e.browser()
			if page := br.register(s, bob); !strings.Contains(page.body, "Quarterly") {
				b.Fatalf("not signed in:\n%.500s", page.body)
			}
			b.SetBytes(int64(len(s.form.Envelope)))
			b.ResetTimer()
			for range b.N {
				if page := br.follow(br.open(s)); page.status != http.StatusOK || len(page.body) < 1_000_000 {
					b.Fatalf("read: %d, %d bytes", page.status, len(page.body))
				}
			}
		})
	}
}
