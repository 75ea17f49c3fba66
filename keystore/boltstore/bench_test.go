package boltstore_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/storetest"
)

// BenchmarkCommit measures durable key commits per second (records/s) on
// a bbolt file with fsync on, as `securemail serve` opens it (default
// Options: one committer goroutine commits the CreateKey calls waiting
// for it in groups of up to 256, with no timer), with 1, 8 and 32
// goroutines calling CreateKey at once. Its baseline, measured in the same
// run in the same directory, is raw-fsync: one record-sized f.Write and one
// f.Sync per record, the cost of a durable write without grouping. The
// ratio to it shows what grouping buys. No benchmark asserts a time.
// The directory is TMPDIR's: it must not be a tmpfs, where fsync is free.
func BenchmarkCommit(b *testing.B) {
	dir := b.TempDir()
	var runs atomic.Int64 // a fresh file for every run of a sub-benchmark

	b.Run("raw-fsync", func(b *testing.B) {
		rec, err := json.Marshal(storetest.Record(1))
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("raw-%d.log", runs.Add(1)))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := f.Close(); err != nil {
				b.Error(err)
			}
		})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.Write(rec); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})

	for _, writers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("bolt-%d-writers", writers), func(b *testing.B) {
			path := filepath.Join(dir, fmt.Sprintf("keys-%d.db", runs.Add(1)))
			s, err := boltstore.Open(path, boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				if err := s.Close(); err != nil {
					b.Error(err)
				}
			})
			storetest.BenchCreate(b, s, writers)
		})
	}
}
