package milter

import (
	"os"
	"path/filepath"
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
// connections at once (1 KiB tagged), where the key commits share fsyncs:
// ".../off" and ".../on" run one after the other; run it with -count to
// interleave them.
func BenchmarkMilterLinkFallbackParallel8(b *testing.B) {
	targets := []benchTarget{
		{name: "off", addr: startLinkBenchFilter(b, false), seals: true},
		{name: "on", addr: startLinkBenchFilter(b, true), seals: true},
	}
	c := benchCases[1]
	for _, tg := range targets {
		b.Run(c.name+"/"+tg.name, func(b *testing.B) { benchParallel(b, tg, c, 8) })
	}
}
