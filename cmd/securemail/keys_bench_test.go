package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/storetest"
)

// benchListStore opens a bbolt store of SECUREMAIL_BENCH_KEYS (default
// 100 000) records.
func benchListStore(b *testing.B) (*boltstore.Store, int) {
	b.Helper()
	n := 100000
	if v := os.Getenv("SECUREMAIL_BENCH_KEYS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "keys.db"), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 256 {
		wg.Go(func() {
			for i := range work {
				if err := s.CreateKey(context.Background(), storetest.Record(i)); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return s, n
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkKeysListOp runs serve's side of "keys list" (opKeysList into
// the admin socket's frames) over a 100 000-key store and reports the CPU
// it takes (cpu-ms/op, every thread, garbage collection included): the
// CPU a listing takes away from the milter. ns/op includes the pacer's
// pauses.
func BenchmarkKeysListOp(b *testing.B) {
	s, n := benchListStore(b)
	env := &adminEnv{store: s, log: slog.New(slog.DiscardHandler)}
	var cpu time.Duration
	for b.Loop() {
		c0 := cpuTime(b)
		bw := bufio.NewWriter(io.Discard)
		res, err := opKeysList(context.Background(), env, nil, eofReader{}, &frameWriter{w: bw})
		if err != nil {
			b.Fatal(err)
		}
		if got := res.(countResult).Count; got != n {
			b.Fatalf("listed %d keys, want %d", got, n)
		}
		cpu += cpuTime(b) - c0
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
}
