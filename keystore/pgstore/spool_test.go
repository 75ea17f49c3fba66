package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/pgstore"
)

// TestSpool covers the shared upload spool: the quota holds for
// reservations made together from two hosts, one envelope uploaded at
// once from several uploads keeps one copy, chunks stream back in order,
// and the sweep removes what is old and what was abandoned.
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
		chunks := [][]byte{bytes.Repeat([]byte("a"), 1000), bytes.Repeat([]byte("b"), 1000), []byte("end")}
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
				id, err := host.BeginUpload(ctx, 1<<20, 1<<30, now)
				if err == nil {
					for seq, c := range chunks {
						if err = host.WriteChunk(ctx, id, seq, c); err != nil {
							break
						}
					}
				}
				start.Wait()
				if err == nil {
					existed[i], err = host.CommitUpload(ctx, id, "tokenAAAAAAAAAAAAAAAAA", 2003, now)
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
		if rows != len(chunks) || uploads != 0 {
			t.Fatalf("%d chunk rows and %d reservations left, want %d and 0", rows, uploads, len(chunks))
		}
		rc, err := hostB.OpenSpooled(ctx, "tokenAAAAAAAAAAAAAAAAA", now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, bytes.Join(chunks, nil)) {
			t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, 2003)
		}
		_, err = hostB.OpenSpooled(ctx, "tokenAAAAAAAAAAAAAAAAA", now.Add(time.Second))
		if !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("an envelope older than the TTL opens: %v", err)
		}
		// The token opens the envelope: the miss names its fingerprint.
		if msg := err.Error(); strings.Contains(msg, "tokenAAAA") ||
			!strings.Contains(msg, "spooled envelope "+keystore.Fingerprint([]byte("tokenAAAAAAAAAAAAAAAAA"))) {
			t.Fatalf("not-found message %q: want the token's fingerprint, not the token", msg)
		}
	})

	t.Run("sweep", func(t *testing.T) {
		abandoned, err := hostA.BeginUpload(ctx, 10, 1<<30, now.Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := hostA.WriteChunk(ctx, abandoned, 0, []byte("half")); err != nil {
			t.Fatal(err)
		}
		n, err := hostB.SweepSpool(ctx, now.Add(time.Second), now.Add(-time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("sweep removed %d (%v), want the old envelope and the abandoned upload", n, err)
		}
		var rows int
		hostA.Pool().QueryRow(ctx, "SELECT count(*) FROM spool_chunks").Scan(&rows)
		if rows != 0 {
			t.Fatalf("%d chunk rows left after the sweep", rows)
		}
		if err := hostA.RemoveSpooled(ctx, "tokenAAAAAAAAAAAAAAAAA"); err != nil {
			t.Fatalf("removing what is gone: %v", err)
		}
	})
}
