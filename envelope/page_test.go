package envelope

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"mime/quotedprintable"
	"os"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"

	"github.com/securemail/securemail/internal/catalog"
)

const (
	testPortal   = "https://secure.example.com"
	testBoundary = "securemail-000102030405060708090a0b" // the milter's form: prefix + 24 hex digits
)

var testDate = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func testNotice(from string) Notice {
	return Notice{
		From:      from,
		Sender:    "alice@example.com",
		Date:      testDate,
		PortalURL: testPortal,
		KeyID:     testKeyID,
		Boundary:  testBoundary,
	}
}

const goldenPayload = "From: Alice Example <alice@example.com>\r\n" +
	"To: bob@example.org\r\n" +
	"Subject: the plans\r\n" +
	"\r\n" +
	"Bob, the plans are attached.\r\n"

// writeBody seals payload under the test key and writes the replacement
// body; it returns the body and the envelope.
func writeBody(t testing.TB, n Notice, payload []byte) (body, env []byte) {
	t.Helper()
	env = seal(t, payload, testDEK, testHeader(), 0)
	var b bytes.Buffer
	if err := WriteBody(&b, n, bytes.NewReader(env)); err != nil {
		t.Fatalf("WriteBody: %v", err)
	}
	return b.Bytes(), env
}

func TestBodyGolden(t *testing.T) {
	t.Parallel()
	body, _ := writeBody(t, testNotice("Alice Example <alice@example.com>"), []byte(goldenPayload))
	checkGolden(t, body, "testdata/body.golden")
}

// goldenVariants are the notices whose bodies testdata keeps besides
// body.golden: every branch of the templates (brand, logo, support line,
// phone link, a From that the escaping changes) in each language.
func goldenVariants(t testing.TB) map[string]Notice {
	branded := testNotice("Zoë <alice+tag@example.com> & \"Co\"")
	branded.Brand = testBrand(t)
	branded.Link = testPortal + "/l/AAECAwQFBgcICQoLDA0ODw"
	branded.LinkUntil = testDate.Add(30 * 24 * time.Hour)
	german, germanBranded := testNotice("Alice Example <alice@example.com>"), branded
	german.Lang, germanBranded.Lang = catalog.German, catalog.German
	return map[string]Notice{"body-branded-link.golden": branded,
		"body-de.golden": german, "body-de-branded-link.golden": germanBranded}
}

func TestBodyGoldenVariants(t *testing.T) {
	t.Parallel()
	for name, n := range goldenVariants(t) {
		t.Run(name, func(t *testing.T) {
			body, _ := writeBody(t, n, []byte(goldenPayload))
			checkTransport(t, body, 998)
			checkGolden(t, body, "testdata/"+name)
		})
	}
}

// checkGolden compares body with the file golden, or rewrites the file
// under -update.
func checkGolden(t *testing.T, body []byte, golden string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./envelope -run TestBodyGolden -update)", err)
	}
	if !bytes.Equal(body, want) {
		got, wantLines := strings.Split(string(body), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(got), len(wantLines)) {
			if got[i] != wantLines[i] {
				t.Fatalf("body differs from %s at line %d:\n got %q\nwant %q\n(run with -update if the change is meant)", golden, i+1, got[i], wantLines[i])
			}
		}
		t.Fatalf("body has %d lines, %s has %d", len(got), golden, len(wantLines))
	}
}

// check7bit checks what Content-Transfer-Encoding: 7bit promises, and our
// stricter line limit: ASCII without NUL, CR and LF only as CRLF, no line
// longer than 78 characters.
func check7bit(t *testing.T, body []byte) {
	t.Helper()
	checkTransport(t, body, 78)
}

// checkTransport is check7bit with another line limit: a brand's name
// (up to 100 characters, each up to an 8-character reference) can make a
// page line longer than 78, never longer than RFC 5322's 998.
func checkTransport(t *testing.T, body []byte, maxLine int) {
	t.Helper()
	for i, c := range body {
		switch {
		case c >= 0x80 || c == 0:
			t.Fatalf("byte %d is 0x%02x: not 7-bit clean", i, c)
		case c == '\r' && (i+1 == len(body) || body[i+1] != '\n'):
			t.Fatalf("bare CR at byte %d", i)
		case c == '\n' && (i == 0 || body[i-1] != '\r'):
			t.Fatalf("bare LF at byte %d", i)
		}
	}
	if !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Fatalf("body does not end with CRLF")
	}
	for i, line := range strings.Split(string(body), "\r\n") {
		if len(line) > maxLine {
			t.Fatalf("line %d is %d characters: %q", i+1, len(line), line)
		}
	}
}

var fromCases = []struct {
	name, from string
}{
	{"plain", "Alice Example <alice@example.com>"},
	{"non-ASCII", "Zoë Ünïcödé 山田太郎 🦊 <zoe@example.com>"},
	{"HTML", `"Evil" <script>alert('x')</script> & Co +1 <evil@example.com>`},
	{"password field", `<input type="password" name="pw"> <x@example.com>`},
	{"end tag", `</textarea></form><form action="https://evil.example/"> <x@example.com>`},
	{"long ASCII", strings.Repeat("A", 5000)},
	{"long words", strings.Repeat("Alice Example ", 400)},
	{"long non-ASCII", strings.Repeat("é", 5000)},
	{"long astral", strings.Repeat("🦊", 5000)},
	{"long escapes", strings.Repeat(`<&">'+`, 1000)},
	{"controls", "Al\x00ice\x01\x7f\r\nExample\t<alice@example.com>"},
	{"invalid UTF-8", "Al\xffice \xc3 \xed\xa0\x80 <alice@example.com>"},
	{"empty", ""},
	{"spaces", " \t "},
}

func TestBodyTransport(t *testing.T) {
	t.Parallel()
	payload := testPayload("transport", 3000)
	for _, tc := range fromCases {
		for _, lang := range catalog.Languages {
			t.Run(tc.name+"/"+string(lang), func(t *testing.T) {
				n := testNotice(tc.from)
				n.Lang = lang
				body, env := writeBody(t, n, payload)
				check7bit(t, body)
				// FindPage takes a whole message: the body and the header the
				// milter sets for it.
				msg := "Content-Type: " + ContentType(n.Boundary) + "\r\n\r\n" + string(body)
				page, err := FindPage(strings.NewReader(msg))
				if err != nil {
					t.Fatalf("FindPage: %v", err)
				}
				checkPage(t, page, n)
				form, err := ParsePage(page)
				if err != nil {
					t.Fatalf("ParsePage: %v", err)
				}
				if form.Version != Version || form.KeyID != testKeyID || !bytes.Equal(form.Envelope, env) {
					t.Fatalf("ParsePage = v%d %s %d bytes; want v%d %s and the %d-byte envelope",
						form.Version, form.KeyID, len(form.Envelope), Version, testKeyID, len(env))
				}
				got, err := open(form.Envelope, testDEK, 4096)
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("open the page's envelope: %d bytes, %v", len(got), err)
				}
				checkNotice(t, body, n)
			})
		}
	}
}

// displayed is what a recipient should see as the sender: whitespace
// collapsed, at most 200 characters, what html/template and the 7-bit
// encoding make of NUL and invalid UTF-8.
func displayed(n Notice) string {
	from := n.From
	if strings.TrimSpace(from) == "" {
		from = n.Sender
	}
	var b strings.Builder
	for _, r := range strings.Join(strings.Fields(from), " ") {
		if unicode.IsControl(r) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	r := []rune(b.String())
	if len(r) > 200 {
		return string(r[:199]) + "…"
	}
	return string(r)
}

var (
	formRe   = regexp.MustCompile(`(?s)<form\s([^>]*)>(.*?)</form>`)
	attrRe   = regexp.MustCompile(`([a-z-]+)(?:="([^"]*)")?`)
	tagRe    = regexp.MustCompile(`<(input|textarea|button|select)\s([^>]*)>`)
	buttonRe = regexp.MustCompile(`(?s)<button\s([^>]*)>(.*?)</button>`)
)

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(s, -1) {
		m[a[1]] = a[2]
	}
	return m
}

// checkPage checks what the design promises of SecureMessageATT.html.
func checkPage(t *testing.T, page []byte, n Notice) {
	t.Helper()
	s := string(page)
	lower := strings.ToLower(s)
	for _, bad := range []string{"<script", "javascript:", `type="password"`, "type=password", "<iframe", "<img", "<link", "http-equiv", "<base"} {
		if strings.Contains(lower, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if regexp.MustCompile(`\son[a-z]+=`).MatchString(lower) {
		t.Errorf("page has an event handler attribute")
	}

	forms := formRe.FindAllStringSubmatch(s, -1)
	if len(forms) != 1 {
		t.Fatalf("page has %d forms, want 1", len(forms))
	}
	fa := attrs(forms[0][1])
	want := map[string]string{"method": "post", "enctype": "multipart/form-data", "action": n.PortalURL + "/open"}
	for k, v := range want {
		if fa[k] != v {
			t.Errorf("form %s = %q, want %q", k, fa[k], v)
		}
	}
	fields := map[string]map[string]string{}
	for _, m := range tagRe.FindAllStringSubmatch(forms[0][2], -1) {
		a := attrs(m[2])
		if m[1] == "input" && a["type"] != "hidden" {
			t.Errorf("form has a visible input: %s", m[0])
		}
		if name := a["name"]; name != "" {
			if fields[name] != nil {
				t.Errorf("form has two fields named %q", name)
			}
			fields[name] = a
		}
	}
	if len(fields) != 3 || fields["v"]["value"] != "1" || fields["id"]["value"] != n.KeyID.String() || fields["envelope"] == nil {
		t.Errorf("form fields = %v, want v=1, id=%s and envelope", fields, n.KeyID)
	}
	buttons := buttonRe.FindAllStringSubmatch(forms[0][2], -1)
	button := catalog.Entry(n.Lang, "page.button")
	if len(buttons) != 1 || attrs(buttons[0][1])["type"] != "submit" || buttons[0][2] != button {
		t.Errorf("form buttons = %q, want one submit button reading %q", buttons, button)
	}

	// It says who sent it, when, and how to check the portal's address.
	m := regexp.MustCompile(`(?s)` + regexp.QuoteMeta(catalog.Entry(n.Lang, "page.from")) + ` <strong>(.*?)</strong>`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("page does not name the sender")
	}
	shown := html.UnescapeString(strings.NewReplacer("<wbr\r\n>", "", "<wbr\n>", "").Replace(m[1]))
	if want := displayed(n); shown != want {
		t.Errorf("page shows the sender as %q, want %q", shown, want)
	}
	words := map[catalog.Lang][]string{
		catalog.English: {"Sent: Saturday, 14 March 2026 at 15:09 UTC", "(the site <code>", "never asks for your password"},
		catalog.German:  {"Gesendet: Samstag, 14. M&#228;rz 2026 um 15:09 UTC", "(die Seite <code>", "fragt nie nach Ihrem Passwort"},
	}[n.Lang]
	if words == nil {
		words = []string{"Sent: Saturday, 14 March 2026 at 15:09 UTC", "(the site <code>", "never asks for your password"}
	}
	for _, want := range append(words,
		"<code>"+n.PortalURL+"/</code>",
		"<code>"+strings.TrimPrefix(n.PortalURL, "https://")+"</code>)",
	) {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// checkNotice checks the MIME structure of a body and its notice parts.
func checkNotice(t *testing.T, body []byte, n Notice) {
	t.Helper()
	msg := append([]byte("Content-Type: "+ContentType(n.Boundary)+"\r\n\r\n"), body...)
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	type part struct {
		path          []int
		ctype, cte    string
		disp, name    string
		body          string
		charset, file string
	}
	var parts []part
	err = e.Walk(func(path []int, p *message.Entity, err error) error {
		if err != nil {
			return err
		}
		ct, ctp, _ := p.Header.ContentType()
		disp, dp, _ := p.Header.ContentDisposition()
		var b []byte
		if p.MultipartReader() == nil {
			if b, err = io.ReadAll(p.Body); err != nil {
				return err
			}
		}
		parts = append(parts, part{path, ct, p.Header.Get("Content-Transfer-Encoding"), disp, ctp["name"], string(b), ctp["charset"], dp["filename"]})
		return nil
	})
	if err != nil {
		t.Fatalf("walk body: %v", err)
	}
	var got []string
	for _, p := range parts {
		got = append(got, fmt.Sprint(p.path, " ", p.ctype, " ", p.cte, " ", p.disp, " ", p.file))
	}
	want := []string{
		"[] multipart/mixed   ",
		"[0] multipart/alternative   ",
		"[0 0] text/plain quoted-printable  ",
		"[0 1] text/html quoted-printable  ",
		"[1] text/html 7bit attachment SecureMessageATT.html",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("body structure:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if parts[4].name != PageFileName || parts[4].charset != "us-ascii" {
		t.Errorf("attachment name %q charset %q", parts[4].name, parts[4].charset)
	}
	text, htmlNotice := parts[2].body, parts[3].body
	from := displayed(n)
	sentYou := map[catalog.Lang]string{catalog.English: " sent you a secure message", catalog.German: " hat Ihnen eine sichere Nachricht gesendet"}[n.Lang]
	if sentYou == "" {
		sentYou = " sent you a secure message"
	}
	if !strings.Contains(text, from+sentYou) {
		t.Errorf("text notice does not name the sender %q:\n%s", from, text)
	}
	if strings.Contains(strings.ToLower(htmlNotice), "<script") || strings.Contains(htmlNotice, "<input") {
		t.Errorf("HTML notice carries markup from the sender:\n%s", htmlNotice)
	}
	if !strings.Contains(html.UnescapeString(htmlNotice), from) {
		t.Errorf("HTML notice does not name the sender %q", from)
	}
	for _, notice := range []string{text, htmlNotice} {
		phone := map[catalog.Lang]string{catalog.German: "Smartphone"}[n.Lang]
		if phone == "" {
			phone = "phone"
		}
		for _, want := range []string{n.PortalURL, "SecureMessageATT.html", catalog.Entry(n.Lang, "page.button"), phone} {
			if !strings.Contains(notice, want) {
				t.Errorf("notice lacks %q", want)
			}
		}
		if n.Link == "" {
			if strings.Contains(notice, "/l/") || strings.Contains(notice, "two ways") {
				t.Errorf("notice without a link speaks of one:\n%s", notice)
			}
			continue
		}
		for _, want := range []string{n.Link, "two ways", "On a computer", "On a phone or tablet", catalog.Date(catalog.English, n.LinkUntil)} {
			if !strings.Contains(html.UnescapeString(notice), want) {
				t.Errorf("notice with a link lacks %q:\n%s", want, notice)
			}
		}
	}
	if n.Link != "" && !strings.Contains(htmlNotice, `<a href="`+n.Link+`">`) {
		t.Errorf("HTML notice does not link %s:\n%s", n.Link, htmlNotice)
	}
}

// TestNoticeWithLink: the phone link and the two ways in, in both parts;
// a link to another site is refused.
func TestNoticeWithLink(t *testing.T) {
	t.Parallel()
	n := testNotice("Alice Example <alice@example.com>")
	n.Link = testPortal + "/l/Zm9vYmFyYmF6cXV4MTIzNDU2"
	n.LinkUntil = testDate.Add(720 * time.Hour)
	body, _ := writeBody(t, n, []byte(goldenPayload))
	check7bit(t, body)
	checkNotice(t, body, n)
	for _, link := range []string{"https://evil.example.net/l/x", "http://secure.example.com/l/x", "javascript:alert(1)", "%zz"} {
		n.Link = link
		if err := WriteBody(io.Discard, n, strings.NewReader("x")); err == nil {
			t.Errorf("WriteBody with the link %q succeeded", link)
		}
	}
}

// TestFindPage finds the page in the forms it reaches a recipient.
func TestFindPage(t *testing.T) {
	t.Parallel()
	n := testNotice("Alice Example <alice@example.com>")
	payload := testPayload("find page", 5000)
	body, env := writeBody(t, n, payload)
	var page bytes.Buffer
	if err := WritePage(&page, n, bytes.NewReader(env)); err != nil {
		t.Fatal(err)
	}
	msgHead := "From: Alice Example <alice@example.com>\r\nTo: bob@example.org\r\n" +
		"Subject: the plans\r\nMIME-Version: 1.0\r\nContent-Type: " + ContentType(testBoundary) + "\r\n\r\n"
	msg := msgHead + string(body)

	// The attachment part as a relay re-encoded it.
	attHead := "Content-Type: text/html; charset=us-ascii; name=\"SecureMessageATT.html\"\r\n" +
		"Content-Disposition: attachment; filename=\"SecureMessageATT.html\"\r\n"
	i := strings.Index(msg, attHead)
	j := strings.LastIndex(msg, "\r\n--"+testBoundary+"--")
	if i < 0 || j < 0 {
		t.Fatalf("cannot find the attachment part in the body")
	}
	reencode := func(headers string, page string) string {
		return msg[:i] + headers + "\r\n" + page + msg[j:]
	}
	var b64 strings.Builder
	enc := base64.StdEncoding.EncodeToString(page.Bytes())
	for len(enc) > 76 {
		b64.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b64.WriteString(enc)
	var qp bytes.Buffer
	qw := quotedprintable.NewWriter(&qp)
	qw.Write(page.Bytes())
	qw.Close()

	lf := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
	cases := map[string]string{
		"message":       msg,
		"message LF":    lf(msg),
		"base64":        reencode(attHead+"Content-Transfer-Encoding: base64\r\n", b64.String()),
		"base64 LF":     lf(reencode(attHead+"Content-Transfer-Encoding: base64\r\n", b64.String())),
		"QP":            reencode(attHead+"Content-Transfer-Encoding: quoted-printable\r\n", qp.String()),
		"name only":     reencode("Content-Type: text/html; name=\"SecureMessageATT.html\"\r\nContent-Transfer-Encoding: BASE64\r\n", b64.String()),
		"filename only": reencode("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"SecureMessageATT.html\"\r\n", page.String()),
		"page":          page.String(),
		"page LF":       lf(page.String()),
		"page indented": "\r\n\r\n  " + page.String(),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := FindPage(strings.NewReader(in))
			if err != nil {
				t.Fatalf("FindPage: %v", err)
			}
			f, err := ParsePage(got)
			if err != nil {
				t.Fatalf("ParsePage: %v", err)
			}
			if f.Version != Version || f.KeyID != testKeyID || !bytes.Equal(f.Envelope, env) {
				t.Fatalf("form = v%d %s %d bytes, want the sealed envelope", f.Version, f.KeyID, len(f.Envelope))
			}
		})
	}

	for name, in := range map[string]string{
		"empty":          "",
		"no attachment":  "Content-Type: text/plain\r\n\r\nhello\r\n",
		"other filename": strings.ReplaceAll(msg, "SecureMessageATT.html", "Other.html"),
		"not a message":  "\x00\x01\x02",
	} {
		if _, err := FindPage(strings.NewReader(in)); err == nil {
			t.Errorf("%s: FindPage succeeded", name)
		} else if name != "not a message" && !errors.Is(err, ErrNoPage) {
			t.Errorf("%s: FindPage = %v, want ErrNoPage", name, err)
		}
	}
}

func TestFindPageSizeLimit(t *testing.T) {
	t.Parallel()
	big := io.MultiReader(strings.NewReader("<!DOCTYPE html>"), io.LimitReader(zeros{}, maxPageSize))
	if _, err := FindPage(big); err == nil {
		t.Fatalf("FindPage read more than %d bytes", maxPageSize)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestParsePageRejects(t *testing.T) {
	t.Parallel()
	n := testNotice("Alice <alice@example.com>")
	var b bytes.Buffer
	if err := WritePage(&b, n, strings.NewReader("SMENV\x01 not really an envelope")); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if _, err := ParsePage([]byte(page)); err != nil {
		t.Fatalf("ParsePage of a good page: %v", err)
	}
	id := n.KeyID.String()
	for _, tc := range []struct {
		name, old, new string
		want           error
	}{
		{"no version", `name="v" value="1">`, `name="w" value="1">`, ErrNoPage},
		{"version 2", `name="v" value="1">`, `name="v" value="2">`, ErrVersion},
		{"no id", `name="id"`, `name="di"`, ErrNoPage},
		{"short id", id, id[:30], ErrNoPage},
		{"upper-case id", id, strings.ToUpper(id), ErrNoPage},
		{"two ids", `<input type="hidden" name="v"`, `<input type="hidden" name="id" value="` + id + `"><input type="hidden" name="v"`, ErrNoPage},
		{"two versions", `<input type="hidden" name="id"`, `<input type="hidden" name="v" value="1"><input type="hidden" name="id"`, ErrNoPage},
		{"two textareas", "</form>", `<textarea name="envelope">AAAA</textarea></form>`, ErrNoPage},
		{"no textarea", `<textarea name="envelope"`, `<textarea name="other"`, ErrNoPage},
		{"not base64", "</textarea>", "A</textarea>", ErrNoPage},
		{"other characters", "</textarea>", "%%</textarea>", ErrNoPage},
	} {
		bad := strings.Replace(page, tc.old, tc.new, 1)
		if bad == page {
			t.Fatalf("%s: %q not in the page", tc.name, tc.old)
		}
		if _, err := ParsePage([]byte(bad)); !errors.Is(err, tc.want) {
			t.Errorf("%s: ParsePage = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestWriteBodyRejects(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"", "secure.example.com", "ftp://secure.example.com", "https://", "javascript:alert(1)", "https://exa mple.com", "http://[::1"} {
		n := testNotice("a")
		n.PortalURL = url
		if err := WriteBody(io.Discard, n, strings.NewReader("x")); err == nil {
			t.Errorf("WriteBody with portal URL %q succeeded", url)
		}
		if err := WritePage(io.Discard, n, strings.NewReader("x")); err == nil {
			t.Errorf("WritePage with portal URL %q succeeded", url)
		}
	}
	for _, bnd := range []string{"", strings.Repeat("b", 61)} {
		n := testNotice("a")
		n.Boundary = bnd
		if err := WriteBody(io.Discard, n, strings.NewReader("x")); err == nil {
			t.Errorf("WriteBody with a %d-character boundary succeeded", len(bnd))
		}
	}
	// The longest boundary still gives short lines.
	n := testNotice("a")
	n.Boundary = strings.Repeat("b", 60)
	body, _ := writeBody(t, n, []byte("x"))
	check7bit(t, body)
	// A trailing slash on the portal URL is not doubled.
	n = testNotice("a")
	n.PortalURL = testPortal + "/"
	var page bytes.Buffer
	if err := WritePage(&page, n, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), `action="`+testPortal+`/open"`) {
		t.Errorf("portal URL with a trailing slash: form action is not %s/open", testPortal)
	}
	// A failing envelope source fails the body.
	errSource := errors.New("spool gone")
	if err := WriteBody(io.Discard, testNotice("a"), iotest.ErrReader(errSource)); !errors.Is(err, errSource) {
		t.Errorf("WriteBody from a failing source = %v, want %v", err, errSource)
	}
}

func TestWriteArmor(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 56, 57, 58, 57 * 512, 57*512 + 1, 57*armorBlockLines - 1, 57 * armorBlockLines, 57*armorBlockLines + 1, 100000} {
		data := testPayload("armor", n)
		var b bytes.Buffer
		if err := WriteArmor(&b, iotest.HalfReader(bytes.NewReader(data))); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if n == 0 && out != "" {
			t.Fatalf("armor of nothing = %q", out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n")
		for i, l := range lines {
			if n > 0 && (len(l) > 76 || (i < len(lines)-1 && len(l) != 76) || strings.ContainsAny(l, "\r\n")) {
				t.Fatalf("%d bytes: line %d is %q", n, i, l)
			}
		}
		got, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(out, "\r\n", ""))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: armor does not decode back: %v", n, err)
		}
		if n > 0 && !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("%d bytes: armor does not end with CRLF", n)
		}
	}
}

// armorReference is the armor as encoding/base64 writes it: what
// appendArmorLines must match byte for byte.
func armorReference(src []byte, eol string) []byte {
	var out []byte
	for len(src) > 0 {
		k := min(armorLineBytes, len(src))
		out = base64.StdEncoding.AppendEncode(out, src[:k])
		out = append(out, eol...)
		src = src[k:]
	}
	return out
}

// The fast encoder writes exactly what encoding/base64 writes, for every
// length around a line and a block, every byte value in every position,
// either line end, and readers with and without Len.
func TestArmorLinesMatchBase64(t *testing.T) {
	t.Parallel()
	all := make([]byte, 3*256)
	for i := range all {
		all[i] = byte(i / 3 * 7) // each value in each position of a 3-byte group
	}
	inputs := [][]byte{all, bytes.Repeat([]byte{0xff}, 200), make([]byte, 200)}
	for _, n := range []int{0, 1, 2, 3, 56, 57, 58, 113, 114, 115, 57 * armorBlockLines, 57*armorBlockLines + 1, 2*57*armorBlockLines + 56} {
		inputs = append(inputs, testPayload("armor-ref", n))
	}
	for _, src := range inputs {
		for n := 0; n <= min(len(src), 200); n++ {
			for _, eol := range []string{"\r\n", "\n"} {
				if got, want := appendArmorLines(nil, src[:n], eol), armorReference(src[:n], eol); !bytes.Equal(got, want) {
					t.Fatalf("%d bytes, eol %q: got %q, want %q", n, eol, got, want)
				}
			}
		}
		for _, eol := range []string{"\r\n", "\n"} {
			want := armorReference(src, eol)
			for _, r := range []io.Reader{bytes.NewReader(src), iotest.OneByteReader(bytes.NewReader(src))} {
				var b bytes.Buffer
				if err := writeArmor(&b, r, eol); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b.Bytes(), want) {
					t.Fatalf("writeArmor of %d bytes (%T), eol %q differs from encoding/base64", len(src), r, eol)
				}
			}
		}
	}
}

func FuzzArmorLines(f *testing.F) {
	f.Add([]byte("securemail"))
	f.Add(bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 40))
	f.Fuzz(func(t *testing.T, src []byte) {
		if got, want := appendArmorLines(nil, src, "\r\n"), armorReference(src, "\r\n"); !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

// countingWriter counts what goes through it.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// TestSizeRatio checks the design's target: the replacement body is at most
// 1.37 times the original plus 16 KiB.
func TestSizeRatio(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1 << 10, 100 << 10, 20 << 20} {
		payload := testPayload("ratio", size)
		env := seal(t, payload, testDEK, testHeader(), 0)
		var c countingWriter
		if err := WriteBody(&c, testNotice("Alice Example <alice@example.com>"), bytes.NewReader(env)); err != nil {
			t.Fatal(err)
		}
		limit := 1.37*float64(size) + 16*1024
		t.Logf("%d-byte payload: %d-byte body, %.4f x", size, c.n, float64(c.n)/float64(size))
		if float64(c.n) > limit {
			t.Errorf("%d-byte payload gives a %d-byte body, over the %.0f-byte target", size, c.n, limit)
		}
	}
}

// The bare-LF body is the CRLF body with its line ends changed, nothing
// else: the milter path and the offline path write the same message.
func TestWriteBodyLF(t *testing.T) {
	t.Parallel()
	n := Notice{From: "Zoë <zoe@example.test>", Sender: "zoe@example.test", Date: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		PortalURL: "https://secure.example.test", Boundary: "securemail-0123456789abcdef01234567"}
	env := bytes.Repeat([]byte{0xa5}, 3*armorLineBytes*512+5)
	var crlfBody, lfBody bytes.Buffer
	if err := WriteBody(&crlfBody, n, bytes.NewReader(env)); err != nil {
		t.Fatal(err)
	}
	n.LF = true
	if err := WriteBody(&lfBody, n, bytes.NewReader(env)); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(lfBody.Bytes(), []byte("\r")) {
		t.Fatal("LF body holds a CR")
	}
	if want := bytes.ReplaceAll(crlfBody.Bytes(), []byte("\r\n"), []byte("\n")); !bytes.Equal(lfBody.Bytes(), want) {
		t.Fatal("LF body differs from the CRLF body in more than line ends")
	}
}
