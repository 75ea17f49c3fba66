package main

// End-to-end throughput: Postfix's smtp-source feeds a private Postfix
// (mtatest, main.cf from contrib/postfix/main.cf.snippet) that relays
// everything to Postfix's smtp-sink, and the test measures delivered
// messages per second with and without a milter. Only with
// SECUREMAIL_BENCH_E2E=1; .ci/bench runs it and BENCHMARKS.md ("End to end
// through Postfix") reports it. Nothing here asserts a time: the test fails
// only when a message is lost, not decided as expected or not sealed.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/internal/syncbuf"
)

const (
	tpEnv        = "SECUREMAIL_BENCH_E2E"        // "1": run TestPostfixThroughput
	tpOutEnv     = "SECUREMAIL_BENCH_OUT"        // file the summary is also written to
	tpMsgsEnv    = "SECUREMAIL_BENCH_E2E_MSGS"   // messages per configuration and round
	tpRoundsEnv  = "SECUREMAIL_BENCH_E2E_ROUNDS" // rounds of A B C D
	tpSessions   = 4                             // smtp-source -s
	tpLength     = 2048                          // smtp-source -l: body bytes
	tpWarmup     = 100                           // untimed messages per configuration first
	tpRunTimeout = 2 * time.Minute               // one configuration's run, submit to drain
	tpSender     = "sender@example.test"         // internal domain: a local user
	tpRcpt       = "someone@external.test"       // external: a tagged message is sealed
	tpSampleDom  = "sample.test"                 // routed to an mtatest.Sink, for content checks
	tpSubject    = "load test"
	tpBodyMarker = "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX" // smtp-source's body lines are "1XXX..."
)

// tpConfig is one of the four configurations a round measures.
type tpConfig struct {
	key, name string
	addr      string // the smtpd port smtp-source talks to
	subject   string
	verdict   string // securemail's verdict for every message; "" without securemail
}

// TestPostfixThroughput measures messages per second through a real Postfix
// in four configurations, interleaved in one run (A B C D, rounds times):
//
//	A  no milter                          the physical limit of Postfix here
//	B  go-milter's NoOpMilter             the baseline (in the test process, TCP)
//	C  securemail, untagged 2 KiB mail    target C/B >= 0.9
//	D  securemail, [encrypt] 2 KiB mail   target D/B >= 0.7; every message sealed
//
// smtp-source sends N messages in 4 sessions, one message per SMTP
// connection, from 127.0.0.1 to the unauthenticated port; securemail's
// test config lists loopback in trusted_networks and tls_exempt_networks,
// so this mail is a submission. A run's time is from the start of
// smtp-source to the N-th message arriving at smtp-sink (counted with its
// -c counters); the queue must be empty before the next run starts.
func TestPostfixThroughput(t *testing.T) {
	t.Parallel()
	if os.Getenv(tpEnv) != "1" {
		t.Skipf("throughput benchmark: set %s=1 to run it (root, Postfix, smtp-source, smtp-sink; about 2 minutes): "+
			"%s=1 go test ./cmd/securemail -run TestPostfixThroughput -v -timeout 15m, or .ci/bench", tpEnv, tpEnv)
	}
	mtatest.RequireTools(t, append([]string{"smtp-source", "smtp-sink"}, mtatest.PostfixTools...)...)
	mtatest.RequireRoot(t)
	msgs := tpEnvInt(t, tpMsgsEnv, 2000)
	rounds := tpEnvInt(t, tpRoundsEnv, 5)
	began := time.Now()
	loadBefore := tpLoadAvg()

	bin := e2eBuild(t)
	sink := tpStartSmtpSink(t)
	sample := mtatest.StartSink(t)

	// Two extra smtpd listeners besides mtatest's own (which uses
	// main.cf's smtpd_milters, securemail): one without a milter and one
	// with the no-op milter. No reload between runs.
	noop := tpStartNoopMilter(t)
	portA := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	portB := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	masterCF := fmt.Sprintf(`%s inet n - n - - smtpd
  -o syslog_name=postfix/bench-nomilter
  -o smtpd_milters=
%s inet n - n - - smtpd
  -o syslog_name=postfix/bench-noop
  -o smtpd_milters=inet:%s
`, portA, portB, noop)
	pf := mtatest.NewPostfix(t, mtatest.PostfixOptions{
		RelayHost: sink.addr,
		MainCF:    e2eReadSnippet(t, "main.cf.snippet"),
		MasterCF:  masterCF,
	})
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e",
		"smtpd_milters=inet:"+milterAddr,
		// The content checks below go to the in-process sink, which keeps
		// files; the timed runs go to smtp-sink, which keeps nothing.
		"transport_maps=inline:{"+tpSampleDom+"=smtp:["+strings.Replace(sample.Addr, ":", "]:", 1)+"}")
	srv := e2eStartServe(t, bin, tpWriteConfig(t, milterAddr, pf.SMTPAddr()), milterAddr)
	pf.Start(t)

	configs := []tpConfig{
		{key: "A", name: "no milter", addr: portA, subject: tpSubject},
		{key: "B", name: "no-op go-milter", addr: portB, subject: tpSubject},
		{key: "C", name: "securemail, untagged", addr: pf.SMTPAddr(), subject: tpSubject, verdict: "pass"},
		{key: "D", name: "securemail, [encrypt]", addr: pf.SMTPAddr(), subject: e2eTag + " " + tpSubject, verdict: "sealed"},
	}

	// What securemail does to this traffic, checked on a few messages
	// that go to the file-keeping sink: C passes as is, D is sealed.
	tpSource(t, configs[2].addr, configs[2].subject, "plain@"+tpSampleDom, 2, 1)
	tpSource(t, configs[3].addr, configs[3].subject, "sealed@"+tpSampleDom, 3, 1)
	got, err := sample.Wait(5, 30*time.Second)
	if err != nil {
		t.Fatalf("%v\nmaillog:\n%s", err, tpTail(pf.Log(), 40))
	}
	var plainSize, sealedSize int // as delivered, of the last sample of each
	for _, m := range got {
		if len(m.Rcpts) == 1 && strings.HasPrefix(m.Rcpts[0], "sealed@") {
			e2eCheckSealed(t, m, tpBodyMarker, tpSubject)
			sealedSize = len(m.Data)
		} else {
			e2eCheckPlain(t, m, tpBodyMarker, tpSubject)
			plainSize = len(m.Data)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Warm-up, untimed: smtpd and smtp processes, the key store file,
	// connection caches.
	for _, c := range configs {
		tpRun(t, pf, sink, srv, c, tpWarmup)
	}

	results := make(map[string][]tpResult) // per configuration, one per round
	for r := 1; r <= rounds; r++ {
		line := fmt.Sprintf("round %d:", r)
		for _, c := range configs {
			res := tpRun(t, pf, sink, srv, c, msgs)
			results[c.key] = append(results[c.key], res)
			line += fmt.Sprintf(" %s %.1f", c.key, res.rate)
		}
		t.Log(line + " msgs/s")
	}

	if n := strings.Count(srv.log.String(), "level=ERROR"); n != 0 {
		t.Errorf("securemail logged %d error(s):\n%s", n, tpTail(srv.log.String(), 20))
	}
	summary := tpSummary(configs, results, tpMeta{
		msgs: msgs, rounds: rounds, began: began, took: time.Since(began),
		postfix:    strings.TrimSpace(pf.Postconf(t, "-h", "mail_version")),
		loadBefore: loadBefore, loadAfter: tpLoadAvg(),
		plainSize: plainSize, sealedSize: sealedSize,
	})
	t.Log("\n" + summary)
	if out := os.Getenv(tpOutEnv); out != "" {
		if err := os.WriteFile(out, []byte(summary), 0o644); err != nil {
			t.Errorf("%s: %v", tpOutEnv, err)
		}
	}
}

// tpRun sends n messages in configuration c and returns delivered messages
// per second: n over the time from the start of smtp-source to the n-th
// delivery at the sink. It checks that exactly n arrived, that the queue
// drained and that securemail logged its verdict for each.
func tpRun(t *testing.T, pf *mtatest.Postfix, sink *tpSink, srv *e2eServe, c tpConfig, n int) tpResult {
	t.Helper()
	base := sink.count()
	verdict := "verdict=" + c.verdict + " "
	var verdictsBefore int
	if c.verdict != "" {
		verdictsBefore = strings.Count(srv.log.String(), verdict)
	}
	deadline := time.Now().Add(tpRunTimeout)
	cpu0 := tpReadCPU(srv.cmd.Process.Pid)
	start := time.Now()
	tpSource(t, c.addr, c.subject, tpRcpt, n, tpSessions)
	last, err := sink.waitFor(base+n, time.Until(deadline))
	cpu := tpReadCPU(srv.cmd.Process.Pid).sub(cpu0)
	if err != nil {
		t.Fatalf("%s (%s): %v\nqueue: %v\nmaillog:\n%s", c.key, c.name, err, pf.QueueIDs(t), tpTail(pf.Log(), 40))
	}
	if err := pf.WaitQueueEmpty(t, time.Until(deadline)); err != nil {
		t.Fatalf("%s (%s): %v", c.key, c.name, err)
	}
	if got := sink.count() - base; got != n {
		t.Fatalf("%s (%s): smtp-sink counted %d messages, want %d", c.key, c.name, got, n)
	}
	if c.verdict != "" {
		// serve's log reaches us through a pipe, a moment after the reply.
		for {
			got := strings.Count(srv.log.String(), verdict) - verdictsBefore
			if got == n {
				break
			}
			if got > n || time.Now().After(deadline) {
				t.Fatalf("%s (%s): securemail logged %q for %d messages, want %d", c.key, c.name, verdict, got, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return tpResult{rate: float64(n) / last.Sub(start).Seconds(), cpu: cpu.per(n)}
}

// tpResult is one run: delivered messages per second and CPU per message.
type tpResult struct {
	rate float64
	cpu  tpCPU
}

// tpCPU is CPU time in milliseconds: of the whole machine (all processes,
// busy time only, from /proc/stat), of securemail serve and of the test
// process (smtp-sink's counter reader; the no-op milter in B; serve's log
// copy in C and D). Clock ticks of 10 ms: good for thousands of messages,
// not for one.
type tpCPU struct{ machine, serve, self float64 }

func (c tpCPU) sub(d tpCPU) tpCPU {
	return tpCPU{c.machine - d.machine, c.serve - d.serve, c.self - d.self}
}

func (c tpCPU) per(n int) tpCPU {
	f := float64(n)
	return tpCPU{c.machine / f, c.serve / f, c.self / f}
}

// tpTickMS is the length of a clock tick of /proc in ms (USER_HZ is 100
// on Linux).
const tpTickMS = 10

// tpReadCPU reads the machine's busy CPU time (user, nice, system, irq,
// softirq; not idle, iowait or steal) and the CPU time of process pid and
// of this process.
func tpReadCPU(pid int) tpCPU {
	var c tpCPU
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for _, i := range []int{1, 2, 3, 6, 7} {
			if i < len(f) {
				v, _ := strconv.ParseFloat(f[i], 64)
				c.machine += v * tpTickMS
			}
		}
	}
	proc := func(pid string) float64 {
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return 0
		}
		// After "(comm)": state is field 3; utime and stime are 14 and 15.
		_, rest, _ := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if len(f) < 13 {
			return 0
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		return (u + s) * tpTickMS
	}
	c.serve = proc(strconv.Itoa(pid))
	c.self = proc("self")
	return c
}

// tpSource runs smtp-source: n messages of tpLength body bytes from
// tpSender to rcpt in the given number of parallel sessions, one message
// per connection, to addr.
func tpSource(t *testing.T, addr, subject, rcpt string, n, sessions int) {
	t.Helper()
	bin, err := mtatest.LookTool("smtp-source")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tpRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(n),
		"-l", strconv.Itoa(tpLength), "-S", subject, "-f", tpSender, "-t", rcpt,
		"-M", "client.example.test", addr)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("smtp-source to %s: %v\n%s", addr, err, out)
	}
}

// tpSink is Postfix's smtp-sink, which throws every message away and, with
// -c, prints its counters ("sess=N quit=N mesg=N\r") each time one changes.
type tpSink struct {
	addr string
	mu   sync.Mutex
	at   []time.Time   // at[i]: when message i+1 arrived
	more chan struct{} // closed and replaced when at grows
	done chan struct{} // closed when smtp-sink's output ends
}

func tpStartSmtpSink(t *testing.T) *tpSink {
	t.Helper()
	bin, err := mtatest.LookTool("smtp-sink")
	if err != nil {
		t.Fatal(err)
	}
	s := &tpSink{
		addr: fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t)),
		more: make(chan struct{}),
		done: make(chan struct{}),
	}
	// As root smtp-sink needs -u. Without -d or -D it writes no files.
	cmd := exec.Command(bin, "-c", "-u", "nobody", s.addr, "1024")
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("smtp-sink: %v", err)
	}
	go s.read(out)
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if err := mtatest.WaitListening(s.addr, 10*time.Second); err != nil {
		t.Fatalf("smtp-sink: %v\n%s", err, stderr.String())
	}
	return s
}

var tpMesgRE = regexp.MustCompile(`mesg=(\d+)`)

func (s *tpSink) read(r io.Reader) {
	defer close(s.done)
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\r')
		if m := tpMesgRE.FindStringSubmatch(line); m != nil {
			now := time.Now()
			n, _ := strconv.Atoi(m[1])
			s.mu.Lock()
			if n > len(s.at) {
				for len(s.at) < n {
					s.at = append(s.at, now)
				}
				close(s.more)
				s.more = make(chan struct{})
			}
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func (s *tpSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at)
}

// waitFor waits until n messages have arrived in all and returns when the
// n-th did.
func (s *tpSink) waitFor(n int, timeout time.Duration) (time.Time, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if len(s.at) >= n {
			at := s.at[n-1]
			s.mu.Unlock()
			return at, nil
		}
		got, more := len(s.at), s.more
		s.mu.Unlock()
		select {
		case <-more:
		case <-s.done:
			return time.Time{}, errors.New("smtp-sink exited")
		case <-timer.C:
			return time.Time{}, fmt.Errorf("smtp-sink has %d messages after %v, want %d", got, timeout, n)
		}
	}
}

// tpStartNoopMilter serves go-milter's NoOpMilter on a free loopback TCP
// port, as milter/bench_test.go's baseline, and returns its address.
func tpStartNoopMilter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
		Actions:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptChangeBody,
		Protocol:  gomilter.OptNoUnknown,
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		// Server.Close races with Serve; closing the listener is enough.
		ln.Close()
		<-served
	})
	return ln.Addr().String()
}

// tpWriteConfig writes serve's config: the defaults an operator starts
// from (info log, loopback trusted and TLS-exempt, 20 MiB), data under a
// temporary directory on the same disk as Postfix's queue.
func tpWriteConfig(t *testing.T, milterAddr, smtpRelay string) string {
	t.Helper()
	return e2eWriteConfigWith(t, milterAddr, smtpRelay, e2eConfig{
		logLevel: "info", networks: `[127.0.0.0/8, "::1/128"]`, maxSize: "20MiB",
	})
}

type tpMeta struct {
	msgs, rounds          int
	began                 time.Time
	took                  time.Duration
	postfix               string
	loadBefore, loadAfter string
	plainSize, sealedSize int
}

// tpSummary is the table the test logs and writes to SECUREMAIL_BENCH_OUT:
// every round, then median [min-max] per configuration, the ratios of the
// medians and the median [min-max] of the per-round ratios.
func tpSummary(configs []tpConfig, results map[string][]tpResult, m tpMeta) string {
	pick := func(f func(tpResult) float64) map[string][]float64 {
		out := make(map[string][]float64)
		for k, rs := range results {
			for _, r := range rs {
				out[k] = append(out[k], f(r))
			}
		}
		return out
	}
	rates := pick(func(r tpResult) float64 { return r.rate })
	var b bytes.Buffer
	fmt.Fprintf(&b, "# TestPostfixThroughput %s\n", m.began.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "# %s, %d CPUs, Postfix %s; loadavg before %s, after %s\n",
		runtime.Version(), runtime.NumCPU(), m.postfix, m.loadBefore, m.loadAfter)
	fmt.Fprintf(&b, "# smtp-source -s %d -m %d -l %d, one message per connection, rounds of A B C D: %d (after %d warm-up messages each); took %v\n",
		tpSessions, m.msgs, tpLength, m.rounds, tpWarmup, m.took.Round(time.Second))
	fmt.Fprintf(&b, "# as delivered (headers included): untagged %d bytes, sealed %d bytes\n", m.plainSize, m.sealedSize)
	fmt.Fprintf(&b, "# msgs/s = messages delivered to smtp-sink / (start of smtp-source .. last delivery)\n\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "round\t"
	for _, c := range configs {
		head += c.key + " " + c.name + "\t"
	}
	fmt.Fprintln(tw, head+"C/B\tD/B\t")
	ratio := func(x, y string, i int) float64 { return rates[x][i] / rates[y][i] }
	for i := range rates[configs[0].key] {
		row := strconv.Itoa(i+1) + "\t"
		for _, c := range configs {
			row += fmt.Sprintf("%.1f\t", rates[c.key][i])
		}
		fmt.Fprintln(tw, row+fmt.Sprintf("%.2f\t%.2f\t", ratio("C", "B", i), ratio("D", "B", i)))
	}
	for _, stat := range []struct {
		name string
		f    func([]float64) float64
	}{{"median", tpMedian}, {"min", slices.Min[[]float64]}, {"max", slices.Max[[]float64]}} {
		row := stat.name + "\t"
		for _, c := range configs {
			row += fmt.Sprintf("%.1f\t", stat.f(rates[c.key]))
		}
		fmt.Fprintln(tw, row+"\t\t")
	}
	tw.Flush()

	med := func(k string) float64 { return tpMedian(rates[k]) }
	paired := func(x, y string) string {
		var rs []float64
		for i := range rates[x] {
			rs = append(rs, ratio(x, y, i))
		}
		return fmt.Sprintf("%.2f [%.2f-%.2f]", tpMedian(rs), slices.Min(rs), slices.Max(rs))
	}
	met := func(v, target float64) string {
		if v >= target {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintln(&b)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ratio\tof medians\tper round: median [min-max]\ttarget\t")
	for _, r := range []struct {
		x, y, what string
		target     float64
	}{
		{"C", "B", "securemail untagged / no-op", 0.9},
		{"D", "B", "securemail tagged / no-op", 0.7},
		{"B", "A", "no-op / no milter", 0},
		{"C", "A", "", 0},
		{"D", "A", "", 0},
	} {
		v := med(r.x) / med(r.y)
		target := ""
		if r.target > 0 {
			under := 0
			for i := range rates[r.x] {
				if ratio(r.x, r.y, i) < r.target {
					under++
				}
			}
			target = fmt.Sprintf(">= %.1f: %s (ratio of medians); %d of %d rounds under", r.target, met(v, r.target), under, len(rates[r.x]))
		}
		fmt.Fprintf(tw, "%s/%s %s\t%.2f\t%s\t%s\t\n", r.x, r.y, r.what, v, paired(r.x, r.y), target)
	}
	tw.Flush()

	fmt.Fprintf(&b, "\nCPU ms per delivered message, median [min-max] over the rounds (2 CPUs: 1 ms/msg of busy CPU caps at 2000 msgs/s)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	head = "\t"
	for _, c := range configs {
		head += c.key + "\t"
	}
	fmt.Fprintln(tw, head)
	for _, row := range []struct {
		name string
		f    func(tpResult) float64
	}{
		{"machine, all processes", func(r tpResult) float64 { return r.cpu.machine }},
		{"securemail serve", func(r tpResult) float64 { return r.cpu.serve }},
		{"test process", func(r tpResult) float64 { return r.cpu.self }},
	} {
		vals := pick(row.f)
		line := row.name + "\t"
		for _, c := range configs {
			v := vals[c.key]
			line += fmt.Sprintf("%.3f [%.3f-%.3f]\t", tpMedian(v), slices.Min(v), slices.Max(v))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	// tabwriter pads the last cell too.
	lines := strings.Split(b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

func tpMedian(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func tpEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

func tpLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// tpTail is the last n lines of s.
func tpTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
