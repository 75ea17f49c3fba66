package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/internal/syncbuf"
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
	sink := newSink(t)
	clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
	logs := &syncbuf.Buffer{}
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
			Mailer:         &SMTPMailer{Addr: sink.Addr},
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
	t.Parallel()
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
	page = on(a).follow(on(b).again())
	code := a.sink.code(t, bob)
	page = on(a).follow(on(b).post("/code", url.Values{"code": {code}}))
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
	t.Parallel()
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
// PostgreSQL (fsync on, as in production) with the shared spool. The
// same envelope is posted every time, as a recipient clicking "Click to
// read message" again; BenchmarkOpenRead1MiBPaired posts a new one each
// time.
func BenchmarkOpenRead1MiB(b *testing.B) {
	msg := openReadMessage()
	for _, backend := range []string{"bolt", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			var e *testEnv
			if backend == "bolt" {
				e = newOpenReadBoltEnv(b)
			} else {
				hosts, _ := newPostgresHostsOn(b, pgtest.Options{}, 1, unlimitedUploads)
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

// pairedRoundsEnv sets BenchmarkOpenRead1MiBPaired's number of rounds.
const pairedRoundsEnv = "SECUREMAIL_BENCH_PAIRED_ROUNDS"

// BenchmarkOpenRead1MiBPaired: a signed-in recipient posts the attachment
// of a new 1 MiB message (sealed outside the timer) and reads it, on
// three targets set up once and measured in rounds (default 5,
// SECUREMAIL_BENCH_PAIRED_ROUNDS), one target after the other in each
// round, so each ratio compares runs seconds apart on a shared machine:
//
//   - bolt: bbolt store, local spool folder;
//   - postgres-same-host: PostgreSQL (fsync, synchronous_commit and
//     shared_buffers at their defaults) with the shared spool, read
//     through the host that took the upload;
//   - postgres-other-host: posted through host A, read through host B,
//     which copies the envelope from the store at its first read.
//
// Each PostgreSQL run reports speed-vs-bolt: the bolt run's ns/op of the
// same round divided by its own (above 1: faster than bbolt). Every run
// reports cpu-ms/op, the processor time of this process (client, portal
// and store client) and of the database server during the timed part,
// which a loaded machine does not swing as it swings wall-clock time, and
// db-cpu-ms/op, the server's part of it. Ten untimed open+reads per
// target come first, so the database is past its first growth. The
// envelope is dropped after each iteration, outside the timer, so the
// spool does not grow over the rounds. The log ends with every round's
// figures and the medians.
//
// The spool's tables are held in the state of a server that has run a
// while (steadySpool): free space left by envelopes swept and vacuumed,
// so that a new envelope's rows go into it, as they do once autovacuum
// keeps up (migration 0005), instead of extending the table by 1 MiB of
// new pages per iteration, which no server running for more than
// autovacuum's first round does. The vacuums run outside the timer; their
// server processor time per envelope is logged apart.
//
// With SECUREMAIL_BENCH_PG_CPUS set (taskset's list, "0"), the database
// server is pinned to those processors; run the test binary itself
// under taskset on the others ("taskset -c 1 portal.test ..."). That
// approximates the database on its own machine (docs/scaling.md); the
// figure is a different one from the shared-processor one, not a
// replacement for it.
func BenchmarkOpenRead1MiBPaired(b *testing.B) {
	rounds := 5
	if v := os.Getenv(pairedRoundsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive number", pairedRoundsEnv, v)
		}
		rounds = n
	}
	msg := openReadMessage()
	boltEnv := newOpenReadBoltEnv(b)
	hosts, srv := newPostgresHostsOn(b, pgtest.Options{Settings: map[string]string{"shared_buffers": "128MB"}}, 2, unlimitedUploads)
	hostA, hostB := hosts[0], hosts[1]
	if cpus := os.Getenv(pairedPGCPUsEnv); cpus != "" {
		if err := srv.Pin(cpus); err != nil {
			b.Fatal(err)
		}
		b.Logf("database server pinned to processors %s", cpus)
	}
	targets := []struct {
		name         string
		upload, read *testEnv
	}{
		{"bolt", boltEnv, boltEnv},
		{"postgres-same-host", hostA, hostA},
		{"postgres-other-host", hostA, hostB},
	}
	browsers := map[*testEnv]*browser{}
	for _, e := range []*testEnv{boltEnv, hostA} {
		br := e.browser()
		if page := br.register(e.seal(alice, []string{bob}, plainMessage), bob); !strings.Contains(page.body, "Quarterly") {
			b.Fatalf("not signed in:\n%.500s", page.body)
		}
		browsers[e] = br
	}
	// Processor time, read around the timed part so that reading it
	// (the server's from /proc) costs outside it.
	procCPU := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	dbCPU := func() time.Duration {
		d, err := srv.CPU()
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	// openRead is what is timed: post s through tg.upload, read it
	// through tg.read.
	openRead := func(tb testing.TB, br *browser, upload, read *testEnv, s sealed) {
		br.e = upload
		opened := br.open(s)
		br.e = read
		if page := br.follow(opened); page.status != http.StatusOK || len(page.body) < 1_000_000 {
			tb.Fatalf("read: %d, %d bytes", page.status, len(page.body))
		}
	}
	// settle waits for e's filings in the background (the PostgreSQL
	// spool stores an envelope's bytes after answering its upload), so
	// that no iteration's work spills into the next one's or escapes
	// the processor times.
	settle := func(e *testEnv) {
		if sp, ok := e.portal.h.spool.(*sharedSpool); ok {
			sp.wait()
		}
	}
	// Warm-up, not measured: the database's tables past their first
	// growth and its caches filled, as on a server that has been running.
	for _, tg := range targets {
		for range 10 {
			openRead(b, browsers[tg.upload], tg.upload, tg.read, tg.upload.seal(alice, []string{bob}, msg))
			settle(tg.upload)
			tg.upload.portal.h.spool.drop(context.Background(), browsers[tg.upload].token)
		}
	}
	spool := steadySpool(b, hostA.portal.h.opts.Keys.(*pgstore.Store), dbCPU)
	// tail: the time from the read's end until the upload's filing
	// ended, the part of storing the bytes that the recipient did not
	// wait for.
	type figures struct{ wall, cpu, db, tail time.Duration }
	perOp := make([][]figures, rounds)
	for round := range rounds {
		perOp[round] = make([]figures, len(targets))
		for i, tg := range targets {
			b.Run(tg.name, func(b *testing.B) {
				br := browsers[tg.upload]
				if tg.upload != boltEnv {
					spool.vacuum(b) // what autovacuum does meanwhile
					b.ResetTimer()
				}
				var proc, db, tail time.Duration
				for range b.N {
					b.StopTimer()
					s := tg.upload.seal(alice, []string{bob}, msg)
					b.SetBytes(int64(len(s.form.Envelope)))
					db0 := dbCPU()
					proc0 := procCPU()
					b.StartTimer()
					openRead(b, br, tg.upload, tg.read, s)
					b.StopTimer()
					read := time.Now()
					settle(tg.upload)
					tail += time.Since(read)
					proc += procCPU() - proc0
					db += dbCPU() - db0
					tg.upload.portal.h.spool.drop(context.Background(), br.token)
					b.StartTimer()
				}
				b.StopTimer()
				n := time.Duration(b.N)
				f := figures{wall: b.Elapsed() / n, cpu: (proc + db) / n, db: db / n, tail: tail / n}
				b.ReportMetric(ms(f.cpu), "cpu-ms/op")
				b.ReportMetric(ms(f.tail), "tail-ms/op")
				b.ReportMetric(ms(db/n), "db-cpu-ms/op")
				if i > 0 && f.wall > 0 {
					b.ReportMetric(float64(perOp[round][0].wall)/float64(f.wall), "speed-vs-bolt")
				}
				perOp[round][i] = f // the last call is the measured run
				if tg.upload != boltEnv {
					spool.removed += b.N
				}
			})
		}
	}
	// Ratios of bolt's figure to each PostgreSQL target's, per round:
	// wall-clock, processor time with the server's, and without it (what
	// the portal's own machine would spend with the database elsewhere).
	// "with tail" counts the filing's tail as waited for.
	var table strings.Builder
	fmt.Fprintf(&table, "round | bolt ms/op (cpu) | same-host ms/op (cpu, db, tail) | other-host ms/op (cpu, db, tail) | speed-vs-bolt same, other | with tail same, other | by cpu same, other | by cpu without db same, other\n")
	ratios := make([][]float64, 8)
	for i, r := range perOp {
		row := []float64{
			float64(r[0].wall) / float64(r[1].wall), float64(r[0].wall) / float64(r[2].wall),
			float64(r[0].wall) / float64(r[1].wall+r[1].tail), float64(r[0].wall) / float64(r[2].wall+r[2].tail),
			float64(r[0].cpu) / float64(r[1].cpu), float64(r[0].cpu) / float64(r[2].cpu),
			float64(r[0].cpu-r[0].db) / float64(r[1].cpu-r[1].db), float64(r[0].cpu-r[0].db) / float64(r[2].cpu-r[2].db),
		}
		for k, x := range row {
			ratios[k] = append(ratios[k], x)
		}
		fmt.Fprintf(&table, "%d | %.1f (%.1f) | %.1f (%.1f, %.1f, %.1f) | %.1f (%.1f, %.1f, %.1f) | %.2f, %.2f | %.2f, %.2f | %.2f, %.2f | %.2f, %.2f\n", i+1,
			ms(r[0].wall), ms(r[0].cpu), ms(r[1].wall), ms(r[1].cpu), ms(r[1].db), ms(r[1].tail), ms(r[2].wall), ms(r[2].cpu), ms(r[2].db), ms(r[2].tail),
			row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])
	}
	span := func(xs []float64) string {
		return fmt.Sprintf("%.2f [%.2f-%.2f]", medianOf(xs), slices.Min(xs), slices.Max(xs))
	}
	fmt.Fprintf(&table, "medians: speed-vs-bolt same host %s, other host %s; with tail same host %s, other host %s; by cpu same host %s, other host %s; by cpu without db same host %s, other host %s",
		span(ratios[0]), span(ratios[1]), span(ratios[2]), span(ratios[3]), span(ratios[4]), span(ratios[5]), span(ratios[6]), span(ratios[7]))
	b.Log("\n" + table.String())
	b.Logf("spool vacuums (outside the timer): %d, %.2f ms of server processor time per envelope removed; spool_chunks with its index %d MiB after the warm-up, %d MiB at the end",
		spool.runs, ms(spool.cpu)/float64(max(spool.removed, 1)), spool.start>>20, spool.size(b)>>20)
}

// pairedPGCPUsEnv pins BenchmarkOpenRead1MiBPaired's database server.
const pairedPGCPUsEnv = "SECUREMAIL_BENCH_PG_CPUS"

// steadySpoolFree is how many 1 MiB envelopes' space steadySpool frees
// first: more than one run of a target files between two vacuums
// (benchtime 20x: 21).
const steadySpoolFree = 64

// spoolVacuum vacuums the shared spool's tables as autovacuum would, and
// counts what that costs the server.
type spoolVacuum struct {
	store   *pgstore.Store
	dbCPU   func() time.Duration
	runs    int
	cpu     time.Duration // the server's processor time in the vacuums
	removed int           // envelopes filed and removed in the timed part
	start   int64         // spool_chunks' size after the warm-up
}

// steadySpoolLive is how many 1 MiB envelopes steadySpool leaves
// spooled, after the freed ones, as a running server's spool holds the
// envelopes of its last day: without them vacuum would cut the emptied
// table down to nothing, and every envelope would extend it again.
const steadySpoolLive = 16

// steadySpool brings store's spool tables to the state of a server that
// has run a while: steadySpoolFree envelopes filed, then steadySpoolLive
// more, then the first ones swept and vacuumed, so that their space is
// free for new ones.
func steadySpool(b *testing.B, store *pgstore.Store, dbCPU func() time.Duration) *spoolVacuum {
	ctx := context.Background()
	data := make([]byte, 1<<20)
	rand.Read(data)
	now := time.Now()
	token := func(i int) string { return fmt.Sprintf("steady-%d", i) }
	for i := range steadySpoolFree + steadySpoolLive {
		upload, err := store.BeginUpload(ctx, int64(len(data)), 1<<40, now)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := store.CommitUpload(ctx, upload, token(i), int64(len(data)), now, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range steadySpoolFree {
		if err := store.RemoveSpooled(ctx, token(i)); err != nil {
			b.Fatal(err)
		}
	}
	v := &spoolVacuum{store: store, dbCPU: dbCPU}
	v.vacuum(b)
	v.runs, v.cpu = 0, 0 // the first counts the warm-up's removals
	v.start = v.size(b)
	return v
}

func (v *spoolVacuum) vacuum(b *testing.B) {
	db0 := v.dbCPU()
	if _, err := v.store.Pool().Exec(context.Background(), "VACUUM spool_chunks, spool_envelopes, spool_uploads"); err != nil {
		b.Fatal(err)
	}
	v.cpu += v.dbCPU() - db0
	v.runs++
}

// size is spool_chunks' size on disk, with its indexes.
func (v *spoolVacuum) size(b *testing.B) int64 {
	var n int64
	if err := v.store.Pool().QueryRow(context.Background(), "SELECT pg_total_relation_size('spool_chunks')").Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// openReadMessage is plainMessage with 1 MiB of text before its last line.
func openReadMessage() string {
	body := strings.Repeat("The quarterly figures, line after line of them.\n", (1<<20)/49)
	return strings.Replace(plainMessage, "Revenue is up", body+"Revenue is up", 1)
}

// unlimitedUploads lifts the upload limits, which a benchmark's loop
// would reach.
func unlimitedUploads(o *Options) {
	o.Uploads.PerClient = 1000
	o.Limits.UploadsPerClient = Rate{1 << 30, time.Hour}
}

// newOpenReadBoltEnv is the bbolt target of the open+read benchmarks.
func newOpenReadBoltEnv(b *testing.B) *testEnv {
	e := newTestEnv(b, unlimitedUploads)
	if err := os.MkdirAll(filepath.Join(e.dir, "spool"), 0o700); err != nil {
		b.Fatal(err)
	}
	return e
}

// gatedSpool holds every filing's Finish until the test sends its
// outcome on release (nil: store the bytes; an error: fail as a database
// gone away would), or the filing is cancelled.
type gatedSpool struct {
	keystore.SpoolStore
	release chan error
}

func (g *gatedSpool) StartCommit(ctx context.Context, upload int64, token string, size int64, now time.Time) (keystore.SpoolCommit, error) {
	c, err := g.SpoolStore.StartCommit(ctx, upload, token, size, now)
	if err != nil || c.Existed() {
		return c, err
	}
	return &gatedCommit{SpoolCommit: c, release: g.release}, nil
}

type gatedCommit struct {
	keystore.SpoolCommit
	release chan error
}

func (c *gatedCommit) Finish(ctx context.Context, data io.Reader) error {
	select {
	case err := <-c.release:
		if err != nil {
			c.Abort()
			return err
		}
		return c.SpoolCommit.Finish(ctx, data)
	case <-ctx.Done():
		c.Abort()
		return ctx.Err()
	}
}

// newGatedHosts is newPostgresHosts(t, 2) whose filings wait for the
// returned channel.
func newGatedHosts(t *testing.T, opts ...envOption) (a, b *testEnv, release chan error) {
	release = make(chan error)
	gate := func(o *Options) { o.SharedSpool = &gatedSpool{SpoolStore: o.SharedSpool, release: release} }
	hosts, _ := newPostgresHosts(t, 2, append(opts, gate)...)
	return hosts[0], hosts[1], release
}

// spoolCounts reads the shared spool's tables: entries, chunks and
// reservations of uploads.
func spoolCounts(t *testing.T, e *testEnv) (envelopes, chunks, uploads int) {
	t.Helper()
	pool := e.portal.h.opts.Keys.(*pgstore.Store).Pool()
	ctx := context.Background()
	for _, q := range []struct {
		table string
		n     *int
	}{{"spool_envelopes", &envelopes}, {"spool_chunks", &chunks}, {"spool_uploads", &uploads}} {
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+q.table).Scan(q.n); err != nil {
			t.Fatal(err)
		}
	}
	return envelopes, chunks, uploads
}

// spoolBytes counts the bytes of every chunk in e's shared spool.
func spoolBytes(t *testing.T, e *testEnv) int64 {
	t.Helper()
	var n int64
	err := e.portal.h.opts.Keys.(*pgstore.Store).Pool().QueryRow(context.Background(), "SELECT coalesce(sum(length(data)), 0) FROM spool_chunks").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func sharedOf(e *testEnv) *sharedSpool { return e.portal.h.spool.(*sharedSpool) }

// TestSharedSpoolFilingInBackground: host A answers an upload before the
// envelope's bytes are in the store and serves its copy meanwhile; host
// B, asked for the token, waits for A's filing and then serves it.
func TestSharedSpoolFilingInBackground(t *testing.T) {
	t.Parallel()
	a, b, release := newGatedHosts(t)
	s := a.seal(alice, []string{bob}, plainMessage)
	br := a.browser()
	opened := br.open(s)
	if opened.status != http.StatusSeeOther {
		t.Fatalf("open on A: %d\n%s", opened.status, opened.body)
	}
	if page := br.follow(opened); !strings.Contains(page.body, `action="/email"`) {
		t.Fatalf("A does not serve the envelope it is filing:\n%s", page.body)
	}
	if envelopes, _, uploads := spoolCounts(t, a); envelopes != 0 || uploads != 1 {
		t.Fatalf("store before the filing ended: %d envelopes, %d reservations; want none seen and the reservation", envelopes, uploads)
	}
	onB := b.browser()
	got := make(chan response, 1)
	go func() { got <- onB.get(opened.header.Get("Location")) }()
	select {
	case r := <-got:
		t.Fatalf("B answered before A's filing ended: %d", r.status)
	case <-time.After(100 * time.Millisecond): // a hint only; the order is what counts
	}
	release <- nil
	if r := <-got; !strings.Contains(r.body, `action="/email"`) {
		t.Fatalf("B after A's filing ended: %d\n%s", r.status, r.body)
	}
	sharedOf(a).wait()
	if envelopes, chunks, uploads := spoolCounts(t, a); envelopes != 1 || chunks == 0 || uploads != 0 {
		t.Fatalf("store after the filing: %d envelopes, %d chunks, %d reservations", envelopes, chunks, uploads)
	}
	if len(sharedOf(a).filings) != 0 {
		t.Fatal("a filing that ended is still listed")
	}
}

// TestSharedSpoolFilingFails: a filing that fails (the database went
// away half-way) leaves no entry, no reservation and no copy; A served
// the envelope while it lasted, and afterwards every host asks for the
// attachment again, which then works.
func TestSharedSpoolFilingFails(t *testing.T) {
	t.Parallel()
	a, b, release := newGatedHosts(t)
	s := a.seal(alice, []string{bob}, plainMessage)
	br := a.browser()
	opened := br.open(s)
	if page := br.follow(opened); !strings.Contains(page.body, `action="/email"`) {
		t.Fatalf("A while filing:\n%s", page.body)
	}
	release <- errors.New("keystore: spool commit: connection lost")
	sharedOf(a).wait()
	if logs := a.logs.String(); !strings.Contains(logs, "was not stored in the shared spool") ||
		!strings.Contains(logs, "envelope="+keystore.Fingerprint([]byte(br.token))) || !strings.Contains(logs, "connection lost") {
		t.Errorf("the failed filing is not in A's log with its fingerprint and cause:\n%s", logs)
	}
	for _, h := range []*testEnv{a, b} {
		br.e = h
		if r := br.get(opened.header.Get("Location")); r.status != http.StatusNotFound || !strings.Contains(r.body, "Please open your message again") {
			t.Fatalf("after the failed filing, %s: %d\n%s", h.srv.URL, r.status, r.body)
		}
	}
	if envelopes, chunks, uploads := spoolCounts(t, a); envelopes+chunks+uploads != 0 {
		t.Fatalf("a failed filing left %d envelopes, %d chunks, %d reservations", envelopes, chunks, uploads)
	}
	if _, err := os.Stat(spoolPath(a.portal.h.opts.SpoolDir, br.token)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed filing left its copy: %v", err)
	}
	br.e = a
	again := br.open(s)
	release <- nil
	br.e = b
	if page := br.follow(again); !strings.Contains(page.body, `action="/email"`) {
		t.Fatalf("posted again, read on B:\n%s", page.body)
	}
	if strings.Contains(a.logs.String(), br.token) || strings.Contains(a.logs.String(), "Quarterly") {
		t.Error("token or plaintext in the log")
	}
}

// TestSharedSpoolDropWhileFiling: dropping an envelope while its filing
// is in progress cancels the filing (no entry, no reservation, no copy
// left behind); the sweep meanwhile leaves the filing alone.
func TestSharedSpoolDropWhileFiling(t *testing.T) {
	t.Parallel()
	a, b, release := newGatedHosts(t)
	ctx := context.Background()
	s := a.seal(alice, []string{bob}, plainMessage)
	br := a.browser()
	opened := br.open(s)
	if opened.status != http.StatusSeeOther {
		t.Fatalf("open: %d", opened.status)
	}
	a.portal.h.sweep(ctx)
	b.portal.h.sweep(ctx)
	if page := br.follow(opened); !strings.Contains(page.body, `action="/email"`) {
		t.Fatalf("A after a sweep while filing:\n%s", page.body)
	}
	sharedOf(a).drop(ctx, br.token)
	if envelopes, chunks, uploads := spoolCounts(t, a); envelopes+chunks+uploads != 0 {
		t.Fatalf("dropped while filing: %d envelopes, %d chunks, %d reservations left", envelopes, chunks, uploads)
	}
	if r := br.get(opened.header.Get("Location")); r.status != http.StatusNotFound {
		t.Fatalf("dropped while filing, A: %d", r.status)
	}
	if _, err := os.Stat(spoolPath(a.portal.h.opts.SpoolDir, br.token)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dropped while filing: copy left: %v", err)
	}
	select {
	case release <- nil:
		t.Fatal("a filing still waits after the drop")
	default:
	}
}

// TestSharedSpoolFilingHoldsItsReservation: until its filing commits, an
// upload counts against the quota as its reservation (the largest
// envelope), and afterwards as its size.
func TestSharedSpoolFilingHoldsItsReservation(t *testing.T) {
	t.Parallel()
	a, b, release := newGatedHosts(t, func(o *Options) { o.SpoolMax = MinSpoolMax(20<<20) + 1<<20 })
	first := a.seal(alice, []string{bob}, plainMessage)
	second := a.seal(alice, []string{bob}, strings.Replace(plainMessage, "Revenue", "Turnover", 1))
	if r := a.browser().open(first); r.status != http.StatusSeeOther {
		t.Fatalf("first upload: %d", r.status)
	}
	if r := b.browser().open(second); r.status != http.StatusServiceUnavailable {
		t.Fatalf("second upload while the first is filing: %d, want 503 (spool full)", r.status)
	}
	release <- nil
	sharedOf(a).wait()
	done := make(chan response, 1)
	go func() { done <- b.browser().open(second) }()
	release <- nil
	if r := <-done; r.status != http.StatusSeeOther {
		t.Fatalf("second upload after the first was filed: %d", r.status)
	}
	sharedOf(b).wait()
	if envelopes, _, uploads := spoolCounts(t, a); envelopes != 2 || uploads != 0 {
		t.Fatalf("%d envelopes, %d reservations; want 2 and none", envelopes, uploads)
	}
}

// TestSharedSpoolSameEnvelopeTwiceAtOnce: the same envelope posted on
// both hosts at the same moment gets one token, one entry and its
// chunks once, and reads on both hosts.
func TestSharedSpoolSameEnvelopeTwiceAtOnce(t *testing.T) {
	t.Parallel()
	hosts, _ := newPostgresHosts(t, 2)
	a, b := hosts[0], hosts[1]
	msg := openReadMessage()
	for round := range 3 {
		s := a.seal(alice, []string{bob}, msg)
		browsers := []*browser{a.browser(), b.browser()}
		start := make(chan struct{})
		got := make(chan response, 2)
		for _, br := range browsers {
			go func() {
				<-start
				got <- br.open(s)
			}()
		}
		close(start)
		r1, r2 := <-got, <-got
		if r1.status != http.StatusSeeOther || r1.header.Get("Location") != r2.header.Get("Location") {
			t.Fatalf("round %d: %d %q and %d %q, want one token", round, r1.status, r1.header.Get("Location"), r2.status, r2.header.Get("Location"))
		}
		for _, br := range browsers {
			if page := br.follow(r1); !strings.Contains(page.body, `action="/email"`) {
				t.Fatalf("round %d: read on %s:\n%.300s", round, br.e.srv.URL, page.body)
			}
		}
		sharedOf(a).wait()
		sharedOf(b).wait()
		envelopes, _, uploads := spoolCounts(t, a)
		// Its bytes once, whatever the store's row size.
		if stored := spoolBytes(t, a); envelopes != 1 || stored != int64(len(s.form.Envelope)) || uploads != 0 {
			t.Fatalf("round %d: %d envelopes, %d bytes in chunks (want %d), %d reservations", round, envelopes, stored, len(s.form.Envelope), uploads)
		}
		a.portal.h.spool.drop(context.Background(), strings.TrimPrefix(r1.header.Get("Location"), "/m/"))
	}
}

// TestSharedSpoolStoreCloseFinishesFilings: at shutdown, a filing still
// in progress holds its connection, so closing the store waits for it to
// commit (cmd closes the store after the portal); its goroutine then
// ends, and the other host serves the envelope.
func TestSharedSpoolStoreCloseFinishesFilings(t *testing.T) {
	t.Parallel()
	a, b, release := newGatedHosts(t)
	br := a.browser()
	opened := br.open(a.seal(alice, []string{bob}, plainMessage))
	if opened.status != http.StatusSeeOther {
		t.Fatalf("open: %d", opened.status)
	}
	closed := make(chan struct{})
	go func() {
		a.portal.h.opts.Keys.(*pgstore.Store).Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("the store closed under a filing in progress")
	case <-time.After(100 * time.Millisecond): // a hint only
	}
	release <- nil
	<-closed
	sharedOf(a).wait()
	br.e = b
	if page := br.follow(opened); !strings.Contains(page.body, `action="/email"`) {
		t.Fatalf("B after A shut down:\n%.300s", page.body)
	}
}

// TestSharedSpoolHandlerCloseWaitsForFilings: closing the portal waits
// for the filings it started, so an envelope this host answered for is in
// the store (for the other hosts) before serve closes the store.
func TestSharedSpoolHandlerCloseWaitsForFilings(t *testing.T) {
	t.Parallel()
	a, _, release := newGatedHosts(t)
	s := a.seal(alice, []string{bob}, plainMessage)
	if opened := a.browser().open(s); opened.status != http.StatusSeeOther {
		t.Fatalf("open on A: %d\n%s", opened.status, opened.body)
	}
	closed := make(chan struct{})
	go func() {
		a.portal.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a filing was held")
	case <-time.After(100 * time.Millisecond): // a hint only; what counts is the store below
	}
	release <- nil
	<-closed
	if envelopes, chunks, uploads := spoolCounts(t, a); envelopes != 1 || chunks == 0 || uploads != 0 {
		t.Fatalf("after Close: %d envelopes, %d chunks, %d reservations; want the envelope stored", envelopes, chunks, uploads)
	}
}
