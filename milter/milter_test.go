package milter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
)

const secretMarker = "PLAINTEXT-MARKER-7f3a"

func secretBody() string {
	return "Hello Alice,\r\n\r\nthe code is " + secretMarker + ".\r\n"
}

// assertSealed checks a delivered message is the sealed form of m: no
// plaintext, tag gone, one key, and the envelope opens to the payload.
func assertSealed(t *testing.T, e *testEnv, m testMsg, o outcome) {
	t.Helper()
	if o.stage != "eom" || o.action.Code != gomilter.ActAccept {
		t.Fatalf("message ended at %s with %+v, want accepted at end of message", o.stage, o.action)
	}
	if !o.bodyReplaced() {
		t.Fatal("body was not replaced")
	}
	delivered := o.message()
	if bytes.Contains(delivered, []byte(secretMarker)) {
		t.Fatal("the delivered message contains plaintext of the body")
	}
	for _, s := range o.header("Subject") {
		if strings.Contains(strings.ToLower(s), "[encrypt]") {
			t.Errorf("delivered subject still carries the tag: %q", s)
		}
	}
	if got := o.header("Content-Transfer-Encoding"); len(got) != 0 {
		t.Errorf("original Content-Transfer-Encoding kept: %q", got)
	}
	if got := o.header("Content-Type"); len(got) != 1 || !strings.HasPrefix(got[0], "multipart/mixed;") {
		t.Errorf("Content-Type after sealing: %q", got)
	}
	plain, rec := e.open(t, delivered)
	if !bytes.Equal(plain, m.payload()) {
		t.Fatalf("envelope opens to\n%q\nwant\n%q", plain, m.payload())
	}
	if len(rec.Recipients) != len(m.rcpts) {
		t.Errorf("key record recipients %v, envelope recipients %v", rec.Recipients, m.rcpts)
	}
	for _, r := range m.rcpts {
		if !rec.IsRecipient(r) {
			t.Errorf("key record lacks recipient %s", r)
		}
	}
	if rec.Sender != m.from || !rec.Created.Equal(testNow) || !rec.Expires.Equal(testNow.Add(90*24*time.Hour)) {
		t.Errorf("key record metadata: %+v", rec)
	}
}

func assertUntouched(t *testing.T, o outcome, m testMsg) {
	t.Helper()
	if o.action.Code != gomilter.ActAccept {
		t.Fatalf("action %+v at %s, want accept", o.action, o.stage)
	}
	if len(o.mods) != 0 {
		t.Fatalf("message was modified: %+v", o.mods)
	}
}

func TestPolicyTable(t *testing.T) {
	type check func(t *testing.T, e *testEnv, m testMsg, o outcome)
	sealed := func(t *testing.T, e *testEnv, m testMsg, o outcome) { assertSealed(t, e, m, o) }
	untouched := func(t *testing.T, e *testEnv, m testMsg, o outcome) {
		assertUntouched(t, o, m)
		if e.keysCommitted() != 0 {
			t.Fatal("a key was created for a message that was not sealed")
		}
	}
	refused := func(code int, enhanced string) check {
		return func(t *testing.T, e *testEnv, m testMsg, o outcome) {
			t.Helper()
			if o.action.Code != gomilter.ActReplyCode || o.action.SMTPCode != code || !strings.HasPrefix(o.action.SMTPText, enhanced+" ") {
				t.Fatalf("got %+v at %s, want %d %s", o.action, o.stage, code, enhanced)
			}
			if e.keysCommitted() != 0 {
				t.Fatal("a key was created for a refused message")
			}
		}
	}
	stripped := func(t *testing.T, e *testEnv, m testMsg, o outcome) {
		if o.action.Code != gomilter.ActAccept || o.bodyReplaced() {
			t.Fatalf("internal message: %+v, body replaced %v", o.action, o.bodyReplaced())
		}
		if got := o.header("Subject"); len(got) != 1 || got[0] != "Lunch plans" {
			t.Fatalf("subject %q, want the tag stripped", got)
		}
		if !bytes.Contains(o.message(), []byte(secretMarker)) {
			t.Fatal("internal message lost its body")
		}
		if e.keysCommitted() != 0 {
			t.Fatal("a key was created for an internal message")
		}
	}
	with := func(m testMsg, f func(*testMsg)) testMsg { m = m.clone(); f(&m); return m }
	base := tagged("Lunch [encrypt] plans", "alice@external.test", secretBody())

	tests := []struct {
		name string
		msg  testMsg
		want check
	}{
		{"tagged submission to external is sealed", base, sealed},
		{"tag in any case", with(base, func(m *testMsg) { m.headers[2][1] = "Lunch [ENCRYPT] plans" }), sealed},
		{"tag at the start", with(base, func(m *testMsg) { m.headers[2][1] = "[Encrypt] Lunch plans" }), sealed},
		{"trusted network without auth is a submission", with(base, func(m *testMsg) {
			m.macros = map[string]string{"{client_addr}": "10.1.9.9", "{tls_version}": "TLSv1.2"}
		}), sealed},
		{"trigger header yes", with(base, func(m *testMsg) {
			m.headers[2][1] = "Lunch plans"
			m.headers = append(m.headers, [2]string{"X-Secure-Send", "yes"})
		}), func(t *testing.T, e *testEnv, m testMsg, o outcome) {
			assertSealed(t, e, m, o)
			if len(o.header("X-Secure-Send")) != 0 {
				t.Error("trigger header left in the delivered message")
			}
		}},
		{"trigger header no", with(base, func(m *testMsg) {
			m.headers[2][1] = "Lunch plans"
			m.headers = append(m.headers, [2]string{"X-Secure-Send", "no"})
		}), untouched},
		{"untagged submission passes", with(base, func(m *testMsg) { m.headers[2][1] = "Lunch plans" }), untouched},
		{"tagged inbound mail from the internet passes untouched", with(base, func(m *testMsg) {
			m.macros = map[string]string{"{client_addr}": "203.0.113.5", "{tls_version}": "TLSv1.3"}
		}), untouched},
		{"submission without TLS is refused at MAIL", with(base, func(m *testMsg) {
			delete(m.macros, "{tls_version}")
		}), func(t *testing.T, e *testEnv, m testMsg, o outcome) {
			refused(530, "5.7.0")(t, e, m, o)
			if o.stage != "mail" || !strings.Contains(o.action.SMTPText, "TLS") {
				t.Fatalf("refused at %s with %q", o.stage, o.action.SMTPText)
			}
		}},
		{"trusted client in a TLS-exempt network without TLS", with(base, func(m *testMsg) {
			m.macros = map[string]string{"{client_addr}": "10.1.2.3"}
		}), sealed},
		{"all recipients internal: delivered, tag stripped", with(base, func(m *testMsg) {
			m.rcpts = []string{"bob@example.test", "carol@mx.corp.test", "root"}
		}), stripped},
		{"one external recipient among internal ones: sealed for all", with(base, func(m *testMsg) {
			m.rcpts = []string{"bob@example.test", "alice@external.test"}
		}), sealed},
		{"internal domain check ignores case", with(base, func(m *testMsg) {
			m.rcpts = []string{"Bob@EXAMPLE.test"}
		}), stripped},
		{"body over the limit", with(base, func(m *testMsg) {
			m.body = strings.Repeat("x", 1<<20+1)
		}), func(t *testing.T, e *testEnv, m testMsg, o outcome) {
			refused(552, "5.3.4")(t, e, m, o)
			if o.stage != "body" {
				t.Fatalf("refused at %s, want during the body", o.stage)
			}
		}},
		{"body exactly at the limit", with(base, func(m *testMsg) {
			m.body = strings.Repeat("y", 1<<20-len(secretBody())) + secretBody()
		}), sealed},
		{"empty body", with(base, func(m *testMsg) { m.body = "" }), sealed},
		{"no Content-Type header", with(base, func(m *testMsg) { m.headers = m.headers[:4] }), sealed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, nil, nil)
			o := e.send(t, e.newSession(t), tc.msg)
			tc.want(t, e, tc.msg, o)
		})
	}
}

func TestSubjectForms(t *testing.T) {
	tests := []struct {
		name     string
		subjects []string
		want     []string // delivered subjects
	}{
		{"RFC 2047 B", []string{"=?UTF-8?B?W2VuY3J5cHRdIEdlaGFsdHNhYnJlY2hudW5n?="}, []string{"Gehaltsabrechnung"}},
		{"RFC 2047 Q non-ASCII", []string{"=?ISO-8859-1?Q?Gr=FC=DFe_=5BEncrypt=5D_aus_K=F6ln?="}, []string{"=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?="}},
		{"folded", []string{"A long subject line that goes on\r\n and on [encrypt]\r\n\tuntil here"}, []string{"A long subject line that goes on and on until here"}},
		{"folded with LF", []string{"Quarterly\n [encrypt] numbers"}, []string{"Quarterly numbers"}},
		{"tag in the second of two Subject headers", []string{"First", "Second [encrypt]"}, []string{"First", "Second"}},
		{"tag split over two encoded words", []string{"=?UTF-8?Q?Hi_[enc?= =?UTF-8?Q?rypt]_there?="}, []string{"Hi there"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, nil, nil)
			m := tagged("x", "alice@external.test", secretBody())
			m.headers = m.headers[:2]
			for _, s := range tc.subjects {
				m.headers = append(m.headers, [2]string{"Subject", s})
			}
			o := e.send(t, e.newSession(t), m)
			assertSealed(t, e, m, o)
			got := o.header("Subject")
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("delivered subjects %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("undecodable charset still triggers", func(t *testing.T) {
		e := newTestEnv(t, nil, nil)
		m := tagged("[encrypt] =?x-unknown-charset?Q?abc?=", "alice@external.test", secretBody())
		assertSealed(t, e, m, e.send(t, e.newSession(t), m))
	})
}

// Two messages on one SMTP connection must be decided each on its own
// macros and headers, whatever go-milter keeps between them.
func TestTwoMessagesOnOneConnection(t *testing.T) {
	e := newTestEnv(t, nil, nil)
	s := e.newSession(t)

	first := tagged("One [encrypt]", "alice@external.test", secretBody())
	assertSealed(t, e, first, e.send(t, s, first))

	second := tagged("Two [encrypt]", "bob@external.test", secretBody())
	second.headers[3][1] = "<m2@example.test>"
	o := e.send(t, s, second)
	assertSealed(t, e, second, o)

	// Headers of a sealed message must not leak into the next one.
	third := tagged("Three, untagged", "carol@external.test", secretBody())
	o = e.send(t, s, third)
	assertUntouched(t, o, third)

	// A refusal by custom reply does not renew go-milter's backend.
	noTLS := tagged("Four [encrypt]", "dave@external.test", secretBody())
	delete(noTLS.macros, "{tls_version}")
	if o := e.send(t, s, noTLS); o.action.SMTPCode != 530 {
		t.Fatalf("fourth message: %+v", o.action)
	}
	fifth := tagged("Five [encrypt]", "erin@external.test", secretBody())
	assertSealed(t, e, fifth, e.send(t, s, fifth))
	if n := e.keysCommitted(); n != 3 {
		t.Fatalf("%d keys committed, want 3", n)
	}
}

func TestKeystoreFailureTempfails(t *testing.T) {
	tests := []struct {
		name  string
		store func(real *failingStore)
		cfg   func(*Config)
	}{
		{"store error", func(s *failingStore) { s.createErr = errDiskFull }, nil},
		{"store panics", func(s *failingStore) { s.panicMsg = "boom" }, nil},
		{"store hangs past the timeout", func(s *failingStore) { s.block = make(chan struct{}) },
			func(c *Config) { c.KeystoreTimeout = 200 * time.Millisecond }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := &failingStore{KeyStore: newBoltForTest(t)}
			tc.store(fs)
			e := newTestEnv(t, fs, tc.cfg)
			m := tagged("Secret [encrypt]", "alice@external.test", secretBody())
			o := e.send(t, e.newSession(t), m)
			if o.action.Code != gomilter.ActReplyCode || o.action.SMTPCode != 451 || !strings.HasPrefix(o.action.SMTPText, "4.3.0 ") {
				t.Fatalf("got %+v, want 451 4.3.0", o.action)
			}
			if o.bodyReplaced() || len(o.mods) != 0 {
				t.Fatalf("a refused message was modified: %d modifications", len(o.mods))
			}
			if strings.Contains(o.action.SMTPText, "space") || strings.Contains(o.action.SMTPText, "boom") {
				t.Fatalf("internal detail in the reply: %q", o.action.SMTPText)
			}
			logs := e.logBuf.String()
			if strings.Contains(logs, secretMarker) {
				t.Fatal("plaintext in the log")
			}
			if !strings.Contains(logs, "message refused") {
				t.Fatalf("no log line for the refusal:\n%s", logs)
			}
			// The daemon lives on: the next message on a new connection works.
			fs.heal()
			m2 := tagged("Again [encrypt]", "alice@external.test", secretBody())
			assertSealed(t, e, m2, e.send(t, e.newSession(t), m2))
		})
	}
}

func TestSpoolHoldsOnlyCiphertextAndIsCleaned(t *testing.T) {
	fs := &failingStore{KeyStore: newBoltForTest(t)}
	var spooled [][]byte
	var e *testEnv
	fs.onCreate = func() {
		// The key is committed after the body arrived: the spool is full.
		entries, _ := os.ReadDir(e.spool)
		for _, ent := range entries {
			b, _ := os.ReadFile(e.spool + "/" + ent.Name())
			spooled = append(spooled, b)
		}
	}
	e = newTestEnv(t, fs, nil)
	body := strings.Repeat(secretBody(), 20000) // about 700 KiB, past the memory threshold
	m := tagged("Big [encrypt]", "alice@external.test", body)
	assertSealed(t, e, m, e.send(t, e.newSession(t), m))
	// Most of the envelope is on disk by then; the rest is in the
	// spool's write buffer.
	if len(spooled) != 1 || len(spooled[0]) < len(body)/2 {
		t.Fatalf("expected one spool file holding the envelope, got %d", len(spooled))
	}
	if bytes.Contains(spooled[0], []byte(secretMarker)) {
		t.Fatal("the spool file holds plaintext")
	}
	if entries, _ := os.ReadDir(e.spool); len(entries) != 0 {
		t.Fatalf("spool not cleaned after the message: %d files", len(entries))
	}
}

func TestShutdownDrainsInFlightMessages(t *testing.T) {
	fs := &failingStore{KeyStore: newBoltForTest(t), block: make(chan struct{})}
	entered := make(chan struct{})
	var once sync.Once
	fs.onCreate = func() { once.Do(func() { close(entered) }) }
	e := newTestEnv(t, fs, nil)

	m := tagged("Slow [encrypt]", "alice@external.test", secretBody())
	results := make(chan outcome, 1)
	go func() { results <- e.send(t, e.newSession(t), m) }()
	<-entered // the message is in flight, waiting on its key commit

	other := e.newSession(t)
	shutdownDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownDone <- e.filter.Shutdown(ctx)
	}()
	// Wait until Shutdown has begun draining, then try a new message.
	deadline := time.Now().Add(5 * time.Second)
	for !e.filter.isDraining() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if o := e.send(t, other, tagged("New [encrypt]", "bob@external.test", secretBody())); o.action.SMTPCode != 451 || !strings.HasPrefix(o.action.SMTPText, "4.3.2") {
		t.Fatalf("new message while draining: %+v", o.action)
	}
	select {
	case err := <-shutdownDone:
		t.Fatalf("Shutdown returned (%v) with a message in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(fs.block)
	assertSealed(t, e, m, <-results)
	if err := <-shutdownDone; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownTimesOut(t *testing.T) {
	fs := &failingStore{KeyStore: newBoltForTest(t), block: make(chan struct{})}
	entered := make(chan struct{})
	fs.onCreate = func() { close(entered) }
	e := newTestEnv(t, fs, nil)
	s := e.newSession(t)
	sent := make(chan error, 1)
	go func() {
		// The connection is cut by Shutdown: errors are expected here.
		m := tagged("Stuck [encrypt]", "alice@external.test", secretBody())
		s.Macros(gomilter.CodeMail, "{auth_authen}", "zoe", "{tls_version}", "TLSv1.3")
		s.Mail(m.from, nil)
		s.Rcpt(m.rcpts[0], nil)
		for _, h := range m.headers {
			s.HeaderField(h[0], h[1])
		}
		s.HeaderEnd()
		s.BodyChunk([]byte(m.body))
		_, _, err := s.End()
		sent <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.filter.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a stuck message: %v, want a deadline error", err)
	}
	close(fs.block)
	if err := <-sent; err == nil {
		t.Fatal("the stuck message was answered after Shutdown closed its connection")
	}
}

func TestPanicInSessionTempfails(t *testing.T) {
	e := newTestEnv(t, nil, func(c *Config) { c.Rand = panicReader{} })
	o := e.send(t, e.newSession(t), tagged("Boom [encrypt]", "alice@external.test", secretBody()))
	if o.action.SMTPCode != 451 || !strings.HasPrefix(o.action.SMTPText, "4.3.0") {
		t.Fatalf("got %+v, want 451 4.3.0", o.action)
	}
	if !strings.Contains(e.logBuf.String(), "panic in milter session") {
		t.Fatal("panic not logged")
	}
}

type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("entropy source exploded") }

func TestSealMessageOfflineRoundTrip(t *testing.T) {
	e := newTestEnv(t, nil, nil)
	in := []byte("From: zoe@example.test\nSubject: offline [encrypt]\nX-Folded: a\n b\n\n" + secretBody())
	var out bytes.Buffer
	if err := e.filter.SealMessage(bytes.NewReader(in), &out, "zoe@example.test", []string{"alice@external.test"}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.Bytes(), []byte(secretMarker)) {
		t.Fatal("sealed output holds plaintext")
	}
	if !bytes.Contains(out.Bytes(), []byte("Subject: offline\r\n")) {
		t.Fatalf("tag not stripped:\n%s", out.Bytes()[:200])
	}
	plain, _ := e.open(t, out.Bytes())
	if !bytes.Equal(plain, in) {
		t.Fatalf("offline round trip changed the message:\n%q\nwant\n%q", plain, in)
	}
}

func newBoltForTest(t *testing.T) keystore.KeyStore {
	t.Helper()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "keys.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every line of a message's story carries its queue id, with the same
// fields as before the lines were built by hand (logAttrs), and the
// verdict line of a passed message costs no allocation when the level is
// off.
func TestLogLines(t *testing.T) {
	e := newTestEnv(t, nil, nil)
	m := tagged("Quarterly figures", "bob@partner.test", "hello\r\n")
	if o := e.send(t, e.newSession(t), m); o.action.Code != gomilter.ActAccept || o.bodyReplaced() {
		t.Fatalf("untagged message: got %+v", o.action)
	}
	internet := m.clone()
	internet.macros = map[string]string{"{client_addr}": "203.0.113.9", "i": "5AbC2"}
	if o := e.send(t, e.newSession(t), internet); o.action.Code != gomilter.ActAccept {
		t.Fatalf("mail from the internet: got %+v", o.action)
	}
	logs := e.logBuf.String()
	for _, want := range []string{
		`level=INFO msg="message decided" queue_id=4XyZ1 verdict=pass outcome=accepted from=zoe@example.test rcpts=1 size=7` + "\n",
		`level=DEBUG msg="not a submission: accepted untouched" queue_id=5AbC2 client=203.0.113.9` + "\n",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no line ending in %q in the log:\n%s", want, logs)
		}
	}

	quiet, err := NewFilter(Config{Policy: testPolicy(), KeyLifetime: time.Hour, SpoolDir: t.TempDir(),
		Store: e.store, MasterKey: e.master,
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	msg := quiet.newMessage("zoe@example.test", "4XyZ1")
	msg.addRecipient("bob@partner.test")
	if n := testing.AllocsPerRun(100, func() { msg.logVerdict("accepted", nil) }); n != 0 {
		t.Errorf("logVerdict below the log level allocates %v times", n)
	}
}
