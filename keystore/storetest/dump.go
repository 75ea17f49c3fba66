package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
)

// DumpStore is a store that exports and imports dumps.
type DumpStore interface {
	keystore.Store
	keystore.Exporter
	keystore.Importer
}

// DumpOpener returns a fresh, empty store and arranges for it to be
// closed when the test ends.
type DumpOpener func(t *testing.T) DumpStore

// Fill writes one of everything a store holds into s, n of each kind
// where that makes sense.
func Fill(t testing.TB, s keystore.Store, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		email := "reader" + itoa(i) + "@Ext.test"
		c, _ := Copy(i, int64(100+i))
		steps := []error{
			s.PutCopy(ctx, c, bytes.NewReader(Envelope(i, 100+i))),
			s.CreateKey(ctx, RecordWithCopy(i)),
			s.CreateAccount(ctx, Account(email)),
			s.PutCode(ctx, keystore.Code{Purpose: keystore.CodeReset, Email: email, Digest: Digest("code" + itoa(i)), Expires: base.Add(time.Hour), TriesLeft: 3}),
			s.PutSession(ctx, keystore.Session{Digest: Digest("cookie" + itoa(i)), Email: email, Stage: "authenticated", Token: "tok" + itoa(i),
				Created: base, LastSeen: base.Add(time.Minute), Expires: base.Add(8 * time.Hour)}),
			s.RecordRead(ctx, keystore.ReadEvent{KeyID: Record(i).ID, Reader: email, At: base.Add(time.Duration(i) * time.Nanosecond), Remote: "192.0.2.1"}),
		}
		_, err := s.AddFailure(ctx, "acct:"+email, base, time.Hour)
		steps = append(steps, err)
		_, err = s.Hit(ctx, "signin-acct:"+email, base, time.Hour, 5)
		steps = append(steps, err)
		for _, err := range steps {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// Dump returns the export of s as sorted JSON lines, for comparison.
func Dump(t testing.TB, s keystore.Exporter) []string {
	t.Helper()
	var lines []string
	err := s.Export(context.Background(), func(it keystore.Item) error {
		b, err := json.Marshal(it)
		lines = append(lines, string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lines)
	return lines
}

// RunDump checks that an export imported into an empty store gives back
// the same export, and that importing again, or importing over records
// that exist, changes nothing.
func RunDump(t *testing.T, open DumpOpener) {
	ctx := context.Background()
	t.Run("RoundTripIdempotent", func(t *testing.T) {
		src, dst := open(t), open(t)
		Fill(t, src, 20)
		// A shredded record (no wrapped key) travels too, and so does
		// its deleted server copy.
		if err := src.ShredKey(ctx, Record(0).ID, base.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		var items []keystore.Item
		if err := src.Export(ctx, func(it keystore.Item) error { items = append(items, it); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(items) != 20*8 {
			t.Fatalf("exported %d items, want %d", len(items), 20*8)
		}
		// An import interrupted half way, then run again from the start.
		if err := dst.Import(ctx, items[:len(items)/2]); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := dst.Import(ctx, items); err != nil {
				t.Fatal(err)
			}
		}
		want, got := Dump(t, src), Dump(t, dst)
		if !slices.Equal(want, got) {
			t.Fatalf("after import:\n%v\nwant\n%v", got, want)
		}
		// The imported store works: the code and the session are live.
		if err := dst.ConsumeCode(ctx, keystore.CodeReset, "reader3@ext.test", Digest("code3"), base); err != nil {
			t.Fatalf("imported code: %v", err)
		}
		if ss, err := dst.Session(ctx, Digest("cookie4")); err != nil || ss.Email != "reader4@ext.test" {
			t.Fatalf("imported session: %+v %v", ss, err)
		}
		if r, err := dst.Hit(ctx, "signin-acct:reader5@Ext.test", base, time.Hour, 2); err != nil || !r.Allowed || r.Count != 2 {
			t.Fatalf("imported limit: %+v %v", r, err)
		}
	})
	t.Run("ImportKeepsExisting", func(t *testing.T) {
		s := open(t)
		a := Account("kept@ext.test")
		a.PasswordHash = "$argon2id$newer"
		if err := s.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		old := Account("kept@ext.test")
		if err := s.Import(ctx, []keystore.Item{{Account: &old}}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Account(ctx, "kept@ext.test"); err != nil || got.PasswordHash != "$argon2id$newer" {
			t.Fatalf("import replaced an existing account: %q %v", got.PasswordHash, err)
		}
	})
}
