package pgstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/pgstore"
)

// TestSpool covers the shared upload spool: the quota holds for
// reservations made together from two hosts, one envelope uploaded at
// once from several uploads keeps one copy, chunks stream back in order
// at every chunk edge, a commit is all or nothing, a read never takes a
// removed envelope for a whole one, the sweep removes what is old and
// what was abandoned, and no spool write waits for durability.
func TestSpool(t *testing.T) {
	srv := pgtest.Start(t, fastServer)
	db := srv.NewDatabase(t)
	hostA := openEmptied(t, srv, db)
	hostB, err := pgstore.Open(context.Background(), pgstore.Options{DSN: srv.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostB.Close() })
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)

	t.Run("token key shared", func(t *testing.T) {
		a, err := hostA.SpoolTokenKey(ctx, bytes.Repeat([]byte{1}, 32))
		if err != nil {
			t.Fatal(err)
		}
		b, err := hostB.SpoolTokenKey(ctx, bytes.Repeat([]byte{2}, 32))
		if err != nil || !bytes.Equal(a, b) || a[0] != 1 {
			t.Fatalf("token keys %x / %x (%v): want the first one stored on both hosts", a[:1], b[:1], err)
		}
	})

	t.Run("quota across hosts", func(t *testing.T) {
		const n, reserve, quota = 16, 10, 50
		var start sync.WaitGroup
		start.Add(1)
		var done sync.WaitGroup
		ids := make([]int64, n)
		errs := make([]error, n)
		for i := range n {
			done.Add(1)
			go func() {
				defer done.Done()
				host := hostA
				if i%2 == 1 {
					host = hostB
				}
				start.Wait()
				ids[i], errs[i] = host.BeginUpload(ctx, reserve, quota, now)
			}()
		}
		start.Done()
		done.Wait()
		ok, full := 0, 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, keystore.ErrSpoolFull):
				full++
			default:
				t.Fatalf("upload %d: %v", i, err)
			}
		}
		if ok != quota/reserve || full != n-ok {
			t.Fatalf("%d reservations granted, %d refused; want %d and %d", ok, full, quota/reserve, n-quota/reserve)
		}
		for i, err := range errs {
			if err == nil {
				if err := hostA.AbortUpload(ctx, ids[i]); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := hostB.BeginUpload(ctx, quota, quota, now); err != nil {
			t.Fatalf("after every abort the whole quota is free: %v", err)
		}
		hostA.Pool().Exec(ctx, "DELETE FROM spool_uploads")
	})

	t.Run("one copy of one envelope uploaded at once", func(t *testing.T) {
		const n = 8
		envelope := append(bytes.Repeat([]byte("ab"), pgstore.SpoolChunk/2+1), "end"...) // two chunks
		var start sync.WaitGroup
		start.Add(1)
		var done sync.WaitGroup
		existed := make([]bool, n)
		errs := make([]error, n)
		for i := range n {
			done.Add(1)
			go func() {
				defer done.Done()
				host := hostA
				if i%2 == 1 {
					host = hostB
				}
				id, err := host.BeginUpload(ctx, 2<<20, 1<<30, now)
				start.Wait()
				if err == nil {
					existed[i], err = host.CommitUpload(ctx, id, "tokenAAAAAAAAAAAAAAAAA", int64(len(envelope)), now, bytes.NewReader(envelope))
				}
				errs[i] = err
			}()
		}
		start.Done()
		done.Wait()
		fresh := 0
		for i, err := range errs {
			if err != nil {
				t.Fatalf("upload %d: %v", i, err)
			}
			if !existed[i] {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("%d uploads stored the envelope, want 1", fresh)
		}
		var rows, uploads int
		hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_chunks").Scan(&rows)
		hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_uploads").Scan(&uploads)
		if rows != 2 || uploads != 0 {
			t.Fatalf("%d chunk rows and %d reservations left, want 2 and 0", rows, uploads)
		}
		rc, ent, err := hostB.OpenSpooled(ctx, "tokenAAAAAAAAAAAAAAAAA", now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, envelope) {
			t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(envelope))
		}
		if ent.Size != int64(len(envelope)) || !ent.Touched.Equal(now) {
			t.Fatalf("entry %+v, want size %d filed at %v", ent, len(envelope), now)
		}
		_, _, err = hostB.OpenSpooled(ctx, "tokenAAAAAAAAAAAAAAAAA", now.Add(time.Second))
		if !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("an envelope older than the TTL opens: %v", err)
		}
		// The token opens the envelope: the miss names its fingerprint.
		if msg := err.Error(); strings.Contains(msg, "tokenAAAA") ||
			!strings.Contains(msg, "spooled envelope "+keystore.Fingerprint([]byte("tokenAAAAAAAAAAAAAAAAA"))) {
			t.Fatalf("not-found message %q: want the token's fingerprint, not the token", msg)
		}
		// Posted again later: its age starts again, its bytes are not read.
		id, err := hostA.BeginUpload(ctx, 2<<20, 1<<30, now)
		if err != nil {
			t.Fatal(err)
		}
		later := now.Add(time.Minute)
		if existed, err := hostA.CommitUpload(ctx, id, "tokenAAAAAAAAAAAAAAAAA", int64(len(envelope)), later, failingReader{}); err != nil || !existed {
			t.Fatalf("the same envelope again: existed %v, %v", existed, err)
		}
		if _, ent, err := hostB.OpenSpooled(ctx, "tokenAAAAAAAAAAAAAAAAA", later); err != nil || !ent.Touched.Equal(later) {
			t.Fatalf("after posting again: %+v, %v; want filed at %v", ent, err, later)
		}
	})

	t.Run("chunk edges", func(t *testing.T) {
		const chunk = pgstore.SpoolChunk
		for i, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 3*chunk + 5, 20<<20 + 7} {
			token := fmt.Sprintf("edge%018d", i)
			data := make([]byte, size)
			rand.Read(data)
			id, err := hostA.BeginUpload(ctx, int64(size), 1<<30, now)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := hostA.CommitUpload(ctx, id, token, int64(size), now, bytes.NewReader(data)); err != nil {
				t.Fatalf("%d bytes: %v", size, err)
			}
			var rows int
			hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_chunks WHERE upload_id = $1", id).Scan(&rows)
			if want := (size + chunk - 1) / chunk; rows != want {
				t.Errorf("%d bytes in %d rows, want %d", size, rows, want)
			}
			rc, _, err := hostB.OpenSpooled(ctx, token, now)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(rc, 1<<10)))
			if err == nil {
				var rest []byte
				rest, err = io.ReadAll(rc)
				got = append(got, rest...)
			}
			rc.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%d bytes: read back %d (%v)", size, len(got), err)
			}
			if err := hostA.RemoveSpooled(ctx, token); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("all or nothing", func(t *testing.T) {
		const chunk = pgstore.SpoolChunk
		data := bytes.Repeat([]byte("x"), 3*chunk)
		short, err := hostA.BeginUpload(ctx, 4<<20, 1<<30, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hostA.CommitUpload(ctx, short, "shortAAAAAAAAAAAAAAAAA", int64(len(data)), now, bytes.NewReader(data[:2*chunk+7])); err == nil {
			t.Fatal("an upload with fewer bytes than its size was filed")
		}
		failed, err := hostA.BeginUpload(ctx, 4<<20, 1<<30, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hostA.CommitUpload(ctx, failed, "failsAAAAAAAAAAAAAAAAA", int64(len(data)), now,
			io.MultiReader(bytes.NewReader(data[:chunk+3]), failingReader{})); err == nil {
			t.Fatal("an upload whose source failed was filed")
		}
		var envelopes, chunks, uploads int
		hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_envelopes").Scan(&envelopes)
		hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_chunks").Scan(&chunks)
		hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_uploads").Scan(&uploads)
		if envelopes != 1 || chunks != 2 || uploads != 2 {
			t.Fatalf("after two failed commits: %d envelopes, %d chunks, %d reservations; want only the earlier envelope and both reservations",
				envelopes, chunks, uploads)
		}
		for _, id := range []int64{short, failed} {
			if err := hostB.AbortUpload(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := hostA.CommitUpload(ctx, short, "shortAAAAAAAAAAAAAAAAA", 3, now, bytes.NewReader(data[:3])); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("commit after the reservation was dropped: %v, want ErrNotFound", err)
		}
		hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_envelopes").Scan(&envelopes)
		if envelopes != 1 {
			t.Fatalf("%d envelopes, want 1", envelopes)
		}
	})

	t.Run("removed while read", func(t *testing.T) {
		data := bytes.Repeat([]byte("y"), 2*pgstore.SpoolChunk+1)
		id, err := hostA.BeginUpload(ctx, int64(len(data)), 1<<30, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hostA.CommitUpload(ctx, id, "goneAAAAAAAAAAAAAAAAAA", int64(len(data)), now, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		rc, _, err := hostB.OpenSpooled(ctx, "goneAAAAAAAAAAAAAAAAAA", now)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if err := hostA.RemoveSpooled(ctx, "goneAAAAAAAAAAAAAAAAAA"); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("reading an envelope removed after it was looked up: %d bytes, %v; want ErrNotFound, not an EOF", len(got), err)
		}
	})

	t.Run("sweep", func(t *testing.T) {
		if _, err := hostA.BeginUpload(ctx, 10, 1<<30, now.Add(-2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		id, err := hostA.BeginUpload(ctx, 10, 1<<30, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hostA.CommitUpload(ctx, id, "freshAAAAAAAAAAAAAAAAA", 5, now.Add(2*time.Hour), bytes.NewReader([]byte("fresh"))); err != nil {
			t.Fatal(err)
		}
		n, err := hostB.SweepSpool(ctx, now.Add(time.Hour), now.Add(-time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("sweep removed %d (%v), want the old envelope and the abandoned upload", n, err)
		}
		var rows int
		hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_chunks").Scan(&rows)
		if rows != 1 {
			t.Fatalf("%d chunk rows left after the sweep, want the fresh envelope's", rows)
		}
		if _, _, err := hostA.OpenSpooled(ctx, "freshAAAAAAAAAAAAAAAAA", now.Add(time.Hour)); err != nil {
			t.Fatalf("the fresh envelope after the sweep: %v", err)
		}
		if err := hostA.RemoveSpooled(ctx, "tokenAAAAAAAAAAAAAAAAA"); err != nil {
			t.Fatalf("removing what is gone: %v", err)
		}
	})

	// StartCommit leaves the filing's transaction open until Finish:
	// another host's lookup or removal of the token waits for it, then
	// finds what it committed, or nothing when it was given up.
	t.Run("a filing in progress is waited for", func(t *testing.T) {
		data := bytes.Repeat([]byte("w"), pgstore.SpoolChunk+1)
		file := func(token string) (int64, keystore.SpoolCommit) {
			t.Helper()
			id, err := hostA.BeginUpload(ctx, int64(len(data)), 1<<30, now)
			if err != nil {
				t.Fatal(err)
			}
			c, err := hostA.StartCommit(ctx, id, token, int64(len(data)), now)
			if err != nil || c.Existed() {
				t.Fatalf("start %s: %v, %v", token, c, err)
			}
			return id, c
		}
		// waiting returns once a session waits for a filing's lock.
		waiting := func() {
			t.Helper()
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				var n int
				if err := hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("nobody waits for the filing after 30 s")
				}
			}
		}
		type read struct {
			data []byte
			err  error
		}
		lookup := func(token string) chan read {
			got := make(chan read, 1)
			go func() {
				rc, _, err := hostB.OpenSpooled(ctx, token, now)
				if err != nil {
					got <- read{err: err}
					return
				}
				defer rc.Close()
				b, err := io.ReadAll(rc)
				got <- read{b, err}
			}()
			return got
		}

		_, c := file("waitAAAAAAAAAAAAAAAAAA")
		got := lookup("waitAAAAAAAAAAAAAAAAAA")
		waiting()
		if err := c.Finish(ctx, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if r := <-got; r.err != nil || !bytes.Equal(r.data, data) {
			t.Fatalf("lookup waiting for the filing: %d bytes, %v; want the %d filed", len(r.data), r.err, len(data))
		}

		id, c := file("abortAAAAAAAAAAAAAAAAA")
		got = lookup("abortAAAAAAAAAAAAAAAAA")
		waiting()
		c.Abort()
		if r := <-got; !errors.Is(r.err, keystore.ErrNotFound) {
			t.Fatalf("lookup waiting for a filing given up: %v, want ErrNotFound", r.err)
		}
		// The reservation is back, for AbortUpload.
		if err := hostA.AbortUpload(ctx, id); err != nil {
			t.Fatal(err)
		}
		var uploads int
		hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_uploads").Scan(&uploads)
		if uploads != 0 {
			t.Fatalf("%d reservations left", uploads)
		}

		_, c = file("removeAAAAAAAAAAAAAAAA")
		removed := make(chan error, 1)
		go func() { removed <- hostB.RemoveSpooled(ctx, "removeAAAAAAAAAAAAAAAA") }()
		waiting()
		if err := c.Finish(ctx, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := <-removed; err != nil {
			t.Fatal(err)
		}
		if _, _, err := hostA.OpenSpooled(ctx, "removeAAAAAAAAAAAAAAAA", now); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("removed while being filed: %v, want ErrNotFound (the removal waits for the filing)", err)
		}
		if err := hostA.RemoveSpooled(ctx, "waitAAAAAAAAAAAAAAAAAA"); err != nil {
			t.Fatal(err)
		}
	})

	// Last, since it changes the server: with a synchronous standby that
	// never answers, a durable commit waits for ever, and no spool write
	// waits at all (they commit without waiting for the WAL flush).
	t.Run("spool writes do not wait for durability", func(t *testing.T) {
		srv.Exec(t, "postgres", "ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
		srv.Exec(t, "postgres", "SELECT pg_reload_conf()")
		// The server takes the setting in a moment (its checkpointer
		// reloads it): wait until a durable commit waits.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			wait, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			_, err := hostA.Pool().Exec(wait, "INSERT INTO spool_uploads (reserved, began_ns) VALUES (0, 0)")
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a durable commit does not wait for the missing standby after 30 s (%v): the test would prove nothing", err)
			}
		}
		quick, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		id, err := hostB.BeginUpload(quick, 10, 1<<30, now)
		if err != nil {
			t.Fatalf("reserve: %v", err)
		}
		if _, err := hostB.CommitUpload(quick, id, "asyncAAAAAAAAAAAAAAAAA", 3, now, bytes.NewReader([]byte("abc"))); err != nil {
			t.Fatalf("commit: %v", err)
		}
		if err := hostB.RemoveSpooled(quick, "asyncAAAAAAAAAAAAAAAAA"); err != nil {
			t.Fatalf("remove: %v", err)
		}
		if id, err = hostB.BeginUpload(quick, 10, 1<<30, now); err != nil {
			t.Fatalf("reserve: %v", err)
		}
		if err := hostB.AbortUpload(quick, id); err != nil {
			t.Fatalf("abort: %v", err)
		}
		if _, err := hostB.SweepSpool(quick, now.Add(3*time.Hour), now); err != nil {
			t.Fatalf("sweep: %v", err)
		}
	})
}

// failingReader fails every read: a source that must not be read, or an
// upload whose local copy cannot be read.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("read failed") }

// TestSpoolVacuumedAsQueue: migration 0005 gives the spool's tables and
// the server copies' chunks queue-table autovacuum settings, and with
// them autovacuum vacuums spool_chunks once about 8 MB of envelopes were
// removed from a spool holding many more, which the default (a fifth of
// the table's rows) would not yet do, so their space is reused instead of
// the table growing.
func TestSpoolVacuumedAsQueue(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{
		"fsync": "off", "full_page_writes": "off", "autovacuum_naptime": "1s",
	}})
	db := srv.NewDatabase(t)
	// One connection, whose statistics the test flushes when it needs
	// them counted: PostgreSQL counts a backend's inserts and deletes
	// only when it sends them, which may be seconds later.
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: srv.DSN(db), MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	flush := func() {
		t.Helper()
		if _, err := s.Pool().Exec(ctx, "SELECT pg_stat_force_next_flush()"); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.DatabaseSchemaVersion(ctx); err != nil || v != pgstore.SchemaVersion() || v < 5 {
		t.Fatalf("schema version %d (%v), want %d, at least 5", v, err, pgstore.SchemaVersion())
	}
	reloptions := func(rel string) string {
		t.Helper()
		var opts []string
		if err := s.Pool().QueryRow(ctx, "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = $1::regclass", rel).Scan(&opts); err != nil {
			t.Fatal(err)
		}
		return strings.Join(opts, ",")
	}
	toastOf := func(table string) string {
		t.Helper()
		var toast string
		if err := s.Pool().QueryRow(ctx, "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = $1::regclass", table).Scan(&toast); err != nil {
			t.Fatal(err)
		}
		return toast
	}
	queue := "autovacuum_vacuum_scale_factor=0,autovacuum_vacuum_threshold=%d,autovacuum_vacuum_cost_delay=0"
	for rel, want := range map[string]string{
		"spool_chunks":          fmt.Sprintf(queue, 1000),
		toastOf("spool_chunks"): fmt.Sprintf(queue, 4000),
		"spool_envelopes":       fmt.Sprintf(queue, 200),
		"spool_uploads":         fmt.Sprintf(queue, 200),
		"copy_chunks":           fmt.Sprintf(queue, 200),
		toastOf("copy_chunks"):  fmt.Sprintf(queue, 4000),
	} {
		if got := reloptions(rel); got != want {
			t.Errorf("%s: reloptions %q, want %q", rel, got, want)
		}
	}

	// 60 envelopes of 1 MiB kept (7920 rows: the default would wait for
	// 50 + 20% = 1634 dead ones), 9 removed (1188 dead rows).
	data := make([]byte, 1<<20)
	rand.Read(data)
	now := time.Unix(1_800_000_000, 0)
	for i := range 69 {
		upload, err := s.BeginUpload(ctx, int64(len(data)), 1<<40, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CommitUpload(ctx, upload, fmt.Sprintf("env-%d", i), int64(len(data)), now, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	// Statistics as a running server has them (the table's row count),
	// and the rows inserted counted as vacuumed, so that what follows is
	// the removals' doing.
	flush()
	if _, err := s.Pool().Exec(ctx, "VACUUM ANALYZE spool_chunks"); err != nil {
		t.Fatal(err)
	}
	vacuums := func() (n int64, dead int64) {
		t.Helper()
		if err := s.Pool().QueryRow(ctx, "SELECT autovacuum_count, n_dead_tup FROM pg_stat_user_tables WHERE relid = 'spool_chunks'::regclass").Scan(&n, &dead); err != nil {
			t.Fatal(err)
		}
		return n, dead
	}
	before, _ := vacuums()
	for i := range 9 {
		if err := s.RemoveSpooled(ctx, fmt.Sprintf("env-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	flush()
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, dead := vacuums()
		if n > before && dead == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool_chunks not vacuumed by autovacuum a minute after 1188 rows were removed: %d vacuums (%d before), %d dead rows", n, before, dead)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
