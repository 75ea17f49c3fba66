package portal

// The Performance part of issue 9: a burst of 100 simultaneous sign-ins
// must not hold a legitimate sign-in past 2 s. Opt-in, because it runs
// real argon2id at the default cost (64 MiB, t=3, p=4, two at a time):
//
//	SECUREMAIL_BENCH_BURST=1 go test ./portal -run '^TestSignInLatencyDuringBurst$' -count=1 -v
//
// BENCHMARKS.md ("Issue 9") keeps the figures with this command.

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestSignInLatencyDuringBurst(t *testing.T) {
	t.Parallel()
	if os.Getenv("SECUREMAIL_BENCH_BURST") != "1" {
		t.Skip("set SECUREMAIL_BENCH_BURST=1 to measure sign-in latency during a burst (real argon2id cost)")
	}
	const burstSize, rounds = 100, 5
	e := newTestEnv(t, func(o *Options) {
		o.Hasher = NewHasher(DefaultArgon2, 2) // serve's default: 2 at once, 4 waiting
		o.TrustedProxies = trustLoopback
		o.Limits.UploadsPerClient = Rate{1 << 20, time.Hour}
		o.Uploads.PerClient = 1 << 20
	})
	s := e.seal(alice, []string{bob, carol}, plainMessage)
	e.browser().register(s, bob)
	e.browser().register(s, carol)

	// legit signs carol in from her own client and returns how long the
	// answer took and what it was.
	legit := func() (time.Duration, int) {
		b := atSignIn(e, s, carol, 1)[0]
		b.forwardedFor = "203.0.113.7"
		start := time.Now()
		r := b.post("/signin", url.Values{"password": {testPassword}})
		return time.Since(start), r.status
	}
	type sample struct {
		d      time.Duration
		status int
		busy   int // 503 answers in the burst
	}
	run := func(kind string) sample {
		e.clock.Advance(16 * time.Minute) // every window of the last round has ended
		if kind == "baseline" {
			d, st := legit()
			return sample{d: d, status: st}
		}
		bs := make([]*browser, burstSize)
		for i := range bs {
			addr := bob
			if kind == "distributed" {
				addr = fmt.Sprintf("guess%d@external.test", i)
			}
			bs[i] = atSignIn(e, s, addr, 1)[0]
			bs[i].forwardedFor = "198.51.100.1"
			if kind == "distributed" {
				bs[i].forwardedFor = fmt.Sprintf("198.51.%d.%d", 100+i/250, i%250+1)
			}
		}
		rs := make([]response, burstSize+1)
		var got sample
		burst(burstSize+1, func(i int) {
			if i == burstSize {
				time.Sleep(20 * time.Millisecond) // lands while the burst is being served
				got.d, got.status = legit()
				return
			}
			rs[i] = bs[i].post("/signin", url.Values{"password": {"wrong password here"}})
		})
		for _, r := range rs[:burstSize] {
			if r.status == http.StatusServiceUnavailable {
				got.busy++
			}
		}
		return got
	}
	// Peak RSS: reset the high-water mark (Linux clear_refs 5), so that
	// what the bursts add shows. Waiting checks hold no argon2 memory:
	// the bound is 2 x 64 MiB for the running ones.
	rssBefore := vmHWM(t, true)
	kinds := []string{"baseline", "one-address", "distributed"}
	results := map[string][]sample{}
	for range rounds {
		for _, k := range kinds { // interleaved, so drift of the machine hits all three
			results[k] = append(results[k], run(k))
		}
	}
	med := func(ss []sample) time.Duration {
		ds := make([]time.Duration, len(ss))
		for i, x := range ss {
			ds[i] = x.d
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	base := med(results["baseline"])
	var out strings.Builder
	fmt.Fprintf(&out, "argon2id %+v, 2 at once, %d waiting at most, 1 s each; %d rounds\n", DefaultArgon2, 4, rounds)
	fmt.Fprintf(&out, "%-12s %10s %10s %8s %s\n", "scenario", "median", "max", "ratio", "legit answers / busy answers in the burst")
	for _, k := range kinds {
		var worst time.Duration
		var statuses, busy []string
		for _, x := range results[k] {
			worst = max(worst, x.d)
			statuses = append(statuses, fmt.Sprint(x.status))
			busy = append(busy, fmt.Sprint(x.busy))
		}
		fmt.Fprintf(&out, "%-12s %10v %10v %8.2f %s / %s\n", k, med(results[k]).Round(time.Millisecond), worst.Round(time.Millisecond),
			float64(med(results[k]))/float64(base), strings.Join(statuses, ","), strings.Join(busy, ","))
		// The bound is 2 s on a machine where one sign-in takes a
		// few hundred ms; on a loaded machine, where one sign-in alone
		// takes longer, the bound is twice the baseline measured in the
		// same run.
		if limit := max(2*time.Second, 2*base); med(results[k]) > limit {
			t.Errorf("%s: a legitimate sign-in took %v (median) during a burst of %d (limit %v)", k, med(results[k]), burstSize, limit)
		}
	}
	fmt.Fprintf(&out, "peak RSS (VmHWM) during the runs: %d MiB; after registering, before the runs: %d MiB\n", vmHWM(t, false)>>10, rssBefore>>10)
	t.Log("\n" + out.String())
}

// vmHWM returns the process's peak RSS in KiB, resetting the peak
// afterwards when reset is set (and the kernel allows it).
func vmHWM(t *testing.T, reset bool) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	var kib int64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kib)
		}
	}
	if reset {
		_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	}
	return kib
}
