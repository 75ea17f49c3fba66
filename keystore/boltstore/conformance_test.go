package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/memstore"
	"github.com/securemail/securemail/keystore/storetest"
)

func TestBoltAdminConformance(t *testing.T) {
	storetest.RunAdmin(t, func(t *testing.T) keystore.Store {
		s := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestBoltCopyConformance(t *testing.T) {
	storetest.RunCopies(t, func(t *testing.T) keystore.Store {
		return openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	})
}

func TestBoltDumpConformance(t *testing.T) {
	storetest.RunDump(t, func(t *testing.T) storetest.DumpStore {
		s := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestBoltExportImportsIntoMemstore checks the bbolt export against the
// reference: imported into memstore it lists exactly what memstore lists
// after the same writes.
func TestBoltExportImportsIntoMemstore(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	defer b.Close()
	ref := memstore.New()
	storetest.Fill(t, b, 10)
	storetest.Fill(t, ref, 10)
	want, got := storetest.Dump(t, ref), storetest.Dump(t, b)
	if len(got) != len(want) {
		t.Fatalf("bbolt exports %d items, memstore %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("item %d:\n%s\nwant\n%s", i, got[i], want[i])
		}
	}
}
