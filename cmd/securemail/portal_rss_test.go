package main

// Memory of the portal while it opens one 20 MiB envelope (issue 5 item 7,
// issue 3's performance clause): the peak RSS of a real "securemail serve"
// while the envelope is uploaded to POST /open, decrypted and rendered at
// GET /m/{token} and its attachment downloaded must stay under 32 MiB above
// the idle process. Only with SECUREMAIL_BENCH_E2E=1; .ci/bench runs it and
// BENCHMARKS.md ("Portal") reports it.
//
// BenchmarkPortalOpen20MiB is the same three requests in process (portal
// built by newPortal on a bbolt store, httptest server, net/http client in
// the same process): allocation per open and the heap in use, and the place
// to take a heap profile (-memprofile).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/pgtest"
)

const (
	prssRoundsEnv = "SECUREMAIL_BENCH_PORTAL_ROUNDS" // fresh serve processes measured (default 5)
	prssOutEnv    = "SECUREMAIL_BENCH_PORTAL_OUT"    // file the summary is also written to
	prssLimitMiB  = 32                               // the target: peak RSS above idle
	prssBodySize  = 20 << 20                         // body of the big message: policy.max_message_size
	prssSmallSize = 256 << 10                        // body of the warm-up and registration message
	prssSender    = "alice@example.com"
	prssRcpt      = "bob@external.test"
	prssPassword  = "correct horse battery staple"
	prssAttName   = "figures.bin"
	prssMarker    = "PRSS-TEXT-PART" // in the text part, shown on the read page
)

// prssRound is one measured serve process.
type prssRound struct {
	startRSS         uint64 // KiB: VmRSS after start-up
	idleRSS          uint64 // KiB: VmHWM right after clear_refs, after the warm-up and prssWaitSettled
	hwm              uint64 // KiB: VmHWM after the three requests
	oldHWM           uint64 // KiB: VmHWM before clear_refs (start-up and warm-up)
	open, read, part time.Duration
	settle           time.Duration // the wait for the idle RSS to hold still
	gcs              int           // GC cycles during the measurement (gctrace)
	gcPeak, gcLive   int           // MB: most heap at a GC's start, most live heap after one
}

func (r prssRound) aboveIdle() float64 {
	return float64(int64(r.hwm)-int64(r.idleRSS)) / 1024
}
func (r prssRound) aboveStart() float64 {
	return float64(int64(r.hwm)-int64(r.startRSS)) / 1024
}

// TestPortalRSS20MiB measures the peak RSS of "securemail serve" while one
// 20 MiB envelope is opened, against the same process idle, on bbolt.
// TestPortalRSS20MiBPostgres does the same with keystore.backend: postgres
// (a PostgreSQL the test starts, fsync and synchronous_commit on), where
// the upload goes to this host's copy and into the database.
//
// Setup, as an operator would: a first serve process starts on an empty
// data folder (it creates the data folder and the master key, and on
// PostgreSQL the schema), the binary seals a small and a 20 MiB message
// for bob through that running serve ("securemail seal"), bob registers
// through the portal (argon2 at its defaults; codes go to an mtatest.Sink
// over real SMTP), and the process is stopped. Then each round starts a
// fresh serve (GODEBUG=gctrace=1) on the same data folder and, with bob's
// session cookie (sessions live in the key store):
//
//  0. the spool is emptied (prssEmptySpool), so the big envelope is
//     stored in every round;
//  1. warm-up: the small envelope is opened, read and its attachment
//     downloaded, so code and templates are paged in;
//  2. GET /healthz, then a wait until the RSS holds still (prssWaitSettled);
//  3. echo 5 > /proc/PID/clear_refs resets VmHWM to the current RSS, and
//     VmHWM read right after is the idle figure;
//  4. POST /open with the 20 MiB envelope (multipart, base64 in 76-column
//     lines, streamed from a file with its Content-Length), GET /m/{token}
//     (the read page), GET the attachment's link (streamed into SHA-256
//     and compared with the original);
//  5. VmHWM − idle = peak above idle.
//
// No login runs in a measured process: argon2 takes 64 MiB per hash, and
// those pages, freed but not yet returned to the kernel, would let the
// envelope's memory hide in them. The test fails when any round's peak
// above idle passes prssLimitMiB.
func TestPortalRSS20MiB(t *testing.T) { prssRun(t, "") }

// TestPortalRSS20MiBPostgres: TestPortalRSS20MiB on PostgreSQL (issue 12).
func TestPortalRSS20MiBPostgres(t *testing.T) {
	if os.Getenv(tpEnv) != "1" {
		prssRun(t, "") // skips
	}
	srv := pgtest.Start(t, pgtest.Options{})
	prssRun(t, srv.DSN(srv.NewDatabase(t)))
}

// prssRun is TestPortalRSS20MiB on bbolt, or on PostgreSQL at dsn.
func prssRun(t *testing.T, dsn string) {
	if os.Getenv(tpEnv) != "1" {
		t.Skipf("portal RSS benchmark: set %s=1 to run it (Linux; about 20 s; the PostgreSQL one needs the postgresql package): "+
			"%s=1 go test ./cmd/securemail -run 'TestPortalRSS20MiB' -v -count=1, or .ci/bench", tpEnv, tpEnv)
	}
	prssCheckClearRefs(t)
	rounds := tpEnvInt(t, prssRoundsEnv, 5)
	began := time.Now()
	loadBefore := tpLoadAvg()

	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	dir := t.TempDir()
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	portalAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	config := prssWriteConfig(t, dir, milterAddr, portalAddr, sink.Addr, dsn)
	base := "http://" + portalAddr

	// The first start creates what an operator's first start creates;
	// seal then goes through the running service.
	c := newPrssClient(t, base)
	srv := e2eStartServe(t, bin, config, milterAddr)
	prssWaitHealthy(t, c)
	small := prssWriteMessage(t, filepath.Join(dir, "small.eml"), prssSmallSize, 1)
	big := prssWriteMessage(t, filepath.Join(dir, "big.eml"), prssBodySize, 2)
	smallEnv := prssSealBinary(t, bin, config, small)
	bigEnv := prssSealBinary(t, bin, config, big)
	t.Logf("big message: body %d bytes (attachment %d bytes), envelope %d bytes, POST /open body %d bytes",
		big.bodySize, big.attSize, bigEnv.envSize, bigEnv.formSize)
	c.register(smallEnv, sink)
	if code, err := srv.stop(30 * time.Second); code != 0 || err != nil {
		t.Fatalf("registration serve: exit %d, %v\n%s", code, err, srv.log.String())
	}

	var results []prssRound
	for i := 1; i <= rounds; i++ {
		prssEmptySpool(t, filepath.Join(dir, "data", "portal-spool"), dsn)
		r := prssMeasure(t, bin, config, milterAddr, c, smallEnv, bigEnv)
		results = append(results, r)
		t.Logf("round %d: idle %.1f MiB (VmHWM %.1f MiB before clear_refs), peak %.1f MiB, peak above idle %.1f MiB (above start-up %.1f), "+
			"open %v, read %v, attachment %v, %d GCs (heap at GC start <= %d MB, live <= %d MB); settled in %v",
			i, float64(r.idleRSS)/1024, float64(r.oldHWM)/1024, float64(r.hwm)/1024, r.aboveIdle(), r.aboveStart(),
			r.open.Round(time.Millisecond), r.read.Round(time.Millisecond), r.part.Round(time.Millisecond),
			r.gcs, r.gcPeak, r.gcLive, r.settle.Round(time.Millisecond))
	}

	summary := prssSummary(t.Name(), results, bigEnv, big, began, time.Since(began), loadBefore, tpLoadAvg())
	t.Log("\n" + summary)
	if out := os.Getenv(prssOutEnv); out != "" {
		if dsn != "" {
			ext := filepath.Ext(out)
			out = strings.TrimSuffix(out, ext) + "-postgres" + ext
		}
		if err := os.WriteFile(out, []byte(summary), 0o644); err != nil {
			t.Errorf("%s: %v", prssOutEnv, err)
		}
	}
	for i, r := range results {
		if r.aboveIdle() > prssLimitMiB {
			t.Errorf("round %d: peak RSS %.1f MiB above idle, target <= %d MiB", i+1, r.aboveIdle(), prssLimitMiB)
		}
	}
}

// prssEmptySpool removes every spooled envelope while no serve runs, so
// each round's upload is stored, not found there from the round before
// (on PostgreSQL that would only restart its age): the portal's folder
// and, on PostgreSQL at dsn, the shared spool's rows.
func prssEmptySpool(t *testing.T, folder, dsn string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(folder, "*.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if dsn == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "TRUNCATE spool_envelopes, spool_chunks, spool_uploads"); err != nil {
		t.Fatal(err)
	}
}

// prssMeasure is one round in a fresh serve process; see TestPortalRSS20MiB.
func prssMeasure(t *testing.T, bin, config, milterAddr string, c *prssClient, small, big prssSealed) prssRound {
	t.Helper()
	srv := e2eStartServeAs(t, bin, config, "tcp", milterAddr, nil, "GODEBUG=gctrace=1")
	pid := srv.cmd.Process.Pid
	prssWaitHealthy(t, c)
	var r prssRound
	r.startRSS = prssReadStatus(t, pid).rss

	// Warm-up with the small envelope, then idle.
	c.openReadDownload(small)
	prssWaitHealthy(t, c)
	r.settle = prssWaitSettled(t, pid)
	before := prssReadStatus(t, pid)
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset VmHWM of serve: %v", err)
	}
	// After the reset VmHWM is the RSS of that moment: the idle figure.
	idle := prssReadStatus(t, pid)
	if idle.hwm < idle.rss || idle.hwm > idle.rss+256 {
		t.Fatalf("clear_refs did not reset VmHWM: before %+v, after %+v (kB)", before, idle)
	}
	r.idleRSS, r.oldHWM = idle.hwm, before.hwm
	logFrom := len(srv.log.String())

	t0 := time.Now()
	token := c.open(big)
	t1 := time.Now()
	partPath := c.readPage(token)
	t2 := time.Now()
	c.download(partPath, big.msg)
	t3 := time.Now()

	r.hwm = prssReadStatus(t, pid).hwm
	r.open, r.read, r.part = t1.Sub(t0), t2.Sub(t1), t3.Sub(t2)
	r.gcs, r.gcPeak, r.gcLive = prssGCTrace(srv.log.String()[logFrom:])

	if code, err := srv.stop(30 * time.Second); code != 0 || err != nil {
		t.Fatalf("serve: exit %d, %v\n%s", code, err, srv.log.String())
	}
	if n := strings.Count(srv.log.String(), "level=ERROR"); n != 0 {
		t.Errorf("serve logged %d error(s):\n%s", n, tpTail(srv.log.String(), 20))
	}
	return r
}

// prssCheckClearRefs makes sure "echo 5 > /proc/PID/clear_refs" resets
// VmHWM here, on the test process: 64 MiB touched and returned to the
// kernel leave VmHWM high until the reset.
func prssCheckClearRefs(t *testing.T) {
	t.Helper()
	pid := os.Getpid()
	b := make([]byte, 64<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	b = nil
	debug.FreeOSMemory()
	before := prssReadStatus(t, pid)
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("needs /proc/PID/clear_refs (Linux) to reset VmHWM: %v", err)
	}
	after := prssReadStatus(t, pid)
	if before.hwm < before.rss+32<<10 || after.hwm > after.rss+1<<10 {
		t.Fatalf("clear_refs does not reset VmHWM here: before %+v, after %+v (kB)", before, after)
	}
}

// prssWriteConfig writes the config of every serve and seal in the test:
// one data folder, portal on portalAddr over plain http, codes relayed to
// relay, internal domain example.com, argon2 at its defaults; the key
// store on PostgreSQL at dsn, or bbolt when dsn is "".
func prssWriteConfig(tb testing.TB, dir, milterAddr, portalAddr, relay, dsn string) string {
	tb.Helper()
	store := ""
	if dsn != "" {
		store = fmt.Sprintf("  backend: postgres\n  postgres:\n    dsn: %q\n", dsn)
	}
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
log:
  level: info
milter:
  listen: inet:%[2]s
portal:
  listen: %[3]s
  url: http://%[3]s
policy:
  internal_domains: [example.com]
  max_message_size: 20MiB
keystore:
  master_key_file: %[1]s/master.key
%[5]ssmtp:
  relay: %[4]s
  from: securemail@example.com
`, dir, milterAddr, portalAddr, relay, store)
	path := filepath.Join(dir, "securemail.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// prssMessage is a generated message on disk: a short text part and a
// base64 attachment of random bytes.
type prssMessage struct {
	path     string
	bodySize int64
	attSize  int64
	attSHA   [sha256.Size]byte
}

// prssWriteMessage writes a message whose body is at most bodySize bytes
// (and within one base64 line of it) to path.
func prssWriteMessage(tb testing.TB, path string, bodySize int64, seed uint64) prssMessage {
	tb.Helper()
	const boundary = "prss-boundary-0123456789"
	head := "From: Alice <" + prssSender + ">\r\nTo: Bob <" + prssRcpt + ">\r\n" +
		"Subject: [encrypt] quarterly figures\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <prss-" + strconv.FormatUint(seed, 10) + "@example.com>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"" + boundary + "\"\r\n\r\n"
	prefix := "--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Hello Bob,\r\n\r\nthe figures are attached. " + prssMarker + "\r\n\r\nAlice\r\n" +
		"--" + boundary + "\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Disposition: attachment; filename=\"" + prssAttName + "\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n"
	suffix := "--" + boundary + "--\r\n"
	armored := func(n int64) int64 { // envelope.WriteArmor's output for n bytes
		chars := (n + 2) / 3 * 4
		return chars + (chars+75)/76*2
	}
	fixed := int64(len(prefix) + len(suffix))
	n := (bodySize - fixed) / 78 * 57
	for fixed+armored(n+57) <= bodySize {
		n += 57
	}
	for n > 0 && fixed+armored(n) > bodySize {
		n--
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	h := sha256.New()
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	w.WriteString(head + prefix)
	if err := envelope.WriteArmor(w, io.TeeReader(io.LimitReader(rng, n), h)); err != nil {
		tb.Fatal(err)
	}
	w.WriteString(suffix)
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	m := prssMessage{path: path, bodySize: fixed + armored(n), attSize: n}
	h.Sum(m.attSHA[:0])
	if st, err := os.Stat(path); err != nil || st.Size() != int64(len(head))+m.bodySize {
		tb.Fatalf("message %s: %v, size %d, want %d", path, err, st.Size(), int64(len(head))+m.bodySize)
	}
	return m
}

// prssSealed is a sealed message as the portal receives it: the form the
// "Click to read message" button posts, in a file.
type prssSealed struct {
	msg         prssMessage
	keyID       string
	envSize     int64 // binary envelope
	form        string
	formSize    int64
	contentType string
}

// prssSealBinary seals msg for prssRcpt with "securemail seal" and writes
// the page's form next to it.
func prssSealBinary(t *testing.T, bin, config string, msg prssMessage) prssSealed {
	t.Helper()
	in, err := os.Open(msg.path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	sealedPath := strings.TrimSuffix(msg.path, ".eml") + ".sealed.eml"
	out, err := os.Create(sealedPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "seal", "--config", config, "--from", prssSender, "--rcpt", prssRcpt)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("securemail seal %s: %v\n%s", msg.path, err, stderr.String())
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return prssWriteForm(t, sealedPath, strings.TrimSuffix(msg.path, ".eml")+".form", msg)
}

// prssWriteForm extracts the page's form from the sealed message and
// writes it to formPath as the multipart/form-data body a browser posts:
// v, id, and the envelope as the textarea holds it.
func prssWriteForm(tb testing.TB, sealedPath, formPath string, msg prssMessage) prssSealed {
	tb.Helper()
	sealed, err := os.Open(sealedPath)
	if err != nil {
		tb.Fatal(err)
	}
	page, err := envelope.FindPage(sealed)
	sealed.Close()
	if err != nil {
		tb.Fatalf("%s: %v", sealedPath, err)
	}
	form, err := envelope.ParsePage(page)
	if err != nil {
		tb.Fatalf("%s: %v", sealedPath, err)
	}
	f, err := os.Create(formPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	mw := multipart.NewWriter(bw)
	mw.WriteField("v", strconv.Itoa(form.Version))
	mw.WriteField("id", form.KeyID.String())
	fw, err := mw.CreateFormField("envelope")
	if err != nil {
		tb.Fatal(err)
	}
	if err := envelope.WriteArmor(fw, bytes.NewReader(form.Envelope)); err != nil {
		tb.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	return prssSealed{msg: msg, keyID: form.KeyID.String(), envSize: int64(len(form.Envelope)),
		form: formPath, formSize: st.Size(), contentType: mw.FormDataContentType()}
}

// prssClient is one browser's cookie jar, without Origin or Sec-Fetch-*
// headers (a non-browser client, which CrossOriginProtection lets pass),
// and without following redirects.
type prssClient struct {
	tb   testing.TB
	base string
	c    *http.Client
}

func newPrssClient(tb testing.TB, base string) *prssClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &prssClient{tb: tb, base: base, c: &http.Client{
		Jar:     jar,
		Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

type prssResponse struct {
	status int
	loc    string
	body   string
}

func (c *prssClient) do(req *http.Request) prssResponse {
	c.tb.Helper()
	resp, err := c.c.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		c.tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	return prssResponse{status: resp.StatusCode, loc: resp.Header.Get("Location"), body: string(body)}
}

func (c *prssClient) get(path string) prssResponse {
	c.tb.Helper()
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		c.tb.Fatal(err)
	}
	return c.do(req)
}

func (c *prssClient) post(path string, form url.Values) prssResponse {
	c.tb.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// see insists on a 303 to want ("" any) and returns its target.
func (c *prssClient) see(r prssResponse, step, want string) string {
	c.tb.Helper()
	if r.status != http.StatusSeeOther || (want != "" && r.loc != want) {
		c.tb.Fatalf("%s: status %d, Location %q; want 303 to %q\n%.2000s", step, r.status, r.loc, want, r.body)
	}
	return r.loc
}

var prssTokenRE = regexp.MustCompile(`^/m/([A-Za-z0-9_-]{22})$`)

// open posts s's form to /open and returns the spool token.
func (c *prssClient) open(s prssSealed) string {
	c.tb.Helper()
	f, err := os.Open(s.form)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer f.Close()
	req, err := http.NewRequest(http.MethodPost, c.base+"/open", f)
	if err != nil {
		c.tb.Fatal(err)
	}
	req.ContentLength = s.formSize
	req.Header.Set("Content-Type", s.contentType)
	m := prssTokenRE.FindStringSubmatch(c.see(c.do(req), "POST /open", ""))
	if m == nil {
		c.tb.Fatalf("POST /open: redirect is not to /m/{token}")
	}
	return m[1]
}

var prssPartRE = regexp.MustCompile(`href="(/m/[A-Za-z0-9_-]{22}/part/[0-9]+)"[^>]*>` + regexp.QuoteMeta(prssAttName) + `<`)

// readPage GETs the read page of token and returns the attachment's link.
func (c *prssClient) readPage(token string) string {
	c.tb.Helper()
	r := c.get("/m/" + token)
	if r.status != http.StatusOK || !strings.Contains(r.body, prssMarker) {
		c.tb.Fatalf("GET /m/{token}: status %d, want 200 with the text part\n%.3000s", r.status, r.body)
	}
	m := prssPartRE.FindStringSubmatch(r.body)
	if m == nil {
		c.tb.Fatalf("GET /m/{token}: no link to %s on the read page\n%.3000s", prssAttName, r.body)
	}
	return m[1]
}

// download streams the attachment at path into SHA-256 and compares it
// with msg's.
func (c *prssClient) download(path string, msg prssMessage) {
	c.tb.Helper()
	resp, err := c.c.Get(c.base + path)
	if err != nil {
		c.tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4000))
		c.tb.Fatalf("GET attachment: status %d\n%s", resp.StatusCode, b)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		c.tb.Fatalf("GET attachment: %v after %d bytes", err, n)
	}
	if got := h.Sum(nil); n != msg.attSize || !bytes.Equal(got, msg.attSHA[:]) {
		c.tb.Fatalf("attachment: %d bytes, sha256 %x; want %d bytes, %x", n, got, msg.attSize, msg.attSHA)
	}
}

// openReadDownload does all three for s.
func (c *prssClient) openReadDownload(s prssSealed) {
	c.tb.Helper()
	c.download(c.readPage(c.open(s)), s.msg)
}

var prssCodeRE = regexp.MustCompile(`Your code is:\s+([0-9]{8})`)

// register walks prssRcpt from the attachment to the read page: open, the
// address (which mails a code to sink), the code, password and security
// questions.
func (c *prssClient) register(s prssSealed, sink *mtatest.Sink) {
	c.tb.Helper()
	token := c.open(s)
	if r := c.get("/m/" + token); r.status != http.StatusOK || !strings.Contains(r.body, `action="/email"`) {
		c.tb.Fatalf("GET /m/{token} before sign-in: status %d, want 200 with the address form\n%.2000s", r.status, r.body)
	}
	c.see(c.post("/email", url.Values{"email": {prssRcpt}, "token": {token}}), "POST /email", "/signin")
	m, err := sink.WaitFor(func(m mtatest.Message) bool {
		return slices.Contains(m.Rcpts, prssRcpt) && prssMailCode(m.Data) != ""
	}, 30*time.Second)
	if err != nil {
		c.tb.Fatalf("no code mailed to %s: %v", prssRcpt, err)
	}
	c.see(c.post("/code", url.Values{"code": {prssMailCode(m.Data)}}), "POST /code", "/register/password")
	c.see(c.post("/register/password", url.Values{"password": {prssPassword}, "confirm": {prssPassword},
		"q1": {"0"}, "a1": {"Fluffy"}, "q2": {"1"}, "a2": {"Springfield"}}),
		"POST /register/password", "/m/"+token)
	c.download(c.readPage(token), s.msg)
}

// prssMailCode returns the registration code in a mail, "" if none.
func prssMailCode(data []byte) string {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		return ""
	}
	if m := prssCodeRE.FindSubmatch(body); m != nil {
		return string(m[1])
	}
	return ""
}

// prssWaitHealthy waits until GET /healthz answers 200.
func prssWaitHealthy(tb testing.TB, c *prssClient) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.c.Get(c.base + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("portal not healthy after 15s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// prssWaitSettled waits until serve's RSS holds still (within 256 KiB
// over the last second, read every 100 ms), so the idle figure is not
// taken while the warm-up's garbage is still being collected or returned
// to the kernel, and returns how long that took.
func prssWaitSettled(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	const window, tolerance = 10, 256 // samples, KiB
	start := time.Now()
	var last []uint64
	for {
		last = append(last, prssReadStatus(tb, pid).rss)
		if len(last) > window {
			last = last[1:]
		}
		if len(last) == window && slices.Max(last)-slices.Min(last) <= tolerance {
			return time.Since(start)
		}
		if time.Since(start) > 30*time.Second {
			tb.Fatalf("serve's RSS did not hold still within 30 s; last second, KiB: %v", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// prssStatus is what /proc/PID/status says about memory, in KiB.
type prssStatus struct{ rss, hwm uint64 }

func prssReadStatus(tb testing.TB, pid int) prssStatus {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	var st prssStatus
	fields := map[string]*uint64{"VmRSS": &st.rss, "VmHWM": &st.hwm}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		p := fields[name]
		if !ok || p == nil {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			tb.Fatalf("/proc/%d/status: %q: %v", pid, line, err)
		}
		*p = v
		delete(fields, name)
	}
	if len(fields) != 0 {
		tb.Fatalf("/proc/%d/status lacks %v", pid, fields)
	}
	return st
}

// gctrace: "gc 7 @1.234s 2%: ..., 12->14->3 MB, 15 MB goal, ...".
var prssGCRE = regexp.MustCompile(`(?m)^gc \d+ @[0-9.]+s \d+%: .*?, (\d+)->(\d+)->(\d+) MB, `)

// prssGCTrace counts the GC cycles in a gctrace log and returns the most
// heap at a cycle's start and the most live heap after one, in MB.
func prssGCTrace(log string) (n, peak, live int) {
	for _, m := range prssGCRE.FindAllStringSubmatch(log, -1) {
		start, _ := strconv.Atoi(m[1])
		marked, _ := strconv.Atoi(m[3])
		n, peak, live = n+1, max(peak, start), max(live, marked)
	}
	return n, peak, live
}

func prssStats(xs []float64) (med, lo, hi float64) {
	return tpMedian(xs), slices.Min(xs), slices.Max(xs)
}

func prssSummary(name string, rs []prssRound, env prssSealed, msg prssMessage, began time.Time, took time.Duration, loadBefore, loadAfter string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d rounds, each a fresh securemail serve, %s, %v; loadavg %s -> %s\n",
		name, len(rs), began.UTC().Format("2006-01-02 15:04 UTC"), took.Round(time.Second), loadBefore, loadAfter)
	fmt.Fprintf(&b, "message body %d bytes (attachment %d bytes); envelope %d bytes (%.2f MiB); POST /open body %d bytes\n",
		msg.bodySize, msg.attSize, env.envSize, float64(env.envSize)/(1<<20), env.formSize)
	fmt.Fprintf(&b, "%s, GOMAXPROCS of serve: default (%d CPUs)\n\n", runtime.Version(), runtime.NumCPU())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tstart MiB\tidle MiB\tpeak MiB\tabove idle MiB\t/ envelope\tabove start MiB\topen ms\tread ms\tattachment ms\tGCs\theap MB\tlive MB\t")
	var above, ratio, aboveStart, idle, peak, open, read, part []float64
	envMiB := float64(env.envSize) / (1 << 20)
	for i, r := range rs {
		above = append(above, r.aboveIdle())
		ratio = append(ratio, r.aboveIdle()/envMiB)
		aboveStart = append(aboveStart, r.aboveStart())
		idle = append(idle, float64(r.idleRSS)/1024)
		peak = append(peak, float64(r.hwm)/1024)
		open = append(open, float64(r.open.Milliseconds()))
		read = append(read, float64(r.read.Milliseconds()))
		part = append(part, float64(r.part.Milliseconds()))
		fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.3f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t\n", i+1,
			float64(r.startRSS)/1024, float64(r.idleRSS)/1024, float64(r.hwm)/1024, r.aboveIdle(), r.aboveIdle()/envMiB,
			r.aboveStart(), r.open.Milliseconds(), r.read.Milliseconds(), r.part.Milliseconds(), r.gcs, r.gcPeak, r.gcLive)
	}
	tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tmedian\tmin\tmax\ttarget")
	row := func(name, format string, xs []float64, target string) {
		med, lo, hi := prssStats(xs)
		fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t"+format+"\t%s\n", name, med, lo, hi, target)
	}
	row("peak RSS above idle, MiB", "%.1f", above, fmt.Sprintf("<= %d", prssLimitMiB))
	row("  / envelope size", "%.3f", ratio, "far below 1")
	row("peak RSS above start-up (before warm-up), MiB", "%.1f", aboveStart, "")
	row("idle RSS, MiB", "%.1f", idle, "")
	row("peak RSS, MiB", "%.1f", peak, "")
	row("POST /open, ms", "%.0f", open, "")
	row("GET /m/{token}, ms", "%.0f", read, "")
	row("GET attachment, ms", "%.0f", part, "")
	tw.Flush()
	return b.String()
}

// BenchmarkPortalOpen20MiB: POST /open of the 20 MiB envelope, GET
// /m/{token} and GET of the attachment, per iteration, against the portal
// in process (the handler newPortal builds for serve, a bbolt store, an
// httptest server). The client is in the same process, so B/op and
// peak-heap-MiB count its buffers too. Sealing and the login are set-up,
// outside the timer, with a cheap argon2 (logins are not measured here).
//
//	go test ./cmd/securemail -run '^$' -bench PortalOpen20MiB -benchmem -memprofile mem.out
func BenchmarkPortalOpen20MiB(b *testing.B) {
	dir := b.TempDir()
	sink := mtatest.StartSink(b)
	srv := httptest.NewUnstartedServer(nil)
	defer srv.Close()
	config := prssWriteConfig(b, dir, "127.0.0.1:1", srv.Listener.Addr().String(), sink.Addr, "")
	cfg, err := loadConfig(config)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Portal.Argon2.Time, cfg.Portal.Argon2.Memory, cfg.Portal.Argon2.Threads = 1, 1<<20, 1
	log := slog.New(slog.DiscardHandler)
	mk, store, err := openKeys(cfg, log, true)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	filter, err := newFilter(cfg, store, mk, log)
	if err != nil {
		b.Fatal(err)
	}
	seal := func(msg prssMessage) prssSealed {
		in, err := os.Open(msg.path)
		if err != nil {
			b.Fatal(err)
		}
		defer in.Close()
		sealedPath := strings.TrimSuffix(msg.path, ".eml") + ".sealed.eml"
		out, err := os.Create(sealedPath)
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		if err := filter.SealMessage(in, out, prssSender, []string{prssRcpt}); err != nil {
			b.Fatal(err)
		}
		return prssWriteForm(b, sealedPath, strings.TrimSuffix(msg.path, ".eml")+".form", msg)
	}
	small := seal(prssWriteMessage(b, filepath.Join(dir, "small.eml"), prssSmallSize, 1))
	big := seal(prssWriteMessage(b, filepath.Join(dir, "big.eml"), prssBodySize, 2))
	web, err := newPortal(cfg, store, mk, log)
	if err != nil {
		b.Fatal(err)
	}
	defer web.Close()
	srv.Config.Handler = web
	srv.Start()

	c := newPrssClient(b, srv.URL)
	c.register(small, sink)
	c.openReadDownload(big) // warm-up

	b.SetBytes(big.envSize)
	b.ReportAllocs()
	debug.FreeOSMemory()
	hs := prssStartHeapSampler()
	b.ResetTimer()
	for b.Loop() {
		c.openReadDownload(big)
	}
	b.StopTimer()
	b.ReportMetric(hs.stop(), "peak-heap-MiB")
}

// prssHeapSampler records the most heap in use (heap objects plus the
// unused part of their spans, garbage included) every millisecond, above
// the heap in use after a GC at its start; as milter's heapSampler.
type prssHeapSampler struct {
	base, peak uint64
	done       chan struct{}
	stopped    chan struct{}
}

func prssStartHeapSampler() *prssHeapSampler {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	read := func() uint64 {
		metrics.Read(samples)
		return samples[0].Value.Uint64() + samples[1].Value.Uint64()
	}
	runtime.GC()
	h := &prssHeapSampler{done: make(chan struct{}), stopped: make(chan struct{})}
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

func (h *prssHeapSampler) stop() float64 {
	close(h.done)
	<-h.stopped
	return float64(h.peak-h.base) / (1 << 20)
}
