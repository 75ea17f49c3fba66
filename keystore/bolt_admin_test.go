package keystore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/storetest"
)

// raceAll runs f(0..n-1) in n goroutines released together by a barrier.
func raceAll(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func mustNoErrors(t *testing.T, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// sealedRecord is a record whose data key is really wrapped under mk.
func sealedRecord(t *testing.T, mk *keystore.MasterKey, n int) (keystore.KeyRecord, []byte) {
	t.Helper()
	rec := storetest.Record(n)
	dek := bytes.Repeat([]byte{byte(n)}, 32)
	var err error
	rec.WrappedDEK, rec.MasterKeyID, err = mk.WrapKey(rec.ID, dek, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rec, dek
}

func TestAdminEachKeyFiltersAcrossChunks(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	defer s.Close()
	const n = 2600 // more than two listing chunks
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	mustNoErrors(t, raceAll(n, func(i int) error {
		rec := storetest.Record(i)
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
		got, seen := 0, map[keystore.KeyID]bool{}
		err := s.EachKey(ctx, f, func(r keystore.KeyRecord) error {
			if seen[r.ID] {
				t.Fatalf("record %s listed twice", r.ID)
			}
			seen[r.ID] = true
			got++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	cases := []struct {
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
	}
	for _, c := range cases {
		if got := count(c.f); got != c.want {
			t.Errorf("%s: listed %d, want %d", c.name, got, c.want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.EachKey(ctx, keystore.KeyFilter{}, func(keystore.KeyRecord) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("EachKey did not stop at the first error: %v after %d calls", err, calls)
	}
}

func TestAdminShredKeyConcurrent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mk, err := keystore.CreateMasterKey(filepath.Join(dir, "master.key"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := openBolt(t, filepath.Join(dir, "keys.db"))
	defer s.Close()
	rec, _ := sealedRecord(t, mk, 1)
	other, otherDEK := sealedRecord(t, mk, 2)
	for _, r := range []keystore.KeyRecord{rec, other} {
		if err := s.CreateKey(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	first := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	mustNoErrors(t, raceAll(16, func(i int) error {
		return s.ShredKey(ctx, rec.ID, first.Add(time.Duration(i)*time.Second))
	}))
	got, err := s.Key(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.WrappedDEK) != 0 {
		t.Fatal("the wrapped key survived the shred")
	}
	if got.Revoked.IsZero() || got.Revoked.Before(first) || got.Revoked.After(first.Add(15*time.Second)) {
		t.Fatalf("revoked at %v", got.Revoked)
	}
	if _, _, err := mk.DataKey(ctx, s, rec.ID, first); !errors.Is(err, keystore.ErrRevoked) {
		t.Fatalf("DataKey of a shredded key: %v, want ErrRevoked", err)
	}
	if dek, _, err := mk.DataKey(ctx, s, other.ID, first); err != nil || !bytes.Equal(dek, otherDEK) {
		t.Fatalf("the other key no longer opens: %v", err)
	}
	if err := s.ShredKey(ctx, storetest.Record(99).ID, first); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("shredding a missing key: %v", err)
	}
	if use, err := s.MasterKeyUse(ctx); err != nil || use[mk.ID()] != 1 || len(use) != 1 {
		t.Fatalf("master key use after shred: %v %v", use, err)
	}
}

func TestAdminExpireKey(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	defer s.Close()
	rec := storetest.Record(1)
	if err := s.CreateKey(ctx, rec); err != nil {
		t.Fatal(err)
	}
	at := rec.Created.Add(time.Hour)
	changed, err := s.ExpireKey(ctx, rec.ID, at)
	if err != nil || !changed {
		t.Fatalf("expire: %v %v", changed, err)
	}
	if changed, err := s.ExpireKey(ctx, rec.ID, at.Add(time.Hour)); err != nil || changed {
		t.Fatalf("a later expiry replaced an earlier one: %v %v", changed, err)
	}
	got, _ := s.Key(ctx, rec.ID)
	if !got.Expires.Equal(at) || got.Usable(at) == nil {
		t.Fatalf("expires %v", got.Expires)
	}
}

func TestAdminAccounts(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	defer s.Close()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range []string{"a@ext.test", "b@ext.test"} {
		if err := s.CreateAccount(ctx, storetest.Account(e)); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := s.PutSession(ctx, keystore.Session{Digest: storetest.Digest(e + fmt.Sprint(i)), Email: e, Created: now, LastSeen: now, Expires: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutCode(ctx, keystore.Code{Purpose: keystore.CodeReset, Email: e, Digest: storetest.Digest("c"), Expires: now.Add(time.Hour), TriesLeft: 3}); err != nil {
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
		t.Fatalf("listed %v", listed)
	}

	ended, err := s.RequirePasswordReset(ctx, "A@ext.test")
	if err != nil || ended != 3 {
		t.Fatalf("reset: %d sessions, %v", ended, err)
	}
	if a, err := s.Account(ctx, "a@ext.test"); err != nil || a.PasswordHash != "" {
		t.Fatalf("after reset the hash is %q (%v)", a.PasswordHash, err)
	}

	if err := s.DeleteThrottle(ctx, "acct:a@ext.test"); err != nil {
		t.Fatal(err)
	}
	if th, err := s.Throttle(ctx, "acct:a@ext.test"); err != nil || th.InWindow != 0 || th.Consecutive != 0 {
		t.Fatalf("unlocked throttle: %+v %v", th, err)
	}

	// Two erasure requests for the same address race: one erases.
	errs := raceAll(8, func(int) error { _, err := s.DeleteAccount(ctx, "b@ext.test"); return err })
	ok, missing := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, keystore.ErrNotFound):
			missing++
		default:
			t.Fatal(err)
		}
	}
	if ok != 1 || missing != 7 {
		t.Fatalf("%d deletes succeeded, %d found nothing", ok, missing)
	}
	if _, err := s.Account(ctx, "b@ext.test"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("account after delete: %v", err)
	}
	if n, err := s.DeleteSessionsFor(ctx, "b@ext.test", nil); err != nil || n != 0 {
		t.Fatalf("%d sessions survived the delete (%v)", n, err)
	}
	if err := s.ConsumeCode(ctx, keystore.CodeReset, "b@ext.test", storetest.Digest("c"), now); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("code after delete: %v", err)
	}
	if th, _ := s.Throttle(ctx, "acct:b@ext.test"); th.InWindow != 0 {
		t.Fatal("throttle entry survived the delete")
	}
}

func TestAdminBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openBolt(t, filepath.Join(dir, "keys.db"))
	defer s.Close()
	for i := range 200 {
		if err := s.CreateKey(ctx, storetest.Record(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Writers and backups released together: each backup is a whole,
	// openable store holding at least what was committed before it.
	const backups = 4
	var buf [backups]bytes.Buffer
	errs := raceAll(100+backups, func(i int) error {
		if i < backups {
			_, err := s.Backup(ctx, &buf[i])
			return err
		}
		return s.CreateKey(ctx, storetest.Record(1000+i))
	})
	mustNoErrors(t, errs)
	for i := range backups {
		path := filepath.Join(dir, fmt.Sprintf("backup%d.db", i))
		if err := os.WriteFile(path, buf[i].Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := keystore.OpenBolt(path, keystore.BoltOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := b.EachKey(ctx, keystore.KeyFilter{}, func(keystore.KeyRecord) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if n < 200 || n > 300 {
			t.Fatalf("backup %d holds %d records", i, n)
		}
	}
}

func TestRotationRewrapResumesAndKeepsEveryKeyOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	mk, err := keystore.CreateMasterKey(filepath.Join(dir, "master.key"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	next, err := keystore.CreateMasterKey(filepath.Join(dir, "master.key.next"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := openBolt(t, filepath.Join(dir, "keys.db"))
	defer s.Close()
	deks := map[keystore.KeyID][]byte{}
	const n = 1500
	recs := make([]keystore.KeyRecord, n)
	for i := range n {
		var dek []byte
		recs[i], dek = sealedRecord(t, mk, i)
		deks[recs[i].ID] = dek
	}
	mustNoErrors(t, raceAll(n, func(i int) error { return s.CreateKey(ctx, recs[i]) }))
	oldID := mk.ID()
	if err := mk.StartRotation(next); err != nil {
		t.Fatal(err)
	}
	if mk.ID() != next.ID() || mk.PreviousID() != oldID {
		t.Fatalf("rotation state: current %s previous %s", mk.ID(), mk.PreviousID())
	}
	// Interrupt the first pass in its third batch: the batch in flight
	// commits, the next one does not start.
	cut, cancel := context.WithCancel(ctx)
	p, err := s.RewrapKeys(cut, mk, 100, &cancelAfter{n: 250, cancel: cancel})
	if !errors.Is(err, context.Canceled) || p.Rewrapped != 300 || p.Remaining != n-300 {
		t.Fatalf("interrupted rewrap: %+v %v", p, err)
	}
	// A rewrap in small batches, with new records and a second rewrap
	// racing it; every key opens throughout.
	const fresh = 50
	freshRecs := make([]keystore.KeyRecord, fresh)
	for i := range fresh {
		var dek []byte
		freshRecs[i], dek = sealedRecord(t, mk, n+i)
		deks[freshRecs[i].ID] = dek
		if freshRecs[i].MasterKeyID != next.ID() {
			t.Fatal("a record made during the rotation is not wrapped under the next key")
		}
	}
	errs := raceAll(fresh+2, func(i int) error {
		if i >= fresh {
			_, err := s.RewrapKeys(ctx, mk, 100, rand.Reader)
			return err
		}
		return s.CreateKey(ctx, freshRecs[i])
	})
	mustNoErrors(t, errs)
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
		got, _, err := next.DataKey(ctx, s, id, recs[0].Created)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("key %s after rotation: %v", id, err)
		}
	}
	other, err := keystore.CreateMasterKey(filepath.Join(dir, "other.key"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := mk.StartRotation(other); err != nil {
		t.Fatal(err)
	}
	if err := mk.StartRotation(next); err == nil {
		t.Fatal("a second rotation started while one is under way")
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
