package portal

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// hostileHTML closes the portal's <article>, then leaves a link, a font
// and a details element open, hoping to wrap the page's Reply form and
// put its own text outside the message box (finding 5).
const hostileHTML = `<p>Dear customer</p></article></div></main>` +
	`<a href="https://evil.test/phish"><font size="7"><details open><summary>ATTACKER-SUMMARY</summary>ATTACKER-TEXT` +
	`<table><tr><td>ATTACKER-CELL`

// hostileMessage is a message whose HTML body is body.
func hostileMessage(body string) string {
	return strings.Join([]string{
		"From: Alice <alice@example.com>",
		"To: bob@external.test",
		"Subject: Hostile",
		"Message-ID: <hostile@example.com>",
		"Content-Type: text/html; charset=utf-8",
		"",
		body,
	}, "\n")
}

// outsideBox returns the text nodes containing marker that are not inside
// the <article class="html-body"> of page, and whether a form is inside
// an <a> or the article, parsed as a browser parses it.
func outsideBox(t *testing.T, page, marker string) (outside []string, formWrapped bool) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	inside := func(n *html.Node, pred func(*html.Node) bool) bool {
		for p := n.Parent; p != nil; p = p.Parent {
			if pred(p) {
				return true
			}
		}
		return false
	}
	isBox := func(n *html.Node) bool {
		if n.Type != html.ElementNode || n.Data != "article" {
			return false
		}
		for _, a := range n.Attr {
			if a.Key == "class" && a.Val == "html-body" {
				return true
			}
		}
		return false
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode && strings.Contains(n.Data, marker) && !inside(n, isBox) {
			outside = append(outside, n.Data)
		}
		if n.Type == html.ElementNode && n.Data == "form" &&
			inside(n, func(p *html.Node) bool { return isBox(p) || p.Type == html.ElementNode && p.Data == "a" }) {
			formWrapped = true
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return outside, formWrapped
}

// Finding 5: a message that closes its box and leaves elements open stays
// inside its box on the read page, and the Reply form is nobody's child.
func TestHostileHTMLStaysInItsBox(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, hostileMessage(hostileHTML))
	page := e.browser().register(s, bob)
	if page.status != 200 || !strings.Contains(page.body, "Dear customer") {
		t.Fatalf("read page: %d\n%s", page.status, page.body)
	}
	outside, wrapped := outsideBox(t, page.body, "ATTACKER")
	if len(outside) > 0 {
		t.Errorf("message text outside its box: %q\n%s", outside, page.body)
	}
	if wrapped {
		t.Errorf("the Reply form ended up inside the message's link or box:\n%s", page.body)
	}
}

// Finding 10: alt and title keep any text; they are escaped on output.
func TestImageAltAndTitleKept(t *testing.T) {
	t.Parallel()
	alt := `Chart: Q3 revenue -5% & +3% (see "notes")`
	m := parseString(t, relatedMessage(`<p title="Note: 50% off - today &amp; tomorrow">x</p><img src="cid:logo@example.test" alt="`+html.EscapeString(alt)+`">`), RenderLimits{})
	got := string(m.HTML)
	if !strings.Contains(got, `alt="`+html.EscapeString(alt)+`"`) {
		t.Errorf("alt text lost or changed: %s", got)
	}
	if !strings.Contains(got, `title="Note: 50% off - today &amp; tomorrow"`) {
		t.Errorf("title lost or changed: %s", got)
	}
	if strings.Contains(got, `<script`) || strings.Contains(got, `onerror`) {
		t.Errorf("unsafe output: %s", got)
	}
	// An attribute value cannot break out of its quotes.
	m = parseString(t, relatedMessage(`<img src="cid:logo@example.test" alt='"><script>alert(1)</script>'>`), RenderLimits{})
	if strings.Contains(string(m.HTML), "<script") {
		t.Errorf("alt broke out: %s", m.HTML)
	}
}

// FuzzFinishHTMLBalanced checks that whatever the sanitiser lets through,
// the finished fragment closes everything it opens: put into the page's
// box and followed by a form, the form is never inside the box or a link.
// Seeds: testdata/fuzz/FuzzFinishHTMLBalanced.
func FuzzFinishHTMLBalanced(f *testing.F) {
	f.Add(hostileHTML)
	f.Add(`<a href="https://x.test/">open link`)
	f.Add(`<table><tr><td><details open><font>`)
	f.Add(`</article><p>out`)
	f.Fuzz(func(t *testing.T, in string) {
		var out strings.Builder
		if err := htmlPolicy.SanitizeReaderToWriter(strings.NewReader(in), &out); err != nil {
			return
		}
		frag := finishHTML(out.String(), func(string) string { return "/img" })
		page := `<!DOCTYPE html><html><body><main><article class="html-body">` + frag +
			`</article><form id="reply"><p>MARKER-AFTER</p></form></main></body></html>`
		outside, wrapped := outsideBox(t, page, "MARKER-AFTER")
		if wrapped || len(outside) != 1 {
			t.Fatalf("fragment not balanced: %q -> %q", in, frag)
		}
		if strings.Contains(strings.ToLower(frag), "<script") {
			t.Fatalf("script in output: %q", frag)
		}
	})
}

// Finding 11: a refused registration comes back as typed, passwords
// excepted, still says the address is confirmed, and names the field to
// fix.
func TestRegistrationMistakeKeepsWhatWasTyped(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.follow(b.open(s))
	b.follow(b.email(bob))
	b.follow(b.post("/code", map[string][]string{"code": {e.sink.code(t, bob)}}))
	form := registrationForm(testPassword)
	form.Set("q1", "4")
	form.Set("q2", "7")
	form.Set("a2", "Springfield & <Shelbyville>")
	form.Set("confirm", testPassword+" typo")
	r := b.post("/register/password", form)
	if r.status != 400 {
		t.Fatalf("mismatched passwords: %d", r.status)
	}
	for _, want := range []string{
		`<option value="4" selected>`, `<option value="7" selected>`,
		`value="Fluffy"`, `value="Springfield &amp; &lt;Shelbyville&gt;"`,
		"Your address " + bob + " is confirmed.",
		`id="confirm" name="confirm" type="password" autocomplete="new-password" required aria-invalid="true" aria-describedby="form-error"`,
		"both password fields",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the refused form lacks %q", want)
		}
	}
	if strings.Contains(r.body, testPassword) {
		t.Error("a password came back in the page")
	}
	if n := strings.Count(r.body, " selected>"); n != registerQuestions {
		t.Errorf("%d options selected, want %d", n, registerQuestions)
	}
	// The same question twice names the second one.
	form = registrationForm(testPassword)
	form.Set("q2", "0")
	r = b.post("/register/password", form)
	if !strings.Contains(r.body, "Question 2 is the same as question 1") || !strings.Contains(r.body, `name="q2" required aria-invalid="true"`) {
		t.Errorf("same question twice:\n%s", r.body)
	}
}
