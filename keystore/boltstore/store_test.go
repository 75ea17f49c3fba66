package boltstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/storetest"
)

func openBolt(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBoltConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) keystore.KeyStore {
		return openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	})
}

func TestBoltDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s := openBolt(t, path)
	rec := storetest.Record(1)
	if err := s.CreateKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := boltstore.Open(path, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	got, err := ro.Key(context.Background(), rec.ID)
	if err != nil || got.MessageID != rec.MessageID {
		t.Fatalf("after reopen: %v %+v", err, got)
	}
}

func TestBoltSecondProcessFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s := openBolt(t, path)
	defer s.Close()
	start := time.Now()
	_, err := boltstore.Open(path, boltstore.Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("second open waited %v", waited)
	}
}

func TestBoltClosedStoreErrors(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(context.Background(), storetest.Record(1)); err == nil {
		t.Fatal("CreateKey on a closed store succeeded")
	}
}
