package portal

import (
	"html"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/smtptest"
	"github.com/securemail/securemail/keystore"

	"github.com/securemail/securemail/internal/catalog"
)

// A page speaks what Accept-Language asks for, the switch at its foot
// leads to the other language and back to the same page, and the chosen
// language then wins over Accept-Language on this device.
func TestLanguageSwitch(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	b := e.browser()

	home := b.getWith("/", map[string]string{"Accept-Language": "de-CH, en;q=0.5"})
	if !strings.Contains(home.body, `<html lang="de">`) || home.header.Get("Content-Language") != "de" {
		t.Fatalf("Accept-Language de: not a German page:\n%s", home.body)
	}
	if !strings.Contains(home.body, `href="/lang/en?back=%2F" lang="en" hreflang="en">English</a>`) {
		t.Fatalf("the German page has no switch to English:\n%s", home.body)
	}
	en := b.get("/")
	if !strings.Contains(en.body, `<html lang="en">`) || !strings.Contains(en.body, `href="/lang/de?back=%2F" lang="de" hreflang="de">Deutsch</a>`) {
		t.Fatalf("no Accept-Language: not an English page with a switch to German:\n%s", en.body)
	}

	r := b.get("/lang/de?back=%2F%3Fx%3D1")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/?x=1" {
		t.Fatalf("switch: %d to %q", r.status, r.header.Get("Location"))
	}
	if page := b.getWith("/", map[string]string{"Accept-Language": "en"}); !strings.Contains(page.body, `<html lang="de">`) {
		t.Errorf("the chosen German lost to Accept-Language en:\n%s", page.body)
	}
	if r := b.get("/lang/en?back=%2F"); r.status != http.StatusSeeOther {
		t.Fatalf("switch back: %d", r.status)
	}
	if page := b.getWith("/", map[string]string{"Accept-Language": "de"}); !strings.Contains(page.body, `<html lang="en">`) {
		t.Errorf("the chosen English lost to Accept-Language de")
	}
}

// The switch never leads off the site, and names only shipped languages.
func TestLanguageSwitchStaysHome(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	b := e.browser()
	for _, back := range []string{"//evil.test/", "https://evil.test/", "/\\evil.test", "evil", "", "/%0d%0aSet-Cookie:x"} {
		r := b.get("/lang/de?back=" + strings.ReplaceAll(back, "/", "%2F"))
		if r.status != http.StatusSeeOther {
			t.Fatalf("back %q: %d", back, r.status)
		}
		if loc := r.header.Get("Location"); loc != "/" {
			t.Errorf("back %q led to %q", back, loc)
		}
	}
	for _, bad := range []string{"fr", "xx", "de-DE", "DE"} {
		if r := b.get("/lang/" + bad + "?back=%2F"); r.status != http.StatusNotFound {
			t.Errorf("/lang/%s: %d, want 404", bad, r.status)
		}
	}
}

// A page answering a form switches back to its message, never to the
// form's address (a GET there would be refused).
func TestLanguageSwitchAfterForm(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest(http.MethodPost, "/email", nil)
	links := langSwitch(req, catalog.English, "tok123")
	if len(links) != 1 || links[0].URL != "/lang/de?back=%2Fm%2Ftok123" {
		t.Errorf("switch after a form: %+v", links)
	}
	req, _ = http.NewRequest(http.MethodPost, "/signout", nil)
	if links := langSwitch(req, catalog.German, ""); len(links) != 1 || links[0].URL != "/lang/en?back=%2F" {
		t.Errorf("switch after a form without a message: %+v", links)
	}
}

// englishLeft returns the first English sentence of the portal's own
// entries (the parts of 20 characters or more between fields) found whole
// in a German page: a page or message that mixes the two languages.
func englishLeft(page string) string {
	page = html.UnescapeString(page)
	for _, key := range catalog.Keys() {
		if !strings.HasPrefix(key, "portal.") && !strings.HasPrefix(key, "error.") && !strings.HasPrefix(key, "text.mail.") {
			continue
		}
		en := catalog.Text(catalog.English, key)
		for _, part := range regexp.MustCompile(`\{[A-Za-z][A-Za-z0-9]*\}`).Split(en, -1) {
			if part = strings.TrimSpace(part); len(part) >= 20 && strings.Contains(page, part) {
				return key + ": " + part
			}
		}
	}
	return ""
}

// mailText is a mail's text, its quoted-printable undone.
func mailText(t *testing.T, m smtptest.Message) (subject, body string) {
	t.Helper()
	msg := parseMail(t, m)
	var r io.Reader = msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		r = quotedprintable.NewReader(r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	return subject, string(b)
}

// A reader who chose German gets every page of the way in and every mail
// in German, with no English sentence of the portal's left: the email
// step, a refused address, the sign-in page and its code mail, a wrong
// code, account creation with a refused form and the questions in
// German, a wrong password, a changed password and its mail, sign-out,
// and a password reset.
func TestGermanReaderJourney(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	// The check finds English where it is.
	if left := englishLeft(e.browser().get("/").body); left == "" {
		t.Fatal("englishLeft found nothing on the English home page")
	}
	b := e.browser()
	b.get("/lang/de?back=%2F")
	check := func(step string, r response, want ...string) {
		t.Helper()
		if !strings.Contains(r.body, `<html lang="de">`) {
			t.Errorf("%s: not a German page (%d):\n%s", step, r.status, r.body)
		}
		if left := englishLeft(r.body); left != "" {
			t.Errorf("%s: English left on the German page: %s", step, left)
		}
		for _, w := range want {
			if !strings.Contains(html.UnescapeString(r.body), w) {
				t.Errorf("%s: page lacks %q:\n%s", step, w, r.body)
			}
		}
	}
	checkMail := func(step string, wantSubject string, want ...string) {
		t.Helper()
		e.portal.h.mail.wait()
		subject, body := mailText(t, e.sink.last(t, bob))
		if subject != wantSubject {
			t.Errorf("%s: subject %q, want %q", step, subject, wantSubject)
		}
		if left := englishLeft(body); left != "" {
			t.Errorf("%s: English left in the German mail: %s", step, left)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: mail lacks %q:\n%s", step, w, body)
			}
		}
	}

	check("email page", b.follow(b.open(s)), "Ihre E-Mail-Adresse", "E-Mail-Adresse auf diesem Gerät merken", ">English</a>")
	check("refused address", b.email("not an address"), "Das sieht nicht wie eine E-Mail-Adresse aus.")
	check("sign-in page", b.follow(b.email(bob)), "Anmeldung als <strong>"+bob+"</strong>.", "Zum ersten Mal hier oder Passwort vergessen?", "Code aus der E-Mail")
	checkMail("code mail", "Ihr Code zum Lesen einer sicheren Nachricht", "Ihr Code lautet:", "Er gilt 10 Minuten.")
	code := e.sink.code(t, bob)
	check("wrong code", b.post("/code", url.Values{"code": {"00000000"}}), "Dieser Code stimmt nicht.", "noch 4 Versuche")
	register := b.follow(b.post("/code", url.Values{"code": {code}}))
	check("account creation", register, "Konto anlegen", "Ihre Adresse "+bob+" ist bestätigt.", "Wie hieß Ihr erstes Haustier?", "Frage 2", "Antwort 2")
	mismatch := registrationForm(testPassword)
	mismatch.Set("confirm", "something else entirely")
	check("refused account form", b.post("/register/password", mismatch), "Die beiden Passwörter sind nicht gleich.", "Ihre Fragen und Antworten bleiben unten erhalten.")
	same := registrationForm(testPassword)
	same.Set("q2", "0")
	check("same question twice", b.post("/register/password", same), "Frage 2 ist dieselbe wie Frage 1.")
	if r := b.post("/register/password", registrationForm(testPassword)); r.status != http.StatusSeeOther {
		t.Fatalf("registration: %d\n%s", r.status, r.body)
	}
	check("change-password page", b.get("/account/password"), "Aktuelles Passwort", "Neues Passwort speichern", "Zurück zur Nachricht", "Abmelden")
	check("wrong current password", b.post("/account/password", url.Values{"current": {"not it at all"}, "password": {"another fine passphrase"}, "confirm": {"another fine passphrase"}}),
		"Ihr aktuelles Passwort stimmt nicht.")
	check("common new password", b.post("/account/password", url.Values{"current": {testPassword}, "password": {"password1234"}, "confirm": {"password1234"}}),
		"Liste oft verwendeter")
	check("password changed", b.post("/account/password", url.Values{"current": {testPassword}, "password": {"another fine passphrase"}, "confirm": {"another fine passphrase"}}),
		"Ihr Passwort wurde geändert")
	checkMail("password mail", "Das Passwort Ihres Kontos für sichere Nachrichten wurde geändert", "wurde am "+catalog.Date(catalog.German, e.clock.Now())+" geändert.")
	check("signed out", b.post("/signout", nil), "Sie sind abgemeldet")

	// A reset: the code mail for an account holder, the questions in
	// German, a wrong answer, the new-password page.
	r := e.browser()
	r.get("/lang/de?back=%2F")
	r.follow(r.open(s))
	check("wrong password", func() response {
		r.follow(r.email(bob))
		return r.post("/signin", url.Values{"password": {"not the password"}})
	}(),
		"E-Mail-Adresse und Passwort passen nicht zusammen.")
	checkMail("reset code mail", "Ihr Code für sichere Nachrichten", "Sie brauchen ihn nur, wenn Sie Ihr Passwort vergessen haben")
	answers := r.follow(r.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	check("security questions", answers, "Beantworten Sie Ihre Sicherheitsfragen", "Wie hieß Ihr erstes Haustier?", "In welcher Stadt oder welchem Ort sind Sie geboren?")
	check("wrong answers", r.post("/reset/answers", url.Values{"a1": {"wrong"}, "a2": {"wrong"}}), "Mindestens eine Antwort stimmt nicht.")
	check("new password page", r.follow(r.post("/reset/answers", url.Values{"a1": {"Fluffy"}, "a2": {"Springfield"}})), "Neues Passwort festlegen")
	check("home", r.get("/"), "Sichere Nachrichten", "Dies ist der Dienst für sichere Nachrichten")
}

// BenchmarkRenderSigninPage renders the sign-in page with its code form,
// the page with the most catalogue entries a reader meets, in each
// language (BENCHMARKS.md, issue 14 item 4).
func BenchmarkRenderSigninPage(b *testing.B) {
	for _, l := range catalog.Languages {
		b.Run(string(l), func(b *testing.B) {
			h := &handler{}
			req := httptest.NewRequest(http.MethodGet, "/signin", nil)
			v := signinView(l, &keystore.Session{Email: "bob@external.test", Token: "tok", Stage: stageCodeSent})
			b.ReportAllocs()
			for b.Loop() {
				h.render(httptest.NewRecorder(), req, http.StatusOK, "signin", v)
			}
		})
	}
}

// durationWords rounds up and says one of each unit in words.
func TestDurationWords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d      time.Duration
		en, de string
	}{
		{30 * time.Second, "a minute", "eine Minute"},
		{time.Minute, "a minute", "eine Minute"},
		{4*time.Minute + time.Second, "5 minutes", "5 Minuten"},
		{time.Hour, "an hour", "eine Stunde"},
		{time.Hour + time.Second, "2 hours", "2 Stunden"},
		{47 * time.Hour, "47 hours", "47 Stunden"},
		{48 * time.Hour, "2 days", "2 Tage"},
	} {
		if got := durationWords(catalog.English, tc.d); got != tc.en {
			t.Errorf("%v in English: %q, want %q", tc.d, got, tc.en)
		}
		if got := durationWords(catalog.German, tc.d); got != tc.de {
			t.Errorf("%v in German: %q, want %q", tc.d, got, tc.de)
		}
	}
}
