package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
	"time"
)

// checkBody writes n's body and page in both line-end forms and checks
// what the recipient's mail system relies on: a refused portal URL,
// boundary or brand is an error (a bad brand ErrBadBrand); otherwise the
// body is 7-bit (but for the caller's boundary), no line is longer than
// RFC 5322's 998 characters (the notice's are at most 76, quoted-printable;
// the page's follow the portal URL and brand, which may be longer than 78),
// it parses as MIME with every part readable, the page in it carries env,
// and brand text with HTML specials never appears unescaped in the page
// (the text/plain notice shows it as it is).
func checkBody(t *testing.T, n Notice, env []byte) {
	t.Helper()
	for _, lf := range []bool{false, true} {
		n.LF = lf
		var body, page bytes.Buffer
		bodyErr := WriteBody(&body, n, bytes.NewReader(env))
		pageErr := WritePage(&page, n, bytes.NewReader(env))
		if n.Brand.Check() != nil {
			if !errors.Is(bodyErr, ErrBadBrand) || !errors.Is(pageErr, ErrBadBrand) {
				t.Fatalf("brand Check refuses, WriteBody %v, WritePage %v", bodyErr, pageErr)
			}
			return
		}
		if pageErr != nil {
			if _, err := n.data(); err == nil {
				t.Fatalf("WritePage of %+v: %v", n, pageErr)
			}
			return
		}
		if bodyErr != nil {
			if n.Boundary != "" && len(n.Boundary) <= 60 {
				t.Fatalf("WriteBody of %+v: %v", n, bodyErr)
			}
			continue
		}
		eol := "\r\n"
		if lf {
			eol = "\n"
		}
		for i, line := range strings.Split(body.String(), eol) {
			if len(line) > 998 {
				t.Fatalf("LF %v: line %d is %d bytes: %q", lf, i, len(line), line)
			}
		}
		for i, c := range bytes.ReplaceAll(body.Bytes(), []byte(n.Boundary), nil) {
			if c >= 0x80 {
				t.Fatalf("LF %v: byte %d is 0x%02x, not 7-bit", lf, i, c)
			}
		}
		if !bytes.Contains(body.Bytes(), page.Bytes()) {
			t.Fatalf("LF %v: the body does not hold the page WritePage writes", lf)
		}
		if form, err := ParsePage(page.Bytes()); err != nil || !bytes.Equal(form.Envelope, env) {
			t.Fatalf("LF %v: page does not parse back to its envelope: %v", lf, err)
		}
		if strings.ContainsAny(n.Boundary, "\r\n") {
			continue // a boundary with a line end of its own is written, not parseable
		}
		_, params, err := mime.ParseMediaType(ContentType(n.Boundary))
		if err != nil {
			continue // a boundary mime does not accept; the MTA's check
		}
		parts := 0
		mr := multipart.NewReader(bytes.NewReader(body.Bytes()), params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("LF %v: part %d: %v", lf, parts, err)
			}
			if _, err := io.ReadAll(p); err != nil {
				t.Fatalf("LF %v: part %d: %v", lf, parts, err)
			}
			parts++
		}
		if parts != 2 {
			t.Fatalf("LF %v: %d parts, want the notice and the page", lf, parts)
		}
		for _, text := range []string{n.Brand.Organisation, n.Brand.Support} {
			if strings.ContainsAny(text, "<>&\"") && bytes.Contains(page.Bytes(), []byte(text)) {
				t.Fatalf("LF %v: brand text %q appears unescaped in the page", lf, text)
			}
		}
	}
}

// writeBodySeed is one input of FuzzWriteBody.
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

// writeBodySeeds are the committed seeds of FuzzWriteBody:
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

// FuzzWriteBody: for any notice and envelope, WriteBody and WritePage
// either refuse it or write a body with checkBody's properties.
func FuzzWriteBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, from, sender string, unix int64, portalURL string, keyID []byte, boundary string, env []byte) {
		checkBody(t, writeBodySeed{from, sender, unix, portalURL, keyID, boundary, env}.notice(), env)
	})
}

// TestWriteBodySeeds runs the seeds and every sender of fromCases with
// each of a few portal URLs.
func TestWriteBodySeeds(t *testing.T) {
	t.Parallel()
	seeds := writeBodySeeds(t)
	for name, s := range seeds {
		t.Run(name, func(t *testing.T) { checkBody(t, s.notice(), s.env) })
	}
	env := seal(t, testPayload("match", 3000), testDEK, testHeader(), 0)
	for _, tc := range fromCases {
		for _, u := range []string{testPortal, seeds["url-query"].portalURL, seeds["url-idn"].portalURL, seeds["url-invalid-utf8"].portalURL} {
			n := testNotice(tc.from)
			n.PortalURL = u
			checkBody(t, n, env)
		}
	}
}
