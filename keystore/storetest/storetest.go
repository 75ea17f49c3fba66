// Package storetest is the conformance suite every keystore backend must
// pass. A backend's test calls Run with a function that opens a fresh,
// empty store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
)

// Opener returns a fresh, empty store; the suite closes it.
type Opener func(t *testing.T) keystore.KeyStore

var base = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// Record returns a valid key record whose id is derived from n.
func Record(n int) keystore.KeyRecord {
	var id keystore.KeyID
	copy(id[:], fmt.Sprintf("id-%013d", n))
	return keystore.KeyRecord{
		ID:          id,
		WrappedDEK:  []byte(fmt.Sprintf("wrapped-%d-0123456789abcdef0123456789abcdef", n)),
		MasterKeyID: "0011223344556677",
		Sender:      "sender@example.test",
		Recipients:  []string{"Alice@External.test", "bob@other.test"},
		Created:     base,
		Expires:     base.Add(90 * 24 * time.Hour),
		MessageID:   fmt.Sprintf("<%d@example.test>", n),
		Size:        int64(1000 + n),
	}
}

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("CreateThenRead", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		rec := Record(1)
		if err := s.CreateKey(ctx, rec); err != nil {
			t.Fatal(err)
		}
		got, err := s.Key(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.WrappedDEK) != string(rec.WrappedDEK) || got.MasterKeyID != rec.MasterKeyID ||
			got.Sender != rec.Sender || got.MessageID != rec.MessageID || got.Size != rec.Size ||
			!got.Created.Equal(rec.Created) || !got.Expires.Equal(rec.Expires) || !got.Revoked.IsZero() {
			t.Fatalf("read back %+v, stored %+v", got, rec)
		}
		want := []string{"alice@external.test", "bob@other.test"}
		if fmt.Sprint(got.Recipients) != fmt.Sprint(want) {
			t.Fatalf("recipients %v, want lowercased %v", got.Recipients, want)
		}
		if !got.IsRecipient("ALICE@external.TEST") || got.IsRecipient("carol@external.test") {
			t.Fatal("IsRecipient wrong")
		}
		if err := got.Usable(base.Add(time.Hour)); err != nil {
			t.Fatalf("fresh key not usable: %v", err)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		if _, err := s.Key(ctx, Record(2).ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		if err := s.RevokeKey(ctx, Record(2).ID, base); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("revoke missing: got %v, want ErrNotFound", err)
		}
	})
	t.Run("NotFoundNamesTheKey", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		id := Record(2).ID
		_, err := s.Key(ctx, id)
		checkNotFound(t, "Key", err, []string{"key record " + id.String()}, nil)
		err = s.RevokeKey(ctx, id, base)
		checkNotFound(t, "RevokeKey", err, []string{"key record " + id.String()}, nil)
	})
	t.Run("CreateIsIdempotent", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		rec := Record(3)
		for i := 0; i < 2; i++ {
			if err := s.CreateKey(ctx, rec); err != nil {
				t.Fatalf("create #%d: %v", i+1, err)
			}
		}
		other := rec
		other.WrappedDEK = []byte("a different wrapped key, same id.....")
		if err := s.CreateKey(ctx, other); !errors.Is(err, keystore.ErrKeyExists) {
			t.Fatalf("conflicting create: got %v, want ErrKeyExists", err)
		}
		got, err := s.Key(ctx, rec.ID)
		if err != nil || string(got.WrappedDEK) != string(rec.WrappedDEK) {
			t.Fatalf("conflicting create changed the record: %v %q", err, got.WrappedDEK)
		}
	})
	t.Run("InvalidRecordRefused", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		for name, mutate := range map[string]func(*keystore.KeyRecord){
			"no id":         func(r *keystore.KeyRecord) { r.ID = keystore.KeyID{} },
			"no key":        func(r *keystore.KeyRecord) { r.WrappedDEK = nil },
			"no recipients": func(r *keystore.KeyRecord) { r.Recipients = nil },
			"no created":    func(r *keystore.KeyRecord) { r.Created = time.Time{} },
		} {
			rec := Record(4)
			mutate(&rec)
			if err := s.CreateKey(ctx, rec); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
	t.Run("Revoke", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		rec := Record(5)
		if err := s.CreateKey(ctx, rec); err != nil {
			t.Fatal(err)
		}
		first := base.Add(time.Hour)
		if err := s.RevokeKey(ctx, rec.ID, first); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeKey(ctx, rec.ID, first.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Key(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Revoked.Equal(first) {
			t.Fatalf("revoked at %v, want the first revocation %v", got.Revoked, first)
		}
		if err := got.Usable(base); !errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("Usable: %v, want ErrRevoked", err)
		}
	})
	t.Run("ExpiryAndSweep", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		for i := 10; i < 16; i++ {
			rec := Record(i)
			rec.Expires = base.Add(time.Duration(i-10) * time.Hour) // 10 expires at base
			if err := s.CreateKey(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Key(ctx, Record(12).ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := got.Usable(base.Add(2 * time.Hour)); !errors.Is(err, keystore.ErrExpired) {
			t.Fatalf("Usable at expiry: %v, want ErrExpired", err)
		}
		if err := got.Usable(base.Add(2*time.Hour - time.Second)); err != nil {
			t.Fatalf("Usable before expiry: %v", err)
		}
		n, err := s.SweepKeys(ctx, base.Add(3*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Fatalf("swept %d, want 3 (expired at +0h, +1h, +2h)", n)
		}
		for i := 10; i < 16; i++ {
			_, err := s.Key(ctx, Record(i).ID)
			if gone := errors.Is(err, keystore.ErrNotFound); gone != (i < 13) {
				t.Errorf("record %d: err %v after sweep", i, err)
			}
		}
	})
	t.Run("ConcurrentWriters", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		const writers = 32
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for i := 0; i < writers; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs <- s.CreateKey(ctx, Record(100+i))
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < writers; i++ {
			if _, err := s.Key(ctx, Record(100+i).ID); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.CreateKey(cctx, Record(200)); err == nil {
			t.Fatal("CreateKey with a canceled context succeeded")
		}
	})
}
