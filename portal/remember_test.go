package portal

import (
	"encoding/base64"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// rememberingBrowser is a browser that gave addr with "Remember my email
// address on this device" ticked, and was then closed: a new jar with only
// the address cookie, as a device keeps it across browser sessions.
func rememberingBrowser(t *testing.T, e *testEnv, s sealed, addr string) *browser {
	t.Helper()
	b := e.browser()
	b.follow(b.open(s))
	r := b.post("/email", url.Values{"email": {addr}, "token": {b.token}, "remember": {"1"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("email step with remember: %d\n%s", r.status, r.body)
	}
	u, _ := url.Parse(e.srv.URL)
	var kept []*http.Cookie
	for _, c := range b.c.Jar.Cookies(u) {
		if strings.Contains(c.Name, "securemail_address") {
			kept = append(kept, c)
		}
	}
	if len(kept) != 1 {
		t.Fatalf("the email step with remember ticked left cookies %v, want one securemail_address", b.c.Jar.Cookies(u))
	}
	jar, _ := cookiejar.New(nil)
	jar.SetCookies(u, kept)
	b.c.Jar = jar
	return b
}

// With the address remembered, "Click to read message" lands on the
// sign-in page for it: no email page, no session stored, no mail; the
// password leads to the message.
func TestRememberedAddressGoesStraightToPassword(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	b := rememberingBrowser(t, e, s, "Bob@External.test")
	e.portal.h.mail.wait()
	mails := len(e.sink.messages())

	page := b.follow(b.open(s))
	if page.status != http.StatusOK || !strings.Contains(page.body, "Signing in as <strong>"+bob+"</strong>") ||
		!strings.Contains(page.body, `action="/signin"`) || strings.Contains(page.body, `action="/code"`) {
		t.Fatalf("the message link with a remembered address:\n%s", page.body)
	}
	if page.header.Get("Set-Cookie") != "" || b.cookie() != nil {
		t.Error("the sign-in page for a remembered address stored a session")
	}
	// A wrong password comes back to the same page, in words.
	if r := b.post("/signin", url.Values{"password": {"not the password"}, "token": {b.token}}); r.status != http.StatusUnauthorized ||
		!strings.Contains(r.body, "do not match") || !strings.Contains(r.body, `action="/signin"`) {
		t.Fatalf("a wrong password from the remembered page: %d\n%s", r.status, r.body)
	}
	r := b.post("/signin", url.Values{"password": {testPassword}, "token": {b.token}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/m/"+b.token {
		t.Fatalf("the password from the remembered page: %d %s\n%s", r.status, r.header.Get("Location"), r.body)
	}
	if page := b.follow(r); !strings.Contains(page.body, "Quarterly numbers") {
		t.Fatalf("no message after signing in from the remembered page:\n%s", page.body)
	}
	e.portal.h.mail.wait()
	if got := len(e.sink.messages()) - mails; got != 0 {
		t.Errorf("a remembered address and its password sent %d mails, want none", got)
	}
}

// A remembered address is only an address: without the form's token, or
// with one that leads nowhere, the password is not even checked; a
// cross-origin post is refused.
func TestRememberedAddressNeedsTheMessage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	b := rememberingBrowser(t, e, s, bob)
	checks := countChecks(e)
	if r := b.post("/signin", url.Values{"password": {testPassword}}); r.status == http.StatusSeeOther && strings.HasPrefix(r.header.Get("Location"), "/m/") {
		t.Errorf("a password without a message token signed in: %s", r.header.Get("Location"))
	}
	if r := b.post("/signin", url.Values{"password": {testPassword}, "token": {"AAAAAAAAAAAAAAAAAAAAAA"}}); r.status < 400 {
		t.Errorf("a password with an unknown token: %d %s", r.status, r.header.Get("Location"))
	}
	if n := checks.Load(); n != 0 {
		t.Errorf("%d password checks for sign-ins without a message", n)
	}
	req, _ := http.NewRequest("POST", e.srv.URL+"/signin", strings.NewReader(url.Values{"password": {testPassword}, "token": {b.token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := b.do(req); r.status != http.StatusForbidden {
		t.Errorf("a cross-site sign-in with a remembered address: %d", r.status)
	}
}

// "Email me a code" on the remembered page goes through the address step
// (a code, the code form) and keeps the address remembered; "Not you?
// Use another address" forgets it; the email step unticked forgets it
// too.
func TestRememberedAddressCodeAndForget(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := rememberingBrowser(t, e, s, bob)
	e.portal.h.mail.wait()
	before := e.sink.countTo(bob)
	b.addr = bob
	r := b.again()
	if sc := r.header.Get("Set-Cookie"); strings.Contains(sc, "securemail_address") {
		t.Errorf("\"Email me a code\" touched the remembered address: %q", sc)
	}
	page := b.follow(r)
	if !strings.Contains(page.body, `action="/code"`) || e.sink.countTo(bob) != before+1 {
		t.Fatalf("\"Email me a code\": %d mails, page:\n%s", e.sink.countTo(bob)-before, page.body)
	}
	if page := b.follow(b.post("/code", url.Values{"code": {e.sink.code(t, bob)}})); !strings.Contains(page.body, "Create your account") {
		t.Fatalf("the code from the remembered page:\n%s", page.body)
	}

	// Not you? The device forgets the address, and the email page is
	// back.
	b = rememberingBrowser(t, e, s, bob)
	page = b.get("/m/" + b.token + "?change=1")
	if sc := page.header.Get("Set-Cookie"); !strings.Contains(sc, "securemail_address=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("\"Not you?\" did not forget the address: Set-Cookie %q", sc)
	}
	if !strings.Contains(page.body, `action="/email"`) {
		t.Errorf("\"Not you?\" does not show the email page:\n%s", page.body)
	}
	if page := b.follow(b.open(s)); !strings.Contains(page.body, `action="/email"`) {
		t.Errorf("the message link after \"Not you?\" does not ask for the address:\n%s", page.body)
	}

	// The email step without the box ticked forgets it as well.
	b = rememberingBrowser(t, e, s, bob)
	if sc := b.email(bob).header.Values("Set-Cookie"); !strings.Contains(strings.Join(sc, "\n"), "securemail_address=;") {
		t.Errorf("the email step unticked kept the remembered address: %q", sc)
	}
}

// The address cookie holds the address and nothing else, HttpOnly, Lax,
// __Host- and Secure over https, for a year; it is set only when asked.
func TestRememberCookieHoldsOnlyTheAddress(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.PortalURL = "https://secure.example.com" })
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.open(s)
	for _, sc := range b.email(bob).header.Values("Set-Cookie") {
		if strings.Contains(sc, "securemail_address") {
			t.Errorf("the email step unticked set %q", sc)
		}
	}
	var got string
	for _, sc := range b.post("/email", url.Values{"email": {bob}, "token": {b.token}, "remember": {"1"}}).header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "__Host-securemail_address=") {
			got = sc
		}
	}
	for _, want := range []string{"Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=31536000"} {
		if !strings.Contains(got, want) {
			t.Errorf("Set-Cookie %q lacks %s", got, want)
		}
	}
	if strings.Contains(got, "Domain=") {
		t.Errorf("__Host- cookie with a Domain: %q", got)
	}
	val, _, _ := strings.Cut(strings.TrimPrefix(got, "__Host-securemail_address="), ";")
	if dec, err := base64.RawURLEncoding.DecodeString(val); err != nil || string(dec) != bob {
		t.Errorf("the cookie holds %q (%q, %v), want just the address %s", val, dec, err, bob)
	}
}

// A burst of wrong passwords from browsers that only remember the address
// (no session) is checked no more often than the address's budget, like
// the same burst from browsers that gave the address.
func TestRememberedSignInBurstIsCheckedOnlyWithinBudget(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.TrustedProxies = trustLoopback })
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	bs := make([]*browser, 24)
	for i := range bs {
		bs[i] = rememberingBrowser(t, e, s, bob)
		bs[i].forwardedFor = "198.51.100." + itoa(i+1)
	}
	checks := countChecks(e)
	rs := make([]response, len(bs))
	burst(len(bs), func(i int) {
		rs[i] = bs[i].post("/signin", url.Values{"password": {"wrong password here"}, "token": {bs[i].token}})
	})
	budget := DefaultLimits.SignInPerAddress.N
	if n := int(checks.Load()); n != budget {
		t.Errorf("24 simultaneous wrong passwords ran %d password checks, want %d (the address's budget)", n, budget)
	}
	if st := statuses(rs); st[http.StatusUnauthorized] != budget || st[http.StatusTooManyRequests] != len(bs)-budget {
		t.Errorf("answers %v, want %d x 401 and %d x 429", st, budget, len(bs)-budget)
	}
}

// The message link, followed again in the middle of a visit, leads back
// to the step the browser is at, never round in a circle; a session at a
// stage no page serves (written by an older version) starts at the
// address.
func TestMessageLinkMidVisitLeadsToTheStep(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	b := e.browser()
	b.follow(b.open(s))
	b.follow(b.email(bob))
	if r := b.get("/m/" + b.token); r.status != http.StatusSeeOther || r.header.Get("Location") != "/signin" {
		t.Errorf("the link after the address: %d %s", r.status, r.header.Get("Location"))
	}
	b.follow(b.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	r := b.get("/m/" + b.token)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/reset/answers" {
		t.Fatalf("the link after a right code for an account holder: %d %s", r.status, r.header.Get("Location"))
	}
	if page := b.follow(r); page.status != http.StatusOK || !strings.Contains(page.body, "Answer your security questions") {
		t.Errorf("the questions page again: %d\n%s", page.status, page.body)
	}

	old := e.browser()
	old.follow(old.open(s))
	old.follow(old.email(bob))
	sess, err := old.e.portal.h.opts.Store.Session(t.Context(), SessionDigest(old.cookie().Value))
	if err != nil {
		t.Fatal(err)
	}
	sess.Stage = "register-code-sent" // a stage of the five-screen flow
	if err := old.e.portal.h.opts.Store.PutSession(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	if page := old.get("/m/" + old.token); page.status != http.StatusOK || !strings.Contains(page.body, `action="/email"`) {
		t.Errorf("a session at an old stage: %d %s\n%s", page.status, page.header.Get("Location"), page.body)
	}
}
