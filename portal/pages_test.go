package portal

import (
	"github.com/securemail/securemail/internal/catalog"

	"net/http"
	"net/url"
	"strings"
	"testing"
)

// backLink is the link a page shows under its content to the message.
func backLink(token string) string {
	return `<p class="back"><a href="/m/` + token + `">Back to the message</a></p>`
}

// The pages a reader reaches from the message lead back to it: change
// password (the form, a refused form and the confirmation) and reply sent.
func TestBackToTheMessage(t *testing.T) {
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.register(s, bob)
	link := backLink(b.token)
	for _, tc := range []struct {
		name string
		r    response
		want int
	}{
		{"change-password form", b.get("/account/password"), http.StatusOK},
		{"refused change", b.post("/account/password", url.Values{"current": {"not it at all"}, "password": {"another fine passphrase"}, "confirm": {"another fine passphrase"}}), http.StatusUnauthorized},
		{"password changed", b.post("/account/password", url.Values{"current": {testPassword}, "password": {"another fine passphrase"}, "confirm": {"another fine passphrase"}}), http.StatusOK},
		{"reply sent", b.postMultipart("/m/"+b.token+"/reply", [][2]string{{"body", "Thanks"}}), http.StatusOK},
	} {
		if tc.r.status != tc.want || strings.Count(tc.r.body, link) != 1 {
			t.Errorf("%s: %d, want %d with one %s:\n%s", tc.name, tc.r.status, tc.want, link, tc.r.body)
		}
	}
	// The notice mailed about the change writes its moment in words, in
	// UTC said as such (as the notice of a sealed message does).
	if want := "was changed on " + catalog.Date(catalog.English, e.clock.Now()) + "."; !strings.Contains(string(e.sink.last(t, bob).Data), want) {
		t.Errorf("the password notice lacks %q:\n%s", want, e.sink.last(t, bob).Data)
	}
	// A reset, before signing in, has no message to go back to yet.
	r := e.browser()
	r.follow(r.open(s))
	r.follow(r.email(bob))
	r.follow(r.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	page := r.follow(r.post("/reset/answers", url.Values{"a1": {"Fluffy"}, "a2": {"Springfield"}, "a3": {"Blue"}}))
	if !strings.Contains(page.body, "Choose a new password") || strings.Contains(page.body, "Back to the message") {
		t.Errorf("the reset's new-password page offers a way back before signing in:\n%s", page.body)
	}
}

// The security-questions page of a reset says whose questions they are,
// how answers are compared, how many sets the reset allows and what to do
// without the answers; also after a wrong set.
func TestSecurityQuestionsPageExplains(t *testing.T) {
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	b := e.browser()
	b.follow(b.open(s))
	b.follow(b.email(bob))
	page := b.follow(b.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	wrong := b.post("/reset/answers", url.Values{"a1": {"x"}, "a2": {"y"}, "a3": {"z"}})
	for name, r := range map[string]response{"questions": page, "after a wrong set": wrong} {
		for _, want := range []string{
			"the questions you chose when you created your account",
			"not case-sensitive",
			"After 3 wrong sets of answers this reset ends",
			"If you no longer know the answers",
		} {
			if !strings.Contains(r.body, want) {
				t.Errorf("%s page lacks %q:\n%s", name, want, r.body)
			}
		}
	}
}
