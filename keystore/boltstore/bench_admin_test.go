package boltstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/storetest"
)

// benchStoreKeys is the size of the store the admin benchmarks work on;
// SECUREMAIL_BENCH_KEYS overrides it.
func benchStoreKeys() int {
	n := 100000
	if v := os.Getenv("SECUREMAIL_BENCH_KEYS"); v != "" {
		fmt.Sscan(v, &n)
	}
	return n
}

func fillForBench(b *testing.B, s *boltstore.Store, n int) {
	b.Helper()
	work := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 256 {
		wg.Go(func() {
			for i := range work {
				if err := s.CreateKey(context.Background(), storetest.Record(i)); err != nil {
					failed.CompareAndSwap(nil, err)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// openBenchStore opens a store filled with benchStoreKeys records.
func openBenchStore(b *testing.B) (*boltstore.Store, string, int) {
	b.Helper()
	n := benchStoreKeys()
	dir := b.TempDir()
	s, err := boltstore.Open(filepath.Join(dir, "keys.db"), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	fillForBench(b, s, n)
	return s, dir, n
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkListKeys times one full EachKey listing of a 100 000-key store
// (ms/op), the work behind "securemail keys list", and reports the CPU it
// took (cpu-ms/op, every thread, garbage collection included), which on a
// loaded machine says more than the time.
func BenchmarkListKeys(b *testing.B) {
	s, _, n := openBenchStore(b)
	b.ResetTimer()
	cpu0 := processCPU(b)
	defer func() { b.ReportMetric(float64((processCPU(b)-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op") }()
	for b.Loop() {
		count := 0
		if err := s.EachKey(context.Background(), keystore.KeyFilter{}, func(keystore.KeyRecord) error { count++; return nil }); err != nil {
			b.Fatal(err)
		}
		if count < n {
			b.Fatalf("listed %d", count)
		}
	}
}

// BenchmarkCommitDuringAdmin measures what an admin listing or an online
// backup of a 100 000-key store costs the mail path. Each sub-benchmark
// runs 8 goroutines calling CreateKey (the milter's commits, fsync on) for
// b.N records and reports records/s and the slowest single commit
// (max-commit-ms); "alone" is the baseline, measured in the same run on the
// same file; "during-list" runs full EachKey listings back to back
// meanwhile, "during-backup" full Backups to a file.
func BenchmarkCommitDuringAdmin(b *testing.B) {
	s, dir, n := openBenchStore(b)
	var nextID atomic.Int64
	nextID.Store(int64(n))

	background := map[string]func(ctx context.Context) error{
		"alone": nil,
		"during-list": func(ctx context.Context) error {
			return s.EachKey(ctx, keystore.KeyFilter{}, func(keystore.KeyRecord) error { return nil })
		},
		"during-backup": func(ctx context.Context) error {
			f, err := os.Create(filepath.Join(dir, "backup.db"))
			if err != nil {
				return err
			}
			_, err = s.Backup(ctx, f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		},
	}
	for _, name := range []string{"alone", "during-list", "during-backup"} {
		b.Run(name, func(b *testing.B) {
			ctx, stop := context.WithCancel(context.Background())
			bgDone := make(chan error, 1)
			var rounds atomic.Int64
			if bg := background[name]; bg != nil {
				go func() {
					for ctx.Err() == nil {
						if err := bg(ctx); err != nil && ctx.Err() == nil {
							bgDone <- err
							return
						}
						rounds.Add(1)
					}
					bgDone <- nil
				}()
				for rounds.Load() == 0 && name == "during-backup" {
					time.Sleep(time.Millisecond) // the first copy is under way
				}
			} else {
				bgDone <- nil
			}
			var left atomic.Int64
			left.Store(int64(b.N))
			var maxNanos atomic.Int64
			var wg sync.WaitGroup
			var failed atomic.Value
			b.ResetTimer()
			for range 8 {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						rec := storetest.Record(int(nextID.Add(1)))
						start := time.Now()
						if err := s.CreateKey(context.Background(), rec); err != nil {
							failed.CompareAndSwap(nil, err)
							return
						}
						d := time.Since(start).Nanoseconds()
						for {
							m := maxNanos.Load()
							if d <= m || maxNanos.CompareAndSwap(m, d) {
								break
							}
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			stop()
			if err := <-bgDone; err != nil {
				b.Fatal(err)
			}
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(maxNanos.Load())/1e6, "max-commit-ms")
			b.ReportMetric(float64(rounds.Load()), "bg-rounds")
		})
	}
}
