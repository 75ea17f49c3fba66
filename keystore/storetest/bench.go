package storetest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/securemail/securemail/keystore"
)

// BenchCreate measures durable key creation on s by writers goroutines
// that share b.N records, and reports records/s; a benchmark per backend
// calls it so their figures compare.
func BenchCreate(b *testing.B, s keystore.KeyStore, writers int) {
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	b.ReportAllocs()
	b.ResetTimer()
	for range writers {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				if err := s.CreateKey(context.Background(), Record(int(n))); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
