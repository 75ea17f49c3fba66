package storetest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/securemail/securemail/keystore"
)

// CopyOpener returns a fresh, empty store; the suite closes it.
type CopyOpener func(t *testing.T) keystore.Store

// Envelope returns n bytes derived from seed, as a server copy's envelope.
func Envelope(seed, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + seed*7 + i/251)
	}
	return b
}

// Copy returns the description of a server copy of Record(n) kept for
// 30 days from base, with its link token.
func Copy(n int, size int64) (keystore.ServerCopy, string) {
	token := fmt.Sprintf("link-token-%d", n)
	return keystore.ServerCopy{KeyID: Record(n).ID, LinkDigest: keystore.LinkDigest(token), Created: base,
		Until: base.Add(30 * 24 * time.Hour), Size: size}, token
}

// RecordWithCopy is Record(n) that says its copy is kept until c.Until.
func RecordWithCopy(n int) keystore.KeyRecord {
	rec := Record(n)
	c, _ := Copy(n, 0)
	rec.CopyUntil = c.Until
	return rec
}

// RunCopies runs the server copy suite.
func RunCopies(t *testing.T, open CopyOpener) {
	ctx := context.Background()
	// put stores copy n of size bytes and, with keys, its key record in
	// the same transaction, as the milter does.
	put := func(t *testing.T, s keystore.CopyStore, keys keystore.KeyStore, n int, size int) (keystore.ServerCopy, []byte) {
		t.Helper()
		c, _ := Copy(n, int64(size))
		env := Envelope(n, size)
		var err error
		if keys != nil {
			err = s.CreateKeyWithCopy(ctx, RecordWithCopy(n), c, bytes.NewReader(env))
		} else {
			err = s.PutCopy(ctx, c, bytes.NewReader(env))
		}
		if err != nil {
			t.Fatalf("put copy %d: %v", n, err)
		}
		return c, env
	}
	readAll := func(t *testing.T, s keystore.CopyStore, id keystore.KeyID) ([]byte, error) {
		t.Helper()
		rc, err := s.OpenCopy(ctx, id)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}

	t.Run("RoundTripAtChunkEdges", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		for i, size := range []int{0, 1, keystore.CopyChunk - 1, keystore.CopyChunk, keystore.CopyChunk + 1, 2*keystore.CopyChunk + 17} {
			n := 300 + i
			c, env := put(t, s, s, n, size)
			got, err := readAll(t, s, c.KeyID)
			if err != nil || !bytes.Equal(got, env) {
				t.Fatalf("size %d: read back %d bytes (%v), want the %d stored", size, len(got), err, size)
			}
			for name, lookup := range map[string]func() (keystore.ServerCopy, error){
				"GetCopy": func() (keystore.ServerCopy, error) {
					_, tok := Copy(n, 0)
					return s.GetCopy(ctx, keystore.LinkDigest(tok))
				},
				"CopyOf": func() (keystore.ServerCopy, error) { return s.CopyOf(ctx, c.KeyID) },
			} {
				d, err := lookup()
				if err != nil || d.KeyID != c.KeyID || !bytes.Equal(d.LinkDigest, c.LinkDigest) || d.Size != int64(size) ||
					!d.Created.Equal(c.Created) || !d.Until.Equal(c.Until) || !d.Deleted.IsZero() {
					t.Fatalf("size %d: %s = %+v, %v; want %+v", size, name, d, err, c)
				}
			}
		}
		rec, err := s.Key(ctx, Record(300).ID)
		if err != nil || !rec.CopyUntil.Equal(base.Add(30*24*time.Hour)) {
			t.Fatalf("key record's CopyUntil %v (%v), want the copy's Until", rec.CopyUntil, err)
		}
		if r2, _ := s.Key(ctx, Record(300).ID); !r2.Equal(RecordWithCopy(300).Normalized()) {
			t.Fatalf("key record with a copy read back as %+v", r2)
		}
		// A record with another CopyUntil is another record.
		other := RecordWithCopy(300)
		other.CopyUntil = other.CopyUntil.Add(time.Second)
		if err := s.CreateKey(ctx, other); !errors.Is(err, keystore.ErrKeyExists) {
			t.Fatalf("create with another CopyUntil: %v, want ErrKeyExists", err)
		}
	})
	t.Run("UnknownLink", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		put(t, s, s, 1, 10)
		digest := keystore.LinkDigest("no such link")
		_, err := s.GetCopy(ctx, digest)
		// A miss names the link by a fingerprint, never by its token or
		// digest.
		checkNotFound(t, "GetCopy of an unknown link", err, []string{"server copy for link " + keystore.Fingerprint(digest)},
			[]string{"no such link", hex.EncodeToString(digest), hex.EncodeToString(digest)[:16]})
		_, err = s.CopyOf(ctx, Record(2).ID)
		checkNotFound(t, "CopyOf without a copy", err, []string{"server copy", Record(2).ID.String()}, nil)
		if _, err := s.OpenCopy(ctx, Record(2).ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("OpenCopy without a copy: %v, want ErrNotFound", err)
		}
	})
	t.Run("WrongLengthStoresNothing", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		c, _ := Copy(3, keystore.CopyChunk+10)
		for name, r := range map[string]io.Reader{
			"short": bytes.NewReader(Envelope(3, keystore.CopyChunk+9)),
			"long":  bytes.NewReader(Envelope(3, keystore.CopyChunk+11)),
		} {
			if err := s.PutCopy(ctx, c, r); !errors.Is(err, keystore.ErrCopySize) {
				t.Errorf("%s reader: %v, want ErrCopySize", name, err)
			}
		}
		boom := errors.New("disk read failed")
		if err := s.PutCopy(ctx, c, io.MultiReader(bytes.NewReader(Envelope(3, 100)), iotest.ErrReader(boom))); !errors.Is(err, boom) {
			t.Errorf("failing reader: %v, want its error", err)
		}
		if _, err := s.CopyOf(ctx, c.KeyID); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("a failed put left a copy: %v", err)
		}
		if _, err := s.GetCopy(ctx, c.LinkDigest); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("a failed put left a link: %v", err)
		}
		bad := c
		bad.LinkDigest = nil
		if err := s.PutCopy(ctx, bad, bytes.NewReader(Envelope(3, int(c.Size)))); err == nil {
			t.Fatal("a copy without a link digest was stored")
		}
	})
	t.Run("KeyWithCopyBothOrNeither", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		rec := RecordWithCopy(30)
		c, _ := Copy(30, keystore.CopyChunk+10)
		nothing := func(what string) {
			t.Helper()
			if _, err := s.Key(ctx, rec.ID); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("%s left a key record: %v", what, err)
			}
			if _, err := s.CopyOf(ctx, c.KeyID); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("%s left a copy: %v", what, err)
			}
		}
		if err := s.CreateKeyWithCopy(ctx, rec, c, bytes.NewReader(Envelope(30, keystore.CopyChunk+9))); !errors.Is(err, keystore.ErrCopySize) {
			t.Fatalf("short envelope: %v, want ErrCopySize", err)
		}
		nothing("a short envelope")
		boom := errors.New("disk read failed")
		if err := s.CreateKeyWithCopy(ctx, rec, c, io.MultiReader(bytes.NewReader(Envelope(30, 100)), iotest.ErrReader(boom))); !errors.Is(err, boom) {
			t.Fatalf("failing reader: %v, want its error", err)
		}
		nothing("a failing reader")
		other, _ := Copy(31, c.Size)
		if err := s.CreateKeyWithCopy(ctx, rec, other, bytes.NewReader(Envelope(30, int(c.Size)))); err == nil {
			t.Fatal("a copy of another key was stored with the record")
		}
		if err := s.CreateKeyWithCopy(ctx, Record(30), c, bytes.NewReader(Envelope(30, int(c.Size)))); err == nil {
			t.Fatal("a record without CopyUntil was stored with a copy")
		}
		nothing("a refused pair")

		env := Envelope(30, int(c.Size))
		if err := s.CreateKeyWithCopy(ctx, rec, c, bytes.NewReader(env)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Key(ctx, rec.ID); err != nil || !got.Equal(rec.Normalized()) {
			t.Fatalf("key after CreateKeyWithCopy: %+v, %v, want %+v", got, err, rec)
		}
		if got, err := readAll(t, s, c.KeyID); err != nil || !bytes.Equal(got, env) {
			t.Fatalf("copy after CreateKeyWithCopy: %d bytes, %v", len(got), err)
		}
		// A retry whose first attempt committed succeeds.
		if err := s.CreateKeyWithCopy(ctx, rec, c, bytes.NewReader(env)); err != nil {
			t.Fatalf("the same record and copy again: %v", err)
		}
		// Another record under the id stores nothing, its copy neither.
		changed := rec
		changed.Sender = "mallory@example.org"
		otherEnv := Envelope(32, int(c.Size))
		if err := s.CreateKeyWithCopy(ctx, changed, c, bytes.NewReader(otherEnv)); !errors.Is(err, keystore.ErrKeyExists) {
			t.Fatalf("another record under the id: %v, want ErrKeyExists", err)
		}
		if got, err := readAll(t, s, c.KeyID); err != nil || !bytes.Equal(got, env) {
			t.Fatalf("a refused record replaced the copy: %d bytes, %v", len(got), err)
		}
	})
	t.Run("KeyWithCopyBurst", func(t *testing.T) {
		// Released together, so a backend that groups commits puts them in
		// one group; the one refused record fails alone.
		s := open(t)
		defer s.Close()
		conflict := RecordWithCopy(40)
		if err := s.CreateKey(ctx, conflict); err != nil {
			t.Fatal(err)
		}
		const n = 12
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := RecordWithCopy(40 + i)
				if i == 0 {
					rec.Sender = "someone-else@example.org"
				}
				c, _ := Copy(40+i, int64(1000+i))
				<-start
				errs[i] = s.CreateKeyWithCopy(ctx, rec, c, bytes.NewReader(Envelope(40+i, 1000+i)))
			}()
		}
		close(start)
		wg.Wait()
		if !errors.Is(errs[0], keystore.ErrKeyExists) {
			t.Errorf("the conflicting record: %v, want ErrKeyExists", errs[0])
		}
		if _, err := s.CopyOf(ctx, conflict.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("the conflicting record's copy was stored: %v", err)
		}
		for i := 1; i < n; i++ {
			if errs[i] != nil {
				t.Errorf("record %d: %v", 40+i, errs[i])
				continue
			}
			got, err := readAll(t, s, Record(40+i).ID)
			if err != nil || !bytes.Equal(got, Envelope(40+i, 1000+i)) {
				t.Errorf("copy %d: %d bytes, %v", 40+i, len(got), err)
			}
			if _, err := s.Key(ctx, Record(40+i).ID); err != nil {
				t.Errorf("key %d: %v", 40+i, err)
			}
		}
	})
	t.Run("PutReplaces", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		c, _ := put(t, s, nil, 4, 1000)
		again := c
		again.LinkDigest = keystore.LinkDigest("another link")
		env := Envelope(40, 500)
		again.Size = int64(len(env))
		if err := s.PutCopy(ctx, again, bytes.NewReader(env)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetCopy(ctx, c.LinkDigest); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("the replaced link still finds a copy: %v", err)
		}
		if got, err := readAll(t, s, c.KeyID); err != nil || !bytes.Equal(got, env) {
			t.Fatalf("after replacing: %d bytes, %v", len(got), err)
		}
	})
	t.Run("DeleteKeepsTheDescription", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		c, _ := put(t, s, s, 5, keystore.CopyChunk+1)
		at := base.Add(time.Hour)
		if deleted, err := s.DeleteCopy(ctx, c.KeyID, at); err != nil || !deleted {
			t.Fatalf("delete: %v %v", deleted, err)
		}
		if deleted, err := s.DeleteCopy(ctx, c.KeyID, at.Add(time.Hour)); err != nil || deleted {
			t.Fatalf("second delete: %v %v, want false", deleted, err)
		}
		if deleted, err := s.DeleteCopy(ctx, Record(6).ID, at); err != nil || deleted {
			t.Fatalf("delete without a copy: %v %v, want false, nil", deleted, err)
		}
		d, err := s.GetCopy(ctx, c.LinkDigest)
		if err != nil || !d.Deleted.Equal(at) || d.Kept(at.Add(-time.Hour)) {
			t.Fatalf("after delete GetCopy = %+v, %v; want Deleted %v", d, err, at)
		}
		if _, err := s.OpenCopy(ctx, c.KeyID); !errors.Is(err, keystore.ErrCopyDeleted) || !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("OpenCopy after delete: %v, want ErrCopyDeleted", err)
		}
	})
	t.Run("DeleteWhileReading", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		c, _ := put(t, s, s, 7, 3*keystore.CopyChunk)
		rc, err := s.OpenCopy(ctx, c.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		first := make([]byte, 100)
		if _, err := io.ReadFull(rc, first); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteCopy(ctx, c.KeyID, base); err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		if err == nil {
			t.Fatalf("a copy deleted while read gave %d more bytes and a clean end", n)
		}
		if int64(n)+100 >= c.Size {
			t.Fatalf("read %d bytes of a copy deleted after the first chunk", n+100)
		}
	})
	t.Run("RevokeAndShredDeleteTheCopy", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		revoked, _ := put(t, s, s, 8, 100)
		shredded, _ := put(t, s, s, 9, 100)
		at := base.Add(2 * time.Hour)
		if err := s.RevokeKey(ctx, revoked.KeyID, at); err != nil {
			t.Fatal(err)
		}
		if err := s.ShredKey(ctx, shredded.KeyID, at); err != nil {
			t.Fatal(err)
		}
		for _, c := range []keystore.ServerCopy{revoked, shredded} {
			d, err := s.CopyOf(ctx, c.KeyID)
			if err != nil || !d.Deleted.Equal(at) {
				t.Errorf("copy of a revoked key: %+v, %v; want Deleted at the revocation %v", d, err, at)
			}
			if _, err := s.OpenCopy(ctx, c.KeyID); !errors.Is(err, keystore.ErrCopyDeleted) {
				t.Errorf("OpenCopy of a revoked key's copy: %v", err)
			}
		}
	})
	t.Run("Sweep", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		now := base.Add(24 * time.Hour)
		live, _ := put(t, s, s, 10, 100)
		// Until passed.
		ended, _ := Copy(11, 10)
		ended.Until = now
		if err := s.PutCopy(ctx, ended, bytes.NewReader(Envelope(11, 10))); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateKey(ctx, Record(11)); err != nil {
			t.Fatal(err)
		}
		// Key expired before the copy's Until.
		expired, _ := Copy(12, 10)
		if err := s.PutCopy(ctx, expired, bytes.NewReader(Envelope(12, 10))); err != nil {
			t.Fatal(err)
		}
		rec := Record(12)
		rec.Expires = now.Add(-time.Minute)
		if err := s.CreateKey(ctx, rec); err != nil {
			t.Fatal(err)
		}
		// A young orphan: its key record may be on its way.
		young, _ := Copy(13, 10)
		young.Created = now.Add(-time.Minute)
		if err := s.PutCopy(ctx, young, bytes.NewReader(Envelope(13, 10))); err != nil {
			t.Fatal(err)
		}
		// An old orphan: its message was refused.
		old, _ := Copy(14, 10)
		if err := s.PutCopy(ctx, old, bytes.NewReader(Envelope(14, 10))); err != nil {
			t.Fatal(err)
		}
		n, err := s.SweepCopies(ctx, now)
		if err != nil || n != 3 {
			t.Fatalf("swept %d (%v), want 3: the ended, the expired key's and the old orphan", n, err)
		}
		for _, c := range []keystore.ServerCopy{live, young} {
			if d, err := s.CopyOf(ctx, c.KeyID); err != nil || !d.Deleted.IsZero() {
				t.Errorf("copy %s: %+v %v, want kept", c.KeyID, d, err)
			}
		}
		for _, c := range []keystore.ServerCopy{ended, expired} {
			if d, err := s.GetCopy(ctx, c.LinkDigest); err != nil || !d.Deleted.Equal(now) {
				t.Errorf("copy %s: %+v %v, want deleted at %v and still described", c.KeyID, d, err, now)
			}
		}
		if _, err := s.GetCopy(ctx, old.LinkDigest); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("old orphan: %v, want gone whole", err)
		}
		if n, err := s.SweepCopies(ctx, now); err != nil || n != 0 {
			t.Fatalf("second sweep: %d %v, want 0", n, err)
		}
		// Sweeping the keys takes their copies, descriptions and all.
		if _, err := s.SweepKeys(ctx, now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetCopy(ctx, expired.LinkDigest); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("copy of a swept key: %v, want gone", err)
		}
		if _, err := s.CopyOf(ctx, live.KeyID); err != nil {
			t.Errorf("copy of a live key after SweepKeys: %v", err)
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		c, _ := Copy(20, 10)
		if err := s.PutCopy(cctx, c, bytes.NewReader(Envelope(20, 10))); err == nil {
			t.Fatal("PutCopy with a canceled context succeeded")
		}
		if _, err := s.CopyOf(ctx, c.KeyID); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("a canceled put left a copy: %v", err)
		}
	})
}
