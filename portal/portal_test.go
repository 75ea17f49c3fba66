package portal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/securemail/securemail/keystore"
)

const alice = "alice@example.com"   // the sender, inside the host's domain
const bob = "bob@external.test"     // a recipient
const carol = "carol@external.test" // another recipient
const mallory = "mallory@evil.test" // holds a forwarded envelope

const plainMessage = `From: Alice <alice@example.com>
To: bob@external.test, carol@external.test
Subject: Quarterly numbers
Date: Sun, 29 Nov 2026 10:00:00 +0000
Message-ID: <q3-numbers@example.com>
References: <earlier@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Revenue is up <b>12%</b>.
`

const richMessage = `From: Alice <alice@example.com>
To: bob@external.test
Subject: Plans
Message-ID: <plans@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<p>Hello <script>alert(1)</script><img src="cid:logo@x" onerror="alert(2)"><img src="https://tracker.test/p.gif"></p>
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--
--outer
Content-Type: application/pdf; name="plan.pdf"
Content-Disposition: attachment; filename="plan.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKc2VjcmV0IHBsYW4K
--outer--
`

func TestFirstVisitRegistersAndReads(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob, carol}, plainMessage)
	b := e.browser()

	open := b.open(s)
	if open.status != http.StatusSeeOther || !strings.HasPrefix(open.header.Get("Location"), "/m/") {
		t.Fatalf("open: %d %v", open.status, open.header)
	}
	page := b.register(s, "Bob@External.test")
	if page.status != http.StatusOK {
		t.Fatalf("read page: %d\n%s", page.status, page.body)
	}
	for _, want := range []string{"Quarterly numbers", "Revenue is up &lt;b&gt;12%&lt;/b&gt;.", "Alice &lt;alice@example.com&gt;", "Send reply"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("read page lacks %q:\n%s", want, page.body)
		}
	}
	reads, err := e.store.Reads(context.Background(), keystore.KeyID(s.form.KeyID))
	if err != nil || len(reads) != 1 || reads[0].Reader != bob {
		t.Errorf("audit trail %+v, %v; want one read by %s", reads, err, bob)
	}
	acct, err := e.store.Account(context.Background(), bob)
	if err != nil || len(acct.Questions) != registerQuestions || !strings.HasPrefix(acct.PasswordHash, "$argon2id$") {
		t.Errorf("account %+v, %v", acct, err)
	}
	if strings.Contains(acct.PasswordHash, testPassword) || strings.Contains(acct.Questions[0].AnswerHash, "fluffy") {
		t.Error("secret stored in clear")
	}
}

// A returning reader in a new browser: address, password, message. The
// address step mails one code (needed only for a forgotten password);
// the password itself sends nothing.
func TestSecondVisitSignsInWithoutRegistering(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	first := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(first, bob)
	mails := len(e.sink.messages())

	second := e.seal(alice, []string{bob}, strings.Replace(plainMessage, "Quarterly numbers", "Second message", 1))
	b := e.browser()
	b.follow(b.open(second))
	page := b.follow(b.email(bob))
	if !strings.Contains(page.body, `action="/signin"`) || !strings.Contains(page.body, `action="/code"`) {
		t.Fatalf("the page after the address has no password and code forms:\n%s", page.body)
	}
	if m := e.sink.last(t, bob); !strings.Contains(string(m.Data), "only if you forgot your password") {
		t.Errorf("the account holder's code mail does not say it is needed only for a forgotten password:\n%s", m.Data)
	}
	page = b.follow(b.post("/signin", url.Values{"password": {testPassword}}))
	if !strings.Contains(page.body, "Second message") {
		t.Fatalf("second message not shown:\n%s", page.body)
	}
	if got := len(e.sink.messages()) - mails; got != 1 {
		t.Errorf("the address step and the password sent %d mails, want 1 (the code)", got)
	}
}

// The sign-in page after the address is the same for a recipient, an
// address with an account and a stranger; only recipients get a code.
func TestRegistrationRevealsNothing(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob, carol}, plainMessage)
	e.browser().register(s, carol) // carol has an account now
	before := len(e.sink.messages())

	pages := map[string]string{}
	for _, who := range []string{bob, carol, mallory} {
		b := e.browser()
		b.follow(b.open(s))
		page := b.follow(b.email(who))
		pages[who] = strings.ReplaceAll(page.body, who, "ADDR")
	}
	if pages[bob] != pages[carol] || pages[bob] != pages[mallory] {
		t.Errorf("pages differ:\nbob:\n%s\ncarol:\n%s\nmallory:\n%s", pages[bob], pages[carol], pages[mallory])
	}
	if e.sink.countTo(mallory) != 0 {
		t.Error("a code went to an address the message was not sent to")
	}
	if e.sink.countTo(bob) != 1 || !codeRe.Match(e.sink.last(t, bob).Data) {
		t.Error("the recipient got no code")
	}
	if m := e.sink.last(t, carol); !codeRe.Match(m.Data) || !strings.Contains(string(m.Data), "only if you forgot your password") {
		t.Errorf("an account holder's code mail lacks the code or the words for it:\n%s", m.Data)
	}
	if got := len(e.sink.messages()) - before; got != 2 {
		t.Errorf("%d mails sent, want 2", got)
	}
}

// A forwarded envelope is useless: the holder can neither get a code
// for their own address nor read with an account of their own.
func TestForwardedEnvelopeCannotBeRead(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	forwarded := e.seal(alice, []string{bob}, plainMessage)
	mine := e.seal(alice, []string{mallory}, "Subject: for mallory\n\nhi\n")
	b := e.browser()
	b.register(mine, mallory) // mallory has a real account, from a message of her own

	page := b.follow(b.open(forwarded))
	if page.status != http.StatusForbidden || strings.Contains(page.body, "Quarterly") || strings.Contains(page.body, bob) {
		t.Fatalf("forwarded envelope: %d\n%s", page.status, page.body)
	}
	u := "/m/" + strings.TrimPrefix(b.open(forwarded).header.Get("Location"), "/m/")
	for _, p := range []string{u + "/part/0", u + "/cid/x"} {
		if r := b.get(p); r.status != http.StatusForbidden || strings.Contains(r.body, "Revenue") {
			t.Errorf("GET %s: %d\n%s", p, r.status, r.body)
		}
	}
	if r := b.postMultipart(u+"/reply", [][2]string{{"body", "hi"}}); r.status != http.StatusForbidden {
		t.Errorf("reply to a forwarded message: %d", r.status)
	}
	reads, _ := e.store.Reads(context.Background(), keystore.KeyID(forwarded.form.KeyID))
	if len(reads) != 0 {
		t.Errorf("reads recorded: %+v", reads)
	}
}

func TestCodeRules(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	start := func() *browser {
		e.clock.Advance(61 * time.Minute) // past the limit of codes sent per hour
		b := e.browser()
		b.follow(b.open(s))
		b.follow(b.email(bob))
		return b
	}
	wrong := func(code string) string {
		if code == "00000000" {
			return "00000001"
		}
		return "00000000"
	}

	t.Run("five tries", func(t *testing.T) {
		b := start()
		code := e.sink.code(t, bob)
		for i := range 5 {
			r := b.post("/code", url.Values{"code": {wrong(code)}})
			if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "does not work") {
				t.Fatalf("wrong try %d: %d\n%s", i+1, r.status, r.body)
			}
		}
		r := b.post("/code", url.Values{"code": {code}})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "does not work") {
			t.Fatalf("right code after 5 wrong tries: %d\n%s", r.status, r.body)
		}
	})
	t.Run("single use", func(t *testing.T) {
		b := start()
		code := e.sink.code(t, bob)
		if r := b.post("/code", url.Values{"code": {code}}); r.status != http.StatusSeeOther {
			t.Fatalf("right code: %d", r.status)
		}
		b2 := start()
		if r := b2.post("/code", url.Values{"code": {code}}); r.status != http.StatusUnauthorized {
			t.Fatalf("used code accepted again: %d", r.status)
		}
	})
	t.Run("ten minutes", func(t *testing.T) {
		b := start()
		code := e.sink.code(t, bob)
		e.clock.Advance(10*time.Minute + time.Second)
		r := b.post("/code", url.Values{"code": {" " + code[:4] + " " + code[4:]}})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "does not work") {
			t.Fatalf("expired code: %d\n%s", r.status, r.body)
		}
	})
	t.Run("spaces ignored", func(t *testing.T) {
		b := start()
		code := e.sink.code(t, bob)
		if r := b.post("/code", url.Values{"code": {" " + code[:4] + " " + code[4:]}}); r.status != http.StatusSeeOther {
			t.Fatalf("code with spaces: %d\n%s", r.status, r.body)
		}
	})
	t.Run("skipping the code", func(t *testing.T) {
		b := start()
		r := b.post("/register/password", registrationForm(testPassword))
		if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/m/") {
			t.Fatalf("password without a code: %d %v", r.status, r.header)
		}
		if _, err := e.store.Account(context.Background(), bob); err == nil {
			t.Fatal("account created without a code")
		}
	})
	t.Run("sends per hour", func(t *testing.T) {
		e.clock.Advance(2 * time.Hour)
		b := start()
		for range DefaultLimits.CodesPerAddress.N - 1 {
			b.again()
		}
		n := e.sink.countTo(bob)
		r := b.again()
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/signin?codes=held" || e.sink.countTo(bob) != n {
			t.Fatalf("send %d in an hour: %d %s, mails %d -> %d", DefaultLimits.CodesPerAddress.N+1, r.status, r.header.Get("Location"), n, e.sink.countTo(bob))
		}
		// The sign-in page says so, and a password still signs in.
		page := b.follow(r)
		if !strings.Contains(page.body, "did not send another") || !strings.Contains(page.body, `action="/signin"`) {
			t.Fatalf("the sign-in page past the code budget:\n%s", page.body)
		}
	})
}

func TestPasswordRules(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.follow(b.open(s))
	b.follow(b.email(bob))
	page := b.follow(b.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	if !strings.Contains(page.body, "At least 12 characters") {
		t.Errorf("rules not shown before typing:\n%s", page.body)
	}
	cases := []struct {
		name string
		form url.Values
		want string
	}{
		{"short", registrationForm("elevenchars"), "at least 12"},
		{"common", registrationForm("password1234"), "often used"},
		{"mismatch", func() url.Values { f := registrationForm(testPassword); f.Set("confirm", testPassword+"!"); return f }(), "not the same"},
		{"same question twice", func() url.Values { f := registrationForm(testPassword); f.Set("q2", "0"); return f }(), "different"},
		{"no answer", func() url.Values { f := registrationForm(testPassword); f.Set("a2", " "); return f }(), "Answer each"},
	}
	for _, tc := range cases {
		r := b.post("/register/password", tc.form)
		if r.status != http.StatusBadRequest || !strings.Contains(strings.ToLower(r.body), strings.ToLower(tc.want)) {
			t.Errorf("%s: %d, want 400 with %q\n%s", tc.name, r.status, tc.want, r.body)
		}
	}
	long := strings.Repeat("long passphrase ", 8) // 128 characters: the maximum
	if r := b.post("/register/password", registrationForm(long)); r.status != http.StatusSeeOther {
		t.Errorf("a 128-character password was refused: %d\n%s", r.status, r.body)
	}
}

func TestSignInFailuresAreThrottled(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)

	try := func(email, pw string) response {
		b := e.browser()
		return b.signin(s, email, pw)
	}
	unknown := try("nobody@external.test", "whatever whatever")
	wrong := try(bob, "wrong password here")
	if unknown.status != http.StatusUnauthorized || wrong.status != http.StatusUnauthorized {
		t.Fatalf("statuses %d, %d", unknown.status, wrong.status)
	}
	tokenRe := regexp.MustCompile(`/m/[A-Za-z0-9_-]{22}`)
	if tokenRe.ReplaceAllString(strings.ReplaceAll(unknown.body, "nobody@external.test", "X"), "T") != tokenRe.ReplaceAllString(strings.ReplaceAll(wrong.body, bob, "X"), "T") {
		t.Errorf("unknown account and wrong password answer differently:\n%s\n---\n%s", unknown.body, wrong.body)
	}
	for range DefaultLimits.SignInPerAddress.N - 1 {
		try(bob, "wrong password here")
	}
	r := try(bob, testPassword)
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "wait 15 minutes") {
		t.Fatalf("right password after the address's tries are spent: %d\n%s", r.status, r.body)
	}
	e.clock.Advance(DefaultLimits.SignInPerAddress.Per)
	if r := try(bob, testPassword); r.status != http.StatusSeeOther {
		t.Fatalf("right password after the window: %d\n%s", r.status, r.body)
	}
	// The unknown address is throttled the same way.
	for range DefaultLimits.SignInPerAddress.N {
		try("nobody@external.test", "whatever whatever")
	}
	if r := try("nobody@external.test", "whatever whatever"); r.status != http.StatusTooManyRequests {
		t.Errorf("unknown address not throttled: %d", r.status)
	}
}

func TestSignInLockedAfterHundredFailures(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	ctx := context.Background()
	for range maxFailuresInWindow {
		if _, err := e.store.AddFailure(ctx, "acct:"+bob, e.clock.Now(), throttleWindow); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(2 * time.Hour) // past any backoff
	b := e.browser()
	r := b.signin(s, bob, testPassword)
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "locked") {
		t.Fatalf("after 100 failures: %d\n%s", r.status, r.body)
	}
	// A reset unlocks it.
	resetPassword(t, e, b, "a brand new passphrase")
	if r := e.browser().signin(s, bob, "a brand new passphrase"); r.status != http.StatusSeeOther {
		t.Fatalf("after the reset: %d\n%s", r.status, r.body)
	}
}

func TestSignInThrottledPerIP(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	for i := range DefaultLimits.SignInPerClient.N {
		b := e.browser()
		b.signin(s, "guess"+string(rune('a'+i))+"@external.test", "some password here")
	}
	if r := e.browser().signin(s, bob, testPassword); r.status != http.StatusTooManyRequests {
		t.Fatalf("the address that failed %d times on many accounts: %d", DefaultLimits.SignInPerClient.N, r.status)
	}
}

// resetPassword runs the forgot-password flow for bob in b, which has
// opened a message and given bob's address.
func resetPassword(t *testing.T, e *testEnv, b *browser, newPW string) {
	t.Helper()
	page := b.get("/signin")
	if !strings.Contains(page.body, `action="/code"`) {
		t.Fatalf("no code form:\n%s", page.body)
	}
	page = b.follow(b.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	if !strings.Contains(page.body, "Answer your security questions") {
		t.Fatalf("no questions:\n%s", page.body)
	}
	page = b.follow(b.post("/reset/answers", url.Values{"a1": {"  FLUFFY "}, "a2": {"springfield"}, "a3": {"blue"}}))
	if !strings.Contains(page.body, "Choose a new password") {
		t.Fatalf("answers refused:\n%s", page.body)
	}
	r := b.post("/reset/password", url.Values{"password": {newPW}, "confirm": {newPW}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("new password: %d\n%s", r.status, r.body)
	}
}

func TestForgotPassword(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	other := e.browser()
	other.register(s, bob) // another browser stays signed in
	if r := other.get(strings.TrimPrefix(other.open(s).header.Get("Location"), "")); r.status != http.StatusOK {
		t.Fatalf("other browser not signed in: %d", r.status)
	}

	b := e.browser()
	b.follow(b.open(s))
	b.follow(b.email(bob))

	// Skipping the code and the answers changes nothing.
	b.post("/reset/password", url.Values{"password": {"skipping the questions"}, "confirm": {"skipping the questions"}})
	b.follow(b.again())
	b.post("/reset/password", url.Values{"password": {"skipping the questions"}, "confirm": {"skipping the questions"}})
	if r := e.browser().signin(s, bob, "skipping the questions"); r.status != http.StatusUnauthorized {
		t.Fatalf("password reset without code and answers: %d", r.status)
	}
	code := e.sink.code(t, bob)
	page := b.follow(b.post("/code", url.Values{"code": {code}}))
	for _, q := range SecurityQuestions[:registerQuestions] {
		if !strings.Contains(page.body, template_escape(q)) {
			t.Errorf("question %q not asked:\n%s", q, page.body)
		}
	}
	r := b.post("/reset/answers", url.Values{"a1": {"fluffy"}, "a2": {"shelbyville"}, "a3": {"blue"}})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("one wrong answer: %d", r.status)
	}
	page = b.follow(b.post("/reset/answers", url.Values{"a1": {"Fluffy"}, "a2": {"SPRINGFIELD"}, "a3": {" blue "}}))
	mails := e.sink.countTo(bob)
	r = b.post("/reset/password", url.Values{"password": {"a brand new passphrase"}, "confirm": {"a brand new passphrase"}})
	page = b.follow(r)
	if !strings.Contains(page.body, "Quarterly numbers") || !strings.Contains(page.body, "password was changed") {
		t.Fatalf("after reset:\n%s", page.body)
	}
	if e.sink.countTo(bob) != mails+1 || !strings.Contains(string(e.sink.last(t, bob).Data), "was reset") {
		t.Error("no notice mailed after the reset")
	}
	loc := r.header.Get("Location")
	if r := other.get(strings.TrimSuffix(loc, "?changed=1")); r.status == http.StatusOK && strings.Contains(r.body, "Quarterly") {
		t.Error("the other browser is still signed in after the reset")
	}
	if r := e.browser().signin(s, bob, testPassword); r.status != http.StatusUnauthorized {
		t.Errorf("old password still works: %d", r.status)
	}
	if r := e.browser().signin(s, bob, "a brand new passphrase"); r.status != http.StatusSeeOther {
		t.Errorf("new password refused: %d", r.status)
	}
}

func template_escape(s string) string {
	return strings.NewReplacer("'", "&#39;", `"`, "&#34;", "&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func TestWrongAnswersEndTheReset(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	b := e.browser()
	b.follow(b.open(s))
	b.follow(b.email(bob))
	b.follow(b.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	var r response
	for range DefaultLimits.AnswersPerReset.N {
		r = b.post("/reset/answers", url.Values{"a1": {"x"}, "a2": {"y"}, "a3": {"z"}})
	}
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "Too many wrong answers") {
		t.Fatalf("after %d wrong sets: %d\n%s", DefaultLimits.AnswersPerReset.N, r.status, r.body)
	}
	if r := b.post("/reset/answers", url.Values{"a1": {"fluffy"}, "a2": {"springfield"}, "a3": {"blue"}}); r.status == http.StatusSeeOther && r.header.Get("Location") == "/reset/password" {
		t.Fatal("right answers accepted after the reset ended")
	}
}

func TestSessionCookieAndLifetime(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	if page := b.follow(b.open(s)); page.header.Get("Set-Cookie") != "" || b.cookie() != nil {
		t.Error("viewing the message page stored a session")
	}
	b.follow(b.email(bob))
	before := b.cookie()
	b.follow(b.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	r := b.post("/register/password", registrationForm(testPassword))
	after := b.cookie()
	if before == nil || after == nil || before.Value == after.Value {
		t.Fatal("session id not renewed at sign-in")
	}
	if raw, _ := base64Len(after.Value); raw < 16 {
		t.Errorf("session id of %d bytes", raw)
	}
	sc := r.header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %s", sc, want)
		}
	}
	// The old id is worth nothing.
	old := e.browser()
	u, _ := url.Parse(e.srv.URL)
	old.c.Jar.SetCookies(u, []*http.Cookie{before})
	msgURL := r.header.Get("Location")
	if r := old.get(msgURL); strings.Contains(r.body, "Quarterly") {
		t.Error("the pre-sign-in session id reads the message")
	}
	if r := b.get(msgURL); !strings.Contains(r.body, "Quarterly") {
		t.Fatalf("signed-in browser cannot read: %d", r.status)
	}
	// Idle timeout.
	e.clock.Advance(sessionIdle + time.Second)
	if r := b.get(msgURL); strings.Contains(r.body, "Quarterly") {
		t.Error("session survived 30 idle minutes")
	}
	// Absolute timeout, with activity every 20 minutes.
	b2 := e.browser()
	b2.follow(b2.signin(s, bob, testPassword))
	for elapsed := time.Duration(0); elapsed < sessionAbsolute-20*time.Minute; elapsed += 20 * time.Minute {
		e.clock.Advance(20 * time.Minute)
		if r := b2.get(msgURL); !strings.Contains(r.body, "Quarterly") {
			t.Fatalf("active session ended after %v", elapsed+20*time.Minute)
		}
	}
	e.clock.Advance(20 * time.Minute)
	if r := b2.get(msgURL); strings.Contains(r.body, "Quarterly") {
		t.Error("session lived past 8 hours")
	}
}

func base64Len(s string) (int, error) { return len(s) * 6 / 8, nil }

func TestSecureCookieOverHTTPS(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.PortalURL = "https://secure.example.com" })
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.open(s)
	sc := b.email(bob).header.Get("Set-Cookie")
	for _, want := range []string{"__Host-securemail_session=", "Secure", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %s", sc, want)
		}
	}
	if strings.Contains(sc, "Domain=") {
		t.Errorf("__Host- cookie with a Domain: %q", sc)
	}
}

func TestCrossOriginPostsRefused(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.follow(b.open(s)) // cross-site, allowed
	for _, path := range []string{"/email", "/signin", "/code", "/register/password", "/reset/answers", "/signout", "/account/password"} {
		req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader("email="+bob))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		if r := b.do(req); r.status != http.StatusForbidden || !strings.Contains(r.body, "another site") {
			t.Errorf("cross-site POST %s: %d", path, r.status)
		}
		req, _ = http.NewRequest("POST", e.srv.URL+path, strings.NewReader("email="+bob))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.test")
		if r := b.do(req); r.status != http.StatusForbidden {
			t.Errorf("POST %s from another origin: %d", path, r.status)
		}
	}
	if e.sink.countTo(bob) != 0 {
		t.Error("a cross-site form sent mail")
	}
}

func TestSecurityHeadersOnEveryPage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, richMessage)
	b := e.browser()
	read := b.register(s, bob)
	token := strings.TrimPrefix(b.open(s).header.Get("Location"), "/m/")
	paths := []string{"/", "/healthz", "/static/portal.css", "/nope", "/m/" + token, "/m/" + token + "/part/1", "/signin", "/m/AAAAAAAAAAAAAAAAAAAAAA"}
	for _, p := range paths {
		r := b.get(p)
		csp := r.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") && !strings.Contains(csp, "sandbox") || strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP %q", p, csp)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", p, r.header)
		}
		if strings.Contains(r.body, "<script") {
			t.Errorf("GET %s has a script element", p)
		}
	}
	if !strings.Contains(read.body, "<p>Hello") {
		t.Errorf("html body not shown:\n%s", read.body)
	}

	tls := newTestEnv(t)
	tlsSrv := httptestTLS(t, tls.portal)
	resp, err := tlsSrv.Client().Get(tlsSrv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over TLS")
	}
	if r := b.get("/"); r.header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS over plain HTTP")
	}
}

func TestReadShowsSanitisedHTMLAndAttachments(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, richMessage)
	b := e.browser()
	page := b.register(s, bob)
	for _, bad := range []string{"<script", "alert(", "onerror", "tracker.test"} {
		if strings.Contains(page.body, bad) {
			t.Errorf("read page contains %q", bad)
		}
	}
	token := strings.TrimPrefix(b.open(s).header.Get("Location"), "/m/")
	if !strings.Contains(page.body, `src="/m/`) || !strings.Contains(page.body, "plan.pdf") {
		t.Errorf("cid image or attachment link missing:\n%s", page.body)
	}
	img := b.get("/m/" + token + "/cid/logo@x")
	if img.status != http.StatusOK || img.header.Get("Content-Type") != "image/png" || img.body != "\x89PNG\r\n\x1a\n" {
		t.Errorf("cid image: %d %q %q", img.status, img.header.Get("Content-Type"), img.body)
	}
	var pdfLink string
	for _, a := range strings.Split(page.body, `href="`)[1:] {
		if href, _, _ := strings.Cut(a, `"`); strings.Contains(href, "/part/") && strings.Contains(a, "plan.pdf") {
			pdfLink = href
		}
	}
	if pdfLink == "" {
		t.Fatalf("no link to plan.pdf:\n%s", page.body)
	}
	pdf := b.get(pdfLink)
	if pdf.status != http.StatusOK || pdf.body != "%PDF-1.4\nsecret plan\n" {
		t.Errorf("attachment: %d %q", pdf.status, pdf.body)
	}
	if cd := pdf.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || !strings.Contains(cd, "plan.pdf") {
		t.Errorf("Content-Disposition %q", cd)
	}
	if pdf.header.Get("X-Content-Type-Options") != "nosniff" || pdf.header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("attachment headers %v", pdf.header)
	}
	if r := b.get("/m/" + token + "/part/99"); r.status != http.StatusNotFound {
		t.Errorf("missing part: %d", r.status)
	}
	signedOut := e.browser()
	if r := signedOut.get(pdfLink); r.status == http.StatusOK && strings.Contains(r.body, "secret plan") {
		t.Error("attachment served without a session")
	}
}

func TestEnvelopeProblemsArePagesInWords(t *testing.T) {
	t.Parallel()
	// The spool outlives the key here, to see the key's expiry.
	e := newTestEnv(t, func(o *Options) { o.SpoolTTL = 100 * 24 * time.Hour })
	ctx := context.Background()
	b := e.browser()
	check := func(name string, r response, status int, words string) {
		t.Helper()
		if r.status != status || !strings.Contains(r.body, words) || strings.Contains(r.body, "goroutine") {
			t.Errorf("%s: %d, want %d with %q\n%s", name, r.status, status, words, r.body)
		}
	}

	expired := e.seal(alice, []string{bob}, plainMessage)
	revoked := e.seal(alice, []string{bob}, plainMessage)
	if err := e.store.RevokeKey(ctx, keystore.KeyID(revoked.form.KeyID), e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	check("revoked", b.open(revoked), http.StatusGone, "withdrew")

	tampered := e.seal(alice, []string{bob}, plainMessage)
	tampered.form.Envelope = bytes.Clone(tampered.form.Envelope)
	tampered.form.Envelope[len(tampered.form.Envelope)-3] ^= 1
	check("tampered", b.open(tampered), http.StatusBadRequest, "damaged")

	truncated := e.seal(alice, []string{bob}, plainMessage)
	truncated.form.Envelope = truncated.form.Envelope[:len(truncated.form.Envelope)-20]
	check("truncated", b.open(truncated), http.StatusBadRequest, "damaged")

	wrongID := e.seal(alice, []string{bob}, plainMessage)
	wrongID.form.KeyID[0] ^= 1
	check("form id differs", b.open(wrongID), http.StatusBadRequest, "damaged")

	check("not multipart", b.post("/open", url.Values{"v": {"1"}}), http.StatusBadRequest, "damaged")
	check("not base64", b.postMultipart("/open", [][2]string{{"v", "1"}, {"envelope", "!!!!"}}), http.StatusBadRequest, "damaged")
	check("version 2", b.postMultipart("/open", [][2]string{{"v", "2"}, {"envelope", armor(expired.form.Envelope)}}), http.StatusBadRequest, "damaged")

	unknown := e.seal(alice, []string{bob}, plainMessage)
	unknown.form.Envelope = bytes.Clone(unknown.form.Envelope)
	copy(unknown.form.Envelope[6:22], bytes.Repeat([]byte{7}, 16))
	unknown.form.KeyID = [16]byte{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}
	check("unknown key", b.open(unknown), http.StatusGone, "expired")

	// A key that expires while the recipient is signed in.
	r := b.register(expired, bob)
	if !strings.Contains(r.body, "Quarterly") {
		t.Fatal("could not read before expiry")
	}
	loc := b.open(expired).header.Get("Location")
	e.clock.Advance(91 * 24 * time.Hour)
	check("expired while open", b.get(loc), http.StatusGone, "expired")
	check("expired at open", b.open(expired), http.StatusGone, "expired")

	entries, _ := os.ReadDir(filepath.Join(e.dir, "portal-spool"))
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "upload-") {
			t.Errorf("half-written upload left behind: %s", en.Name())
		}
	}
}

func TestUploadTooLargeRefused(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.MaxMessageSize = 64 << 10 })
	b := e.browser()
	huge := bytes.Repeat([]byte{'A'}, int(maxUpload(64<<10))+4096)
	r := b.postMultipart("/open", [][2]string{{"v", "1"}, {"envelope", armor(huge)}})
	if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "too large") {
		t.Fatalf("%d\n%s", r.status, r.body)
	}
	entries, _ := os.ReadDir(filepath.Join(e.dir, "portal-spool"))
	for _, en := range entries {
		if en.Name() != spoolKeyFile {
			t.Errorf("spool not empty after a refused upload: %v", entries)
			break
		}
	}
}

func TestSpoolExpires(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	loc := b.open(s).header.Get("Location")
	token := strings.TrimPrefix(loc, "/m/")
	path := filepath.Join(e.dir, "portal-spool", token+".env")
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	spooled, _ := os.ReadFile(path)
	if !bytes.Equal(spooled, s.form.Envelope) {
		t.Error("the spool does not hold exactly the envelope")
	}
	if bytes.Contains(spooled, []byte("Revenue")) {
		t.Error("plaintext in the spool")
	}
	old := time.Now().Add(-25 * time.Hour)
	os.Chtimes(path, old, old)
	e.clock.Advance(0)
	if r := b.get(loc); r.status != http.StatusNotFound || !strings.Contains(r.body, "open the SecureMessageATT.html attachment again") && !strings.Contains(r.body, "Open the SecureMessageATT.html attachment again") {
		t.Errorf("expired spool entry: %d\n%s", r.status, r.body)
	}
	e.portal.Sweep(context.Background())
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("sweep left an old spool file")
	}
	for _, bad := range []string{"/m/../../keys.db", "/m/short", "/m/" + strings.Repeat("A", 21) + "."} {
		if r := b.get(bad); r.status == http.StatusOK {
			t.Errorf("GET %s: 200", bad)
		}
	}
}

func TestReply(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.ReplyAll = true })
	s := e.seal(alice, []string{bob, carol}, plainMessage)
	b := e.browser()
	page := b.register(s, bob)
	if !strings.Contains(page.body, "Reply to everyone") {
		t.Error("reply-all not offered")
	}
	token := strings.TrimPrefix(b.open(s).header.Get("Location"), "/m/")

	t.Run("to the sender", func(t *testing.T) {
		r := b.postMultipart("/m/"+token+"/reply", [][2]string{{"body", "Thanks, looks good.\nBob"}, {"file:files", "\x00"}})
		if r.status != http.StatusOK || !strings.Contains(r.body, "Your reply was sent") || !strings.Contains(r.body, alice) {
			t.Fatalf("%d\n%s", r.status, r.body)
		}
		m := e.sink.last(t, alice)
		msg := parseMail(t, m)
		if m.From != bob || len(m.Rcpts) != 1 || m.Rcpts[0] != alice {
			t.Errorf("envelope %s -> %v", m.From, m.Rcpts)
		}
		h := msg.Header
		if h.Get("From") != "<"+bob+">" || h.Get("To") != "<"+alice+">" {
			t.Errorf("From %q To %q", h.Get("From"), h.Get("To"))
		}
		// Every reply carries the trigger; the milter strips it from one
		// that stays inside (TestReplySealedByTheMilter).
		if h.Get("Subject") != "Re: Quarterly numbers [encrypt]" {
			t.Errorf("reply subject %q: must carry the tag", h.Get("Subject"))
		}
		if !strings.Contains(r.body, "sent encrypted if it leaves example.com") {
			t.Errorf("confirmation page does not say when the reply is encrypted:\n%s", r.body)
		}
		if h.Get("In-Reply-To") != "<q3-numbers@example.com>" || h.Get("References") != "<earlier@example.com> <q3-numbers@example.com>" {
			t.Errorf("threading: In-Reply-To %q References %q", h.Get("In-Reply-To"), h.Get("References"))
		}
		body, _ := io.ReadAll(msg.Body)
		if !strings.Contains(string(body), "Thanks, looks good.") {
			t.Errorf("body %q", body)
		}
	})
	t.Run("to everyone, with a file", func(t *testing.T) {
		r := b.postMultipart("/m/"+token+"/reply", [][2]string{{"all", "1"}, {"body", "See attached."}, {"file:files", "notes.txt\x00my notes"}})
		if r.status != http.StatusOK || !strings.Contains(r.body, "notes.txt") || !strings.Contains(r.body, "encrypted") {
			t.Fatalf("%d\n%s", r.status, r.body)
		}
		m := e.sink.last(t, carol)
		if strings.Join(m.Rcpts, ",") != alice+","+carol {
			t.Errorf("reply-all to %v", m.Rcpts)
		}
		msg := parseMail(t, m)
		if subj := msg.Header.Get("Subject"); subj != "Re: Quarterly numbers [encrypt]" {
			t.Errorf("external reply subject %q: must carry the tag", subj)
		}
		if !bytes.Contains(m.Data, []byte("bXkgbm90ZXM=")) || !bytes.Contains(m.Data, []byte(`filename=notes.txt`)) && !bytes.Contains(m.Data, []byte(`filename="notes.txt"`)) {
			t.Errorf("attachment missing:\n%s", m.Data)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if r := b.postMultipart("/m/"+token+"/reply", [][2]string{{"body", "  "}}); r.status != http.StatusBadRequest {
			t.Errorf("empty reply: %d", r.status)
		}
	})
	t.Run("relay refuses", func(t *testing.T) {
		e.sink.FailData(&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"})
		defer e.sink.FailData(nil)
		r := b.postMultipart("/m/"+token+"/reply", [][2]string{{"body", "hello"}})
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "Nothing was sent") {
			t.Errorf("relay refusal: %d\n%s", r.status, r.body)
		}
	})
}

func TestReplyTooLargeSendsNothing(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.MaxMessageSize = 2 << 20 })
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.register(s, bob)
	token := strings.TrimPrefix(b.open(s).header.Get("Location"), "/m/")
	before := len(e.sink.messages())
	big := strings.Repeat("x", int(replyAttachmentLimit(2<<20))+1)
	r := b.postMultipart("/m/"+token+"/reply", [][2]string{{"body", "big"}, {"file:files", "big.bin\x00" + big}})
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d\n%s", r.status, r.body)
	}
	// A reply is sent within its request, and the sink keeps a message
	// before its 250: anything delivered is there by now.
	if len(e.sink.messages()) != before {
		t.Error("a too-large reply was delivered")
	}
}

func TestChangePasswordAndSignOut(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.register(s, bob)
	other := e.browser()
	other.follow(other.signin(s, bob, testPassword))
	loc := b.open(s).header.Get("Location")

	if r := b.post("/account/password", url.Values{"current": {"not it at all"}, "password": {"another fine passphrase"}, "confirm": {"another fine passphrase"}}); r.status != http.StatusUnauthorized {
		t.Errorf("wrong current password: %d", r.status)
	}
	r := b.post("/account/password", url.Values{"current": {testPassword}, "password": {"another fine passphrase"}, "confirm": {"another fine passphrase"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "was changed") {
		t.Fatalf("%d\n%s", r.status, r.body)
	}
	if !strings.Contains(string(e.sink.last(t, bob).Data), "was changed") {
		t.Error("no notice mailed")
	}
	if r := other.get(loc); strings.Contains(r.body, "Quarterly") {
		t.Error("other session survived the password change")
	}
	if r := b.get(loc); !strings.Contains(r.body, "Quarterly") {
		t.Error("the browser that changed the password was signed out")
	}
	if r := b.post("/signout", nil); r.status != http.StatusOK || !strings.Contains(r.body, "signed out") {
		t.Errorf("sign out: %d", r.status)
	}
	if r := b.get(loc); strings.Contains(r.body, "Quarterly") {
		t.Error("still reading after signing out")
	}
}

// Nothing secret reaches the log: not the password, the code, the
// answers, the session id or a byte of the message.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.register(s, bob)
	code := e.sink.code(t, bob)
	b.signin(s, bob, "wrong password attempt")
	cookie := b.cookie().Value
	logs := e.logs.String()
	digest := sha256.Sum256([]byte(cookie))
	for _, secret := range []string{testPassword, "wrong password attempt", code, "Fluffy", "fluffy", "Springfield", cookie, hex.EncodeToString(digest[:]), "Revenue", "Quarterly"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, "account created") {
		t.Errorf("the log shows nothing of the flow:\n%s", logs)
	}
}

func TestStoreFailureIsAPage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	loc := b.open(s).header.Get("Location")
	e.store.Close()
	r := b.get(loc)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "try again") {
		t.Errorf("closed store: %d\n%s", r.status, r.body)
	}
}

func TestNotConfiguredSaysSo(t *testing.T) {
	t.Parallel()
	h, err := New(Options{PortalURL: "https://secure.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := httptestServer(t, h)
	resp, err := http.Post(srv.URL+"/open", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not set up") {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	home, _ := http.Get(srv.URL + "/")
	hb, _ := io.ReadAll(home.Body)
	home.Body.Close()
	if !strings.Contains(string(hb), "https://secure.example.test/") {
		t.Errorf("home page does not name the portal address:\n%s", hb)
	}
}

// A spooled envelope damaged on disk after the upload shows an error and
// releases nothing: not the page, not an attachment.
func TestSpoolDamagedAfterUploadReleasesNothing(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	big := strings.Repeat("secret attachment line\n", 10000) // several chunks
	msg := "From: alice@example.com\nTo: bob@external.test\nSubject: big\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nvisible text\n--b\nContent-Type: text/plain; name=a.txt\nContent-Disposition: attachment; filename=a.txt\n\n" + big + "--b--\n"
	s := e.seal(alice, []string{bob}, msg)
	b := e.browser()
	page := b.register(s, bob)
	if !strings.Contains(page.body, "visible text") || !strings.Contains(page.body, "/part/1") {
		t.Fatalf("read page before damage:\n%s", page.body)
	}
	loc := b.open(s).header.Get("Location")
	path := filepath.Join(e.dir, "portal-spool", strings.TrimPrefix(loc, "/m/")+".env")
	env, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env[len(env)-10] ^= 0x40 // in the last chunk
	if err := os.WriteFile(path, env, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{loc, loc + "/part/1"} {
		r := b.get(p)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "damaged") || strings.Contains(r.body, "secret attachment") || strings.Contains(r.body, "visible text") {
			t.Errorf("GET %s after damage: %d\n%.300s", p, r.status, r.body)
		}
	}
}

func TestSubjectShownWithoutTag(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, strings.Replace(plainMessage, "Subject: Quarterly numbers", "Subject: Quarterly [ENCRYPT] numbers [encrypt]", 1))
	b := e.browser()
	page := b.register(s, bob)
	if !strings.Contains(page.body, "<dd>Quarterly numbers</dd>") || strings.Contains(strings.ToLower(page.body), "[encrypt]") {
		t.Errorf("subject on the read page:\n%s", page.body)
	}
	token := strings.TrimPrefix(b.open(s).header.Get("Location"), "/m/")
	b.postMultipart("/m/"+token+"/reply", [][2]string{{"body", "ok"}})
	if subj := parseMail(t, e.sink.last(t, alice)).Header.Get("Subject"); subj != "Re: Quarterly numbers [encrypt]" {
		t.Errorf("reply subject %q", subj)
	}
	if id := parseMail(t, e.sink.last(t, alice)).Header.Get("Message-Id"); !strings.HasSuffix(id, "@external.test>") {
		t.Errorf("reply Message-ID %q: want the sender's domain", id)
	}
}

func TestNotYouStartsOver(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	loc := b.open(s).header.Get("Location")
	b.get(loc)
	b.follow(b.email(mallory))
	if r := b.get(loc); r.status != http.StatusSeeOther || r.header.Get("Location") != "/signin" {
		t.Fatalf("with an address given, the message page sends to sign-in: %d %v", r.status, r.header)
	}
	page := b.get(loc + "?change=1")
	if !strings.Contains(page.body, `action="/email"`) {
		t.Fatalf("Not you? does not ask for the address again:\n%s", page.body)
	}
	page = b.follow(b.email(bob))
	if !strings.Contains(page.body, "Signing in as <strong>"+bob) {
		t.Errorf("sign-in page after changing the address:\n%s", page.body)
	}
	if r := b.post("/email", url.Values{"email": {"not an address"}}); r.status != http.StatusBadRequest || !strings.Contains(r.body, "does not look like an email address") {
		t.Errorf("bad address: %d", r.status)
	}
}

func TestReplyAllOnlyWhenOffered(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t) // ReplyAll off
	s := e.seal(alice, []string{bob, carol}, plainMessage)
	b := e.browser()
	if page := b.register(s, bob); strings.Contains(page.body, "Reply to everyone") {
		t.Error("reply-all offered although off")
	}
	token := strings.TrimPrefix(b.open(s).header.Get("Location"), "/m/")
	b.postMultipart("/m/"+token+"/reply", [][2]string{{"all", "1"}, {"body", "hi"}})
	if e.sink.countTo(carol) != 0 || e.sink.countTo(alice) != 1 {
		t.Errorf("all=1 with reply-all off reached carol (%d) / alice (%d)", e.sink.countTo(carol), e.sink.countTo(alice))
	}
}

// With the relay down, a code request answers as it always does (the
// answer must not depend on the address, and the mail goes out after it)
// and the failure is logged for the operator, without the code.
func TestRelayDownWhileSendingACode(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.Mailer = &SMTPMailer{Addr: "127.0.0.1:1", Timeout: 2 * time.Second} })
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.follow(b.open(s))
	r := b.email(bob)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/signin" {
		t.Fatalf("%d %v\n%s", r.status, r.header, r.body)
	}
	e.portal.h.mail.wait()
	if logs := e.logs.String(); !strings.Contains(logs, "could not send a code") {
		t.Errorf("the failed mail is not logged:\n%s", logs)
	}
}

// Behind a trusted proxy, each client is throttled on its own address from
// X-Forwarded-For; from anyone else, that header is ignored.
func TestThrottlePerClientBehindProxy(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	attacker := func() *browser {
		b := e.browser()
		b.forwardedFor = "203.0.113.9, 198.51.100.7" // the left part is the client's own claim
		return b
	}
	for i := range DefaultLimits.SignInPerClient.N {
		attacker().signin(s, fmt.Sprintf("guess%d@external.test", i), "some password here")
	}
	if r := attacker().signin(s, bob, testPassword); r.status != http.StatusTooManyRequests {
		t.Errorf("the attacking client is not throttled: %d", r.status)
	}
	other := e.browser()
	other.forwardedFor = "198.51.100.8"
	if r := other.signin(s, bob, testPassword); r.status != http.StatusSeeOther {
		t.Errorf("another client behind the same proxy is throttled too: %d", r.status)
	}
	if !strings.Contains(e.logs.String(), "remote=198.51.100.7") {
		t.Error("the log does not name the client behind the proxy")
	}

	// Without trusted proxies the header is the client's word: ignored.
	e2 := newTestEnv(t)
	s2 := e2.seal(alice, []string{bob}, plainMessage)
	e2.browser().register(s2, bob)
	for i := range DefaultLimits.SignInPerClient.N {
		b := e2.browser()
		b.forwardedFor = fmt.Sprintf("198.51.100.%d", i+1)
		b.signin(s2, fmt.Sprintf("guess%d@external.test", i), "some password here")
	}
	if r := e2.browser().signin(s2, bob, testPassword); r.status != http.StatusTooManyRequests {
		t.Errorf("a forged X-Forwarded-For escaped the per-IP limit: %d", r.status)
	}
}
