package pgstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/pgstore"
	"github.com/securemail/securemail/keystore/storetest"
)

// BenchmarkCommit measures durable key commits per second (records/s) on
// PostgreSQL (fsync and synchronous_commit on, no standby, unix socket)
// against the bbolt baseline in the same run and on the same disk, with
// 1, 8 and 32 goroutines calling CreateKey at once. PostgreSQL groups
// commits across connections (one WAL flush for the commits waiting for
// it); bbolt groups them in its one committer goroutine.
func BenchmarkCommit(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{})
	dir := b.TempDir()
	var runs atomic.Int64
	for _, writers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("bolt-%d-writers", writers), func(b *testing.B) {
			s, err := boltstore.Open(filepath.Join(dir, fmt.Sprintf("keys-%d.db", runs.Add(1))), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			storetest.BenchCreate(b, s, writers)
		})
		b.Run(fmt.Sprintf("postgres-%d-writers", writers), func(b *testing.B) {
			s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: srv.DSN(srv.NewDatabase(b)), MaxConns: 32})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			storetest.BenchCreate(b, s, writers)
		})
	}
}
