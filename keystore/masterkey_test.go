package keystore_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/storetest"
)

func TestMasterKeyWrapUnwrap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "master.key")
	mk, err := keystore.CreateMasterKey(path, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master key file mode: %v %v", st.Mode(), err)
	}
	if _, err := keystore.CreateMasterKey(path, rand.Reader); err == nil {
		t.Fatal("CreateMasterKey overwrote an existing key")
	}
	again, err := keystore.LoadMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID() != mk.ID() {
		t.Fatal("reloaded master key has another id")
	}
	rec := storetest.Record(7)
	dek := bytes.Repeat([]byte{0x42}, 32)
	rec.WrappedDEK, err = mk.Wrap(rec.ID, dek, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rec.MasterKeyID = mk.ID()
	got, err := again.Unwrap(rec)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("unwrap: %v %x", err, got)
	}
	moved := rec
	moved.ID[0] ^= 1
	if _, err := again.Unwrap(moved); err == nil {
		t.Fatal("unwrap under another record id succeeded: the id is not bound")
	}
	tampered := rec
	tampered.WrappedDEK = bytes.Clone(rec.WrappedDEK)
	tampered.WrappedDEK[20] ^= 1
	if _, err := again.Unwrap(tampered); err == nil {
		t.Fatal("unwrap of a tampered key succeeded")
	}
	other, err := keystore.CreateMasterKey(filepath.Join(dir, "other.key"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Unwrap(rec); !errors.Is(err, keystore.ErrWrongMasterKey) {
		t.Fatalf("unwrap under another master key: %v", err)
	}
}

func TestMasterKeyFileChecks(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.key")
	if err := os.WriteFile(open, bytes.Repeat([]byte{1}, 32), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.LoadMasterKey(open); err == nil {
		t.Fatal("loaded a master key readable by its group")
	}
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, []byte("too short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.LoadMasterKey(short); err == nil {
		t.Fatal("loaded a 9-byte master key")
	}
	if _, err := keystore.LoadMasterKey(filepath.Join(dir, "missing.key")); err == nil {
		t.Fatal("loaded a missing master key")
	}
}
