package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
)

var updateListGolden = flag.Bool("update-list-golden", false, "rewrite testdata/keys-list*.golden")

// goldenListStore is a bbolt store of key records in every state keys
// list prints, with the characters JSON escapes in the stored form.
func goldenListStore(t *testing.T, at time.Time) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "keys.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	paris := time.FixedZone("CET", 3600)
	senders := []string{"alice@example.test", "ünïcødé@exämple.test", `"quoted\name"@example.test`, "Bob.Upper@Example.TEST"}
	mids := []string{"<m%d@example.test>", "<a&b=%d@example.test>", "", "tab\there %d \u2028 \x01 <>&"}
	var shred, expire []keystore.KeyID
	for i := range 40 {
		var id keystore.KeyID
		copy(id[:], fmt.Sprintf("golden-%09d", i))
		created := at.Add(-time.Duration(i) * 7 * time.Hour).Add(time.Duration(i) * 123456789)
		if i%5 == 1 {
			created = created.In(paris)
		}
		rec := keystore.KeyRecord{
			ID: id, WrappedDEK: []byte(fmt.Sprintf("wrapped-%d-0123456789abcdef0123456789abcdef", i)), MasterKeyID: "0011223344556677",
			Sender: senders[i%len(senders)], Recipients: []string{"carol@example.org"}, Created: created,
			Expires: created.Add(time.Duration(i%4) * 48 * time.Hour), Size: int64(1000 * i),
		}
		if mid := mids[i%len(mids)]; mid != "" {
			rec.MessageID = fmt.Sprintf(mid, i)
		}
		switch i % 3 {
		case 1:
			rec.Recipients = []string{"dave@example.net", "eve@example.org", "frank@example.com"}
		case 2:
			rec.Recipients = []string{fmt.Sprintf("r%d@ëxample.test", i)}
		}
		switch {
		case i == 37:
			rec.Expires = at // expired at the listing's instant
		case i == 39:
			rec.Expires = at.Add(time.Nanosecond)
		case i%4 == 0:
			rec.Expires = time.Time{}
		}
		if err := s.CreateKey(ctx, rec); err != nil {
			t.Fatal(err)
		}
		switch i % 7 {
		case 3:
			shred = append(shred, id)
		case 5:
			expire = append(expire, id)
		}
	}
	for _, id := range shred {
		if err := s.ShredKey(ctx, id, at.Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range expire {
		if _, err := s.ExpireKey(ctx, id, at.Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestKeysListGolden: keys list prints, as text and as JSON, with and
// without a filter, exactly what testdata/keys-list*.golden hold (scripts
// read it; the listing's speed-ups must not change a byte).
func TestKeysListGolden(t *testing.T) {
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	defer func(old func() time.Time) { adminNow = old }(adminNow)
	adminNow = func() time.Time { return at }
	env := &adminEnv{store: goldenListStore(t, at), log: slog.New(slog.DiscardHandler)}
	for _, c := range []struct {
		file string
		args listArgs
	}{
		{"keys-list.golden", listArgs{}},
		{"keys-list-json.golden", listArgs{JSON: true}},
		{"keys-list-filtered.golden", listArgs{Select: keySelection{Recipient: "EVE@example.org", Expired: true}}},
	} {
		raw, err := json.Marshal(c.args)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		res, err := opKeysList(context.Background(), env, raw, eofReader{}, &out)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if n := res.(countResult).Count; n == 0 {
			t.Fatalf("%s: nothing listed", c.file)
		}
		path := filepath.Join("testdata", c.file)
		if *updateListGolden {
			if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -run TestKeysListGolden -update-list-golden writes it)", err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%s: keys list printed\n%s\nwant\n%s", c.file, out.Bytes(), want)
		}
	}
}
