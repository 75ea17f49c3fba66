package envelope

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"mime/quotedprintable"
	"net/url"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/securemail/securemail/internal/catalog"
)

// PageFileName is the name of the attachment that carries the envelope.
const PageFileName = "SecureMessageATT.html"

// armorLineBytes is how many envelope bytes make one 76-character base64 line.
const armorLineBytes = 57

// Notice is what the page and the notice part tell the recipient. Every
// field is shown to the recipient; none of it is secret, and the subject is
// left out on purpose.
type Notice struct {
	// From is the sender as the From header shows it (display name and
	// address), Sender the envelope sender, used when From is empty.
	From   string
	Sender string
	// Date is when the message was sealed.
	Date time.Time
	// PortalURL is the portal's public base URL, without a trailing slash.
	PortalURL string
	// Brand is the sender's organisation's look; zero: neutral. Check it
	// first: WriteBody and WritePage refuse one that does not pass.
	Brand Brand
	KeyID KeyID
	// Boundary is the multipart boundary of the replacement body; the
	// notice's alternative part uses "alt-" + Boundary.
	Boundary string
	// Link, when set, is the phone link: a URL of the reading site that
	// leads to the same reading flow from a copy of the envelope kept on
	// the server until LinkUntil. The notice then explains both ways in.
	Link      string
	LinkUntil time.Time
	// Lang is the language of the notice and the page, the sender's
	// (catalog.English when zero).
	Lang catalog.Lang
	// LF writes bare LF line ends instead of CRLF, for a consumer that
	// wants the MTA's local form (go-milter's body replacement turns CRLF
	// into LF itself, at a cost of a pass over the whole body).
	LF bool
}

// eol is the line end the notice's writers use.
func (n Notice) eol() string {
	if n.LF {
		return "\n"
	}
	return "\r\n"
}

// pageData is what the templates are executed with, once per message
// (Notice.data).
type pageData struct {
	Lang       catalog.Lang
	From       string
	FromPieces []string // From cut for the page's short lines
	Date       string
	PortalURL  string
	OpenURL    string
	PortalHost string
	Version    int
	KeyID      string
	Link       string // the phone link, or empty
	LinkUntil  string
	// The brand (Brand.data).
	Org     string
	Accent  template.CSS
	Logo    template.URL
	Support string
}

// sender is the sender as the page and the notice show it.
func (n Notice) sender() string {
	from := n.From
	if strings.TrimSpace(from) == "" {
		from = n.Sender
	}
	return shorten(from, 200)
}

// shorten keeps lines of the page bounded whatever a sender puts in From,
// and makes it valid UTF-8 without control characters, as the notice's
// charset=utf-8 text parts promise.
func shorten(s string, max int) string {
	if len(s) <= max && plainASCII(s) {
		return s // what the rest would make of it
	}
	s = strings.Join(strings.Fields(s), " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

// plainASCII says whether s is printable ASCII words separated by single
// spaces, which shorten leaves as they are: no whitespace to collapse, no
// control character, no more characters than bytes.
func plainASCII(s string) bool {
	if s != "" && (s[0] == ' ' || s[len(s)-1] == ' ') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == ' ' && s[i+1] == ' ' {
			return false
		}
	}
	return true
}

// nextPiece cuts from s a piece whose escaped, 7-bit form in the page is
// at most width characters, after a space where it can, so that no sender
// makes a long line. The page joins the pieces with <wbr> tags broken
// inside the tag, which adds nothing to what the recipient sees.
func nextPiece(s string, width int) (piece, rest string) {
	w, cut, afterSpace := 0, len(s), 0
	for i, r := range s {
		w += escapedWidth(r)
		if w > width && i > 0 {
			cut = i
			break
		}
		if r == ' ' {
			afterSpace = i + 1
		}
	}
	if cut < len(s) && afterSpace > 0 {
		cut = afterSpace
	}
	return s[:cut], s[cut:]
}

// escapedWidth bounds the length of r in the page: html/template escapes
// NUL and "&'+<> to at most 8 characters, toASCII writes a character
// reference for anything else outside ASCII (and for invalid UTF-8).
func escapedWidth(r rune) int {
	switch {
	case r >= utf8.RuneSelf:
		n := 3 // "&#" and ";"
		for ; r > 0; r /= 10 {
			n++
		}
		return n
	case r >= 0 && strings.ContainsRune("\x00\"&'+<>", r):
		return 8
	}
	return 1
}

// envelopeMark is where the base64 envelope goes: just before the
// textarea's end tag. Template data is escaped, so no sender can forge it.
const envelopeMark = "</textarea>"

// pageSkeleton is SecureMessageATT.html; its words are the catalogue's.
const pageSkeleton = `<!DOCTYPE html>
<html lang="{{.Lang}}">
<head>
<meta charset="us-ascii">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{if .Org}}{{template "page.title_from" .}}{{else}}{{template "page.title" .}}{{end}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:#f4f5f7;color:#1d2330;margin:0;padding:1rem;line-height:1.5}
main{max-width:36rem;margin:2rem auto;background:#fff;border-radius:8px;
padding:1.5rem;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.4rem;margin-top:0}
button{font-size:1.1rem;padding:.8rem 1.4rem;border:0;border-radius:6px;
background:{{.Accent}};color:#fff;cursor:pointer;width:100%}
{{if or .Org .Logo}}.brand{display:flex;align-items:center;gap:.8rem;margin:0 0 1rem}
.brand img{max-height:3rem;max-width:10rem}
.org{font-weight:600;font-size:1.1rem}
{{end -}}
.meta{color:#4a5264}
.check{font-size:.9rem;color:#4a5264;border-top:1px solid #dde;
margin-top:1.5rem}
code,.meta strong{overflow-wrap:anywhere}
</style>
</head>
<body>
<main>
{{if or .Org .Logo}}<div class="brand">{{if .Logo}}<img src="{{.Logo}}" alt="{{if .Org}}{{template "page.logo_alt_org" .}}{{else}}{{template "page.logo_alt" .}}{{end}}">{{end}}{{with .Org}}<span class="org">{{.}}</span>{{end}}</div>
{{end}}<h1>{{if .Org}}{{template "page.heading_from" .}}{{else}}{{template "page.heading" .}}{{end}}</h1>
<p class="meta">{{template "page.from" .}} <strong>{{range .FromPieces}}<wbr
>{{.}}{{end}}</strong><br>
{{template "page.sent" .}}</p>
<p>{{template "page.explain" .}}</p>
<form method="post" enctype="multipart/form-data"
action="{{.OpenURL}}">
<input type="hidden" name="v" value="{{.Version}}">
<input type="hidden" name="id" value="{{.KeyID}}">
<textarea name="envelope" hidden readonly>
</textarea>
<button type="submit">{{template "page.button" .}}</button>
</form>
<div class="check">
<p>{{template "page.check" .}}</p>
<p>{{template "page.keep" .}}</p>
{{with .Support}}<p>{{.}}</p>
{{end}}</div>
</main>
</body>
</html>
`

// noticeSkeleton is the notice's HTML part.
const noticeSkeleton = `<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"></head>
<body style="font-family:sans-serif;line-height:1.5">
{{with .Org}}<p>{{template "notice.org" $}}</p>
{{end}}<p>{{template "notice.sent_you" .}}</p>{{if .Link}}
<p>{{template "notice.two_ways" .}}</p>
<p>{{template "notice.computer" .}}</p>
<p>{{template "notice.phone_link" .}}<br>
<a href="{{.Link}}">{{.Link}}</a><br>
{{template "notice.link_until" .}}</p>
<p>{{template "notice.either_way" .}}</p>{{else}}
<p>{{template "notice.open" .}}</p>
<p>{{template "notice.phone" .}}</p>{{end}}
<p>{{template "notice.genuine" .}}</p>
{{with .Support}}<p>{{.}}</p>
{{end}}</body></html>
`

// noticeTextSkeleton is the notice's text part.
const noticeTextSkeleton = `{{with .Org}}{{template "text.org" $}}

{{end}}{{if .Link}}{{template "text.notice_link" .}}{{else}}{{template "text.notice" .}}{{end}}{{with .Support}}
{{.}}
{{end}}`

// languageTemplates are the page and the notice in one language.
type languageTemplates struct {
	page, notice *template.Template
	text         *texttemplate.Template
}

// templates holds every shipped language's, parsed once.
var templates = func() map[catalog.Lang]languageTemplates {
	all := make(map[catalog.Lang]languageTemplates, len(catalog.Languages))
	for _, l := range catalog.Languages {
		page := template.Must(template.New("page").Parse(pageSkeleton))
		notice := template.Must(template.New("notice").Parse(noticeSkeleton))
		text := texttemplate.Must(texttemplate.New("text").Parse(noticeTextSkeleton))
		for _, err := range []error{catalog.AddHTML(page, l, "page.", "notice."), catalog.AddHTML(notice, l, "page.", "notice."), catalog.AddText(text, l, "text.org", "text.notice")} {
			if err != nil {
				panic(err)
			}
		}
		all[l] = languageTemplates{page: page, notice: notice, text: text}
	}
	return all
}()

// templatesFor returns l's templates; a language that is not shipped
// gets English.
func templatesFor(l catalog.Lang) languageTemplates {
	if t, ok := templates[l]; ok {
		return t
	}
	return templates[catalog.English]
}

// data is what the templates are executed with for n, or the error that
// says n's portal URL or brand is unusable.
func (n Notice) data() (pageData, error) {
	u, err := url.Parse(n.PortalURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return pageData{}, fmt.Errorf("envelope: portal URL %q is not an http(s) URL", n.PortalURL)
	}
	from := n.sender()
	lang := n.Lang
	if _, ok := templates[lang]; !ok {
		lang = catalog.English
	}
	d := pageData{
		Lang:       lang,
		From:       from,
		Date:       catalog.Date(lang, n.Date),
		PortalURL:  strings.TrimSuffix(n.PortalURL, "/"),
		OpenURL:    strings.TrimSuffix(n.PortalURL, "/") + "/open",
		PortalHost: u.Host,
		Version:    Version,
		KeyID:      n.KeyID.String(),
	}
	if n.Link != "" {
		l, err := url.Parse(n.Link)
		if err != nil || l.Scheme != u.Scheme || l.Host != u.Host {
			return pageData{}, fmt.Errorf("envelope: the link %q is not on the portal %q", n.Link, n.PortalURL)
		}
		d.Link, d.LinkUntil = n.Link, catalog.Date(lang, n.LinkUntil)
	}
	for s := from; s != ""; {
		var piece string
		piece, s = nextPiece(s, 60)
		d.FromPieces = append(d.FromPieces, piece)
	}
	if err := n.Brand.Check(); err != nil {
		return pageData{}, err
	}
	n.Brand.data(&d)
	return d, nil
}

// lines gives s, written with LF or CRLF line ends, the notice's.
func (n Notice) lines(s string) string { return lineEnds(s, n.eol()) }

// WritePage writes SecureMessageATT.html with the envelope read from env.
func WritePage(w io.Writer, n Notice, env io.Reader) error {
	d, err := n.data()
	if err != nil {
		return err
	}
	return writePage(w, n, d, env)
}

// writePage writes the page: its head up to the envelope, the envelope,
// the rest, in three writes (the envelope's in blocks).
func writePage(w io.Writer, n Notice, d pageData, env io.Reader) error {
	var buf bytes.Buffer
	if err := templatesFor(d.Lang).page.Execute(&buf, d); err != nil {
		return fmt.Errorf("envelope: render page: %w", err)
	}
	page := toASCII(buf.String())
	cut := strings.Index(page, envelopeMark)
	if cut < 0 {
		return fmt.Errorf("envelope: page template lost its envelope mark")
	}
	if _, err := io.WriteString(w, n.lines(page[:cut])); err != nil {
		return err
	}
	if err := writeArmor(w, env, n.eol()); err != nil {
		return err
	}
	_, err := io.WriteString(w, n.lines(page[cut:]))
	return err
}

// ContentType is the Content-Type header value of a replacement body
// written with boundary.
func ContentType(boundary string) string {
	return `multipart/mixed; boundary="` + boundary + `"`
}

// WriteBody writes the replacement body: the notice and the page carrying
// the envelope read from env. Its Content-Type is ContentType(n.Boundary).
func WriteBody(w io.Writer, n Notice, env io.Reader) error {
	d, err := n.data()
	if err != nil {
		return err
	}
	if n.Boundary == "" || len(n.Boundary) > 60 {
		return fmt.Errorf("envelope: boundary must be 1 to 60 characters")
	}
	var html bytes.Buffer
	t := templatesFor(d.Lang)
	if err := t.notice.Execute(&html, d); err != nil {
		return fmt.Errorf("envelope: render notice: %w", err)
	}
	var text strings.Builder
	if err := t.text.Execute(&text, d); err != nil {
		return fmt.Errorf("envelope: render notice: %w", err)
	}
	outer, alt := n.Boundary, "alt-"+n.Boundary
	var head bytes.Buffer
	fmt.Fprintf(&head, "This is a securemail encrypted message in MIME format.\r\n\r\n")
	fmt.Fprintf(&head, "--%s\r\nContent-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n", outer, alt)
	for _, part := range []struct{ ctype, body string }{
		{"text/plain", text.String()},
		{"text/html", html.String()},
	} {
		fmt.Fprintf(&head, "--%s\r\nContent-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", alt, part.ctype)
		qp := quotedprintable.NewWriter(&head)
		if _, err := qp.Write([]byte(crlf(part.body))); err != nil {
			return err
		}
		if err := qp.Close(); err != nil {
			return err
		}
		head.WriteString("\r\n")
	}
	fmt.Fprintf(&head, "--%s--\r\n\r\n", alt)
	fmt.Fprintf(&head, "--%s\r\nContent-Type: text/html; charset=us-ascii; name=\"%s\"\r\n", outer, PageFileName)
	fmt.Fprintf(&head, "Content-Disposition: attachment; filename=\"%s\"\r\n", PageFileName)
	fmt.Fprintf(&head, "Content-Transfer-Encoding: 7bit\r\n\r\n")
	if _, err := io.WriteString(w, n.lines(head.String())); err != nil {
		return err
	}
	if err := writePage(w, n, d, env); err != nil {
		return err
	}
	_, err = io.WriteString(w, n.lines("\r\n--"+outer+"--\r\n"))
	return err
}

// WriteArmor writes everything read from r as base64 in 76-character lines,
// each ended by CRLF.
func WriteArmor(w io.Writer, r io.Reader) error {
	return writeArmor(w, r, "\r\n")
}

// armorBlockLines is how many lines writeArmor writes at a time: 840
// lines of 78 bytes (76 and CRLF) are 65 520 bytes, so a block with either
// line end fits in one 64 KiB body piece of the milter's, which can pass it
// on without copying it.
const armorBlockLines = 840

func writeArmor(w io.Writer, r io.Reader, eol string) error {
	lines := armorBlockLines
	if sized, ok := r.(interface{ Len() int }); ok {
		// A small envelope in memory needs small buffers.
		lines = min(lines, sized.Len()/armorLineBytes+1)
	}
	in := make([]byte, armorLineBytes*lines)
	out := make([]byte, 0, (armorLineChars+len(eol))*lines)
	for {
		n, err := io.ReadFull(r, in)
		if n > 0 {
			out = appendArmorLines(out[:0], in[:n], eol)
			if _, werr := w.Write(out); werr != nil {
				return werr
			}
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return nil
		default:
			return err
		}
	}
}

// toASCII replaces every non-ASCII character by a numeric character
// reference, so the page stays 7-bit clean whatever the sender's name is.
func toASCII(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s // the usual page: nothing to replace, nothing to copy
	}
	var b strings.Builder
	b.Grow(len(s) + 64)
	b.WriteString(s[:i])
	for _, r := range s[i:] {
		if r < utf8.RuneSelf {
			b.WriteByte(byte(r))
			continue
		}
		b.WriteString("&#")
		b.WriteString(strconv.Itoa(int(r)))
		b.WriteByte(';')
	}
	return b.String()
}

// crlf turns the LF line ends of the templates into CRLF.
func crlf(s string) string { return lineEnds(s, "\r\n") }

// lineEnds ends every line of s with eol, whether it ended with LF or
// CRLF; a CR alone stays. One pass, and none at all when s already ends
// its lines with CRLF and that is asked for: a page is written per
// message, so this runs on every tagged one.
func lineEnds(s, eol string) string {
	if eol == "\r\n" && !hasBareLF(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + strings.Count(s, "\n"))
	start := 0
	for i := strings.IndexByte(s, '\n'); i >= 0; i = strings.IndexByte(s[start:], '\n') {
		i += start
		end := i
		if end > start && s[end-1] == '\r' {
			end--
		}
		b.WriteString(s[start:end])
		b.WriteString(eol)
		start = i + 1
	}
	b.WriteString(s[start:])
	return b.String()
}

// hasBareLF reports whether some LF in s is not preceded by CR.
func hasBareLF(s string) bool {
	for i := strings.IndexByte(s, '\n'); i >= 0; {
		if i == 0 || s[i-1] != '\r' {
			return true
		}
		next := strings.IndexByte(s[i+1:], '\n')
		if next < 0 {
			return false
		}
		i += 1 + next
	}
	return false
}
