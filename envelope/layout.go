package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// The page and the notice are html/template and fmt renderings of constant
// templates in which only a few values change from one message to the
// next. Executing the templates for every message was most of the cost of
// a small message's body, so they are executed once per portal URL with
// marks in place of the values that change (the sender, the date, the key
// id), cut at the marks into a layout, and each message writes the
// layout's pieces with its values escaped as html/template escapes them
// there. Everything that depends on the portal URL (the form's action, its
// URL context, the host) stays in the template's own rendering.
// page_ref_test.go keeps the template path as the reference: the bodies
// are the same byte for byte (FuzzWriteBodyMatchesTemplate).

// mark starts a value's place in a layout rendering. The values that stay
// in the rendering are derived from the portal URL, which url.Parse
// rejects if it holds a control character, so mark cannot come from them;
// the templates' own text holds none either (newLayout checks both).
const mark = "\x01"

// The marks, each mark and a letter naming the value.
const (
	markFrom  = mark + "F"
	markDate  = mark + "D"
	markKeyID = mark + "K"
)

// dateLayout is the page's form of the date.
const dateLayout = "Monday, 2 January 2006 at 15:04 UTC"

// layout is the part of a body that depends on nothing but the portal URL.
// The page's pieces are in both line-end forms, index 0 CRLF and 1 LF.
type layout struct {
	key layoutKey // as the Notice has it: the cache key

	// The page: start, then for each piece of the sender piecePrefix and
	// the piece, then afterFrom, the date, afterDate, the key id and
	// afterKeyID, which ends just before envelopeMark; the armor; tail.
	pageStart, piecePrefix, afterFrom, afterDate, afterKeyID, tail [2]string

	// The notice's parts, quoted-printable, with CRLF line ends.
	text, html qpLayout
}

// qpLayout is a quoted-printable part in which one line holds the sender.
// Quoted-printable encodes each line of its input on its own (after a line
// end the encoder is back in its first state), so the lines before and
// after the sender's line are encoded once.
type qpLayout struct {
	before    string // encoded
	pre, post string // the sender's line around the sender, not encoded; post ends with CRLF
	after     string // encoded
}

// append appends the part with value in the sender's line.
func (q *qpLayout) append(dst []byte, value []byte) []byte {
	dst = append(dst, q.before...)
	var e qpEncoder
	dst = qpWrite(&e, dst, q.pre)
	dst = qpWrite(&e, dst, value)
	dst = qpWrite(&e, dst, q.post)
	dst = e.close(dst)
	return append(dst, q.after...)
}

// newQPLayout cuts s, rendered with markFrom in place of the sender and
// given CRLF line ends, at the sender's line.
func newQPLayout(s string) (qpLayout, error) {
	at := strings.Index(s, markFrom)
	if at < 0 || strings.Count(s, mark) != 1 {
		return qpLayout{}, errors.New("envelope: notice template lost its sender mark")
	}
	start := strings.LastIndexByte(s[:at], '\n') + 1
	end := strings.IndexByte(s[at:], '\n')
	if end < 0 {
		return qpLayout{}, errors.New("envelope: notice template's sender line has no line end")
	}
	end += at + 1
	var e qpEncoder
	before := e.close(qpWrite(&e, nil, s[:start]))
	e = qpEncoder{}
	after := e.close(qpWrite(&e, nil, s[end:]))
	return qpLayout{
		before: string(before),
		pre:    s[start:at],
		post:   s[at+len(markFrom) : end],
		after:  string(after),
	}, nil
}

// layoutKey is what a layout depends on: the portal URL and the brand.
type layoutKey struct {
	portalURL string
	brand     Brand
}

// layouts caches the layout of each portal URL and brand seen; a server
// has one per branded domain.
var layouts struct {
	last atomic.Pointer[layout]
	mu   sync.Mutex
	m    map[layoutKey]*layout
}

// maxLayouts bounds the cache for a caller that sends many portal URLs.
const maxLayouts = 64

// layoutFor returns the layout of n.PortalURL, or the error that says the
// URL is not an http(s) URL.
func layoutFor(portalURL string, brand Brand) (*layout, error) {
	key := layoutKey{portalURL, brand}
	if l := layouts.last.Load(); l != nil && l.key == key {
		return l, nil
	}
	layouts.mu.Lock()
	l := layouts.m[key]
	layouts.mu.Unlock()
	if l == nil {
		var err error
		if l, err = newLayout(key); err != nil {
			return nil, err
		}
		layouts.mu.Lock()
		if len(layouts.m) >= maxLayouts || layouts.m == nil {
			layouts.m = make(map[layoutKey]*layout)
		}
		layouts.m[key] = l
		layouts.mu.Unlock()
	}
	layouts.last.Store(l)
	return l, nil
}

// portalData is the page data that comes from the portal URL.
func portalData(portalURL string) (pageData, error) {
	u, err := url.Parse(portalURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return pageData{}, fmt.Errorf("envelope: portal URL %q is not an http(s) URL", portalURL)
	}
	return pageData{
		PortalURL:  strings.TrimSuffix(portalURL, "/"),
		OpenURL:    strings.TrimSuffix(portalURL, "/") + "/open",
		PortalHost: u.Host,
		Version:    Version,
	}, nil
}

// newLayout renders the templates for portalURL with marks for the values
// that change, and cuts them there.
func newLayout(key layoutKey) (*layout, error) {
	portalURL := key.portalURL
	d, err := portalData(portalURL)
	if err != nil {
		return nil, err
	}
	if strings.Contains(portalURL, mark) {
		// url.Parse refuses control characters; this is its promise kept.
		return nil, fmt.Errorf("envelope: portal URL %q holds a control character", portalURL)
	}
	// Check refuses control characters, so no brand text holds a mark.
	if err := key.brand.Check(); err != nil {
		return nil, err
	}
	key.brand.data(&d)
	l := &layout{key: key}
	// Every value that changes is a mark, so a template that used one more
	// would show one more mark.
	d.From, d.Date, d.KeyID = markFrom, markDate, markKeyID
	render := func(pieces ...string) (string, error) {
		d.FromPieces = pieces
		var b strings.Builder
		if err := pageTemplate.Execute(&b, d); err != nil {
			return "", fmt.Errorf("envelope: render page: %w", err)
		}
		return toASCII(b.String()), nil
	}

	// Two pieces of the sender show what goes before each piece.
	page, err := render(markFrom, markFrom)
	if err != nil {
		return nil, err
	}
	cut := strings.Split(page, mark)
	if len(cut) != 5 || !strings.HasPrefix(cut[1], "F") || !strings.HasPrefix(cut[2], "F") ||
		!strings.HasPrefix(cut[3], "D") || !strings.HasPrefix(cut[4], "K") {
		return nil, errors.New("envelope: page template lost a mark")
	}
	prefix := cut[1][1:]
	start, ok := strings.CutSuffix(cut[0], prefix)
	if !ok {
		return nil, errors.New("envelope: page template puts different text before the sender's pieces")
	}
	afterFrom, afterDate := cut[2][1:], cut[3][1:]
	head, tail, ok := strings.Cut(cut[4][1:], envelopeMark)
	if !ok {
		return nil, errors.New("envelope: page template lost its envelope mark")
	}
	tail = envelopeMark + tail
	// The page is cut at the first envelopeMark. The values escape '<', so
	// none makes one; the template text before the textarea has none.
	for _, s := range []string{start, prefix, afterFrom, afterDate} {
		if strings.Contains(s, envelopeMark) {
			return nil, errors.New("envelope: page template has an early envelope mark")
		}
	}
	// No sender is the same page without the pieces.
	none, err := render()
	if err != nil {
		return nil, err
	}
	if none != start+afterFrom+markDate+afterDate+markKeyID+head+tail {
		return nil, errors.New("envelope: page template writes a sender of no pieces differently")
	}
	// The page has no CR, so the line ends can be set piece by piece: in
	// CRLF form every LF becomes CRLF, in LF form nothing changes (the
	// values put between the pieces hold no CR or LF).
	if strings.Contains(page, "\r") {
		return nil, errors.New("envelope: page template holds a CR")
	}
	for _, p := range []struct {
		dst *[2]string
		s   string
	}{
		{&l.pageStart, start}, {&l.piecePrefix, prefix}, {&l.afterFrom, afterFrom},
		{&l.afterDate, afterDate}, {&l.afterKeyID, head}, {&l.tail, tail},
	} {
		p.dst[0], p.dst[1] = strings.ReplaceAll(p.s, "\n", "\r\n"), p.s
	}

	var html strings.Builder
	d.FromPieces = []string{markFrom}
	if err := noticeHTMLTemplate.Execute(&html, d); err != nil {
		return nil, fmt.Errorf("envelope: render notice: %w", err)
	}
	if l.html, err = newQPLayout(crlf(html.String())); err != nil {
		return nil, err
	}
	d.From = markFrom
	if l.text, err = newQPLayout(crlf(noticeTextFor(d))); err != nil {
		return nil, err
	}
	return l, nil
}

// htmlEscapes is what html/template writes for a byte of a string value in
// HTML text and in a quoted attribute value that is not a URL (its
// htmlEscaper and attrEscaper, which share one table). Every other byte,
// ASCII or not, passes unchanged.
var htmlEscapes = [utf8.RuneSelf]string{
	0:    "\uFFFD",
	'"':  "&#34;",
	'&':  "&amp;",
	'\'': "&#39;",
	'+':  "&#43;",
	'<':  "&lt;",
	'>':  "&gt;",
}

// appendHTML appends s as html/template writes a string in HTML text.
func appendHTML(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && (s[j] >= utf8.RuneSelf || htmlEscapes[s[j]] == "") {
			j++
		}
		dst = append(dst, s[i:j]...)
		if j < len(s) {
			dst = append(dst, htmlEscapes[s[j]]...)
			j++
		}
		i = j
	}
	return dst
}

// appendHTMLASCII appends s as html/template writes a string in HTML text,
// then made 7-bit by toASCII.
func appendHTMLASCII(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if e := htmlEscapes[c]; e == "" {
				dst = append(dst, c)
			} else if c == 0 {
				dst = append(dst, "&#65533;"...) // toASCII of "\uFFFD"
			} else {
				dst = append(dst, e...)
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		dst = appendCharRef(dst, r)
		i += w
	}
	return dst
}

// appendCharRef appends the numeric character reference toASCII writes for r.
func appendCharRef(dst []byte, r rune) []byte {
	var digits [10]byte
	i := len(digits)
	for v := uint32(r); ; v /= 10 {
		i--
		digits[i] = byte('0' + v%10)
		if v < 10 {
			break
		}
	}
	dst = append(dst, "&#"...)
	dst = append(dst, digits[i:]...)
	return append(dst, ';')
}

// appendLines appends s with the notice's line ends, as crlf followed in
// LF form by replacing every CRLF by LF does: in CRLF form, a CR goes
// before every LF that has none; in LF form, the CR of every CRLF goes.
func appendLines(dst, s []byte, lf bool) []byte {
	for {
		i := bytes.IndexByte(s, '\n')
		if i < 0 {
			return append(dst, s...)
		}
		cr := i > 0 && s[i-1] == '\r'
		switch {
		case lf && cr:
			dst = append(dst, s[:i-1]...)
		case !lf && !cr:
			dst = append(dst, s[:i]...)
			dst = append(dst, '\r')
		default:
			dst = append(dst, s[:i]...)
		}
		dst = append(dst, '\n')
		s = s[i+1:]
	}
}

// qpEncoder writes what a mime/quotedprintable.Writer (not Binary) writes,
// appending it instead of writing it: the same 76-character lines, soft
// line breaks and escapes (FuzzQuotedPrintable).
type qpEncoder struct {
	i  int  // characters in the current output line
	cr bool // the last byte written was CR
}

const qpLineMax = 76

func qpWrite[T string | []byte](e *qpEncoder, dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b == '\n' || b == '\r':
			// The CRLF went out with the CR.
			if e.cr && b == '\n' {
				e.cr = false
				continue
			}
			if b == '\r' {
				e.cr = true
			}
			dst = e.checkLastByte(dst)
			dst = append(dst, '\r', '\n')
			e.i = 0
		case b >= '!' && b <= '~' && b != '=' || b == ' ' || b == '\t':
			if e.i == qpLineMax-1 {
				dst = append(dst, '=', '\r', '\n')
				e.i = 0
			}
			dst = append(dst, b)
			e.i++
			e.cr = false
		default:
			dst = e.encode(dst, b)
		}
	}
	return dst
}

func (e *qpEncoder) encode(dst []byte, b byte) []byte {
	if qpLineMax-1-e.i < 3 {
		dst = append(dst, '=', '\r', '\n')
		e.i = 0
	}
	const upperhex = "0123456789ABCDEF"
	e.i += 3
	return append(dst, '=', upperhex[b>>4], upperhex[b&0x0f])
}

// checkLastByte encodes a space or tab that ends a line.
func (e *qpEncoder) checkLastByte(dst []byte) []byte {
	if e.i == 0 {
		return dst
	}
	if b := dst[len(dst)-1]; b == ' ' || b == '\t' {
		e.i--
		return e.encode(dst[:len(dst)-1], b)
	}
	return dst
}

func (e *qpEncoder) close(dst []byte) []byte { return e.checkLastByte(dst) }

// bodyBuffers are the buffers of one WriteBody or WritePage: a and b for
// the notice and the page around the envelope, in and out for the armor.
type bodyBuffers struct{ a, b, in, out []byte }

var bodyBufferPool = sync.Pool{New: func() any { return new(bodyBuffers) }}

// maxPooledBuffer keeps a buffer grown by an odd body out of the pool.
const maxPooledBuffer = 64 << 10

func putBodyBuffers(bb *bodyBuffers) {
	if cap(bb.a) > maxPooledBuffer || cap(bb.b) > maxPooledBuffer ||
		cap(bb.in) > maxPooledBuffer || cap(bb.out) > maxPooledBuffer {
		return
	}
	bodyBufferPool.Put(bb)
}
