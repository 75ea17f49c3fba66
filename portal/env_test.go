package portal

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/smtptest"
	"github.com/securemail/securemail/internal/syncbuf"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/milter"
)

// sink is the shared test SMTP server, so the portal's SMTPMailer is
// tested over the wire; its readers first let the portal finish sending
// every mail it queued.
type sink struct {
	*smtptest.Server
	// settle, when set, waits until the portal has sent every mail it
	// queued.
	settle func()
}

func newSink(t testing.TB) *sink {
	return &sink{Server: smtptest.Start(t, smtptest.Options{})}
}

// parseMail parses a message the sink kept.
func parseMail(t *testing.T, m smtptest.Message) *mail.Message {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("sink message does not parse: %v\n%s", err, m.Data)
	}
	return msg
}

func (s *sink) messages() []smtptest.Message {
	if s.settle != nil {
		s.settle()
	}
	return s.Messages()
}

// last returns the newest message to addr.
func (s *sink) last(t testing.TB, addr string) smtptest.Message {
	t.Helper()
	msgs := s.messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].To(addr) {
			return msgs[i]
		}
	}
	t.Fatalf("no mail to %s among %d messages", addr, len(msgs))
	return smtptest.Message{}
}

func (s *sink) countTo(addr string) int {
	n := 0
	for _, m := range s.messages() {
		if m.To(addr) {
			n++
		}
	}
	return n
}

var codeRe = regexp.MustCompile(`\b(\d{8})\b`)

// code returns the code in the newest mail to addr.
func (s *sink) code(t testing.TB, addr string) string {
	t.Helper()
	m := s.last(t, addr)
	found := codeRe.FindSubmatch(m.Data)
	if found == nil {
		t.Fatalf("no code in the mail to %s:\n%s", addr, m.Data)
	}
	return string(found[1])
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testEnv is a whole portal: a real bbolt store and master key, the
// milter's own sealing code, an HTTP server and an SMTP sink.
type testEnv struct {
	t      testing.TB
	dir    string
	store  *boltstore.Store
	mk     *keystore.MasterKey
	filter *milter.Filter
	portal *Handler
	srv    *httptest.Server
	sink   *sink
	clock  *clock
	logs   *syncbuf.Buffer
}

// handlerArgon2 keeps handler tests fast; the cost settings themselves are
// tested in secrets_test.go.
var handlerArgon2 = Argon2Params{Time: 1, MemoryKiB: 1024, Threads: 1}

type envOption func(*Options)

func newTestEnv(t testing.TB, opts ...envOption) *testEnv {
	t.Helper()
	dir := t.TempDir()
	e := &testEnv{t: t, dir: dir, sink: newSink(t), clock: &clock{now: time.Now().UTC().Truncate(time.Second)}, logs: &syncbuf.Buffer{}}
	var err error
	if e.store, err = boltstore.Open(filepath.Join(dir, "keys.db"), boltstore.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	if e.mk, err = keystore.CreateMasterKey(filepath.Join(dir, "master.key"), rand.Reader); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(nil)
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if e.filter, err = milter.NewFilter(milter.Config{
		Policy:      milter.Policy{InternalDomains: []string{"example.com"}, SubjectTag: "[encrypt]", MaxMessageSize: 20 << 20},
		PortalURL:   e.srv.URL,
		KeyLifetime: 90 * 24 * time.Hour,
		SpoolDir:    filepath.Join(dir, "spool"),
		Store:       e.store,
		MasterKey:   e.mk,
		Logger:      logger,
		Now:         e.clock.Now,
	}); err != nil {
		t.Fatal(err)
	}
	o := Options{
		PortalURL:      e.srv.URL,
		Keys:           e.store,
		Store:          e.store,
		MasterKey:      e.mk,
		SpoolDir:       filepath.Join(dir, "portal-spool"),
		MaxMessageSize: 20 << 20,
		Mailer:         &SMTPMailer{Addr: e.sink.Addr},
		From:           "securemail@example.com",
		SubjectTag:     "[encrypt]",
		Hasher:         NewHasher(handlerArgon2, 2),
		Logger:         logger,
		Now:            e.clock.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	if e.portal, err = New(o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.portal.Close() })
	e.sink.settle = e.portal.h.mail.wait
	e.srv.Config.Handler = e.portal
	return e
}

// sealed is one message sealed by the milter's code.
type sealed struct {
	form envelope.Form
	raw  []byte // the original message
	out  []byte // the sealed message's body: notice and attachment
}

// seal seals msg from sender to rcpts exactly as the milter would.
func (e *testEnv) seal(sender string, rcpts []string, msg string) sealed {
	e.t.Helper()
	raw := []byte(strings.ReplaceAll(msg, "\n", "\r\n"))
	var out bytes.Buffer
	if err := e.filter.SealMessage(bytes.NewReader(raw), &out, sender, rcpts); err != nil {
		e.t.Fatal(err)
	}
	body := bytes.Clone(out.Bytes())
	page, err := envelope.FindPage(&out)
	if err != nil {
		e.t.Fatal(err)
	}
	form, err := envelope.ParsePage(page)
	if err != nil {
		e.t.Fatal(err)
	}
	return sealed{form: form, raw: raw, out: body}
}

// browser is one cookie jar against the portal, not following redirects,
// so tests see every 303.
type browser struct {
	e *testEnv
	c *http.Client
	// forwardedFor, if set, is sent as X-Forwarded-For, as a reverse
	// proxy would.
	forwardedFor string
	// token is the message token of the last /open, which the email
	// page's form carries.
	token string
	// addr is the address the last email step gave.
	addr string
	// spent, if set, adds up the time of every request and its whole
	// answer (journey_bench_test.go).
	spent *time.Duration
}

// email submits the email page's form, as the browser would from the
// page of the last message it opened.
func (b *browser) email(addr string) response {
	b.e.t.Helper()
	b.addr = addr
	return b.post("/email", url.Values{"email": {addr}, "token": {b.token}})
}

// again posts the sign-in page's "Send a new code" (or "Email me a code")
// form: the address of the last email step, again.
func (b *browser) again() response {
	b.e.t.Helper()
	return b.post("/email", url.Values{"email": {b.addr}, "token": {b.token}, "again": {"1"}})
}

func (e *testEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) response {
	b.e.t.Helper()
	if b.forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", b.forwardedFor)
	}
	start := time.Now()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if b.spent != nil {
		*b.spent += time.Since(start)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func (b *browser) get(path string) response {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) response {
	b.e.t.Helper()
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// follow GETs a 303's target and returns that page.
func (b *browser) follow(r response) response {
	b.e.t.Helper()
	if r.status != http.StatusSeeOther {
		b.e.t.Fatalf("want 303, got %d:\n%s", r.status, r.body)
	}
	return b.get(r.header.Get("Location"))
}

// multipartBody encodes fields in order; a field whose name starts with
// "file:" is a file part named by the rest, with value "filename\x00content".
func multipartBody(t testing.TB, fields [][2]string) (string, io.Reader) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range fields {
		if name, ok := strings.CutPrefix(f[0], "file:"); ok {
			fn, content, _ := strings.Cut(f[1], "\x00")
			pw, err := w.CreateFormFile(name, fn)
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(pw, content)
			continue
		}
		w.WriteField(f[0], f[1])
	}
	w.Close()
	return w.FormDataContentType(), &buf
}

func (b *browser) postMultipart(path string, fields [][2]string) response {
	b.e.t.Helper()
	ct, body := multipartBody(b.e.t, fields)
	req, _ := http.NewRequest("POST", b.e.srv.URL+path, body)
	req.Header.Set("Content-Type", ct)
	return b.do(req)
}

// armor is the envelope as the page's textarea holds it.
func armor(env []byte) string {
	var b strings.Builder
	enc := base64.StdEncoding.EncodeToString(env)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.String()
}

// open posts the attachment's form, as the "Click to read message"
// button does, from a file:// page.
func (b *browser) open(s sealed) response {
	b.e.t.Helper()
	ct, body := multipartBody(b.e.t, [][2]string{{"v", "1"}, {"id", s.form.KeyID.String()}, {"envelope", armor(s.form.Envelope)}})
	req, _ := http.NewRequest("POST", b.e.srv.URL+"/open", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Origin", "null")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	r := b.do(req)
	if loc := r.header.Get("Location"); strings.HasPrefix(loc, "/m/") {
		b.token = strings.TrimPrefix(loc, "/m/")
	}
	return r
}

const testPassword = "correct horse battery staple"

// register walks a new recipient from the attachment to the message.
func (b *browser) register(s sealed, email string) response {
	b.e.t.Helper()
	page := b.follow(b.open(s))
	if !strings.Contains(page.body, `action="/email"`) {
		b.e.t.Fatalf("no email form after open:\n%s", page.body)
	}
	page = b.follow(b.email(email))
	if !strings.Contains(page.body, `action="/code"`) {
		b.e.t.Fatalf("no code form after the email step:\n%s", page.body)
	}
	code := b.e.sink.code(b.e.t, email)
	page = b.follow(b.post("/code", url.Values{"code": {code}}))
	if !strings.Contains(page.body, "Create your account") {
		b.e.t.Fatalf("code not accepted:\n%s", page.body)
	}
	return b.follow(b.post("/register/password", registrationForm(testPassword)))
}

func registrationForm(pw string) url.Values {
	return url.Values{"password": {pw}, "confirm": {pw},
		"q1": {"0"}, "a1": {"Fluffy"}, "q2": {"1"}, "a2": {"Springfield"}}
}

// signin walks a known recipient from the attachment to the message.
func (b *browser) signin(s sealed, email, pw string) response {
	b.e.t.Helper()
	b.follow(b.open(s))
	b.follow(b.email(email))
	return b.post("/signin", url.Values{"password": {pw}})
}

func (b *browser) cookie() *http.Cookie {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if strings.Contains(c.Name, "securemail_session") {
			return c
		}
	}
	return nil
}

func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func httptestTLS(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv
}
