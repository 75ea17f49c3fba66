package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securemail/securemail/internal/catalog"
)

const testBrandSVG = `<svg xmlns="http://www.w3.org/2000/svg" width="160" height="48" viewBox="0 0 160 48"><rect width="160" height="48" rx="6" fill="#0b5d3b"/><text x="14" y="31" font-family="sans-serif" font-size="20" fill="#fff">Example Bank</text></svg>`

// brandingYAML is a branding section for example.test with a logo file
// written to dir.
func brandingYAML(t *testing.T, dir string) string {
	t.Helper()
	logo := filepath.Join(dir, "example-bank.svg")
	if err := os.WriteFile(logo, []byte(testBrandSVG), 0o644); err != nil {
		t.Fatal(err)
	}
	return `branding:
  default:
    organisation: Example Hosting
  domains:
    - domain: example.test
      organisation: Example Bank
      logo: ` + logo + `
      accent: "#0b5d3b"
      support: "Questions? Call Example Bank on 0800 123 456"
      portal_url: https://secure.examplebank.test
`
}

func TestBrandingConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := loadConfig(writeConfig(t, brandingYAML(t, dir)))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.lists.brands
	if len(b) != 2 || b[""].Brand.Organisation != "Example Hosting" || b["example.test"].PortalURL != "https://secure.examplebank.test" ||
		!strings.HasPrefix(b["example.test"].Brand.Logo, "data:image/svg+xml;base64,") {
		t.Fatalf("brands %+v", b)
	}
	if b["example.test"].Language != "" || b[""].Language != "" {
		t.Errorf("a language nobody set: %+v", b)
	}
	if p := cfg.policy(); len(p.Brands) != 2 {
		t.Errorf("the milter's policy has %d brands", len(p.Brands))
	}
	for name, tc := range map[string]struct{ from, to, want string }{
		"light accent": {`"#0b5d3b"`, `"#ffee00"`, "too light"},
		"missing logo": {"example-bank.svg", "gone.svg", "branding.domains[0].logo"},
		"plain http":   {"https://secure.examplebank", "http://secure.examplebank", "plain HTTP"},
		"bad domain":   {"domain: example.test", "domain: bob@example.test", "not a domain"},
		"duplicate": {"      portal_url: https://secure.examplebank.test\n",
			"      portal_url: https://secure.examplebank.test\n    - domain: Example.test\n", "listed twice"},
		"language not shipped": {"      portal_url: https://secure.examplebank.test\n",
			"      portal_url: https://secure.examplebank.test\n      language: fr\n", `branding.domains[0].language: language "fr" is not shipped: use one of en, de`},
	} {
		t.Run(name, func(t *testing.T) {
			yaml := strings.Replace(brandingYAML(t, dir), tc.from, tc.to, 1)
			if _, err := loadConfig(writeConfig(t, yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loadConfig error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestBrandingLanguage: branding.*.language chooses the notice's language
// per sender domain; "de-AT" is German, and a domain entry that says EN
// is English although the default is German.
func TestBrandingLanguage(t *testing.T) {
	t.Parallel()
	yaml := "branding:\n  default:\n    language: de-AT\n  domains:\n    - domain: example.test\n      language: EN\n"
	cfg, err := loadConfig(writeConfig(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.lists.brands
	if b[""].Language != catalog.German {
		t.Errorf("branding.default.language de-AT: %q, want de", b[""].Language)
	}
	if got := b["example.test"].Language; got != catalog.English {
		t.Errorf("example.test's language: EN gave %q, want en", got)
	}
	// The portal's read notices follow the same entries.
	pb := newPortalBrands(cfg)
	for sender, want := range map[string]catalog.Lang{"alice@example.test": catalog.English, "alice@sub.example.test": catalog.English,
		"zoe@other.test": catalog.German} {
		if got := pb.Language(sender); got != want {
			t.Errorf("portal language for %s: %q, want %q", sender, got, want)
		}
	}
	if got := newPortalBrands(&Config{}).Language("zoe@other.test"); got != "" {
		t.Errorf("portal language without branding: %q, want \"\" (English)", got)
	}
}

func TestPortalHostCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := loadConfig(writeConfig(t, "portal:\n  url: https://secure.example.test\n"+brandingYAML(t, dir)))
	if err != nil {
		t.Fatal(err)
	}
	h := newHostCheck(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	expectHosts(t, "", h, map[string]int{
		"secure.example.test":      http.StatusNoContent,
		"SECURE.example.test:443":  http.StatusNoContent,
		"secure.examplebank.test":  http.StatusNoContent,
		"secure.examplebank.test.": http.StatusNoContent,
		"evil.test":                http.StatusMisdirectedRequest,
		"127.0.0.1:8080":           http.StatusMisdirectedRequest,
		"":                         http.StatusMisdirectedRequest,
	})
	r := httptest.NewRequest("GET", "/healthz", nil)
	r.Host = "127.0.0.1:8080"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusNoContent {
		t.Errorf("/healthz by address: %d, want it answered", rec.Code)
	}
	// A reload with another portal_url changes the set.
	cfg2, err := loadConfig(writeConfig(t, "portal:\n  url: https://secure.example.test\n"+strings.Replace(brandingYAML(t, dir), "secure.examplebank.test", "read.examplebank.test", 1)))
	if err != nil {
		t.Fatal(err)
	}
	h.set(cfg2)
	expectHosts(t, "after reload, ", h, map[string]int{"read.examplebank.test": http.StatusNoContent, "secure.examplebank.test": http.StatusMisdirectedRequest})
}

// TestPortalHostCheckLoopback: with a loopback portal.url (the embedded
// default) the portal answers under every loopback name, so a newcomer's
// http://localhost:8080 works; other names are still refused.
func TestPortalHostCheckLoopback(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	h := newHostCheck(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	expectHosts(t, "", h, map[string]int{
		"127.0.0.1:8080":   http.StatusNoContent,
		"localhost:8080":   http.StatusNoContent,
		"[::1]:8080":       http.StatusNoContent,
		"example.test":     http.StatusMisdirectedRequest,
		"127.0.0.2:8080":   http.StatusMisdirectedRequest,
		"localhost.evil.x": http.StatusMisdirectedRequest,
	})
}

// expectHosts asks h for / under each host name and checks the status.
func expectHosts(t *testing.T, when string, h http.Handler, want map[string]int) {
	t.Helper()
	for host, code := range want {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != code {
			t.Errorf("%sHost %q: %d, want %d", when, host, rec.Code, code)
		}
	}
}
