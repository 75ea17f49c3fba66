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
// of a production primary (fsync and synchronous_commit on) and a Filter
// on it, and returns the Filter's socket, or "" when PostgreSQL is not
// installed. With standby, every commit also waits for a synchronous
// standby on the same machine (its WAL flushed there too). The servers'
// files are on the same disk as the bbolt target's (TMPDIR), so the
// commits pay for the same fsync.
func startPostgresBenchFilter(b *testing.B, standby bool) string {
	b.Helper()
	if pgtest.BinDir() == "" {
		b.Log("PostgreSQL is not installed (Debian: apt-get install postgresql): no securemail-postgres target")
		return ""
	}
	srv := pgtest.Start(b, pgtest.Options{})
	db := srv.NewDatabase(b)
	if standby {
		srv.StartStandby(b, "bench")
		srv.SetSynchronous(b, "bench")
	}
	store, err := pgstore.Open(context.Background(), pgstore.Options{DSN: srv.DSN(db)})
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
