package milter

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
)

// testEnv is a Filter served on a unix socket, driven by go-milter's own
// Client the way an MTA drives it.
type testEnv struct {
	filter *Filter
	store  keystore.KeyStore
	rec    *recordingStore
	master *keystore.MasterKey
	spool  string
	addr   string
	logBuf *syncBuffer
	server *gomilter.Server
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var testNow = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func testPolicy() Policy {
	return Policy{
		InternalDomains:   []string{"example.test", ".corp.test"},
		TrustedNetworks:   []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
		TLSExemptNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")},
		RequireTLS:        true,
		MaxMessageSize:    1 << 20,
		SubjectTag:        "[encrypt]",
		TriggerHeader:     "X-Secure-Send",
	}
}

// newTestEnv starts a filter. store may be nil for a real bbolt store;
// mutate may adjust the config before the filter is built.
func newTestEnv(t testing.TB, store keystore.KeyStore, mutate func(*Config)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	if store == nil {
		b, err := boltstore.Open(filepath.Join(dir, "keys.db"), boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		store = b
	}
	t.Cleanup(func() { store.Close() })
	rec := &recordingStore{KeyStore: store}
	mk, err := keystore.CreateMasterKey(filepath.Join(dir, "master.key"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	logBuf := &syncBuffer{}
	cfg := Config{
		Policy:      testPolicy(),
		PortalURL:   "https://secure.example.test",
		KeyLifetime: 90 * 24 * time.Hour,
		SpoolDir:    spool,
		SpoolMemory: 64 << 10,
		Store:       rec,
		MasterKey:   mk,
		Logger:      slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:         func() time.Time { return testNow },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	f, err := NewFilter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are short; TempDir names can be long.
	sockDir, err := os.MkdirTemp("", "sm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	addr := filepath.Join(sockDir, "m.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := f.Server()
	go f.Serve(srv, ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.Shutdown(ctx)
	})
	return &testEnv{filter: f, store: store, rec: rec, master: mk, spool: spool, addr: addr, logBuf: logBuf, server: srv}
}

// testMsg is one SMTP transaction as the MTA reports it.
type testMsg struct {
	macros  map[string]string // at MAIL FROM
	from    string
	rcpts   []string
	headers [][2]string
	body    string
	// afterMail, if set, runs once MAIL FROM is answered (a reload in
	// the middle of a message).
	afterMail func()
}

func (m testMsg) clone() testMsg {
	c := m
	c.macros = maps.Clone(m.macros)
	c.rcpts = slices.Clone(m.rcpts)
	c.headers = slices.Clone(m.headers)
	return c
}

// submission returns the macros of an authenticated TLS submission.
func submission() map[string]string {
	return map[string]string{
		"{auth_authen}": "zoe", "{tls_version}": "TLSv1.3", "{cipher}": "TLS_AES_256_GCM_SHA384",
		"{client_addr}": "198.51.100.7", "i": "4XyZ1",
	}
}

func tagged(subject, to string, body string) testMsg {
	return testMsg{
		macros: submission(),
		from:   "zoe@example.test",
		rcpts:  []string{to},
		headers: [][2]string{
			{"From", "Zoe Sender <zoe@example.test>"},
			{"To", to},
			{"Subject", subject},
			{"Message-ID", "<m1@example.test>"},
			{"Content-Type", "text/plain; charset=utf-8"},
			{"Content-Transfer-Encoding", "8bit"},
		},
		body: body,
	}
}

// payload is what the envelope must carry for m: the message as the
// filter reconstructs it from what the MTA sent.
func (m testMsg) payload() []byte {
	var b bytes.Buffer
	for _, h := range m.headers {
		b.WriteString(h[0] + ": " + strings.ReplaceAll(strings.ReplaceAll(h[1], "\r\n", "\n"), "\n", "\r\n") + "\r\n")
	}
	b.WriteString("\r\n" + m.body)
	return b.Bytes()
}

// outcome is what the MTA got for one message.
type outcome struct {
	stage   string // where the transaction ended: mail, rcpt, header, eoh, body, eom
	action  *gomilter.Action
	mods    []gomilter.ModifyAction
	headers [][2]string // the message's headers after the modifications
	body    []byte      // the body after the modifications, CRLF line ends
}

func (o outcome) header(name string) []string {
	var vs []string
	for _, h := range o.headers {
		if strings.EqualFold(h[0], name) {
			vs = append(vs, h[1])
		}
	}
	return vs
}

func (o outcome) bodyReplaced() bool {
	for _, m := range o.mods {
		if m.Code == gomilter.ActReplBody {
			return true
		}
	}
	return false
}

// newSession opens one milter connection (one SMTP connection).
func (e *testEnv) newSession(t testing.TB) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClientWithOptions("unix", e.addr, gomilter.ClientOptions{
		ReadTimeout:  20 * time.Second,
		WriteTimeout: 20 * time.Second,
		ActionMask:   gomilter.OptAddHeader | gomilter.OptChangeBody | gomilter.OptChangeHeader | gomilter.OptAddRcpt | gomilter.OptRemoveRcpt | gomilter.OptQuarantine,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if act, err := s.Conn("client.example.net", gomilter.FamilyInet, 5555, "198.51.100.7"); err != nil || act.Code != gomilter.ActContinue {
		t.Fatalf("connect: %v %v", act, err)
	}
	if act, err := s.Helo("client.example.net"); err != nil || act.Code != gomilter.ActContinue {
		t.Fatalf("helo: %v %v", act, err)
	}
	return s
}

// send runs one message through s and applies the modifications.
func (e *testEnv) send(t testing.TB, s *gomilter.ClientSession, m testMsg) outcome {
	t.Helper()
	var kv []string
	for k, v := range m.macros {
		kv = append(kv, k, v)
	}
	if err := s.Macros(gomilter.CodeMail, kv...); err != nil {
		t.Fatal(err)
	}
	out := outcome{headers: m.headers, body: []byte(m.body)}
	done := func(stage string, act *gomilter.Action) bool {
		if act.Code == gomilter.ActContinue {
			return false
		}
		out.stage, out.action = stage, act
		return true
	}
	act, err := s.Mail(m.from, nil)
	if err != nil {
		t.Fatal(err)
	}
	if done("mail", act) {
		return out
	}
	if m.afterMail != nil {
		m.afterMail()
	}
	for _, r := range m.rcpts {
		act, err := s.Rcpt(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if done("rcpt", act) {
			return out
		}
	}
	for _, h := range m.headers {
		act, err := s.HeaderField(h[0], h[1])
		if err != nil {
			t.Fatal(err)
		}
		if done("header", act) {
			return out
		}
	}
	act, err = s.HeaderEnd()
	if err != nil {
		t.Fatal(err)
	}
	if done("eoh", act) {
		return out
	}
	body := []byte(m.body)
	for len(body) > 0 {
		n := min(len(body), gomilter.MaxBodyChunk)
		act, err := s.BodyChunk(body[:n])
		if err != nil {
			t.Fatal(err)
		}
		body = body[n:]
		if done("body", act) {
			return out
		}
	}
	if err := s.Macros(gomilter.CodeEOB, "i", m.macros["i"]); err != nil {
		t.Fatal(err)
	}
	mods, act, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	out.stage, out.action, out.mods = "eom", act, mods
	out.apply(t)
	return out
}

// apply plays the modifications like an MTA: header changes by per-name
// index, body replacement by concatenation (the library sends LF ends).
func (o *outcome) apply(t testing.TB) {
	hdrs := append([][2]string(nil), o.headers...)
	var newBody []byte
	replaced := false
	for _, m := range o.mods {
		switch m.Code {
		case gomilter.ActChangeHeader:
			seen := 0
			for i := range hdrs {
				if !strings.EqualFold(hdrs[i][0], m.HeaderName) {
					continue
				}
				if seen++; seen == int(m.HeaderIndex) {
					if m.HeaderValue == "" {
						hdrs = append(hdrs[:i], hdrs[i+1:]...)
					} else {
						hdrs[i][1] = m.HeaderValue
					}
					break
				}
			}
		case gomilter.ActAddHeader:
			hdrs = append(hdrs, [2]string{m.HeaderName, m.HeaderValue})
		case gomilter.ActReplBody:
			if len(m.Body) > replaceChunk {
				t.Errorf("one ReplaceBody packet carries %d bytes, more than %d", len(m.Body), replaceChunk)
			}
			replaced = true
			newBody = append(newBody, m.Body...)
		default:
			t.Errorf("unexpected modification %c", m.Code)
		}
	}
	o.headers = hdrs
	if replaced {
		if bytes.Contains(newBody, []byte("\r")) {
			t.Error("replacement body still holds a CR: a CRLF was split across ReplaceBody calls")
		}
		o.body = bytes.ReplaceAll(newBody, []byte("\n"), []byte("\r\n"))
	}
}

// message renders the delivered message.
func (o outcome) message() []byte {
	var b bytes.Buffer
	for _, h := range o.headers {
		b.WriteString(h[0] + ": " + strings.ReplaceAll(h[1], "\n", "\r\n") + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(o.body)
	return b.Bytes()
}

// open decrypts a delivered sealed message with the env's keystore.
func (e *testEnv) open(t testing.TB, delivered []byte) ([]byte, keystore.KeyRecord) {
	t.Helper()
	page, err := envelope.FindPage(bytes.NewReader(delivered))
	if err != nil {
		t.Fatalf("find page: %v", err)
	}
	form, err := envelope.ParsePage(page)
	if err != nil {
		t.Fatalf("parse page: %v", err)
	}
	r := bytes.NewReader(form.Envelope)
	hdr, err := envelope.ReadHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	dek, rec, err := e.master.DataKey(context.Background(), e.store, keystore.KeyID(hdr.KeyID), testNow)
	if err != nil {
		t.Fatalf("data key: %v", err)
	}
	pr, err := envelope.Open(r, dek, hdr)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(pr)
	if err != nil {
		t.Fatalf("open envelope: %v", err)
	}
	return plain, rec
}

// recordingStore remembers every key record committed through it.
type recordingStore struct {
	keystore.KeyStore
	mu      sync.Mutex
	created []keystore.KeyRecord
}

func (s *recordingStore) CreateKey(ctx context.Context, rec keystore.KeyRecord) error {
	err := s.KeyStore.CreateKey(ctx, rec)
	if err == nil {
		s.mu.Lock()
		s.created = append(s.created, rec)
		s.mu.Unlock()
	}
	return err
}

func (e *testEnv) keysCommitted() int {
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	return len(e.rec.created)
}

// failingStore fails or misbehaves in CreateKey; reads go to a real store.
// Its faults can be changed while the filter runs.
type failingStore struct {
	keystore.KeyStore
	mu        sync.Mutex
	createErr error
	block     chan struct{} // CreateKey waits on it when set
	panicMsg  string
	onCreate  func()
}

// heal removes every fault.
func (s *failingStore) heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.createErr, s.panicMsg, s.block = nil, "", nil
}

func (s *failingStore) CreateKey(ctx context.Context, rec keystore.KeyRecord) error {
	s.mu.Lock()
	onCreate, panicMsg, block, createErr := s.onCreate, s.panicMsg, s.block, s.createErr
	s.mu.Unlock()
	if onCreate != nil {
		onCreate()
	}
	if panicMsg != "" {
		panic(panicMsg)
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if createErr != nil {
		return createErr
	}
	return s.KeyStore.CreateKey(ctx, rec)
}

var errDiskFull = errors.New("write keys.db: no space left on device")
