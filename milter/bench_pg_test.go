package milter

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore/pgstore"
)

// startPostgresBenchFilter starts a private PostgreSQL with the durability
// of a production primary (fsync and synchronous_commit on, no standby)
// and a Filter on it, and returns the Filter's socket, or "" when
// PostgreSQL is not installed. The server's files are on the same disk as
// the bbolt target's (TMPDIR), so the two commits pay for the same fsync.
func startPostgresBenchFilter(b *testing.B) string {
	b.Helper()
	if pgtest.BinDir() == "" {
		b.Log("PostgreSQL is not installed (Debian: apt-get install postgresql): no securemail-postgres target")
		return ""
	}
	srv := pgtest.Start(b, pgtest.Options{})
	store, err := pgstore.Open(context.Background(), pgstore.Options{DSN: srv.DSN(srv.NewDatabase(b))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	sockDir, err := os.MkdirTemp("", "smp")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "p.sock")
	startBenchFilter(b, filepath.Join(b.TempDir(), "pg"), store, sock)
	return sock
}
