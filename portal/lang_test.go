package portal

import (
	"net/http"
	"strings"
	"testing"

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
