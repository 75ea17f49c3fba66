package portal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
)

// leakyCause is the text of every injected failure: a path, a Go type and
// a driver's words, none of which may reach a page.
const leakyCause = "pq: dial unix /var/lib/securemail/.s.PGSQL.5432: connect refused (*net.OpError)"

// internalDetail is what no error page may show.
var internalDetail = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\berror:`),
	regexp.MustCompile(`goroutine \d|\.go:\d|\bpanic`),        // stack-like text
	regexp.MustCompile(`\b[a-z][a-z0-9]*\.[A-Z][A-Za-z0-9]*`), // Go names: keystore.ErrNotFound, *net.OpError
	regexp.MustCompile(`\(\*[a-z]+\)|\*[a-z]+\.[a-z]`),        // receivers and pointer types
	regexp.MustCompile(`/(tmp|var|etc|home|usr|src|run)/`),    // file paths
	regexp.MustCompile(`%!|<nil>`),                            // fmt leftovers
}

// showsNoInternalDetail is the one place that says what an error page may
// not show: no cause given to it (nor any part of one), no path of dirs,
// nothing in internalDetail.
func showsNoInternalDetail(t *testing.T, name, body string, causes []string, dirs ...string) {
	t.Helper()
	for _, re := range internalDetail {
		if m := re.FindString(body); m != "" {
			t.Errorf("%s: the page shows %q (%v):\n%s", name, m, re, body)
		}
	}
	for _, d := range dirs {
		if strings.Contains(body, d) {
			t.Errorf("%s: the page shows the path %s:\n%s", name, d, body)
		}
	}
	for _, c := range causes {
		for _, part := range causeParts(c) {
			if strings.Contains(body, part) || strings.Contains(body, html.EscapeString(part)) {
				t.Errorf("%s: the page shows the cause %q:\n%s", name, part, body)
			}
		}
	}
}

// causeParts splits a wrapped error's text at its ": " and line breaks, so
// a page that shows only the inner error is caught too.
func causeParts(cause string) []string {
	parts := []string{cause}
	for _, p := range strings.FieldsFunc(cause, func(r rune) bool { return r == '\n' }) {
		for _, q := range strings.Split(p, ": ") {
			if q = strings.TrimSpace(q); len(q) >= 12 {
				parts = append(parts, q)
			}
		}
	}
	return parts
}

var causeAttr = regexp.MustCompile(`cause=("(?:[^"\\]|\\.)*"|\S+)`)

// loggedCauses returns the causes of the error pages in a text log.
func loggedCauses(t *testing.T, logs string) []string {
	t.Helper()
	var causes []string
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `msg="portal: error page"`) {
			continue
		}
		m := causeAttr.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		c := m[1]
		if strings.HasPrefix(c, `"`) {
			var err error
			if c, err = strconv.Unquote(c); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
		}
		causes = append(causes, c)
	}
	return causes
}

// failingStore is a portal store whose chosen calls fail with leakyCause,
// or panic with it.
type failingStore struct {
	keystore.PortalStore
	mu   sync.Mutex
	mode map[string]string // method name: "fail" or "panic"
}

func (f *failingStore) set(method, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if mode == "" {
		delete(f.mode, method)
		return
	}
	f.mode[method] = mode
}

func (f *failingStore) injected(method string) error {
	f.mu.Lock()
	mode := f.mode[method]
	f.mu.Unlock()
	switch mode {
	case "fail":
		return fmt.Errorf("keystore: %s: %s", method, leakyCause)
	case "panic":
		panic("runtime error: " + method + ": " + leakyCause + "\ngoroutine 7 [running]:\nportal.(*handler).read()\n\t/src/securemail/portal/read.go:312 +0x1d")
	}
	return nil
}

func (f *failingStore) Session(ctx context.Context, digest []byte) (keystore.Session, error) {
	if err := f.injected("Session"); err != nil {
		return keystore.Session{}, err
	}
	return f.PortalStore.Session(ctx, digest)
}

func (f *failingStore) Hit(ctx context.Context, key string, now time.Time, window time.Duration, limit int) (keystore.HitResult, error) {
	if err := f.injected("Hit"); err != nil {
		return keystore.HitResult{}, err
	}
	return f.PortalStore.Hit(ctx, key, now, window, limit)
}

func (f *failingStore) ConsumeCode(ctx context.Context, purpose keystore.CodePurpose, email string, digest []byte, now time.Time) error {
	if err := f.injected("ConsumeCode"); err != nil {
		return err
	}
	return f.PortalStore.ConsumeCode(ctx, purpose, email, digest, now)
}

func (f *failingStore) RecordRead(ctx context.Context, ev keystore.ReadEvent) error {
	if err := f.injected("RecordRead"); err != nil {
		return err
	}
	return f.PortalStore.RecordRead(ctx, ev)
}

// failingMailer is the test env's mailer, refusing every message with
// leaky text while fail is set.
type failingMailer struct {
	Mailer
	mu   sync.Mutex
	fail bool
}

func (m *failingMailer) set(fail bool) {
	m.mu.Lock()
	m.fail = fail
	m.mu.Unlock()
}

func (m *failingMailer) Send(ctx context.Context, from string, to []string, write func(io.Writer) error) error {
	m.mu.Lock()
	fail := m.fail
	m.mu.Unlock()
	if fail {
		return errors.New("smtp relay: end of DATA: 554 5.3.0 /etc/postfix/main.cf: error: table lookup failed")
	}
	return m.Mailer.Send(ctx, from, to, write)
}

// Every error page reachable over HTTP, driven the way a browser (or an
// attacker, or a broken store) would, shows words and nothing of what went
// wrong inside; what went wrong is in the log.
func TestErrorPagesShowNoInternalDetail(t *testing.T) {
	t.Parallel()
	fs := &failingStore{mode: map[string]string{}}
	fm := &failingMailer{}
	e := newTestEnv(t, func(o *Options) {
		o.MaxMessageSize = 64 << 10 // small enough to exceed; leaves no room for reply files
		fs.PortalStore = o.Store
		o.Store = fs
		fm.Mailer = o.Mailer
		o.Mailer = fm
	})
	type page struct {
		name   string
		r      response
		status int
	}
	var pages []page
	got := func(name string, status int, r response) { pages = append(pages, page{name, r, status}) }
	inject := func(method, mode string, f func()) {
		fs.set(method, mode)
		defer fs.set(method, "")
		f()
	}

	s := e.seal(alice, []string{bob, carol}, plainMessage)
	b := e.browser()
	if r := b.register(s, bob); r.status != http.StatusOK {
		t.Fatalf("read page: %d\n%s", r.status, r.body)
	}
	msg := "/m/" + b.token

	got("unknown token", http.StatusNotFound, b.get("/m/AAAAAAAAAAAAAAAAAAAAAA"))
	got("token naming a path", http.StatusNotFound, b.get("/m/..%2F..%2Fetc%2Fpasswd"))
	got("wrong method", http.StatusMethodNotAllowed, b.get(msg+"/reply"))
	got("no such page", http.StatusNotFound, b.get("/no/such/page"))
	got("attachment out of range", http.StatusNotFound, b.get(msg+"/part/7"))
	got("attachment index not a number", http.StatusNotFound, b.get(msg+"/part/x"))
	got("empty reply", http.StatusBadRequest, b.postMultipart(msg+"/reply", [][2]string{{"body", " "}}))
	got("reply too large", http.StatusRequestEntityTooLarge, b.postMultipart(msg+"/reply", [][2]string{{"body", "hi"}, {"file:files", "a.txt\x00some bytes"}}))
	fm.set(true)
	got("relay refuses the reply", http.StatusServiceUnavailable, b.postMultipart(msg+"/reply", [][2]string{{"body", "hi"}}))
	fm.set(false)

	huge := bytes.Repeat([]byte{'A'}, int(maxUpload(64<<10))+4096)
	got("upload too large", http.StatusRequestEntityTooLarge, b.postMultipart("/open", [][2]string{{"v", "1"}, {"envelope", armor(huge)}}))
	got("upload not base64", http.StatusBadRequest, b.postMultipart("/open", [][2]string{{"v", "1"}, {"envelope", "!!!!"}}))
	got("upload not multipart", http.StatusBadRequest, b.post("/open", url.Values{"v": {"1"}}))
	tampered := e.seal(alice, []string{bob}, plainMessage)
	tampered.form.Envelope = bytes.Clone(tampered.form.Envelope)
	tampered.form.Envelope[len(tampered.form.Envelope)-3] ^= 1
	got("tampered envelope", http.StatusBadRequest, b.open(tampered))
	revoked := e.seal(alice, []string{bob}, plainMessage)
	if err := e.store.RevokeKey(context.Background(), keystore.KeyID(revoked.form.KeyID), e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	got("revoked key", http.StatusGone, b.open(revoked))
	got("form too large", http.StatusBadRequest, b.post("/email", url.Values{"email": {strings.Repeat("a", maxFormBody)}}))
	req, _ := http.NewRequest("POST", e.srv.URL+"/signin", strings.NewReader("password=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	got("cross-origin form", http.StatusForbidden, b.do(req))

	// A second browser waiting for a code, for the store's failures.
	c := e.browser()
	c.follow(c.open(s))
	if r := c.email(carol); r.status != http.StatusSeeOther {
		t.Fatalf("email step: %d\n%s", r.status, r.body)
	}
	inject("Session", "fail", func() { got("store fails loading the session", http.StatusServiceUnavailable, c.get("/signin")) })
	inject("ConsumeCode", "fail", func() {
		got("store fails checking a code", http.StatusServiceUnavailable, c.post("/code", url.Values{"code": {"12345678"}}))
	})
	inject("Hit", "fail", func() { got("store fails counting an upload", http.StatusServiceUnavailable, b.open(s)) })
	inject("RecordRead", "panic", func() { got("store panics recording a read", http.StatusInternalServerError, b.get(msg)) })

	e.clock.Advance(sessionIdle + time.Minute)
	got("session ended", http.StatusUnauthorized, b.get("/account/password"))

	bare, err := New(Options{PortalURL: "https://secure.example.test", Logger: slog.New(slog.NewTextHandler(e.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	rec := httptest.NewRecorder()
	bare.ServeHTTP(rec, httptest.NewRequest("GET", "/m/AAAAAAAAAAAAAAAAAAAAAA", nil))
	got("reading not set up", http.StatusServiceUnavailable, response{status: rec.Code, header: rec.Header(), body: rec.Body.String()})

	logs := e.logs.String()
	causes := loggedCauses(t, logs)
	if !slices.ContainsFunc(causes, func(c string) bool { return strings.Contains(c, leakyCause) }) ||
		!slices.ContainsFunc(causes, func(c string) bool { return strings.Contains(c, "table lookup failed") }) {
		t.Errorf("the injected failures are not in the log as causes:\n%s", logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "portal: error page") && strings.Contains(line, b.token) {
			t.Errorf("an error page's log line names the message token: %s", line)
		}
	}
	for _, p := range pages {
		if p.r.status != p.status {
			t.Errorf("%s: status %d, want %d\n%s", p.name, p.r.status, p.status, p.r.body)
		}
		showsNoInternalDetail(t, p.name, p.r.body, causes, e.dir)
	}
}

// Every page of the catalogue, with its status, title and Retry-After;
// each is rendered by h.fail with a cause that must stay off the page.
func TestErrorPageCatalogue(t *testing.T) {
	t.Parallel()
	// Without a store or spool the sweeper logs nothing: only this
	// goroutine writes to logs.
	var logs bytes.Buffer
	p, err := New(Options{PortalURL: "https://secure.example.test", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cause := errors.New(leakyCause)
	busy := fmt.Errorf("%w: %s", ErrBusy, leakyCause)
	cases := []struct {
		ctor   string // the constructor, by name
		err    error
		status int
		title  string
		retry  string // Retry-After
	}{
		{"pageFormUnreadable", pageFormUnreadable(cause), 400, "This form could not be read", ""},
		{"pageStartOver", pageStartOver(), 401, "Please open your message again", ""},
		{"pageAccountExists", pageAccountExists("bob@external.test"), 409, "You already have an account", ""},
		{"pageTooManyAnswers", pageTooManyAnswers(), 401, "Too many wrong answers", ""},
		{"pageBusy", pageBusy(cause), 503, "This server is busy", "60"},
		{"pageTooManyUploads", pageTooManyUploads(), 429, "Too many uploads at once", "60"},
		{"pageUploadTooSlow", pageUploadTooSlow(cause), 408, "The upload was too slow", ""},
		{"pageSpoolFull", pageSpoolFull(cause), 503, "This server is busy", "300"},
		{"pageTooManyOpened", pageTooManyOpened(90 * time.Second), 429, "Too many messages opened", "91"},
		{"pageTooManyLinks", pageTooManyLinks(90 * time.Second), 429, "Too many messages opened", "91"},
		{"pageUnknownLink", pageUnknownLink(cause), 404, "This link does not work", ""},
		{"pageLinkEnded", pageLinkEnded(keystore.ServerCopy{Until: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}, cause), 410, "This link has ended", ""},
		{"pageLinkRevoked", pageLinkRevoked(cause), 410, "The sender withdrew this secure message", ""},
		{"pageLinkExpired", pageLinkExpired(cause), 410, "This secure message has expired", ""},
		{"pageMessageTooLarge", pageMessageTooLarge(cause), 413, "This message is too large", ""},
		{"pageDamaged", pageDamaged(cause), 400, "This secure message is damaged", ""},
		{"pageEnvelopeGone", pageEnvelopeGone(cause), 404, "Please open your message again", ""},
		{"pageExpired", pageExpired(cause), 410, "This secure message has expired", ""},
		{"pageRevoked", pageRevoked(cause), 410, "The sender withdrew this secure message", ""},
		{"pageCannotShow", pageCannotShow(cause), 422, "This message cannot be shown", ""},
		{"pageNoSuchPage", pageNoSuchPage(), 404, "There is no such page here", ""},
		{"pageWrongMethod", pageWrongMethod("DELETE"), 405, "This page cannot be used that way", ""},
		{"pageNoSuchAttachment", pageNoSuchAttachment(cause), 404, "No such attachment", ""},
		{"pageAttachmentUnreadable", pageAttachmentUnreadable(cause), 422, "This attachment cannot be opened", ""},
		{"pageReplyUnreadable", pageReplyUnreadable(cause), 400, "Your reply could not be read", ""},
		{"pageReplyEmpty", pageReplyEmpty(), 400, "Your reply is empty", ""},
		{"pageNobodyToReply", pageNobodyToReply(), 422, "There is nobody to reply to", ""},
		{"pageTooManyReplies", pageTooManyReplies(20, time.Hour), 429, "You have sent many replies", "3601"},
		{"pageReplyTooLarge", pageReplyTooLarge(1<<20, cause), 413, "Your reply is too large", ""},
		{"pageReplyNotSent", pageReplyNotSent(cause), 503, "Your reply was not sent", ""},
		{"pageCrossOrigin", pageCrossOrigin(), 403, "This form came from another site", ""},
		{"pageNotEnabled", pageNotEnabled(), 503, "Reading is not enabled on this server", ""},
		{"pageStoreFailed", pageStoreFailed("session", cause), 503, "Please try again in a minute", ""},
		{"pageInternal", pageInternal(cause), 500, "Something went wrong", ""},
		{"pageHashFailed", pageHashFailed("verify password", busy), 503, "This server is busy", "60"},
		{"pageHashFailed", pageHashFailed("hash", cause), 503, "Please try again in a minute", ""},
		{"a plain error", cause, 500, "Something went wrong", ""},
		{"a wrapped pageError", fmt.Errorf("reply: %w", pageReplyEmpty()), 400, "Your reply is empty", ""},
	}
	// German words that come from the constructor's values, written as
	// German writes them.
	german := map[string][]string{
		"pageAccountExists":  {"Für bob@external.test gibt es bereits ein Konto."},
		"pageTooManyOpened":  {"Bitte warten Sie 2 Minuten und"},
		"pageTooManyLinks":   {"Bitte warten Sie 2 Minuten und"},
		"pageLinkEnded":      {"bis Dienstag, 1. Dezember 2026 um 09:00 UTC zum Lesen"},
		"pageTooManyReplies": {"zuletzt 20 Antworten gesendet"},
		"pageReplyTooLarge":  {"größer als 1,0 MB."},
	}
	for _, c := range cases {
		logs.Reset()
		rec := httptest.NewRecorder()
		p.h.fail(rec, httptest.NewRequest("POST", "/m/AAAAAAAAAAAAAAAAAAAAAA/reply", nil), c.err)
		body := rec.Body.String()
		// The same page for a German reader: every title and paragraph
		// in German, every field filled, the status and headers as in
		// English, the cause as far off the page.
		deReq := httptest.NewRequest("POST", "/m/AAAAAAAAAAAAAAAAAAAAAA/reply", nil)
		deReq.Header.Set("Accept-Language", "de-DE,de;q=0.9,en;q=0.5")
		de := httptest.NewRecorder()
		p.h.fail(de, deReq, c.err)
		deBody := de.Body.String()
		if de.Code != c.status || de.Header().Get("Retry-After") != c.retry || de.Header().Get("Content-Language") != "de" ||
			!strings.Contains(deBody, `<html lang="de">`) {
			t.Errorf("%s in German: %d, Retry-After %q, Content-Language %q, want %d, %q, de:\n%s", c.ctor, de.Code,
				de.Header().Get("Retry-After"), de.Header().Get("Content-Language"), c.status, c.retry, deBody)
		}
		enTitle, enWords := pageWords(body)
		deTitle, deWords := pageWords(deBody)
		if enTitle == "" || deTitle == "" || deTitle == enTitle || len(deWords) != len(enWords) {
			t.Errorf("%s: German title %q and %d paragraphs, English %q and %d", c.ctor, deTitle, len(deWords), enTitle, len(enWords))
		}
		for _, w := range enWords {
			if strings.Contains(deBody, w) {
				t.Errorf("%s: the German page has the English words %q", c.ctor, w)
			}
		}
		for _, want := range german[c.ctor] {
			if !strings.Contains(deBody, want) {
				t.Errorf("%s: the German page lacks %q:\n%s", c.ctor, want, deBody)
			}
		}
		for lang, b := range map[string]string{"English": body, "German": deBody} {
			if m := unfilledField.FindString(b); m != "" {
				t.Errorf("%s: the %s page leaves %s unfilled:\n%s", c.ctor, lang, m, b)
			}
		}
		showsNoInternalDetail(t, c.ctor+" in German", deBody, []string{leakyCause})
		logs.Reset()
		rec = httptest.NewRecorder()
		p.h.fail(rec, httptest.NewRequest("POST", "/m/AAAAAAAAAAAAAAAAAAAAAA/reply", nil), c.err)
		if rec.Code != c.status || !strings.Contains(body, "<h1>"+html.EscapeString(c.title)+"</h1>") || rec.Header().Get("Retry-After") != c.retry {
			t.Errorf("%s: %d, Retry-After %q, want %d %q, Retry-After %q:\n%s", c.ctor, rec.Code, rec.Header().Get("Retry-After"), c.status, c.title, c.retry, body)
		}
		if strings.Count(body, "<p>") == 0 {
			t.Errorf("%s: a page without words:\n%s", c.ctor, body)
		}
		showsNoInternalDetail(t, c.ctor, body, []string{leakyCause})
		line := logs.String()
		if strings.Count(line, "portal: error page") != 1 || !strings.Contains(line, "status="+strconv.Itoa(c.status)) ||
			!strings.Contains(line, `path="POST /m/{token}/reply"`) || strings.Contains(line, "AAAAAAAAAAAAAAAAAAAAAA") {
			t.Errorf("%s: log %q, want one line with the status and the route, without the token", c.ctor, line)
		}
		if errors.Is(c.err, cause) && !strings.Contains(line, leakyCause) {
			t.Errorf("%s: the cause is not in the log: %q", c.ctor, line)
		}
	}

	// Every constructor in pageerror.go is in the table above.
	listed := map[string]bool{}
	for _, c := range cases {
		listed[c.ctor] = true
	}
	f, err := parser.ParseFile(token.NewFileSet(), "pageerror.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || fn.Type.Results == nil || len(fn.Type.Results.List) != 1 {
			continue
		}
		if star, ok := fn.Type.Results.List[0].Type.(*ast.StarExpr); !ok || fmt.Sprint(star.X) != "pageError" {
			continue
		}
		if !listed[fn.Name.Name] {
			t.Errorf("constructor %s is not in the catalogue table", fn.Name.Name)
		}
	}
}

// unfilledField is a catalogue field left in a page: {Name}.
var unfilledField = regexp.MustCompile(`\{[A-Za-z][A-Za-z0-9]*\}`)

var (
	pageHeading   = regexp.MustCompile(`<h1>(.*?)</h1>`)
	pageParagraph = regexp.MustCompile(`<p>(.*?)</p>`)
)

// pageWords returns an error page's title and paragraphs as HTML.
func pageWords(body string) (string, []string) {
	var title string
	if m := pageHeading.FindStringSubmatch(body); m != nil {
		title = m[1]
	}
	var words []string
	for _, m := range pageParagraph.FindAllStringSubmatch(body, -1) {
		words = append(words, m[1])
	}
	return title, words
}

// The log of an error page is for the operator and stays English
// whatever the reader's language.
func TestErrorPageLogIsEnglish(t *testing.T) {
	t.Parallel()
	if got := pageTooManyReplies(20, time.Hour).Error(); got != "portal: 429 You have sent many replies: reply budget of this account spent" {
		t.Errorf("Error() = %q", got)
	}
}

// A German reader who comes back to a message whose copy is gone reads
// the error page in German, and its switch leads to the same page in
// English.
func TestErrorPageInGerman(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	b := e.browser()
	const link = "/m/AAAAAAAAAAAAAAAAAAAAAA"
	de := map[string]string{"Accept-Language": "de"}
	r := b.getWith(link, de)
	if r.status != http.StatusNotFound || r.header.Get("Content-Language") != "de" || !strings.Contains(r.body, `<html lang="de">`) ||
		!strings.Contains(r.body, "<h1>Bitte öffnen Sie Ihre Nachricht erneut</h1>") || !strings.Contains(r.body, "„Nachricht lesen“") {
		t.Fatalf("Accept-Language de: %d, Content-Language %q, not the German page:\n%s", r.status, r.header.Get("Content-Language"), r.body)
	}
	const sw = `<a href="/lang/en?back=%2Fm%2FAAAAAAAAAAAAAAAAAAAAAA" lang="en" hreflang="en">English</a>`
	if !strings.Contains(r.body, sw) {
		t.Fatalf("the German error page has no switch to English back to it:\n%s", r.body)
	}
	r = b.get("/lang/en?back=%2Fm%2FAAAAAAAAAAAAAAAAAAAAAA")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != link {
		t.Fatalf("the switch: %d to %q, want 303 to %s", r.status, r.header.Get("Location"), link)
	}
	r = b.getWith(r.header.Get("Location"), de)
	if r.status != http.StatusNotFound || !strings.Contains(r.body, `<html lang="en">`) || !strings.Contains(r.body, "<h1>Please open your message again</h1>") {
		t.Fatalf("after the switch: %d, not the English page:\n%s", r.status, r.body)
	}
}

// TestUnroutedRequestsGetPages: an address no route takes, or a method an
// address does not take, gets a page in words with the portal's headers
// (not the mux's plain text), and a wrong method names the right ones.
func TestUnroutedRequestsGetPages(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	p, err := New(Options{PortalURL: "https://secure.example.test", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		title, allow string
	}{
		{"GET", "/no/such/page", 404, "There is no such page here", ""},
		{"GET", "/m/AAAAAAAAAAAAAAAAAAAAAA/nothing", 404, "There is no such page here", ""},
		{"HEAD", "/nowhere", 404, "", ""},
		{"DELETE", "/signin", 405, "This page cannot be used that way", "GET, POST"},
		{"PUT", "/healthz", 405, "This page cannot be used that way", "GET"},
		{"GET", "/open", 405, "This page cannot be used that way", "POST"},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(tc.method, tc.path, nil)
		r.Host = "secure.example.test"
		p.ServeHTTP(rec, r)
		body := rec.Body.String()
		if rec.Code != tc.status || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q; want %d, Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.status, tc.allow)
		}
		if tc.title != "" && !strings.Contains(body, "<h1>"+html.EscapeString(tc.title)+"</h1>") {
			t.Errorf("%s %s: not the page in words:\n%s", tc.method, tc.path, body)
		}
		if rec.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("%s %s: without the portal's headers", tc.method, tc.path)
		}
		showsNoInternalDetail(t, tc.method+" "+tc.path, body, nil)
	}
	if strings.Contains(logs.String(), "AAAAAAAAAAAAAAAAAAAAAA") {
		t.Errorf("a path's token reached the log: %s", logs.String())
	}
}
