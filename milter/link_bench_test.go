package milter

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
)

// benchConfig, when set, adjusts the Config of the filters that
// startBenchFilter starts.
var benchConfig func(*Config)

// startLinkBenchFilter serves a Filter as startBenchFilter does, on its
// own bbolt file (fsync on), with portal.link_fallback on or off, and
// returns its socket.
func startLinkBenchFilter(b *testing.B, on bool) string {
	b.Helper()
	dir := b.TempDir()
	store, err := boltstore.Open(filepath.Join(dir, "keys.db"), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := store.Close(); err != nil {
			b.Error(err)
		}
	})
	sockDir, err := os.MkdirTemp("", "sml")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "f.sock")
	benchConfig = func(c *Config) {
		c.LinkFallback, c.LinkRetention, c.Copies = on, 720*time.Hour, keystore.CopyStore(store)
	}
	defer func() { benchConfig = nil }()
	startBenchFilter(b, dir, store, sock)
	return sock
}

// BenchmarkMilterLinkFallback is the cost per sealed message of
// portal.link_fallback: the same tagged message through two Filters on
// their own bbolt files, one keeping the server copy and one not, one
// connection at a time. Each iteration sends one message to each, in
// alternating order, and times each, so both figures come from the same
// moments of a noisy machine. Metrics: off-ms/msg, on-ms/msg and
// on/off, the ratio of the two means. ns/op is the pair.
func BenchmarkMilterLinkFallback(b *testing.B) {
	off := benchTarget{name: "off", addr: startLinkBenchFilter(b, false), seals: true}
	on := benchTarget{name: "on", addr: startLinkBenchFilter(b, true), seals: true}
	for _, c := range benchCases {
		if !c.tagged {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(2 * c.size))
			var offT, onT time.Duration
			n := 0
			for b.Loop() {
				pair := [2]benchTarget{off, on}
				if n%2 == 1 {
					pair = [2]benchTarget{on, off}
				}
				for _, tg := range pair {
					start := time.Now()
					if _, err := tg.deliver(c, nil); err != nil {
						b.Fatal(err)
					}
					if tg.name == "on" {
						onT += time.Since(start)
					} else {
						offT += time.Since(start)
					}
				}
				n++
			}
			b.ReportMetric(float64(offT.Microseconds())/1000/float64(n), "off-ms/msg")
			b.ReportMetric(float64(onT.Microseconds())/1000/float64(n), "on-ms/msg")
			b.ReportMetric(float64(onT)/float64(offT), "on/off")
		})
	}
}

// BenchmarkMilterLinkFallbackParallel8 is the same comparison with 8
// connections at once (1 KiB tagged), where commits share fsyncs: each of
// 8 sessions sends pairs of messages, one to each Filter in alternating
// order, and the times of each side are summed. Metrics as
// BenchmarkMilterLinkFallback's (mean latency of one message while 8
// sessions run), and msgs/s of both sides together.
func BenchmarkMilterLinkFallbackParallel8(b *testing.B) {
	off := benchTarget{name: "off", addr: startLinkBenchFilter(b, false), seals: true}
	on := benchTarget{name: "on", addr: startLinkBenchFilter(b, true), seals: true}
	c := benchCases[1]
	b.Run(c.name, func(b *testing.B) {
		var (
			next, offNS, onNS atomic.Int64
			errOnce           sync.Once
			firstErr          error
			wg                sync.WaitGroup
		)
		b.ResetTimer()
		for s := range 8 {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
					pair := [2]benchTarget{off, on}
					if (i+int64(s))%2 == 1 {
						pair = [2]benchTarget{on, off}
					}
					for _, tg := range pair {
						start := time.Now()
						if _, err := tg.deliver(c, nil); err != nil {
							errOnce.Do(func() { firstErr = err })
							return
						}
						if tg.name == "on" {
							onNS.Add(int64(time.Since(start)))
						} else {
							offNS.Add(int64(time.Since(start)))
						}
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		if firstErr != nil {
			b.Fatal(firstErr)
		}
		b.ReportMetric(float64(offNS.Load())/1e6/float64(b.N), "off-ms/msg")
		b.ReportMetric(float64(onNS.Load())/1e6/float64(b.N), "on-ms/msg")
		b.ReportMetric(float64(onNS.Load())/float64(offNS.Load()), "on/off")
		b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
