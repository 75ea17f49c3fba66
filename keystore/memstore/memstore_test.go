package memstore_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/memstore"
	"github.com/securemail/securemail/keystore/storetest"
)

func open(t *testing.T) *memstore.Store {
	s := memstore.New()
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) keystore.KeyStore { return memstore.New() })
}

func TestPortalConformance(t *testing.T) {
	storetest.RunPortal(t, func(t *testing.T) keystore.PortalStore { return open(t) })
}

func TestAdminConformance(t *testing.T) {
	storetest.RunAdmin(t, func(t *testing.T) keystore.Store { return open(t) })
}

func TestCopyConformance(t *testing.T) {
	storetest.RunCopies(t, func(t *testing.T) keystore.Store { return memstore.New() })
}

func TestDumpConformance(t *testing.T) {
	storetest.RunDump(t, func(t *testing.T) storetest.DumpStore { return open(t) })
}

func TestBackupIsADump(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	if err := s.CreateKey(ctx, storetest.Record(1)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := s.Backup(ctx, &buf)
	if err != nil || n != int64(buf.Len()) || !bytes.Contains(buf.Bytes(), []byte(`"key":`)) {
		t.Fatalf("backup: %d bytes (%v): %s", n, err, buf.Bytes())
	}
}
