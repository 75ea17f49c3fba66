package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

// TestPostfixThroughputDuringKeysList measures the milter's tagged
// throughput through a real Postfix (as TestPostfixThroughput's D) on a
// store of 100 000 keys, alone and while "securemail keys list" lists the
// whole store back to back, interleaved in rounds (SECUREMAIL_BENCH_E2E_ROUNDS,
// default 3), with serve's and the machine's CPU per message. Only with
// SECUREMAIL_BENCH_E2E=1; BENCHMARKS.md (issue 10) reports it. Nothing
// asserts a time.
func TestPostfixThroughputDuringKeysList(t *testing.T) {
	t.Parallel()
	if os.Getenv(tpEnv) != "1" {
		t.Skipf("throughput benchmark: set %s=1 to run it (root, Postfix, smtp-source, smtp-sink)", tpEnv)
	}
	mtatest.RequireTools(t, append([]string{"smtp-source", "smtp-sink"}, mtatest.PostfixTools...)...)
	mtatest.RequireRoot(t)
	msgs := tpEnvInt(t, tpMsgsEnv, 600)
	rounds := tpEnvInt(t, tpRoundsEnv, 3)
	nKeys := tpEnvInt(t, "SECUREMAIL_ADMIN_E2E_KEYS", 100000)

	bin := e2eBuild(t)
	sink := tpStartSmtpSink(t)
	pf := mtatest.NewPostfix(t, mtatest.PostfixOptions{
		RelayHost: sink.addr,
		MainCF:    e2eReadSnippet(t, "main.cf.snippet"),
	})
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)
	config := tpWriteConfig(t, milterAddr, pf.SMTPAddr())
	cfg, err := loadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	aeFillStore(t, cfg, nKeys)
	srv := e2eStartServe(t, bin, config, milterAddr)
	pf.Start(t)
	tagged := tpConfig{key: "D", name: "securemail, [encrypt]", addr: pf.SMTPAddr(), subject: e2eTag + " " + tpSubject, verdict: "sealed"}
	tpRun(t, pf, sink, srv, tagged, tpWarmup)

	var alone, during, ratios []float64
	var cpuAlone, cpuDuring, machAlone, machDuring []float64
	listings := 0
	var listingTime time.Duration
	loadBefore := tpLoadAvg()
	for r := 1; r <= rounds; r++ {
		a := tpRun(t, pf, sink, srv, tagged, msgs)
		ctx, stop := context.WithCancel(context.Background())
		var lists, took atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ctx.Err() == nil {
				cmd := exec.CommandContext(ctx, bin, "keys", "list", "--config", config)
				start := time.Now()
				if err := cmd.Run(); err != nil {
					if ctx.Err() == nil {
						t.Errorf("keys list: %v", err)
					}
					return
				}
				took.Add(int64(time.Since(start)))
				lists.Add(1)
			}
		}()
		time.Sleep(200 * time.Millisecond) // the first listing is under way
		d := tpRun(t, pf, sink, srv, tagged, msgs)
		stop()
		<-done
		listings += int(lists.Load())
		listingTime += time.Duration(took.Load())
		alone, during, ratios = append(alone, a.rate), append(during, d.rate), append(ratios, d.rate/a.rate)
		cpuAlone, cpuDuring = append(cpuAlone, a.cpu.serve), append(cpuDuring, d.cpu.serve)
		machAlone, machDuring = append(machAlone, a.cpu.machine), append(machDuring, d.cpu.machine)
		t.Logf("round %d: alone %.1f msgs/s, during keys list %.1f msgs/s (%.2f; %d listings); CPU per message: serve %.2f -> %.2f ms, machine %.2f -> %.2f ms",
			r, a.rate, d.rate, d.rate/a.rate, lists.Load(), a.cpu.serve, d.cpu.serve, a.cpu.machine, d.cpu.machine)
	}
	ma, md := tpMedian(alone), tpMedian(during)
	var per time.Duration
	if listings > 0 {
		per = listingTime / time.Duration(listings)
	}
	t.Logf("tagged throughput, median of %d rounds of %d messages: alone %.1f msgs/s, during back-to-back keys list of %d keys %.1f msgs/s, ratio %.2f (median of the rounds' ratios %.2f); %d listings in all, %v each while mail flowed",
		rounds, msgs, ma, nKeys, md, md/ma, tpMedian(ratios), listings, per.Round(time.Millisecond))
	t.Logf("CPU per message, medians: serve %.2f ms alone, %.2f ms during; whole machine %.2f ms alone, %.2f ms during; load average before %s, after %s",
		tpMedian(cpuAlone), tpMedian(cpuDuring), tpMedian(machAlone), tpMedian(machDuring), loadBefore, tpLoadAvg())
}
