package envelope

import (
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
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

// pageData is what the templates are executed with: by newLayout, with
// marks for the values that change, and by the template path that
// page_ref_test.go keeps as the reference.
type pageData struct {
	From       string
	FromPieces []string // From cut for the page's short lines
	Date       string
	PortalURL  string
	OpenURL    string
	PortalHost string
	Version    int
	KeyID      string
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
	case r < utf8.RuneSelf && r >= 0 && htmlEscapes[r] != "":
		return 8
	}
	return 1
}

// envelopeMark is where the base64 envelope goes: just before the
// textarea's end tag. Template data is escaped, so no sender can forge it.
const envelopeMark = "</textarea>"

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="us-ascii">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Secure message{{with .Org}} from {{.}}{{end}}</title>
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
{{if or .Org .Logo}}<div class="brand">{{if .Logo}}<img src="{{.Logo}}" alt="{{if .Org}}{{.Org}} logo{{else}}Sender's logo{{end}}">{{end}}{{with .Org}}<span class="org">{{.}}</span>{{end}}</div>
{{end}}<h1>You have received a secure message{{with .Org}} from {{.}}{{end}}</h1>
<p class="meta">From: <strong>{{range .FromPieces}}<wbr
>{{.}}{{end}}</strong><br>
Sent: {{.Date}}</p>
<p>The message is encrypted. To read it, click the button below. Your
browser opens the secure reading site of the sender's mail service, where you
sign in or create an account with this email address.</p>
<form method="post" enctype="multipart/form-data"
action="{{.OpenURL}}">
<input type="hidden" name="v" value="{{.Version}}">
<input type="hidden" name="id" value="{{.KeyID}}">
<textarea name="envelope" hidden readonly>
</textarea>
<button type="submit">Click to read message</button>
</form>
<div class="check">
<p><strong>How to check that this is genuine.</strong> After you click, the
address bar of your browser must start with
<code>{{.PortalURL}}/</code>
(the site <code>{{.PortalHost}}</code>).
If it shows any other address, close the page and do not type your
password.</p>
<p>This file never asks for your password. Keep it: it is the only copy of the
encrypted message, and it can be read only on that site, only by the people it
was sent to, and only until the sender's service deletes its key.</p>
{{with .Support}}<p>{{.}}</p>
{{end}}</div>
</main>
</body>
</html>
`))

var noticeHTMLTemplate = template.Must(template.New("notice").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"></head>
<body style="font-family:sans-serif;line-height:1.5">
{{with .Org}}<p>Secure message from <strong>{{.}}</strong></p>
{{end}}<p><strong>{{.From}}</strong> sent you a secure message.</p>
<p>To read it, open the attachment <strong>SecureMessageATT.html</strong> and
click <strong>Click to read message</strong>. You will sign in, or create an
account with this email address, at <strong>{{.PortalURL}}</strong>.</p>
<p>On a phone or tablet: if the attachment does not open, open this email on
a computer, or save the attachment to your files and open it in your
browser.</p>
<p>To check that the message is genuine, make sure the reading site's address
starts with {{.PortalURL}}/ before you type your password.</p>
{{with .Support}}<p>{{.}}</p>
{{end}}</body></html>
`))

const noticeText = `%s sent you a secure message.

To read it, open the attachment SecureMessageATT.html and click
"Click to read message". You will sign in, or create an account with
this email address, at %s

On a phone or tablet: if the attachment does not open, open this email
on a computer, or save the attachment to your files and open it in
your browser.

To check that the message is genuine, make sure the reading site's
address starts with %s/ before you type your password.
`

// WritePage writes SecureMessageATT.html with the envelope read from env.
func WritePage(w io.Writer, n Notice, env io.Reader) error {
	l, err := layoutFor(n.PortalURL, n.Brand)
	if err != nil {
		return err
	}
	bb := bodyBufferPool.Get().(*bodyBuffers)
	defer putBodyBuffers(bb)
	return l.writePage(w, n, n.sender(), env, bb)
}

// writePage writes the page: its head up to the envelope, the envelope,
// the rest, in three writes (the envelope's in blocks).
func (l *layout) writePage(w io.Writer, n Notice, from string, env io.Reader, bb *bodyBuffers) error {
	f := 0
	if n.LF {
		f = 1
	}
	// The values hold no CR or LF (shorten makes the sender one line), so
	// they need no line-end change.
	b := append(bb.a[:0], l.pageStart[f]...)
	for s := from; s != ""; {
		var piece string
		piece, s = nextPiece(s, 60)
		b = append(b, l.piecePrefix[f]...)
		b = appendHTMLASCII(b, piece)
	}
	b = append(b, l.afterFrom[f]...)
	b = appendDate(b, n.Date)
	b = append(b, l.afterDate[f]...)
	b = hex.AppendEncode(b, n.KeyID[:]) // KeyID.String, which needs no escape
	b = append(b, l.afterKeyID[f]...)
	bb.a = b
	if _, err := w.Write(b); err != nil {
		return err
	}
	if err := writeArmorBuffers(w, env, n.eol(), bb); err != nil {
		return err
	}
	_, err := io.WriteString(w, l.tail[f])
	return err
}

// appendDate appends t in the page's form, escaped and 7-bit.
func appendDate(dst []byte, t time.Time) []byte {
	n := len(dst)
	dst = t.UTC().AppendFormat(dst, dateLayout)
	// Names, digits, spaces, commas, colons and a year's minus sign: no
	// character to escape. Were there one, this escapes it.
	for _, c := range dst[n:] {
		if c >= utf8.RuneSelf || htmlEscapes[c] != "" {
			return appendHTMLASCII(dst[:n], string(dst[n:]))
		}
	}
	return dst
}

// ContentType is the Content-Type header value of a replacement body
// written with boundary.
func ContentType(boundary string) string {
	return `multipart/mixed; boundary="` + boundary + `"`
}

// WriteBody writes the replacement body: the notice and the page carrying
// the envelope read from env. Its Content-Type is ContentType(n.Boundary).
func WriteBody(w io.Writer, n Notice, env io.Reader) error {
	l, err := layoutFor(n.PortalURL, n.Brand)
	if err != nil {
		return err
	}
	if n.Boundary == "" || len(n.Boundary) > 60 {
		return fmt.Errorf("envelope: boundary must be 1 to 60 characters")
	}
	from := n.sender()
	bb := bodyBufferPool.Get().(*bodyBuffers)
	defer putBodyBuffers(bb)

	// The notice, written with CRLF line ends and changed to the notice's
	// where that changes anything: in LF form, or for a boundary with a
	// CR or LF of its own.
	outer := n.Boundary
	lines := n.LF || strings.ContainsAny(outer, "\r\n")
	b := append(bb.a[:0], "This is a securemail encrypted message in MIME format.\r\n\r\n--"...)
	b = append(b, outer...)
	b = append(b, "\r\nContent-Type: multipart/alternative;\r\n boundary=\"alt-"...)
	b = append(b, outer...)
	b = append(b, "\"\r\n\r\n--alt-"...)
	b = append(b, outer...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"...)
	v := append(bb.b[:0], from...)
	b = l.text.append(b, v)
	b = append(b, "\r\n--alt-"...)
	b = append(b, outer...)
	b = append(b, "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"...)
	v = appendHTML(v[:0], from)
	b = l.html.append(b, v)
	b = append(b, "\r\n--alt-"...)
	b = append(b, outer...)
	b = append(b, "--\r\n\r\n--"...)
	b = append(b, outer...)
	b = append(b, "\r\nContent-Type: text/html; charset=us-ascii; name=\""+PageFileName+"\"\r\n"+
		"Content-Disposition: attachment; filename=\""+PageFileName+"\"\r\n"+
		"Content-Transfer-Encoding: 7bit\r\n\r\n"...)
	if lines {
		v, b = b, appendLines(v[:0], b, n.LF)
	}
	bb.a, bb.b = b, v
	if _, err := w.Write(b); err != nil {
		return err
	}

	if err := l.writePage(w, n, from, env, bb); err != nil {
		return err
	}

	b = append(bb.a[:0], "\r\n--"...)
	b = append(b, outer...)
	b = append(b, "--\r\n"...)
	if lines {
		bb.b, b = b, appendLines(bb.b[:0], b, n.LF)
	}
	bb.a = b
	_, err = w.Write(b)
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
	return writeArmorBuffers(w, r, eol, new(bodyBuffers))
}

// writeArmorBuffers is writeArmor with its buffers in bb.in and bb.out.
func writeArmorBuffers(w io.Writer, r io.Reader, eol string, bb *bodyBuffers) error {
	lines := armorBlockLines
	if sized, ok := r.(interface{ Len() int }); ok {
		// A small envelope in memory needs small buffers.
		lines = min(lines, sized.Len()/armorLineBytes+1)
	}
	if n := armorLineBytes * lines; cap(bb.in) < n {
		bb.in = make([]byte, n)
	}
	if n := (armorLineChars + len(eol)) * lines; cap(bb.out) < n {
		bb.out = make([]byte, 0, n)
	}
	in, out := bb.in[:armorLineBytes*lines], bb.out
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
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "&#%d;", r)
		}
	}
	return b.String()
}

// crlf turns the LF line ends of the templates into CRLF.
func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}
