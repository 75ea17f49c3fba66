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
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

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

// brandedSite is a portal served in process for the branded browser
// test: portal.url is http://127.0.0.1:PORT, and example.test's branding
// sends its recipients to http://localhost:PORT, the same listener under a
// second host name.
type brandedSite struct {
	env                 *rtEnv
	portalURL, brandURL string
}

func newBrandedSite(t *testing.T) *brandedSite {
	t.Helper()
	port := mtatest.FreePort(t)
	site := &brandedSite{portalURL: fmt.Sprintf("http://127.0.0.1:%d", port), brandURL: fmt.Sprintf("http://localhost:%d", port)}
	dir := t.TempDir()
	path := rtWriteConfig(t, dir)
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("  url: https://secure.example.test\n"), []byte("  url: "+site.portalURL+"\n"), 1)
	branding := strings.Replace(brandingYAML(t, dir), "https://secure.examplebank.test", site.brandURL, 1)
	// No default: a domain without an entry keeps the neutral look.
	branding = strings.Replace(branding, "  default:\n    organisation: Example Hosting\n", "", 1)
	// deutsch.test's recipients read German, in the neutral look.
	branding += "    - domain: deutsch.test\n      language: de\n"
	if err := os.WriteFile(path, append(cfg, branding...), 0o600); err != nil {
		t.Fatal(err)
	}
	site.env = newRTEnvFrom(t, path)
	if len(site.env.cfg.lists.brands) != 2 {
		t.Fatalf("brands %+v", site.env.cfg.lists.brands)
	}
	log := slog.New(slog.DiscardHandler)
	web, err := newPortal(site.env.cfg, site.env.store, site.env.master, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { web.Close() })
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: newHostCheck(site.env.cfg, web), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return site
}

// seal seals msg from sender and returns its page.
func (s *brandedSite) seal(t *testing.T, msg []byte, sender string) []byte {
	t.Helper()
	var sealed bytes.Buffer
	if err := s.env.filter.SealMessage(bytes.NewReader(msg), &sealed, sender, []string{rtRcpt}); err != nil {
		t.Fatalf("seal: %v", err)
	}
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

// TestBrandedPagesInBrowser: a message from the branded example.test and
// one from unbranded.test, from the attachment page to the portal's first
// page, at 360 and 1280 px.
func TestBrandedPagesInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Chromium")
	}
	axeJS, err := os.ReadFile(axePath(t))
	if err != nil {
		t.Fatal(err)
	}
	site := newBrandedSite(t)
	msg := brMessage(t)
	b := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900})
	tab := b.NewTab(t)

	for _, m := range []struct {
		name, sender string
		title, org   string
		portal       string
	}{
		{"branded", rtFrom, "Secure message from Example Bank", "Example Bank", site.brandURL},
		{"unbranded", "carl@unbranded.test", "Secure message", "", site.portalURL},
		{"german", "dora@deutsch.test", "Sichere Nachricht", "", site.portalURL},
	} {
		page := site.seal(t, msg, m.sender)
		for _, size := range []struct {
			width, height int
			mobile        bool
		}{{360, 780, true}, {1280, 900, false}} {
			t.Run(fmt.Sprintf("%s %d", m.name, size.width), func(t *testing.T) {
				tab.SetViewport(size.width, size.height, size.mobile)
				tab.Navigate(brPageURL(t, page))
				tab.Run(chromedp.WaitVisible(brButton, chromedp.ByQuery))
				tab.Screenshot(fmt.Sprintf("branding-%s-attachment-%dx%d", m.name, size.width, size.height))

				var title, action string
				var logoWidth, scrollWidth float64
				tab.Run(chromedp.Title(&title),
					chromedp.AttributeValue("form", "action", &action, nil, chromedp.ByQuery),
					chromedp.Evaluate(`document.documentElement.scrollWidth`, &scrollWidth),
					chromedp.Evaluate(`(document.querySelector(".brand img")||{naturalWidth:0}).naturalWidth`, &logoWidth))
				if title != m.title {
					t.Errorf("attachment title %q, want %q", title, m.title)
				}
				if action != m.portal+"/open" {
					t.Errorf("the form posts to %q, want %s/open", action, m.portal)
				}
				if scrollWidth > float64(size.width) {
					t.Errorf("the attachment page is %.0f px wide in a %d px viewport", scrollWidth, size.width)
				}
				if m.org != "" {
					if got := tab.Text(".org"); got != m.org {
						t.Errorf("organisation shown %q, want %q", got, m.org)
					}
					if logoWidth == 0 {
						t.Error("the logo did not load from the page itself")
					}
					for _, v := range runAxe(t, tab, string(axeJS)) {
						t.Errorf("axe on the attachment page: %s (%s) on %v", v.ID, v.Help, v.Nodes)
					}
				} else if tab.HasNode(".brand") {
					t.Error("the unbranded attachment page shows a brand")
				}
				if m.name == "german" {
					if got := tab.Text("button"); got != "Nachricht lesen" {
						t.Errorf("the German page's button reads %q", got)
					}
					for _, v := range runAxe(t, tab, string(axeJS)) {
						t.Errorf("axe on the German attachment page: %s (%s) on %v", v.ID, v.Help, v.Nodes)
					}
				}

				// Click to read message: the portal's first page, on the
				// reading site this sender's domain names.
				tab.Run(chromedp.Click(brButton, chromedp.ByQuery))
				tab.WaitText(10*time.Second, m.portal+"/m/", "Your email address")
				tab.Screenshot(fmt.Sprintf("branding-%s-portal-%dx%d", m.name, size.width, size.height))
				tab.Run(chromedp.Title(&title),
					chromedp.Evaluate(`document.documentElement.scrollWidth`, &scrollWidth),
					chromedp.Evaluate(`(document.querySelector(".bar .brand img")||{naturalWidth:0}).naturalWidth`, &logoWidth))
				if scrollWidth > float64(size.width) {
					t.Errorf("the portal page is %.0f px wide in a %d px viewport", scrollWidth, size.width)
				}
				bar := tab.Text(".bar")
				if m.org != "" {
					if !strings.HasSuffix(title, " · "+m.org) || !strings.Contains(bar, m.org) {
						t.Errorf("portal page title %q, bar %q: the organisation is missing", title, bar)
					}
					if logoWidth == 0 {
						t.Error("the portal's brand logo did not load")
					}
					if !strings.Contains(tab.Text("main"), "Questions? Call Example Bank") {
						t.Error("the portal page lacks the support line")
					}
					for _, v := range runAxe(t, tab, string(axeJS)) {
						t.Errorf("axe on the portal page: %s (%s) on %v", v.ID, v.Help, v.Nodes)
					}
				} else if strings.Contains(bar, "Example Bank") || tab.HasNode(".bar .brand img") {
					t.Errorf("the unbranded message's portal page shows a brand: %q", bar)
				}
			})
		}
	}
}
