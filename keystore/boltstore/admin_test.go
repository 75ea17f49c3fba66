package boltstore_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
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
		b, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
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
