package envelope

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// testLogoSVG is a small logo as an operator would upload it.
const testLogoSVG = `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="#0b5d3b"/><text x="10" y="26" fill="#fff">EB</text></svg>`

func testBrand(t testing.TB) Brand {
	logo, err := LogoDataURI([]byte(testLogoSVG))
	if err != nil {
		t.Fatal(err)
	}
	return Brand{Organisation: "Example Bank & Trust <Zürich>", Accent: "#0B5D3B", Logo: logo,
		Support: "Questions? Call Example Bank on 0800 123 456"}
}

func TestBrandCheck(t *testing.T) {
	t.Parallel()
	good := testBrand(t)
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	if err := (Brand{}).Check(); err != nil {
		t.Fatalf("the neutral brand: %v", err)
	}
	for name, b := range map[string]Brand{
		"light accent":     {Accent: "#ffcc00"},
		"accent form":      {Accent: "green"},
		"accent short":     {Accent: "#0f0"},
		"organisation nl":  {Organisation: "Example\nBcc: x"},
		"organisation len": {Organisation: strings.Repeat("x", MaxOrganisation+1)},
		"support control":  {Support: "call\x01us"},
		"logo not data":    {Logo: "https://tracker.example/logo.png"},
		"logo js":          {Logo: "javascript:alert(1)"},
		"logo bad base64":  {Logo: "data:image/png;base64,!!!"},
		"invalid utf8":     {Organisation: "caf\xe9"},
	} {
		if err := b.Check(); !errors.Is(err, ErrBadBrand) {
			t.Errorf("%s: Check() = %v, want ErrBadBrand", name, err)
		}
	}
}

func TestLogoDataURI(t *testing.T) {
	t.Parallel()
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 100)...)
	if u, err := LogoDataURI(png); err != nil || !strings.HasPrefix(u, "data:image/png;base64,") {
		t.Errorf("png: %q %v", u[:min(len(u), 30)], err)
	}
	if u, err := LogoDataURI([]byte(testLogoSVG)); err != nil || !strings.HasPrefix(u, "data:image/svg+xml;base64,") {
		t.Errorf("svg: %v", err)
	}
	for name, data := range map[string][]byte{
		"gif":     []byte("GIF89a...."),
		"too big": append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, MaxLogoBytes)...),
		"html":    []byte("<html><script>x</script></html>"),
	} {
		if _, err := LogoDataURI(data); !errors.Is(err, ErrBadBrand) {
			t.Errorf("%s: %v, want ErrBadBrand", name, err)
		}
	}
}

// TestBrandedBodyProperties: every brand field alone and together gives a
// body with checkBody's properties.
func TestBrandedBodyProperties(t *testing.T) {
	t.Parallel()
	env := seal(t, testPayload("brand", 3000), testDEK, testHeader(), 0)
	b := testBrand(t)
	for _, brand := range []Brand{b, {Organisation: b.Organisation}, {Logo: b.Logo}, {Support: "Ring us"}, {Accent: "#000000"}} {
		n := testNotice("Alice Example <alice@example.com>")
		n.Brand = brand
		checkBody(t, n, env)
	}
}

func TestBrandedPageAndNotice(t *testing.T) {
	t.Parallel()
	env := seal(t, testPayload("brand", 100), testDEK, testHeader(), 0)
	n := testNotice("Alice Example <alice@example.com>")
	n.Brand = testBrand(t)
	var body bytes.Buffer
	if err := WriteBody(&body, n, bytes.NewReader(env)); err != nil {
		t.Fatal(err)
	}
	page, err := FindPage(bytes.NewReader(append([]byte("Content-Type: "+ContentType(n.Boundary)+"\r\n\r\n"), body.Bytes()...)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"<title>Secure message from Example Bank &amp; Trust &lt;Z&#252;rich&gt;</title>",
		"background:#0b5d3b;",
		`<img src="data:image/svg&#43;xml;base64,`, // html/template's escape of +; the browser reads +
		`alt="Example Bank &amp; Trust &lt;Z&#252;rich&gt; logo"`,
		"You have received a secure message from Example Bank &amp; Trust",
		"<p>Questions? Call Example Bank on 0800 123 456</p>",
	} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
	if form, err := ParsePage(page); err != nil || !bytes.Equal(form.Envelope, env) {
		t.Errorf("branded page does not parse back to its envelope: %v", err)
	}
	notice := body.String()[:strings.Index(body.String(), `name="`+PageFileName)]
	for _, want := range []string{"Secure message from Example Bank", "Questions? Call Example Bank"} {
		if !strings.Contains(notice, want) {
			t.Errorf("notice lacks %q", want)
		}
	}

	// The neutral page names no organisation.
	n.Brand = Brand{}
	body.Reset()
	if err := WriteBody(&body, n, bytes.NewReader(env)); err != nil {
		t.Fatal(err)
	}
	if s := body.String(); strings.Contains(s, "Secure message from") || strings.Contains(s, `class="brand"`) || !strings.Contains(s, "<title>Secure message</title>") {
		t.Error("the neutral body shows a brand")
	}

	n.Brand = Brand{Accent: "#ffff00"}
	if err := WriteBody(&body, n, bytes.NewReader(env)); !errors.Is(err, ErrBadBrand) {
		t.Errorf("WriteBody with a bad brand: %v", err)
	}
}

// FuzzBrandedBody: any brand text that Check accepts gives a body with
// checkBody's properties (7-bit, short lines, MIME, escaped brand text),
// and any brand Check refuses, WriteBody refuses with ErrBadBrand.
func FuzzBrandedBody(f *testing.F) {
	env := seal(f, testPayload("fuzz-brand", 200), testDEK, testHeader(), 0)
	f.Fuzz(func(t *testing.T, org, support, accent string) {
		n := testNotice("Alice Example <alice@example.com>")
		n.Brand = Brand{Organisation: org, Support: support, Accent: accent}
		checkBody(t, n, env)
	})
}
