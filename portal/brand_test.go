package portal

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/catalog"
)

// testBrands brands every sender of example.test, whose notices are in
// lang ("" English).
type testBrands struct {
	b    envelope.Brand
	lang catalog.Lang
}

func (t testBrands) Language(sender string) catalog.Lang {
	if strings.HasSuffix(strings.ToLower(sender), "@example.test") {
		return t.lang
	}
	return ""
}

func (t testBrands) ForSender(sender string) (string, envelope.Brand, bool) {
	if strings.HasSuffix(strings.ToLower(sender), "@example.test") {
		return "example.test", t.b, true
	}
	return "", envelope.Brand{}, false
}

func (t testBrands) ByID(id string) (envelope.Brand, bool) {
	if id == "example.test" {
		return t.b, true
	}
	return envelope.Brand{}, false
}

const brandSVG = `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="#0b5d3b"/></svg>`

func TestPagesShowTheSendersBrand(t *testing.T) {
	t.Parallel()
	brand := envelope.Brand{Organisation: "Example Bank <EB>", Accent: "#0B5D3B", Support: "Questions? Call 0800 1",
		Logo: "data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString([]byte(brandSVG))}
	e := newTestEnv(t, func(o *Options) { o.Brands = testBrands{b: brand} })
	msg := "From: Zoe <zoe@example.test>\nTo: bob@external.test\nSubject: Offer\n\nHello\n"

	b := e.browser()
	page := b.follow(b.open(e.seal("zoe@example.test", []string{"bob@external.test"}, msg)))
	for _, want := range []string{
		"· Example Bank &lt;EB&gt;</title>",
		`<link rel="stylesheet" href="/static/brand/example.test/style.css">`,
		`<img src="/static/brand/example.test/logo" alt="Example Bank &lt;EB&gt; logo">`,
		"Example Bank &lt;EB&gt; · Secure messages</span>",
		`<p class="support">Questions? Call 0800 1</p>`,
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the page after /open lacks %q:\n%s", want, page.body)
		}
	}
	css := b.get("/static/brand/example.test/style.css")
	if css.status != 200 || !strings.Contains(css.body, "button{background:#0b5d3b}") || css.header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Errorf("brand style sheet: %d %q", css.status, css.body)
	}
	logo := b.get("/static/brand/example.test/logo")
	if logo.status != 200 || logo.body != brandSVG || logo.header.Get("Content-Type") != "image/svg+xml" ||
		!strings.Contains(logo.header.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("logo: %d %q %v", logo.status, logo.body, logo.header)
	}
	for _, path := range []string{"/static/brand/other.test/logo", "/static/brand/example.test/x", "/static/brand/EXAMPLE.test/logo"} {
		if r := b.get(path); r.status != 404 {
			t.Errorf("GET %s: %d, want 404", path, r.status)
		}
	}

	// A message from another domain: the neutral look.
	b2 := e.browser()
	page = b2.follow(b2.open(e.seal("carl@elsewhere.test", []string{"bob@external.test"}, msg)))
	if strings.Contains(page.body, "/static/brand/") || strings.Contains(page.body, "Example Bank") || !strings.Contains(page.body, "· Secure messages</title>") {
		t.Errorf("an unbranded message's page shows a brand:\n%s", page.body)
	}
}
