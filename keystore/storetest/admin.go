package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
)

// StoreOpener returns a fresh, empty store holding every part of the
// contract and arranges for it to be closed when the test ends.
type StoreOpener func(t *testing.T) keystore.Store

// RunAdmin runs the suite of the admin operations (keystore.AdminStore)
// and of what crosses the parts of a store: SweepKeys deleting the read
// trail. Backup is backend-specific (a bbolt file, a dump) and tested by
// each backend.
func RunAdmin(t *testing.T, open StoreOpener) {
	ctx := context.Background()
	t.Run("EachKeyFilters", func(t *testing.T) {
		s := open(t)
		const n = 2600 // more than two of bbolt's listing chunks
		mustNoErrors(t, race(n, func(i int) error {
			rec := Record(i)
			rec.Sender = fmt.Sprintf("sender%d@example.test", i%3)
			rec.Created = base.Add(time.Duration(i) * time.Minute)
			rec.Expires = rec.Created.Add(24 * time.Hour)
			if i%10 == 0 {
				rec.Recipients = []string{"Only@Ten.test"}
			}
			return s.CreateKey(ctx, rec)
		}))
		count := func(f keystore.KeyFilter) int {
			t.Helper()
			got := 0
			var last []byte
			err := s.EachKey(ctx, f, func(r keystore.KeyRecord) error {
				if last != nil && bytes.Compare(last, r.ID[:]) >= 0 {
					t.Fatalf("record %s listed out of id order", r.ID)
				}
				last = bytes.Clone(r.ID[:])
				got++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		for _, c := range []struct {
			name string
			f    keystore.KeyFilter
			want int
		}{
			{"all", keystore.KeyFilter{}, n},
			{"sender", keystore.KeyFilter{Sender: "SENDER1@example.test"}, (n + 1) / 3},
			{"recipient", keystore.KeyFilter{Recipient: "only@ten.test"}, n / 10},
			{"message-id", keystore.KeyFilter{MessageID: "<42@example.test>"}, 1},
			{"since", keystore.KeyFilter{Since: base.Add(2000 * time.Minute)}, n - 2000},
			{"before", keystore.KeyFilter{Before: base.Add(100 * time.Minute)}, 100},
			{"expired", keystore.KeyFilter{ExpiredAt: base.Add(24*time.Hour + 500*time.Minute)}, 501},
		} {
			if got := count(c.f); got != c.want {
				t.Errorf("%s: listed %d, want %d", c.name, got, c.want)
			}
		}
		stop := errors.New("stop")
		calls := 0
		if err := s.EachKey(ctx, keystore.KeyFilter{}, func(keystore.KeyRecord) error { calls++; return stop }); err != stop || calls != 1 {
			t.Fatalf("EachKey did not stop at the first error: %v after %d calls", err, calls)
		}
	})
	t.Run("ShredKeyConcurrent", func(t *testing.T) {
		s := open(t)
		mk := masterKey(t, "master.key")
		rec, _ := SealedRecord(t, mk, 1)
		other, otherDEK := SealedRecord(t, mk, 2)
		for _, r := range []keystore.KeyRecord{rec, other} {
			if err := s.CreateKey(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		first := base.Add(time.Hour)
		mustNoErrors(t, race(16, func(i int) error {
			return s.ShredKey(ctx, rec.ID, first.Add(time.Duration(i)*time.Second))
		}))
		got, err := s.Key(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.WrappedDEK) != 0 {
			t.Fatal("the wrapped key survived the shred")
		}
		if got.Revoked.Before(first) || got.Revoked.After(first.Add(15*time.Second)) {
			t.Fatalf("revoked at %v", got.Revoked)
		}
		if _, _, err := mk.DataKey(ctx, s, rec.ID, first); !errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("DataKey of a shredded key: %v, want ErrRevoked", err)
		}
		if dek, _, err := mk.DataKey(ctx, s, other.ID, first); err != nil || !bytes.Equal(dek, otherDEK) {
			t.Fatalf("the other key no longer opens: %v", err)
		}
		if err := s.ShredKey(ctx, Record(99).ID, first); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("shredding a missing key: %v", err)
		}
		if use, err := s.MasterKeyUse(ctx); err != nil || use[mk.ID()] != 1 || len(use) != 1 {
			t.Fatalf("master key use after shred: %v %v", use, err)
		}
	})
	t.Run("NotFoundNamesWhat", func(t *testing.T) {
		s := open(t)
		id := Record(7).ID
		err := s.ShredKey(ctx, id, base)
		checkNotFound(t, "ShredKey", err, []string{"key record " + id.String()}, nil)
		_, err = s.ExpireKey(ctx, id, base)
		checkNotFound(t, "ExpireKey", err, []string{"key record " + id.String()}, nil)
		_, err = s.DeleteAccount(ctx, "Gone@Ext.test")
		checkNotFound(t, "DeleteAccount", err, []string{"account gone@ext.test"}, nil)
		_, err = s.RequirePasswordReset(ctx, "gone@ext.test")
		checkNotFound(t, "RequirePasswordReset", err, []string{"account gone@ext.test"}, nil)
	})
	t.Run("ExpireKey", func(t *testing.T) {
		s := open(t)
		rec := Record(1)
		if err := s.CreateKey(ctx, rec); err != nil {
			t.Fatal(err)
		}
		at := rec.Created.Add(time.Hour)
		if changed, err := s.ExpireKey(ctx, rec.ID, at); err != nil || !changed {
			t.Fatalf("expire: %v %v", changed, err)
		}
		if changed, err := s.ExpireKey(ctx, rec.ID, at.Add(time.Hour)); err != nil || changed {
			t.Fatalf("a later expiry replaced an earlier one: %v %v", changed, err)
		}
		got, err := s.Key(ctx, rec.ID)
		if err != nil || !got.Expires.Equal(at) || got.Usable(at) == nil {
			t.Fatalf("expires %v (%v)", got.Expires, err)
		}
		if _, err := s.ExpireKey(ctx, Record(2).ID, at); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("expiring a missing key: %v", err)
		}
	})
	t.Run("Accounts", func(t *testing.T) {
		s := open(t)
		now := base.Add(time.Hour)
		for _, e := range []string{"b@ext.test", "a@ext.test"} {
			if err := s.CreateAccount(ctx, Account(e)); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := s.PutSession(ctx, keystore.Session{Digest: Digest(e + fmt.Sprint(i)), Email: e, Created: now, LastSeen: now, Expires: now.Add(time.Hour)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.PutCode(ctx, keystore.Code{Purpose: keystore.CodeReset, Email: e, Digest: Digest("c"), Expires: now.Add(time.Hour), TriesLeft: 3}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AddFailure(ctx, "acct:"+e, now, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		var listed []string
		if err := s.EachAccount(ctx, func(a keystore.Account) error { listed = append(listed, a.Email); return nil }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(listed) != "[a@ext.test b@ext.test]" {
			t.Fatalf("listed %v, want address order", listed)
		}
		ended, err := s.RequirePasswordReset(ctx, "A@ext.test")
		if err != nil || ended != 3 {
			t.Fatalf("reset: %d sessions, %v", ended, err)
		}
		if a, err := s.Account(ctx, "a@ext.test"); err != nil || a.PasswordHash != "" {
			t.Fatalf("after reset the hash is %q (%v)", a.PasswordHash, err)
		}
		if _, err := s.RequirePasswordReset(ctx, "nobody@ext.test"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("reset of a missing account: %v", err)
		}
		if err := s.DeleteThrottle(ctx, "acct:a@ext.test"); err != nil {
			t.Fatal(err)
		}
		if th, err := s.Throttle(ctx, "acct:a@ext.test"); err != nil || th.InWindow != 0 || th.Consecutive != 0 {
			t.Fatalf("unlocked throttle: %+v %v", th, err)
		}
		// Erasure requests for one address released together: one erases.
		errs := race(8, func(int) error { _, err := s.DeleteAccount(ctx, "b@ext.test"); return err })
		if ok, missing := count(errs, nil), count(errs, keystore.ErrNotFound); ok != 1 || missing != 7 {
			t.Fatalf("%d deletes succeeded, %d found nothing: %v", ok, missing, errs)
		}
		if _, err := s.Account(ctx, "b@ext.test"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("account after delete: %v", err)
		}
		if n, err := s.DeleteSessionsFor(ctx, "b@ext.test", nil); err != nil || n != 0 {
			t.Fatalf("%d sessions survived the delete (%v)", n, err)
		}
		if err := s.ConsumeCode(ctx, keystore.CodeReset, "b@ext.test", Digest("c"), now); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("code after delete: %v", err)
		}
		if th, _ := s.Throttle(ctx, "acct:b@ext.test"); th.InWindow != 0 {
			t.Fatal("throttle entry survived the delete")
		}
		if _, err := s.Account(ctx, "a@ext.test"); err != nil {
			t.Fatalf("the other account: %v", err)
		}
	})
	t.Run("RewrapResumesAndKeepsEveryKeyOpen", func(t *testing.T) {
		s := open(t)
		mk, next := masterKey(t, "master.key"), masterKey(t, "master.key.next")
		deks := map[keystore.KeyID][]byte{}
		const n = 1500
		recs := make([]keystore.KeyRecord, n)
		for i := range n {
			var dek []byte
			recs[i], dek = SealedRecord(t, mk, i)
			deks[recs[i].ID] = dek
		}
		mustNoErrors(t, race(n, func(i int) error { return s.CreateKey(ctx, recs[i]) }))
		oldID := mk.ID()
		if err := mk.StartRotation(next); err != nil {
			t.Fatal(err)
		}
		if mk.ID() != next.ID() || mk.PreviousID() != oldID {
			t.Fatalf("rotation state: current %s previous %s", mk.ID(), mk.PreviousID())
		}
		// Interrupted in its third batch: the batch in flight commits,
		// the next one does not start.
		cut, cancel := context.WithCancel(ctx)
		p, err := s.RewrapKeys(cut, mk, 100, &cancelAfter{n: 250, cancel: cancel})
		if !errors.Is(err, context.Canceled) || p.Rewrapped != 300 || p.Remaining != n-300 {
			t.Fatalf("interrupted rewrap: %+v %v", p, err)
		}
		const fresh = 50
		freshRecs := make([]keystore.KeyRecord, fresh)
		for i := range fresh {
			var dek []byte
			freshRecs[i], dek = SealedRecord(t, mk, n+i)
			deks[freshRecs[i].ID] = dek
		}
		// New records and two rewraps released together.
		mustNoErrors(t, race(fresh+2, func(i int) error {
			if i >= fresh {
				_, err := s.RewrapKeys(ctx, mk, 100, rand.Reader)
				return err
			}
			return s.CreateKey(ctx, freshRecs[i])
		}))
		p, err = s.RewrapKeys(ctx, mk, 100, rand.Reader)
		if err != nil || p.Remaining != 0 || p.Unreadable != 0 || p.Rewrapped != 0 {
			t.Fatalf("final pass: %+v %v", p, err)
		}
		mk.FinishRotation()
		use, err := s.MasterKeyUse(ctx)
		if err != nil || use[next.ID()] != n+fresh || len(use) != 1 {
			t.Fatalf("after rotation: %v %v", use, err)
		}
		for id, want := range deks {
			got, _, err := next.DataKey(ctx, s, id, base)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("key %s after rotation: %v", id, err)
			}
		}
	})
	t.Run("SweepKeysDeletesReads", func(t *testing.T) {
		s := open(t)
		gone, kept, orphan := Record(1), Record(2), Record(3)
		gone.Expires = base.Add(time.Hour)
		kept.Expires = base.Add(48 * time.Hour)
		for _, rec := range []keystore.KeyRecord{gone, kept} {
			if err := s.CreateKey(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		// orphan has reads but no key record, as when a read is recorded
		// while its key is being swept.
		for _, id := range []keystore.KeyID{gone.ID, kept.ID, orphan.ID} {
			for i := range 2 {
				ev := keystore.ReadEvent{KeyID: id, Reader: "uma@example.test", At: base.Add(time.Duration(i) * time.Minute)}
				if err := s.RecordRead(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
		}
		if n, err := s.SweepKeys(ctx, base.Add(2*time.Hour)); err != nil || n != 1 {
			t.Fatalf("SweepKeys: %d %v, want 1 key record", n, err)
		}
		for id, want := range map[keystore.KeyID]int{gone.ID: 0, kept.ID: 2, orphan.ID: 0} {
			if evs, err := s.Reads(ctx, id); err != nil || len(evs) != want {
				t.Errorf("reads of %s after SweepKeys: %d %v, want %d", id, len(evs), err, want)
			}
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		s := open(t)
		if err := s.CreateKey(ctx, Record(1)); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		mk := masterKey(t, "master.key")
		for name, call := range map[string]func() error{
			"EachKey": func() error {
				return s.EachKey(cctx, keystore.KeyFilter{}, func(keystore.KeyRecord) error { return nil })
			},
			"ShredKey":     func() error { return s.ShredKey(cctx, Record(1).ID, base) },
			"ExpireKey":    func() error { _, err := s.ExpireKey(cctx, Record(1).ID, base); return err },
			"MasterKeyUse": func() error { _, err := s.MasterKeyUse(cctx); return err },
			"RewrapKeys":   func() error { _, err := s.RewrapKeys(cctx, mk, 10, rand.Reader); return err },
			"EachAccount":  func() error { return s.EachAccount(cctx, func(keystore.Account) error { return nil }) },
			"DeleteAccount": func() error {
				_, err := s.DeleteAccount(cctx, "x@ext.test")
				return err
			},
			"RequirePasswordReset": func() error {
				_, err := s.RequirePasswordReset(cctx, "x@ext.test")
				return err
			},
			"DeleteThrottle": func() error { return s.DeleteThrottle(cctx, "acct:x@ext.test") },
			"Key":            func() error { _, err := s.Key(cctx, Record(1).ID); return err },
			"RevokeKey":      func() error { return s.RevokeKey(cctx, Record(1).ID, base) },
			"SweepKeys":      func() error { _, err := s.SweepKeys(cctx, base); return err },
		} {
			if err := call(); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
			}
		}
		if got, err := s.Key(ctx, Record(1).ID); err != nil || len(got.WrappedDEK) == 0 || !got.Revoked.IsZero() {
			t.Fatalf("a canceled call changed the record: %+v %v", got, err)
		}
	})
}

// SealedRecord returns Record(n) with a data key really wrapped under mk,
// and that data key.
func SealedRecord(t testing.TB, mk *keystore.MasterKey, n int) (keystore.KeyRecord, []byte) {
	t.Helper()
	rec := Record(n)
	dek := bytes.Repeat([]byte{byte(n)}, 32)
	var err error
	rec.WrappedDEK, rec.MasterKeyID, err = mk.WrapKey(rec.ID, dek, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rec, dek
}

func masterKey(t *testing.T, name string) *keystore.MasterKey {
	t.Helper()
	mk, err := keystore.CreateMasterKey(filepath.Join(t.TempDir(), name), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

func mustNoErrors(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// cancelAfter is a random source that cancels a context after n reads.
type cancelAfter struct {
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return rand.Read(p)
}
