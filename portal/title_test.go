package portal

import (
	"strings"
	"testing"
)

// TestPageTitleNamesTheServiceOnce: the home page's title was "Secure
// messages · Secure messages".
func TestPageTitleNamesTheServiceOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	b := e.browser()
	home := b.get("/")
	if home.status != 200 || !strings.Contains(home.body, "<title>Secure messages</title>") {
		t.Errorf("home page title: %d\n%s", home.status, home.body[:min(len(home.body), 400)])
	}
	signin := b.get("/signin")
	if strings.Count(signin.body, "Secure messages</title>") != 1 || strings.Contains(signin.body, "Secure messages · Secure messages") {
		t.Errorf("sign-in page title:\n%s", signin.body[:min(len(signin.body), 400)])
	}
}
