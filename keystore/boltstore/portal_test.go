package boltstore_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/storetest"
)

var portalBase = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func TestBoltPortalConformance(t *testing.T) {
	storetest.RunPortal(t, func(t *testing.T) keystore.PortalStore {
		s := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
		return s
	})
}

// fillPortal writes one of everything the portal stores.
func fillPortal(t *testing.T, s *boltstore.Store) {
	t.Helper()
	ctx := context.Background()
	// The same instant in another zone: the store keeps UTC.
	at := portalBase.In(time.FixedZone("east", 3*3600))
	a := storetest.Account("Tom@Example.test")
	a.Created = at
	steps := []error{
		s.CreateAccount(ctx, a),
		s.PutCode(ctx, keystore.Code{Purpose: keystore.CodeReset, Email: "Tom@Example.test", Digest: storetest.Digest("123456"),
			Expires: at.Add(15 * time.Minute), TriesLeft: 4}),
		s.PutSession(ctx, keystore.Session{Digest: storetest.Digest("cookie"), Email: "Tom@Example.test", Stage: "authenticated",
			Token: "tok", Created: at, LastSeen: at, Expires: at.Add(8 * time.Hour)}),
		s.RecordRead(ctx, keystore.ReadEvent{KeyID: storetest.Record(1).ID, Reader: "Tom@Example.test", At: at, Remote: "192.0.2.7"}),
	}
	_, err := s.AddFailure(ctx, "acct:tom@example.test", at, time.Hour)
	steps = append(steps, err)
	if err := errors.Join(steps...); err != nil {
		t.Fatal(err)
	}
}

func TestBoltPortalDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	s := openBolt(t, path)
	fillPortal(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	ro, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := ro.Account(ctx, "tom@example.test")
	if err != nil || a.Email != "tom@example.test" || len(a.Questions) != 2 {
		t.Fatalf("account after reopen: %+v %v", a, err)
	}
	if a.Created.Location() != time.UTC || !a.Created.Equal(portalBase) {
		t.Fatalf("created %v, want %v in UTC", a.Created, portalBase)
	}
	sess, err := ro.Session(ctx, storetest.Digest("cookie"))
	if err != nil || sess.Email != "tom@example.test" || sess.Expires.Location() != time.UTC ||
		!sess.Expires.Equal(portalBase.Add(8*time.Hour)) {
		t.Fatalf("session after reopen: %+v %v", sess, err)
	}
	th, err := ro.Throttle(ctx, "acct:tom@example.test")
	if err != nil || th.Consecutive != 1 || th.InWindow != 1 || !th.LastFailure.Equal(portalBase) {
		t.Fatalf("throttle after reopen: %+v %v", th, err)
	}
	evs, err := ro.Reads(ctx, storetest.Record(1).ID)
	if err != nil || len(evs) != 1 || evs[0].Reader != "tom@example.test" || evs[0].Remote != "192.0.2.7" {
		t.Fatalf("reads after reopen: %+v %v", evs, err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}

	rw := openBolt(t, path)
	defer rw.Close()
	if err := rw.ConsumeCode(ctx, keystore.CodeReset, "tom@example.test", storetest.Digest("000000"), portalBase); !errors.Is(err, keystore.ErrCodeMismatch) {
		t.Fatalf("wrong code after reopen: %v", err)
	}
	if err := rw.ConsumeCode(ctx, keystore.CodeReset, "tom@example.test", storetest.Digest("123456"), portalBase); err != nil {
		t.Fatalf("right code after reopen: %v", err)
	}
}

func TestBoltPortalClosedStore(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, errAcct := s.Account(ctx, "x@example.test")
	_, errDel := s.DeleteSessionsFor(ctx, "x@example.test", nil)
	_, errAdd := s.AddFailure(ctx, "ip:x", portalBase, time.Hour)
	_, errReads := s.Reads(ctx, storetest.Record(1).ID)
	_, errSweep := s.SweepPortal(ctx, portalBase, time.Hour)
	for name, err := range map[string]error{
		"CreateAccount":     s.CreateAccount(ctx, storetest.Account("x@example.test")),
		"Account":           errAcct,
		"ConsumeCode":       s.ConsumeCode(ctx, keystore.CodeRegister, "x@example.test", storetest.Digest("1"), portalBase),
		"DeleteSessionsFor": errDel,
		"AddFailure":        errAdd,
		"ClearFailures":     s.ClearFailures(ctx, "ip:x"),
		"Reads":             errReads,
		"SweepPortal":       errSweep,
	} {
		if !errors.Is(err, keystore.ErrClosed) {
			t.Errorf("%s on a closed store: %v, want ErrClosed", name, err)
		}
	}
}

func TestBoltSweepKeysDeletesReads(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	defer s.Close()
	gone, kept, orphan := storetest.Record(1), storetest.Record(2), storetest.Record(3)
	gone.Expires = portalBase.Add(time.Hour)
	kept.Expires = portalBase.Add(48 * time.Hour)
	for _, rec := range []keystore.KeyRecord{gone, kept} {
		if err := s.CreateKey(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	// orphan has reads but no key record, as when a read is recorded while
	// its key is being swept.
	for _, id := range []keystore.KeyID{gone.ID, kept.ID, orphan.ID} {
		for i := 0; i < 2; i++ {
			ev := keystore.ReadEvent{KeyID: id, Reader: "uma@example.test", At: portalBase.Add(time.Duration(i) * time.Minute)}
			if err := s.RecordRead(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, err := s.SweepKeys(ctx, portalBase.Add(2*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("SweepKeys: %d %v, want 1 key record", n, err)
	}
	for id, want := range map[keystore.KeyID]int{gone.ID: 0, kept.ID: 2, orphan.ID: 0} {
		evs, err := s.Reads(ctx, id)
		if err != nil || len(evs) != want {
			t.Errorf("reads of %s after SweepKeys: %d %v, want %d", id, len(evs), err, want)
		}
	}
	// A new read of the swept key starts a fresh trail.
	if err := s.RecordRead(ctx, keystore.ReadEvent{KeyID: gone.ID, Reader: "uma@example.test", At: portalBase}); err != nil {
		t.Fatal(err)
	}
	if evs, err := s.Reads(ctx, gone.ID); err != nil || len(evs) != 1 {
		t.Fatalf("reads after recording again: %v %v", evs, err)
	}
}

// TestBoltPortalFileFormat pins the bucket layout and the JSON field names:
// they are the file format.
func TestBoltPortalFileFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s := openBolt(t, path)
	fillPortal(t, s)
	if err := s.RecordRead(context.Background(), keystore.ReadEvent{KeyID: storetest.Record(1).ID, At: portalBase}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fields := func(v []byte) string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(v, &m); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		var names []string
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		return strings.Join(names, " ")
	}
	err = db.View(func(tx *bolt.Tx) error {
		id := storetest.Record(1).ID
		for _, c := range []struct {
			bucket, key string
			fields      string
		}{
			{"accounts", "tom@example.test", "created email password_hash password_set questions verified_at"},
			{"codes", "reset\x00tom@example.test", "digest email expires purpose tries_left"},
			{"sessions", string(storetest.Digest("cookie")), "created email expires last_seen stage token"},
			{"throttle", "acct:tom@example.test", "consecutive in_window last_failure window_start"},
		} {
			bk := tx.Bucket([]byte(c.bucket))
			if bk == nil {
				t.Fatalf("no bucket %q", c.bucket)
			}
			v := bk.Get([]byte(c.key))
			if v == nil {
				t.Fatalf("bucket %q has no key %q", c.bucket, c.key)
			}
			if got := fields(v); got != c.fields {
				t.Errorf("%s fields %q, want %q", c.bucket, got, c.fields)
			}
		}
		var q map[string]any
		v := tx.Bucket([]byte("accounts")).Get([]byte("tom@example.test"))
		if err := json.Unmarshal(v, &q); err != nil {
			return err
		}
		if qs, _ := q["questions"].([]any); len(qs) != 2 || fields(mustJSON(t, qs[0])) != "answer_hash question" {
			t.Errorf("questions stored as %v", q["questions"])
		}
		trail := tx.Bucket([]byte("reads")).Bucket(id[:])
		if trail == nil {
			t.Fatal("no reads bucket for the key id")
		}
		var seqs []uint64
		err := trail.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				t.Errorf("read key %x is not a 64-bit sequence", k)
			}
			seqs = append(seqs, binary.BigEndian.Uint64(k))
			if got := fields(v); got != "at reader remote" {
				t.Errorf("read fields %q", got)
			}
			return nil
		})
		if !slices.Equal(seqs, []uint64{1, 2}) {
			t.Errorf("read sequences %v, want [1 2]", seqs)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
