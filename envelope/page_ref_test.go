package envelope

import (
	"bytes"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// The reference: WriteBody and WritePage as they were before the layouts
// (layout.go), executing the templates for every body. The layouts must
// write exactly what these write, write for write.

func refLines(n Notice, s string) string {
	s = refCRLF(s)
	if n.LF {
		s = strings.ReplaceAll(s, "\r\n", "\n")
	}
	return s
}

func refData(n Notice) (pageData, error) {
	u, err := url.Parse(n.PortalURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return pageData{}, fmt.Errorf("envelope: portal URL %q is not an http(s) URL", n.PortalURL)
	}
	from := n.From
	if strings.TrimSpace(from) == "" {
		from = n.Sender
	}
	from = refShorten(from, 200)
	d := pageData{
		From:       from,
		FromPieces: refPieces(from, 60),
		Date:       n.Date.UTC().Format("Monday, 2 January 2006 at 15:04 UTC"),
		PortalURL:  strings.TrimSuffix(n.PortalURL, "/"),
		OpenURL:    strings.TrimSuffix(n.PortalURL, "/") + "/open",
		PortalHost: u.Host,
		Version:    Version,
		KeyID:      n.KeyID.String(),
	}
	if err := n.Brand.Check(); err != nil {
		return pageData{}, err
	}
	n.Brand.data(&d)
	return d, nil
}

func refShorten(s string, max int) string {
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

func refPieces(s string, width int) []string {
	var out []string
	for s != "" {
		w, cut, afterSpace := 0, len(s), 0
		for i, r := range s {
			w += refEscapedWidth(r)
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
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return out
}

func refEscapedWidth(r rune) int {
	switch {
	case r >= utf8.RuneSelf:
		return len(fmt.Sprintf("&#%d;", r))
	case r == 0 || strings.ContainsRune(`"&'+<>`, r):
		return 8
	}
	return 1
}

func refToASCII(s string) string {
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

func refCRLF(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

func writePageRef(w io.Writer, n Notice, env io.Reader) error {
	d, err := refData(n)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		return fmt.Errorf("envelope: render page: %w", err)
	}
	page := refToASCII(buf.String())
	cut := strings.Index(page, envelopeMark)
	if cut < 0 {
		return fmt.Errorf("envelope: page template lost its envelope mark")
	}
	head, tail := page[:cut], page[cut:]
	if _, err := io.WriteString(w, refLines(n, head)); err != nil {
		return err
	}
	if err := writeArmor(w, env, n.eol()); err != nil {
		return err
	}
	_, err = io.WriteString(w, refLines(n, tail))
	return err
}

func writeBodyRef(w io.Writer, n Notice, env io.Reader) error {
	d, err := refData(n)
	if err != nil {
		return err
	}
	if n.Boundary == "" || len(n.Boundary) > 60 {
		return fmt.Errorf("envelope: boundary must be 1 to 60 characters")
	}
	var html bytes.Buffer
	if err := noticeHTMLTemplate.Execute(&html, d); err != nil {
		return fmt.Errorf("envelope: render notice: %w", err)
	}
	text := noticeTextFor(d)

	outer, alt := n.Boundary, "alt-"+n.Boundary
	var head bytes.Buffer
	fmt.Fprintf(&head, "This is a securemail encrypted message in MIME format.\r\n\r\n")
	fmt.Fprintf(&head, "--%s\r\nContent-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n", outer, alt)
	for _, part := range []struct{ ctype, body string }{
		{"text/plain", text},
		{"text/html", html.String()},
	} {
		fmt.Fprintf(&head, "--%s\r\nContent-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", alt, part.ctype)
		qp := quotedprintable.NewWriter(&head)
		if _, err := qp.Write([]byte(refCRLF(part.body))); err != nil {
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
	if _, err := io.WriteString(w, refLines(n, head.String())); err != nil {
		return err
	}
	if err := writePageRef(w, n, env); err != nil {
		return err
	}
	_, err = io.WriteString(w, refLines(n, "\r\n--"+outer+"--\r\n"))
	return err
}

// writeLog keeps each write apart.
type writeLog struct{ writes [][]byte }

func (l *writeLog) Write(p []byte) (int, error) {
	l.writes = append(l.writes, bytes.Clone(p))
	return len(p), nil
}

// checkMatchesTemplate writes n's body and page as the reference does and
// as WriteBody and WritePage do, twice (the second from the cached
// layout), in both line-end forms, and fails on any difference: in the
// bytes, in how they are cut into writes, in the error.
func checkMatchesTemplate(t *testing.T, n Notice, env []byte) {
	t.Helper()
	for _, lf := range []bool{false, true} {
		n.LF = lf
		for _, f := range []struct {
			name      string
			ref, fast func(io.Writer, Notice, io.Reader) error
		}{
			{"WriteBody", writeBodyRef, WriteBody},
			{"WritePage", writePageRef, WritePage},
		} {
			var want writeLog
			wantErr := f.ref(&want, n, bytes.NewReader(env))
			for round := range 2 {
				var got writeLog
				err := f.fast(&got, n, bytes.NewReader(env))
				if fmt.Sprint(err) != fmt.Sprint(wantErr) {
					t.Fatalf("%s (LF %v, round %d) of %+v: error %v, template path %v", f.name, lf, round, n, err, wantErr)
				}
				g, w := bytes.Join(got.writes, nil), bytes.Join(want.writes, nil)
				if !bytes.Equal(g, w) {
					i := 0
					for i < min(len(g), len(w)) && g[i] == w[i] {
						i++
					}
					t.Fatalf("%s (LF %v, round %d) of %+v differs from the template path at byte %d:\n got %q\nwant %q",
						f.name, lf, round, n, i, g[max(0, i-40):min(len(g), i+40)], w[max(0, i-40):min(len(w), i+40)])
				}
				if len(got.writes) != len(want.writes) {
					t.Fatalf("%s (LF %v) of %+v: %d writes, template path %d", f.name, lf, n, len(got.writes), len(want.writes))
				}
				for i := range got.writes {
					if len(got.writes[i]) != len(want.writes[i]) {
						t.Fatalf("%s (LF %v) of %+v: write %d is %d bytes, template path's %d", f.name, lf, n, i, len(got.writes[i]), len(want.writes[i]))
					}
				}
			}
		}
	}
}

// writeBodySeed is one input of FuzzWriteBodyMatchesTemplate.
type writeBodySeed struct {
	from, sender string
	unix         int64
	portalURL    string
	keyID        []byte
	boundary     string
	env          []byte
}

func (s writeBodySeed) notice() Notice {
	n := Notice{From: s.from, Sender: s.sender, Date: time.Unix(s.unix, 0), PortalURL: s.portalURL, Boundary: s.boundary}
	copy(n.KeyID[:], s.keyID)
	return n
}

func (s writeBodySeed) corpusFile() []byte {
	return fmt.Appendf(nil, "go test fuzz v1\nstring(%q)\nstring(%q)\nint64(%d)\nstring(%q)\n[]byte(%q)\nstring(%q)\n[]byte(%q)\n",
		s.from, s.sender, s.unix, s.portalURL, s.keyID, s.boundary, s.env)
}

// writeBodySeeds are the committed seeds of FuzzWriteBodyMatchesTemplate:
// every sender of fromCases, then portal URLs, boundaries and dates at
// and past the edges.
func writeBodySeeds(t testing.TB) map[string]writeBodySeed {
	env := seal(t, []byte(goldenPayload), testDEK, testHeader(), 0)
	base := writeBodySeed{
		from: "Alice Example <alice@example.com>", sender: "alice@example.com", unix: testDate.Unix(),
		portalURL: testPortal, keyID: testKeyID[:], boundary: testBoundary, env: env,
	}
	seeds := map[string]writeBodySeed{"golden": base}
	for _, tc := range fromCases {
		s := base
		s.from = tc.from
		if len(s.from) > 1000 {
			s.from = s.from[:1000] // long enough to be cut, short enough for the mutator
		}
		seeds["from-"+strings.ReplaceAll(tc.name, " ", "-")] = s
	}
	for name, from := range map[string]string{
		"sender-only":   "",
		"all-escapes":   "\x00\"&'+<>\x00",
		"spaces-around": "  Alice   Example\u00a0\u0085<a@b>  ",
		"non-ascii-cut": strings.Repeat("a", 59) + "é" + strings.Repeat("b ", 40),
		"qp-edges":      strings.Repeat("x", 60) + " \t=" + strings.Repeat("=", 30) + " ",
	} {
		s := base
		s.from = from
		if name == "sender-only" {
			s.sender = "<évil@example.com> & \x00 Co"
		}
		seeds["from-"+name] = s
	}
	for name, u := range map[string]string{
		"slash":        testPortal + "/",
		"query":        "https://secure.example.com/mail/?a=1&b=<x>'\"+;c=%41#frag",
		"idn":          "https://bücher.example/portal",
		"punycode":     "https://xn--bcher-kva.example",
		"ipv6":         "http://[::1]:8443/x",
		"userinfo":     "https://user:pa%20ss@secure.example.com/p;q",
		"upper":        "HTTPS://SECURE.EXAMPLE.COM",
		"invalid-utf8": "https://\xffsecure.example.com/\xe2\x82",
		"long":         "https://secure.example.com/" + strings.Repeat("x/", 100),
		"spaces":       "https://secure.example.com/a b",
		"bad-scheme":   "ftp://secure.example.com",
		"javascript":   "javascript:alert(1)",
		"no-host":      "https://",
		"empty":        "",
		"control":      "https://secure.example.com/\x01",
		"bad-escape":   "https://secure.example.com/%zz",
	} {
		s := base
		s.portalURL = u
		seeds["url-"+name] = s
	}
	for name, b := range map[string]string{
		"empty":    "",
		"61":       strings.Repeat("b", 61),
		"60":       strings.Repeat("b", 60),
		"crlf":     "a\r\nb",
		"cr-end":   "a\r",
		"lf-start": "\nb",
		"verbs":    "%s%d%%",
		"unicode":  "é\x00\"",
	} {
		s := base
		s.boundary = b
		seeds["boundary-"+name] = s
	}
	for name, unix := range map[string]int64{
		"zero-time": time.Time{}.Unix(),
		"epoch":     0,
		"year-0":    time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix(),
		"year-9999": time.Date(9999, 12, 31, 23, 59, 0, 0, time.UTC).Unix(),
		"year-10k":  time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC).Unix(),
	} {
		s := base
		s.unix = unix
		seeds["date-"+name] = s
	}
	s := base
	s.env, s.keyID = nil, nil
	seeds["empty-envelope"] = s
	return seeds
}

// FuzzWriteBodyMatchesTemplate: for any notice and envelope, WriteBody and
// WritePage write what the template path writes, byte for byte and write
// for write, and fail with the same error.
func FuzzWriteBodyMatchesTemplate(f *testing.F) {
	f.Fuzz(func(t *testing.T, from, sender string, unix int64, portalURL string, keyID []byte, boundary string, env []byte) {
		checkMatchesTemplate(t, writeBodySeed{from, sender, unix, portalURL, keyID, boundary, env}.notice(), env)
	})
}

// TestWriteBodyMatchesTemplate runs the seeds and every sender of
// fromCases (long ones whole) with each of a few portal URLs.
func TestWriteBodyMatchesTemplate(t *testing.T) {
	seeds := writeBodySeeds(t)
	for name, s := range seeds {
		t.Run(name, func(t *testing.T) { checkMatchesTemplate(t, s.notice(), s.env) })
	}
	env := seal(t, testPayload("match", 3000), testDEK, testHeader(), 0)
	for _, tc := range fromCases {
		for _, u := range []string{testPortal, seeds["url-query"].portalURL, seeds["url-idn"].portalURL, seeds["url-invalid-utf8"].portalURL} {
			n := testNotice(tc.from)
			n.PortalURL = u
			checkMatchesTemplate(t, n, env)
		}
	}
}

// TestWriteBodyLayoutCache runs many portal URLs through the layout cache,
// past its bound, and back.
func TestWriteBodyLayoutCache(t *testing.T) {
	env := seal(t, []byte(goldenPayload), testDEK, testHeader(), 0)
	for round := range 2 {
		for i := range maxLayouts + 3 {
			n := testNotice(fmt.Sprintf("Sender %d <s%d@example.com>", i, i))
			n.PortalURL = fmt.Sprintf("https://portal-%d.example.com/%d", i%(maxLayouts+2), round)
			checkMatchesTemplate(t, n, env)
		}
	}
}

// FuzzQuotedPrintable: qpEncoder writes what mime/quotedprintable writes,
// however the input is cut into writes.
func FuzzQuotedPrintable(f *testing.F) {
	f.Add([]byte("a line\r\nanother \t\r\n"), uint8(3))
	f.Add([]byte(strings.Repeat("x", 74)+"=  \r\r\n\n\r\x00\xff"), uint8(0))
	f.Fuzz(func(t *testing.T, src []byte, cut uint8) {
		var want bytes.Buffer
		w := quotedprintable.NewWriter(&want)
		w.Write(src)
		w.Close()
		var e qpEncoder
		c := min(int(cut), len(src))
		got := qpWrite(&e, nil, src[:c])
		got = qpWrite(&e, got, string(src[c:]))
		got = e.close(got)
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("qpEncoder(%q) = %q, quotedprintable %q", src, got, want.Bytes())
		}
	})
}

// FuzzLines: appendLines changes line ends as crlf and Notice.LF did.
func FuzzLines(f *testing.F) {
	f.Add("a\nb\r\nc\r\r\n\n\r")
	f.Fuzz(func(t *testing.T, s string) {
		for _, lf := range []bool{false, true} {
			if got, want := string(appendLines(nil, []byte(s), lf)), refLines(Notice{LF: lf}, s); got != want {
				t.Fatalf("appendLines(%q, LF %v) = %q, want %q", s, lf, got, want)
			}
		}
	})
}

// TestEscapesMatchTemplate checks the escapers, every ASCII byte and a few
// others, against html/template's own in the page's and the notice's
// contexts, and the shortcuts of shorten and escapedWidth.
func TestEscapesMatchTemplate(t *testing.T) {
	var s strings.Builder
	for c := range 0x80 {
		s.WriteByte(byte(c))
	}
	s.WriteString("é山🦊\uFFFD\xff\xc3 \xed\xa0\x80\U0010FFFF\u0085\u00a0")
	for _, v := range []string{s.String(), "", "plain", "\x00"} {
		var text, attr bytes.Buffer
		d := pageData{From: v}
		if err := noticeHTMLTemplate.Execute(&text, d); err != nil {
			t.Fatal(err)
		}
		_, after, _ := strings.Cut(text.String(), "<p><strong>")
		want, _, _ := strings.Cut(after, "</strong> sent you a secure message.</p>")
		if got := string(appendHTML(nil, v)); got != want {
			t.Errorf("appendHTML(%q) = %q, html/template %q", v, got, want)
		}
		if got := string(appendHTMLASCII(nil, v)); got != refToASCII(want) {
			t.Errorf("appendHTMLASCII(%q) = %q, html/template and toASCII %q", v, got, refToASCII(want))
		}
		d = pageData{KeyID: v, OpenURL: "https://x", FromPieces: nil}
		if err := pageTemplate.Execute(&attr, d); err != nil {
			t.Fatal(err)
		}
		_, after, _ = strings.Cut(attr.String(), `name="id" value="`)
		want, _, _ = strings.Cut(after, `">`+"\n<textarea")
		if got := string(appendHTML(nil, v)); got != want {
			t.Errorf("appendHTML(%q) = %q, html/template in an attribute %q", v, got, want)
		}
		if got, want := shorten(v, 200), refShorten(v, 200); got != want {
			t.Errorf("shorten(%q) = %q, want %q", v, got, want)
		}
	}
	for _, r := range []rune{0, 1, '"', '+', 'a', 0x7f, 0x80, 999, 1000, 0xFFFD, utf8.MaxRune} {
		if got, want := escapedWidth(r), refEscapedWidth(r); got != want {
			t.Errorf("escapedWidth(%U) = %d, want %d", r, got, want)
		}
	}
	for _, v := range []string{"a", "a b", " a", "a ", "a  b", strings.Repeat("x", 200), strings.Repeat("x", 201), "a\tb", "a\x7fb", "é"} {
		if got, want := shorten(v, 200), refShorten(v, 200); got != want {
			t.Errorf("shorten(%q) = %q, want %q", v, got, want)
		}
	}
}
