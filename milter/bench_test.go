package milter

// Benchmarks of the milter as Postfix drives it: go-milter's own Client on
// a unix socket, one message per milter connection (Conn, Helo, macros,
// MAIL, RCPT, headers, body chunks, EOM, Close). Every case runs twice in
// the same process and the same run: against the Filter (".../securemail")
// and against go-milter's NoOpMilter (".../noop"), the baseline the
// figures in BENCHMARKS.md are ratios of. No benchmark asserts a time.
//
// The filter is configured as `securemail serve` configures it: a bbolt
// key store with fsync on (in the temporary directory: TMPDIR must not be
// a tmpfs), the default spool threshold, info-level logging (formatted,
// then discarded), the real clock and crypto/rand.
//
// The client side stands in for the MTA's queue file: replacement body
// packets are counted as they arrive and then dropped (sinkConn), so the
// client never holds a sealed body and the heap figures are the milter's.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/memstore"
)

// benchPattern is the body every benchmark message repeats: 840 lines of 76
// base64 characters and CRLF (an attachment, as far as size goes), from a
// fixed seed. Its 65520 bytes are one body chunk (MaxBodyChunk is 65535).
// A body is the pattern repeated and cut to size, so even a 20 MiB message
// never sits in the benchmark's own memory.
var benchPattern = func() []byte {
	const lines = 840
	raw := make([]byte, 57*lines)
	mrand.NewChaCha8([32]byte{'b', 'e', 'n', 'c', 'h'}).Read(raw)
	out := make([]byte, 0, 78*lines)
	for i := 0; i < len(raw); i += 57 {
		out = base64.StdEncoding.AppendEncode(out, raw[i:i+57])
		out = append(out, '\r', '\n')
	}
	return out
}()

// benchCase is one kind of message.
type benchCase struct {
	name   string
	size   int // body bytes
	tagged bool
	// heap measures the heap while the case runs (see heapSampler and
	// liveProbe); only where a message is large enough for it to mean
	// something.
	heap bool
	// rawSeal adds the same-run baseline "raw-aes-gcm": AES-256-GCM over
	// the body in 64 KiB chunks, the least any sealing can cost.
	rawSeal bool
}

var benchCases = []benchCase{
	{name: "1KiB-untagged", size: 1 << 10},
	{name: "1KiB-tagged", size: 1 << 10, tagged: true},
	{name: "100KiB-tagged", size: 100 << 10, tagged: true},
	{name: "1MiB-tagged", size: 1 << 20, tagged: true, heap: true},
	{name: "20MiB-tagged", size: 20 << 20, tagged: true, heap: true, rawSeal: true},
}

// benchRcpt is outside the filter's internal domains, so a tagged message
// is sealed and an untagged one passes after the whole body is seen.
const benchRcpt = "bob@partner.test"

func (c benchCase) headers() [][2]string {
	subject := "Quarterly figures"
	if c.tagged {
		subject = "[encrypt] Quarterly figures"
	}
	return [][2]string{
		{"From", "Zoe Sender <zoe@example.test>"},
		{"To", "Bob Partner <" + benchRcpt + ">"},
		{"Subject", subject},
		{"Date", "Sun, 29 Nov 2026 12:00:00 +0000"},
		{"Message-ID", "<bench@example.test>"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=us-ascii"},
		{"Content-Transfer-Encoding", "7bit"},
	}
}

// BenchmarkMilter sends one message per connection, one connection at a
// time. Metrics beyond ns/op, MB/s and -benchmem:
//
//   - msgs/s: messages per second.
//   - size-ratio, repl-bytes (sealed cases): the replacement body over the
//     original body, both with CRLF line ends, and its length.
//   - peak-heap-MiB (large cases): the highest heap in use (garbage not yet
//     collected included) while the case ran, above the heap after a GC just
//     before it; client and server are in this process.
//   - live-heap-MiB (large cases): the most live heap, right after a forced
//     GC, at points while the first message of the run is in flight (every
//     8 MiB of body sent, after the last body chunk, at the first and every
//     8 MiB of replacement body received), above the live heap after a GC
//     before the run: what one in-flight message keeps.
func BenchmarkMilter(b *testing.B) {
	env := newBenchEnv(b)
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			for _, tg := range env.targets() {
				b.Run(tg.name, func(b *testing.B) { benchSequential(b, tg, c) })
			}
			if c.rawSeal {
				b.Run("raw-aes-gcm", func(b *testing.B) { benchRawSeal(b, c.size) })
			}
		})
	}
}

// benchRawSeal is AES-256-GCM over size bytes in 64 KiB chunks, as
// envelope's BenchmarkSeal20MiB/raw-aes-gcm, next to the milter figures.
func benchRawSeal(b *testing.B, size int) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	plain := bytes.Repeat(benchPattern, envelope.ChunkSize/len(benchPattern)+1)[:envelope.ChunkSize]
	out := make([]byte, 0, envelope.ChunkSize+aead.Overhead())
	nonce := make([]byte, aead.NonceSize())
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < size; i += envelope.ChunkSize {
			binary.BigEndian.PutUint64(nonce[3:], uint64(i/envelope.ChunkSize))
			out = aead.Seal(out[:0], nonce, plain[:min(envelope.ChunkSize, size-i)], nil)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkMilterParallel8 is BenchmarkMilter with 8 connections open at
// once, each sending its messages one after the other, as an MTA with
// several smtpd processes does. For tagged messages it adds a diagnostic
// target, ".../securemail-memkeys": the same Filter with a key store that
// keeps records in memory without any fsync (not a configuration anyone
// runs), to show how much of the time is the durable key commit.
//
// The tagged case also runs ".../securemail-postgres": the same Filter on
// a private PostgreSQL (issue 12) with fsync and synchronous_commit on,
// and ".../securemail-postgres-sync" on one that also waits for a
// synchronous standby, when PostgreSQL is installed.
func BenchmarkMilterParallel8(b *testing.B) {
	env := newBenchEnv(b)
	pgSock := startPostgresBenchFilter(b, false)
	pgSyncSock := startPostgresBenchFilter(b, true)
	for _, c := range benchCases {
		if c.size != 1<<10 {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			targets := env.targets()
			if c.tagged {
				targets = append(targets, benchTarget{name: "securemail-memkeys", addr: env.memKeys, seals: true})
				if pgSock != "" {
					targets = append(targets, benchTarget{name: "securemail-postgres", addr: pgSock, seals: true},
						benchTarget{name: "securemail-postgres-sync", addr: pgSyncSock, seals: true})
				}
			}
			for _, tg := range targets {
				b.Run(tg.name, func(b *testing.B) { benchParallel(b, tg, c, 8) })
			}
		})
	}
}

func benchSequential(b *testing.B, tg benchTarget, c benchCase) {
	b.SetBytes(int64(c.size))
	b.ReportAllocs()
	var (
		hs    *heapSampler
		probe *liveProbe
	)
	if c.heap {
		probe = newLiveProbe()
		hs = startHeapSampler()
	}
	var last delivery
	first := true
	for b.Loop() {
		var p *liveProbe
		if first {
			p, first = probe, false
		}
		d, err := tg.deliver(c, p)
		if err != nil {
			if hs != nil {
				hs.stop()
			}
			b.Fatal(err)
		}
		last = d
	}
	if hs != nil {
		b.ReportMetric(hs.stop(), "peak-heap-MiB")
		b.ReportMetric(probe.mib(), "live-heap-MiB")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if c.tagged && tg.seals {
		b.ReportMetric(float64(last.replaced)/float64(c.size), "size-ratio")
		b.ReportMetric(float64(last.replaced), "repl-bytes")
	}
}

func benchParallel(b *testing.B, tg benchTarget, c benchCase, sessions int) {
	b.SetBytes(int64(c.size))
	b.ReportAllocs()
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	b.ResetTimer()
	for range sessions {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := tg.deliver(c, nil); err != nil {
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
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkMilterMemory20MiB measures memory with 1 and with 16 tagged
// 20 MiB messages in flight at once (".../1/...", ".../16/..."). One
// iteration opens N connections at once, sends one message on each, and
// waits for all of them; the Filter (".../securemail") and the no-op
// milter (".../noop") are driven the same way in the same run. Client and
// server share this process, so every figure includes the client's and
// go-milter's own memory: the no-op figure is that share. Metrics, each
// divided by N (per message in flight):
//
//   - peak-rss-MiB/msg: the highest resident set size of the process during
//     the run above the one just before it, after debug.FreeOSMemory (see
//     rssMeter).
//   - peak-heap-MiB/msg: the highest heap in use, garbage included, above
//     the heap in use after a GC before the run (heapSampler, as
//     BenchmarkMilter's peak-heap-MiB).
//   - live-body-MiB/msg, live-repl-MiB/msg (securemail only),
//     live-heap-MiB/msg: in the first iteration, the N messages meet at
//     BenchmarkMilter's probe points (every 8 MiB of body sent, after the
//     last body chunk, at the first and every 8 MiB of replacement body
//     received); once all N are there, a forced GC reads the live heap,
//     above the live heap after a GC before the iteration (flightGroup).
//     The most of it while the bodies are being sent, while the
//     replacements are arriving, and the most of both.
//
// ns/op is the time for N messages; -benchmem's B/op too. The forced GCs
// of the first iteration lower the heap in use for a moment, which is why
// the peaks come from the whole run and not from the first iteration alone.
func BenchmarkMilterMemory20MiB(b *testing.B) {
	env := newBenchEnv(b)
	c := benchCase{name: "20MiB-tagged", size: 20 << 20, tagged: true}
	for _, n := range []int{1, 16} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for _, tg := range env.targets() {
				b.Run(tg.name, func(b *testing.B) { benchInFlight(b, tg, c, n) })
			}
		})
	}
}

func benchInFlight(b *testing.B, tg benchTarget, c benchCase, n int) {
	rss, err := startRSSMeter()
	if err != nil {
		b.Skipf("no resident set size to read: %v", err)
	}
	group := newFlightGroup(n)
	hs := startHeapSampler()
	first := true
	for b.Loop() {
		var g *flightGroup
		if first {
			g, first = group, false
		}
		if err := deliverAtOnce(tg, c, n, g); err != nil {
			hs.stop()
			rss.stop()
			b.Fatal(err)
		}
	}
	heap := hs.stop()
	peakRSS := rss.stop()
	if group.short {
		b.Fatalf("the %d messages did not all meet at every probe point", n)
	}
	b.ReportMetric(peakRSS/float64(n), "peak-rss-MiB/msg")
	b.ReportMetric(heap/float64(n), "peak-heap-MiB/msg")
	b.ReportMetric(group.mibPerMsg(group.body), "live-body-MiB/msg")
	if tg.seals {
		b.ReportMetric(group.mibPerMsg(group.reps), "live-repl-MiB/msg")
	}
	b.ReportMetric(group.mibPerMsg(max(group.body, group.reps)), "live-heap-MiB/msg")
}

// deliverAtOnce sends n messages of kind c on n connections at once and
// waits for all of them. With a group, the deliveries meet at their probe
// points.
func deliverAtOnce(tg benchTarget, c benchCase, n int, g *flightGroup) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var p *liveProbe
			if g != nil {
				p = &liveProbe{group: g}
				defer g.leave()
			}
			if _, err := tg.deliver(c, p); err != nil {
				errs[i] = fmt.Errorf("message %d of %d: %w", i+1, n, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// benchEnv is a Filter and a no-op go-milter server, each on its own unix
// socket, living as long as the top-level benchmark.
type benchEnv struct {
	securemail, noop string // socket paths
	memKeys          string // a Filter with an in-memory key store (diagnostic)
}

type benchTarget struct {
	name  string
	addr  string
	seals bool // tagged messages come back sealed
}

func (e benchEnv) targets() []benchTarget {
	return []benchTarget{
		{name: "noop", addr: e.noop},
		{name: "securemail", addr: e.securemail, seals: true},
	}
}

func newBenchEnv(b *testing.B) benchEnv {
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
	// Unix socket paths are short; TempDir names can be long.
	sockDir, err := os.MkdirTemp("", "smb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(sockDir) })
	env := benchEnv{
		securemail: filepath.Join(sockDir, "s.sock"),
		memKeys:    filepath.Join(sockDir, "m.sock"),
		noop:       filepath.Join(sockDir, "n.sock"),
	}
	startBenchFilter(b, filepath.Join(dir, "bolt"), store, env.securemail)
	startBenchFilter(b, filepath.Join(dir, "mem"), memstore.New(), env.memKeys)

	nln, err := net.Listen("unix", env.noop)
	if err != nil {
		b.Fatal(err)
	}
	noop := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return gomilter.NoOpMilter{} },
		Actions:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptChangeBody,
		Protocol:  gomilter.OptNoUnknown,
	}
	nserved := make(chan error, 1)
	go func() { nserved <- noop.Serve(nln) }()
	b.Cleanup(func() {
		// Server.Close races with Serve; closing the listener is enough.
		if err := nln.Close(); err != nil {
			b.Error(err)
		}
		if err := <-nserved; !errors.Is(err, net.ErrClosed) {
			b.Errorf("no-op server: %v", err)
		}
	})
	return env
}

// startBenchFilter serves a Filter configured like `securemail serve`'s
// on the unix socket sock, keeping its master key and spool under dir.
func startBenchFilter(b *testing.B, dir string, store keystore.KeyStore, sock string) {
	b.Helper()
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		b.Fatal(err)
	}
	mk, err := keystore.CreateMasterKey(filepath.Join(dir, "master.key"), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	pol := Policy{
		InternalDomains: []string{"example.test"},
		RequireTLS:      true,
		// The body limit, with room to spare over the 20 MiB case.
		MaxMessageSize: 20<<20 + 64<<10,
		SubjectTag:     "[encrypt]",
		TriggerHeader:  "X-Secure-Send",
	}
	if benchPolicy != nil {
		benchPolicy(&pol)
	}
	cfg := Config{
		Policy:      pol,
		PortalURL:   "https://secure.example.test",
		KeyLifetime: 90 * 24 * time.Hour,
		SpoolDir:    spool,
		Store:       store,
		MasterKey:   mk,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if benchConfig != nil {
		benchConfig(&cfg)
	}
	f, err := NewFilter(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- f.Serve(f.Server(), ln) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			b.Error(err)
		}
		if err := <-served; err != nil {
			b.Error(err)
		}
	})
}

// delivery is what the MTA got back for one message.
type delivery struct {
	replaced int64 // replacement body bytes, CRLF line ends; 0: not replaced
}

// deliver sends one message of kind c on a new milter connection, the way
// Postfix's smtpd and cleanup do, and checks it was accepted. A non-nil
// probe samples the live heap while the message is in flight.
func (tg benchTarget) deliver(c benchCase, probe *liveProbe) (d delivery, err error) {
	dialer := &sinkDialer{probe: probe}
	client := gomilter.NewClientWithOptions("unix", tg.addr, gomilter.ClientOptions{
		Dialer:       dialer,
		ReadTimeout:  60 * time.Second,
		WriteTimeout: 60 * time.Second,
		// Only the actions of milter protocol v2: go-milter's server speaks no other.
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeBody | gomilter.OptChangeHeader | gomilter.OptAddRcpt | gomilter.OptRemoveRcpt | gomilter.OptQuarantine,
	})
	s, err := client.Session()
	if err != nil {
		return d, err
	}
	defer func() {
		if cerr := s.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	cont := func(step string, act *gomilter.Action, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
		if act.Code != gomilter.ActContinue {
			return fmt.Errorf("%s: got action %c, want continue", step, act.Code)
		}
		return nil
	}
	// The macros Postfix sends by default (milter_*_macros), plus what
	// the filter asks for at MAIL.
	if err := s.Macros(gomilter.CodeConn, "j", "mx.example.test", "{daemon_name}", "submission", "v", "Postfix 3.7.11"); err != nil {
		return d, err
	}
	act, err := s.Conn("client.example.net", gomilter.FamilyInet, 50123, "198.51.100.7")
	if err := cont("connect", act, err); err != nil {
		return d, err
	}
	if err := s.Macros(gomilter.CodeHelo, "{tls_version}", "TLSv1.3", "{cipher}", "TLS_AES_256_GCM_SHA384", "{cipher_bits}", "256"); err != nil {
		return d, err
	}
	act, err = s.Helo("client.example.net")
	if err := cont("helo", act, err); err != nil {
		return d, err
	}
	if err := s.Macros(gomilter.CodeMail, "i", "4XyZ1", "{auth_type}", "PLAIN", "{auth_authen}", "zoe",
		"{tls_version}", "TLSv1.3", "{cipher}", "TLS_AES_256_GCM_SHA384", "{client_addr}", "198.51.100.7",
		"{mail_addr}", "zoe@example.test"); err != nil {
		return d, err
	}
	act, err = s.Mail("<zoe@example.test>", nil)
	if err := cont("mail", act, err); err != nil {
		return d, err
	}
	if err := s.Macros(gomilter.CodeRcpt, "{rcpt_addr}", benchRcpt, "{rcpt_host}", "partner.test", "{rcpt_mailer}", "smtp"); err != nil {
		return d, err
	}
	act, err = s.Rcpt("<"+benchRcpt+">", nil)
	if err := cont("rcpt", act, err); err != nil {
		return d, err
	}
	for _, h := range c.headers() {
		act, err = s.HeaderField(h[0], h[1])
		if err := cont("header", act, err); err != nil {
			return d, err
		}
	}
	act, err = s.HeaderEnd()
	if err := cont("eoh", act, err); err != nil {
		return d, err
	}
	for sent := 0; sent < c.size; {
		n := min(c.size-sent, len(benchPattern))
		act, err = s.BodyChunk(benchPattern[:n])
		if err := cont("body", act, err); err != nil {
			return d, err
		}
		if sent/probeEvery != (sent+n)/probeEvery {
			probe.sample()
		}
		sent += n
	}
	probe.sample() // the whole body is in
	if err := s.Macros(gomilter.CodeEOB, "i", "4XyZ1"); err != nil {
		return d, err
	}
	_, act, err = s.End()
	if err != nil {
		return d, fmt.Errorf("eom: %w", err)
	}
	if act.Code != gomilter.ActAccept {
		return d, fmt.Errorf("eom: got action %c (%s), want accept", act.Code, act.SMTPText)
	}
	d.replaced = dialer.conn.replaced + dialer.conn.replacedLF // LF -> CRLF
	if want := c.tagged && tg.seals; want != (d.replaced > 0) {
		return d, fmt.Errorf("body replaced: %v, want %v", d.replaced > 0, want)
	}
	return d, nil
}

// sinkDialer dials one sinkConn.
type sinkDialer struct {
	conn  *sinkConn
	probe *liveProbe
}

func (d *sinkDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	br := sinkReaders.Get().(*bufio.Reader)
	br.Reset(c)
	d.conn = &sinkConn{Conn: c, br: br, probe: d.probe}
	return d.conn, nil
}

// sinkReaders keeps the clients' 64 KiB read buffers from one message to
// the next, so the client side allocates about what an MTA does.
var sinkReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// sinkConn is the client's connection. It takes replace-body packets out
// of what the milter sends, counting their bytes and line feeds, as an
// MTA that writes them to its queue file would; every other packet goes
// through to the client unchanged.
type sinkConn struct {
	net.Conn
	br         *bufio.Reader
	pending    []byte // rest of a packet for the client
	packet     []byte
	replaced   int64
	replacedLF int64
	probe      *liveProbe // samples at the first replace-body packet and every probeEvery bytes
}

func (c *sinkConn) Close() error {
	if c.br != nil {
		c.br.Reset(nil)
		sinkReaders.Put(c.br)
		c.br = nil
	}
	return c.Conn.Close()
}

func (c *sinkConn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		var hdr [5]byte // length, command
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return 0, err
		}
		length := int(binary.BigEndian.Uint32(hdr[:4]))
		if length == 0 {
			return 0, errors.New("sink: zero-length packet")
		}
		if gomilter.ModifyActCode(hdr[4]) == gomilter.ActReplBody {
			if c.replaced == 0 {
				c.probe.sampleReplacement()
			}
			before := c.replaced
			for left := length - 1; left > 0; {
				buf, err := c.br.Peek(min(left, c.br.Size()))
				if len(buf) == 0 {
					return 0, err
				}
				c.replaced += int64(len(buf))
				c.replacedLF += int64(bytes.Count(buf, []byte{'\n'}))
				if _, err := c.br.Discard(len(buf)); err != nil {
					return 0, err
				}
				left -= len(buf)
			}
			if before/probeEvery != c.replaced/probeEvery {
				c.probe.sampleReplacement()
			}
			continue
		}
		c.packet = append(append(c.packet[:0], hdr[:]...), make([]byte, length-1)...)
		if _, err := io.ReadFull(c.br, c.packet[5:]); err != nil {
			return 0, err
		}
		c.pending = c.packet
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// heapSampler records the highest heap in use (runtime/metrics: heap
// objects plus the unused part of their spans, i.e. MemStats.HeapInuse,
// read without stopping the world) every millisecond, above the heap in
// use after a GC at the start. It includes garbage not yet collected, so
// it is an upper bound of what the code keeps.
type heapSampler struct {
	base, peak uint64
	done       chan struct{}
	stopped    chan struct{}
}

func startHeapSampler() *heapSampler {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	read := func() uint64 {
		metrics.Read(samples)
		return samples[0].Value.Uint64() + samples[1].Value.Uint64()
	}
	runtime.GC()
	h := &heapSampler{done: make(chan struct{}), stopped: make(chan struct{})}
	h.base = read()
	h.peak = h.base
	go func() {
		defer close(h.stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.done:
				h.peak = max(h.peak, read())
				return
			case <-tick.C:
				h.peak = max(h.peak, read())
			}
		}
	}()
	return h
}

// stop ends sampling and returns the peak above the base in MiB.
func (h *heapSampler) stop() float64 {
	close(h.done)
	<-h.stopped
	return float64(h.peak-h.base) / (1 << 20)
}

// probeEvery is how many body bytes pass between two liveProbe samples.
const probeEvery = 8 << 20

// liveProbe records the most live heap (after a forced GC) seen at its
// samples, above the live heap when it was made. A nil probe does nothing.
// It is used by one goroutine at a time. A probe with a group takes no
// samples itself: its delivery meets the group's other deliveries there
// (see flightGroup).
type liveProbe struct {
	base, peak uint64
	group      *flightGroup
}

func newLiveProbe() *liveProbe {
	runtime.GC()
	return &liveProbe{base: liveHeap()}
}

// sample is a probe point while the body is being sent.
func (p *liveProbe) sample() { p.take(false) }

// sampleReplacement is a probe point while the replacement body arrives.
func (p *liveProbe) sampleReplacement() { p.take(true) }

func (p *liveProbe) take(repl bool) {
	if p == nil {
		return
	}
	if p.group != nil {
		p.group.meet(repl)
		return
	}
	runtime.GC()
	p.peak = max(p.peak, liveHeap())
}

func (p *liveProbe) mib() float64 {
	if p.peak < p.base {
		return 0
	}
	return float64(p.peak-p.base) / (1 << 20)
}

// flightGroup makes n concurrent deliveries meet at their probe points:
// a delivery's i-th probe point waits until every delivery still running
// is at its own i-th probe point, then one forced GC reads the live heap
// for all of them, and they all go on. The deliveries of a group send the
// same message to the same target, so they pass the same probe points in
// the same order. A delivery that ends (or fails) leaves the group, so
// nobody waits for it.
type flightGroup struct {
	mu         sync.Mutex
	want       int // deliveries in the group
	running    int // deliveries that have not left
	waiting    int // deliveries at the current meeting point
	repl       bool
	release    chan struct{} // closed when the current meeting is over
	base       uint64
	body, reps uint64 // most live heap at a meeting in the body, in the replacement
	short      bool   // a meeting was held without every delivery
}

func newFlightGroup(n int) *flightGroup {
	runtime.GC()
	return &flightGroup{want: n, running: n, release: make(chan struct{}), base: liveHeap()}
}

func (g *flightGroup) meet(repl bool) {
	g.mu.Lock()
	if g.waiting == 0 {
		g.repl = repl
	}
	g.waiting++
	if g.waiting < g.running {
		release := g.release
		g.mu.Unlock()
		<-release
		return
	}
	g.measureLocked()
	g.mu.Unlock()
}

// leave is called once by every delivery of the group when it ends.
func (g *flightGroup) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if g.waiting > 0 && g.waiting >= g.running {
		g.measureLocked()
	}
}

func (g *flightGroup) measureLocked() {
	if g.waiting < g.want {
		g.short = true
	}
	runtime.GC()
	live := liveHeap()
	if g.repl {
		g.reps = max(g.reps, live)
	} else {
		g.body = max(g.body, live)
	}
	g.waiting = 0
	close(g.release)
	g.release = make(chan struct{})
}

// mibPerMsg is live heap v above the base, in MiB per delivery.
func (g *flightGroup) mibPerMsg(v uint64) float64 {
	if v < g.base {
		return 0
	}
	return float64(v-g.base) / (1 << 20) / float64(g.want)
}

// liveHeap is the heap the last GC marked live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// rssMeter measures the highest resident set size (RSS) of the process
// above the RSS when it started, which is read after debug.FreeOSMemory
// has returned the free heap to the kernel. It resets the kernel's
// high-water mark VmHWM by writing "5" to /proc/self/clear_refs (Linux
// 4.0 and later) and reads VmHWM at the end; where the kernel refuses the
// reset, it samples VmRSS every millisecond instead, which can miss a
// short peak.
type rssMeter struct {
	base, peak    uint64 // bytes
	hwm           bool   // VmHWM was reset at the start
	done, stopped chan struct{}
}

func startRSSMeter() (*rssMeter, error) {
	debug.FreeOSMemory()
	base, err := procStatus("VmRSS")
	if err != nil {
		return nil, err
	}
	m := &rssMeter{base: base, peak: base}
	if os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil {
		m.hwm = true
		return m, nil
	}
	m.done, m.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(m.stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := procStatus("VmRSS"); err == nil {
				m.peak = max(m.peak, v)
			}
			select {
			case <-m.done:
				return
			case <-tick.C:
			}
		}
	}()
	return m, nil
}

// stop ends the measurement and returns the peak above the base in MiB.
func (m *rssMeter) stop() float64 {
	if m.hwm {
		if v, err := procStatus("VmHWM"); err == nil {
			m.peak = max(m.peak, v)
		}
	} else {
		close(m.done)
		<-m.stopped
		if v, err := procStatus("VmRSS"); err == nil {
			m.peak = max(m.peak, v)
		}
	}
	return float64(m.peak-m.base) / (1 << 20)
}

// procStatus reads a "kB" field of /proc/self/status, such as VmRSS, in
// bytes.
func procStatus(field string) (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/self/status: %s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/self/status: no %s", field)
}
