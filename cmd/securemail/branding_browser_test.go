package main

// Branding in a real browser: SecureMessageATT.html of a message from a
// branded sender domain and of one from an unbranded domain, opened from a
// file in headless Chromium at phone and desktop widths, with screenshots
// (to $SECUREMAIL_ARTIFACTS when set) and an axe-core accessibility run
// that must find nothing on the branded page.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/securemail/securemail/cmd/securemail/internal/browsertest"
	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/envelope"
)

// axePath finds axe-core's axe.min.js: $SECUREMAIL_AXE_JS, or where
// .ci/run installs it with npm.
func axePath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("SECUREMAIL_AXE_JS")
	if p == "" {
		p = "/opt/securemail-ci/axe/node_modules/axe-core/axe.min.js"
	}
	if _, err := os.Stat(p); err != nil {
		mtatest.SkipUnlessCI(t, "no axe-core at "+p+" (npm install --prefix /opt/securemail-ci/axe axe-core@4.14.1, or set SECUREMAIL_AXE_JS)")
	}
	return p
}

// brSealBranded seals msg from rtFrom (example.test) with a branding
// section for example.test, and returns the page.
func brSealBranded(t *testing.T, msg []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	path := rtWriteConfig(t, dir)
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(cfg, brandingYAML(t, dir)...), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newRTEnvFrom(t, path)
	var sealed bytes.Buffer
	if err := e.filter.SealMessage(bytes.NewReader(msg), &sealed, rtFrom, []string{rtRcpt}); err != nil {
		t.Fatalf("seal: %v", err)
	}
	rtCheckSealed(t, msg, sealed.Bytes(), "CORPUS-attachments")
	page, err := envelope.FindPage(bytes.NewReader(sealed.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return page
}

type axeViolation struct {
	ID    string `json:"id"`
	Help  string `json:"help"`
	Nodes []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

// runAxe injects axe-core into the tab's page and returns the violations.
func runAxe(t *testing.T, tab *browsertest.Tab, axeJS string) []axeViolation {
	t.Helper()
	var out string
	tab.Run(
		chromedp.Evaluate(axeJS, nil),
		chromedp.Evaluate(`axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations))`, &out,
			func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
	)
	var v []axeViolation
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("axe result: %v: %s", err, out)
	}
	return v
}

func TestBrandedPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium; skipped with -short")
	}
	axeJS, err := os.ReadFile(axePath(t))
	if err != nil {
		t.Fatal(err)
	}
	msg := brMessage(t)
	branded := brSealBranded(t, msg)
	// A configuration without branding: what every domain without an
	// entry (and no default) gets.
	_, neutral := brSeal(t, "https://secure.example.test", msg)
	b := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900})
	tab := b.NewTab(t)

	for _, page := range []struct {
		name       string
		page       []byte
		title, org string
		action     string
	}{
		{"branded", branded, "Secure message from Example Bank", "Example Bank", "https://secure.examplebank.test/open"},
		{"unbranded", neutral, "Secure message", "", "https://secure.example.test/open"},
	} {
		for _, size := range []struct {
			width, height int
			mobile        bool
		}{{360, 780, true}, {1280, 900, false}} {
			t.Run(fmt.Sprintf("%s %d", page.name, size.width), func(t *testing.T) {
				tab.SetViewport(size.width, size.height, size.mobile)
				tab.Navigate(brPageURL(t, page.page))
				tab.Run(chromedp.WaitVisible(brButton, chromedp.ByQuery))
				tab.Screenshot(fmt.Sprintf("branding-%s-%dx%d", page.name, size.width, size.height))

				var title, action string
				var logoWidth float64
				var scrollWidth float64
				tab.Run(chromedp.Title(&title),
					chromedp.AttributeValue("form", "action", &action, nil, chromedp.ByQuery),
					chromedp.Evaluate(`document.documentElement.scrollWidth`, &scrollWidth),
					chromedp.Evaluate(`(document.querySelector(".brand img")||{naturalWidth:0}).naturalWidth`, &logoWidth))
				if title != page.title {
					t.Errorf("title %q, want %q", title, page.title)
				}
				if action != page.action {
					t.Errorf("the form posts to %q, want %q", action, page.action)
				}
				if scrollWidth > float64(size.width) {
					t.Errorf("the page is %.0f px wide in a %d px viewport", scrollWidth, size.width)
				}
				if page.org != "" {
					if got := tab.Text(".org"); got != page.org {
						t.Errorf("organisation shown %q, want %q", got, page.org)
					}
					if logoWidth == 0 {
						t.Error("the logo did not load from the page itself")
					}
					if got := tab.Text("h1"); got != "You have received a secure message from Example Bank" {
						t.Errorf("heading %q", got)
					}
				} else if tab.HasNode(".brand") {
					t.Error("the unbranded page shows a brand")
				}
				if v := runAxe(t, tab, string(axeJS)); len(v) > 0 {
					for _, x := range v {
						t.Errorf("axe: %s (%s) on %d node(s): %v", x.ID, x.Help, len(x.Nodes), x.Nodes)
					}
				}
			})
		}
	}
}
