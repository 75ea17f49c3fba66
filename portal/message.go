// Rendering a decrypted message for the read page.
//
// The portal gets the original RFC 5322 message as a stream of plaintext
// (up to the envelope limit, 20 MiB) and reads it once per request:
// ParseMessage to show it, OpenPart to send one part of it. Nothing is
// held in memory beyond the header fields, at most RenderLimits bytes of
// text and of HTML, and a few small buffers per nesting level; every other
// body is decoded into a counter and dropped.
//
// Structure. The MIME tree is walked depth first. Every part that is not a
// multipart (message/rfc822 included: it is not opened) is a leaf, numbered
// from 0 in walk order; a message that is not multipart is leaf 0.
// ParseMessage and OpenPart use the same walk, so a leaf index from one is
// valid for the other on the same plaintext. Multiparts nested deeper than
// maxNesting, and multiparts without a boundary, are leaves holding their
// raw body. A multipart whose boundary never occurs yields no leaves, and
// a part with nothing at all between two delimiters is skipped. At most
// maxLeaves leaves are read; the rest of the message is ignored.
//
// The reader is lenient, as mail readers must be: header lines that are
// not fields end the header and start the body, a missing close delimiter
// ends the multipart at the end of input, unknown charsets are read as
// UTF-8, invalid base64 characters are skipped, broken quoted-printable
// escapes are kept literally, and every string handed out is valid UTF-8.
// ParseMessage fails only when the input does not start with a header
// (ErrMalformedMessage) or when reading the input fails (that error,
// wrapped); it reads the input to its end, so a damaged or cut plaintext
// stream is always reported. Parts with an unknown
// Content-Transfer-Encoding are attachments served as they are, still
// encoded.
//
// Bodies. Text is the first text/plain leaf that is not an attachment (no
// filename, disposition not "attachment", a known transfer encoding),
// decoded to UTF-8 with line ends as LF and cut at MaxInlineText bytes on a
// rune boundary. HTML is the first such text/html leaf: if its decoded
// body is at most MaxInlineHTML bytes it is sanitised (htmlPolicy, then
// finishHTML) and shown; otherwise HTMLTooLarge is set and it is listed
// as an attachment.
//
// Attachments lists every leaf except the shown Text and HTML bodies and
// the image/* leaves that the shown HTML displays through a cid: URL
// (unless their disposition is "attachment"). So a second text/plain part,
// a text/calendar part or an HTML body too large to show is listed, and
// nothing the sender sent is hidden. Sizes are of the body after the
// transfer encoding is undone, which is exactly what OpenPart writes.
//
// HTML. The policy keeps text formatting, lists, tables and a fixed set of
// CSS properties whose values are checked one by one (no url(), no
// position); it drops scripts, event handlers, forms, frames, objects,
// style sheets, <base>, <meta>, <link>, comments and relative URLs. Links
// keep only http, https and mailto targets and get target="_blank"
// rel="noopener noreferrer nofollow". An <img> keeps its src only if it is
// a cid: URL naming an image/* leaf of this message; that src becomes
// cidURL(contentID), with contentID as in the part's Content-ID without
// angle brackets (the URL's %-escapes undone, RFC 2392). Every other src
// (http, https, data:, //host, relative) is removed.

package portal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/microcosm-cc/bluemonday"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	htmlcharset "golang.org/x/net/html/charset"
)

// RenderLimits bound what the read page shows inline. A zero or negative
// limit means the default of 1 MiB.
type RenderLimits struct {
	// MaxInlineText is how many bytes of the text/plain body are shown;
	// a longer body is cut and Message.Truncated set.
	MaxInlineText int64
	// MaxInlineHTML is how many decoded bytes of text/html are sanitised
	// and shown; a larger body is not shown but listed as an attachment,
	// and Message.HTMLTooLarge set.
	MaxInlineHTML int64
}

const defaultInlineLimit = 1 << 20

// Message is a decrypted message prepared for display. Strings are plain
// text in UTF-8 for the template to escape; HTML is already sanitised.
type Message struct {
	// From, To, Cc, Date and Subject are the header fields as text:
	// RFC 2047 words decoded, unfolded, control characters removed.
	From, To, Cc, Date, Subject string
	// MessageID is the first <msg-id> of the Message-ID field, with its
	// angle brackets; "" if none.
	MessageID string
	// References is the References field unfolded, runs of white space
	// made one space; "" if none.
	References string
	// FromAddress is the addr-spec of the first From mailbox with its
	// domain lowercased; "" if none can be parsed.
	FromAddress string
	// ReplyToAddresses, ToAddresses and CcAddresses are the addr-specs
	// of those fields (domains lowercased), in order.
	ReplyToAddresses, ToAddresses, CcAddresses []string

	// Text is the text/plain body; "" if none.
	Text string
	// Truncated reports that Text was cut at MaxInlineText.
	Truncated bool
	// HTML is the sanitised text/html body; "" if none or too large.
	HTML template.HTML
	// HTMLTooLarge reports that the HTML body was larger than
	// MaxInlineHTML and is listed in Attachments instead.
	HTMLTooLarge bool

	// Attachments are the leaves offered for download, in walk order.
	Attachments []Attachment

	leaves int // number of leaves walked, for tests
}

// Attachment describes one leaf offered for download.
type Attachment struct {
	// Index is the leaf index to give OpenPart.
	Index int
	// Filename is safe to show and to put in Content-Disposition: no
	// directories, no control or bidi formatting characters, at most
	// maxFilename bytes; "attachment-3.bin" and the like when the part
	// names none.
	Filename string
	// ContentType is the media type alone, lowercased.
	ContentType string
	// Size is the decoded size in bytes.
	Size int64
}

// PartInfo describes the part OpenPart is about to write.
type PartInfo struct {
	Filename    string // as in Attachment.Filename
	ContentType string // as in Attachment.ContentType
}

// PartSelector chooses the part OpenPart writes: the leaf with Content-ID
// ContentID if that is not "", otherwise the leaf numbered Index.
type PartSelector struct {
	Index int
	// ContentID is compared with the part's Content-ID without its angle
	// brackets, byte for byte: give it %-unescaped, as cidURL received it.
	ContentID string
}

var (
	// ErrPartNotFound is returned by OpenPart when no leaf matches.
	ErrPartNotFound = errors.New("portal: message part not found")
	// ErrMalformedMessage is returned when the plaintext does not start
	// with a header section, so there is nothing to show.
	ErrMalformedMessage = errors.New("portal: plaintext is not a mail message")
)

const (
	maxHeaderBytes = 1 << 20 // per header section; more is read and dropped
	maxNesting     = 16      // multipart levels opened
	maxLeaves      = 1000    // leaves read; the rest of the message is ignored
	maxFilename    = 200     // bytes
)

// ParseMessage reads the message r once and prepares it for display (see
// the comment at the top of this file). cidURL gives the same-origin URL
// an inline image is loaded from; it may be nil, and then no image is
// shown.
func ParseMessage(r io.Reader, lim RenderLimits, cidURL func(contentID string) string) (*Message, error) {
	for _, l := range []*int64{&lim.MaxInlineText, &lim.MaxInlineHTML} {
		if *l <= 0 {
			*l = defaultInlineLimit
		}
		*l = min(*l, 1<<30) // a limit, not an allocation; keeps limit+1 sane
	}
	p := &messageParser{lim: lim, msg: &Message{}, cids: map[string]cidTarget{}, scratch: make([]byte, 8<<10)}
	h, err := walkMessage(r, true, p.leaf)
	if err != nil {
		return nil, err
	}
	p.msg.leaves = p.leaves
	p.headers(h)
	p.finish(cidURL)
	return p.msg, nil
}

// OpenPart reads the message r until the part chosen by sel and writes its
// decoded body (transfer encoding undone, charset untouched) to the writer
// that open returns. open is called once, before any byte is written, and
// not at all if no part matches: then the error is ErrPartNotFound. Errors
// from open and from the writer are returned as they are.
func OpenPart(r io.Reader, sel PartSelector, open func(PartInfo) (io.Writer, error)) error {
	cid := strings.TrimSpace(sel.ContentID)
	if strings.HasPrefix(cid, "<") && strings.HasSuffix(cid, ">") {
		cid = cid[1 : len(cid)-1]
	}
	if cid == "" && sel.Index < 0 {
		return ErrPartNotFound
	}
	found := false
	_, err := walkMessage(r, false, func(l *mimeLeaf) error {
		if cid != "" && l.contentID != cid || cid == "" && l.index != sel.Index {
			return nil
		}
		found = true
		w, err := open(PartInfo{Filename: l.filename, ContentType: l.mediaType})
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(w, l.decoded(), make([]byte, 8<<10)); err != nil {
			return err
		}
		return errStopWalk
	})
	if err != nil {
		return err
	}
	if !found {
		return ErrPartNotFound
	}
	return nil
}

// messageParser is ParseMessage's state for one message.
type messageParser struct {
	lim      RenderLimits
	msg      *Message
	leaves   int
	textDone bool
	htmlDone bool
	rawHTML  string // sanitised by htmlPolicy, before finishHTML
	cands    []attachmentCandidate
	cids     map[string]cidTarget // first leaf with each Content-ID
	scratch  []byte
}

type attachmentCandidate struct {
	Attachment
	asAttachment bool // Content-Disposition: attachment
}

type cidTarget struct {
	index     int
	mediaType string
}

func (p *messageParser) leaf(l *mimeLeaf) error {
	p.leaves++
	if l.contentID != "" {
		if _, ok := p.cids[l.contentID]; !ok {
			p.cids[l.contentID] = cidTarget{l.index, l.mediaType}
		}
	}
	body := l.decoded()
	bodyCandidate := l.known && !l.named && l.disposition != "attachment"
	switch {
	case bodyCandidate && l.mediaType == "text/plain" && !p.textDone:
		p.textDone = true
		p.msg.Text, p.msg.Truncated = readInlineText(body, l.params["charset"], p.lim.MaxInlineText)
		return nil
	case bodyCandidate && l.mediaType == "text/html" && !p.htmlDone:
		p.htmlDone = true
		var buf bytes.Buffer
		n, _ := io.CopyN(&buf, body, p.lim.MaxInlineHTML+1)
		if n <= p.lim.MaxInlineHTML {
			p.rawHTML = sanitizeHTML(buf.Bytes(), l.params["charset"])
			return nil
		}
		p.msg.HTMLTooLarge = true
		rest, _ := drain(body, p.scratch)
		p.cands = append(p.cands, attachmentCandidate{Attachment: l.attachment(n + rest), asAttachment: l.disposition == "attachment"})
		return nil
	}
	n, _ := drain(body, p.scratch)
	p.cands = append(p.cands, attachmentCandidate{Attachment: l.attachment(n), asAttachment: l.disposition == "attachment"})
	return nil
}

// finish rewrites the HTML's cid: images and drops the images it shows
// from the attachment list.
func (p *messageParser) finish(cidURL func(string) string) {
	shown := map[int]bool{}
	if p.rawHTML != "" {
		p.msg.HTML = template.HTML(finishHTML(p.rawHTML, func(cid string) string {
			t, ok := p.cids[cid]
			if !ok || !strings.HasPrefix(t.mediaType, "image/") || cidURL == nil {
				return ""
			}
			u := cidURL(cid)
			if u != "" {
				shown[t.index] = true
			}
			return u
		}))
	}
	for _, c := range p.cands {
		if shown[c.Index] && !c.asAttachment {
			continue
		}
		p.msg.Attachments = append(p.msg.Attachments, c.Attachment)
	}
}

func (p *messageParser) headers(h mimeHeader) {
	m := p.msg
	m.From = displayHeader(h.get("from"))
	m.To = displayHeader(strings.Join(h.values("to"), ", "))
	m.Cc = displayHeader(strings.Join(h.values("cc"), ", "))
	m.Date = displayHeader(h.get("date"))
	m.Subject = displayHeader(h.get("subject"))
	m.MessageID = firstMsgID(h.get("message-id"))
	m.References = strings.Join(strings.Fields(stripControls(h.get("references"))), " ")
	if from := parseAddressList(h.get("from")); len(from) > 0 {
		m.FromAddress = from[0]
	}
	m.ReplyToAddresses = parseAddressList(strings.Join(h.values("reply-to"), ", "))
	m.ToAddresses = parseAddressList(strings.Join(h.values("to"), ", "))
	m.CcAddresses = parseAddressList(strings.Join(h.values("cc"), ", "))
}

// readInlineText decodes a text body to UTF-8 with LF line ends and keeps
// at most limit bytes of it, cut on a rune boundary.
func readInlineText(body io.Reader, label string, limit int64) (string, bool) {
	r := &transformReader{r: charsetReader(label, body), t: &crlfTransform{}}
	var buf bytes.Buffer
	n, _ := io.CopyN(&buf, r, limit+1)
	b := buf.Bytes()
	truncated := n > limit
	if truncated {
		b = b[:limit]
		// Drop a rune cut in half by the limit rather than show U+FFFD.
		for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
			if utf8.RuneStart(b[len(b)-i]) {
				if !utf8.FullRune(b[len(b)-i:]) {
					b = b[:len(b)-i]
				}
				break
			}
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if int64(len(s)) > limit {
		s = cutUTF8(s, int(limit))
		truncated = true
	}
	return s, truncated
}

// cutUTF8 returns the longest prefix of s that is at most n bytes and
// ends on a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// drain reads r to its end and returns how many bytes it had.
func drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Header fields.

type mimeField struct {
	name  string // lowercased
	value string // unfolded, trimmed
}

type mimeHeader []mimeField

func (h mimeHeader) get(name string) string {
	for _, f := range h {
		if f.name == name {
			return f.value
		}
	}
	return ""
}

func (h mimeHeader) values(name string) []string {
	var vs []string
	for _, f := range h {
		if f.name == name {
			vs = append(vs, f.value)
		}
	}
	return vs
}

// readMIMEHeader reads a header section leniently. It stops after the
// empty line, at the end of input, or before the first line that is
// neither a field nor a continuation line (that line is left unread, it
// is the first line of the body). A leading mbox "From " line is skipped
// when mbox is set. Beyond maxHeaderBytes, lines are read and dropped.
func readMIMEHeader(br *bufio.Reader, mbox bool) (h mimeHeader) {
	var (
		field  []byte // the field being read, continuation lines included
		colon  = -1   // offset of its colon; -1 if none is being read
		budget = maxHeaderBytes
	)
	if mbox {
		if b, _ := br.Peek(5); string(b) == "From " {
			readLine(br, nil, &budget)
		}
	}
	flush := func() {
		if colon < 0 {
			return
		}
		name := strings.ToLower(strings.TrimRight(string(field[:colon]), " \t"))
		value := strings.Trim(lineEnds.Replace(string(field[colon+1:])), " \t")
		h = append(h, mimeField{name: name, value: value})
		colon = -1
	}
	defer flush()
	for {
		b, _ := br.Peek(1)
		if len(b) == 0 {
			return h
		}
		switch c := b[0]; {
		case c == '\n':
			br.Discard(1)
			return h
		case c == '\r':
			if b, _ := br.Peek(2); len(b) == 1 || b[1] == '\n' {
				br.Discard(len(b))
			}
			return h
		case c == ' ' || c == '\t':
			if colon < 0 && len(h) == 0 {
				return h
			}
			field, _ = readLine(br, field, &budget)
		default:
			n := fieldNameLen(br)
			if n < 0 {
				return h
			}
			flush()
			field, _ = readLine(br, field[:0], &budget)
			if n < len(field) {
				colon = n
			}
		}
	}
}

var lineEnds = strings.NewReplacer("\r", "", "\n", "")

// fieldNameLen peeks at the next line and returns the offset of the colon
// if it starts with a field name (printable ASCII, optionally followed by
// white space, then ':'), or -1.
func fieldNameLen(br *bufio.Reader) int {
	b, _ := br.Peek(1024)
	name := true
	for i, c := range b {
		switch {
		case c == ':':
			if i == 0 {
				return -1
			}
			return i
		case c == ' ' || c == '\t':
			if i == 0 {
				return -1
			}
			name = false
		case c < 33 || c > 126 || !name:
			return -1
		}
	}
	return -1
}

// readLine reads one line (with its line end) and appends what fits in
// budget to dst.
func readLine(br *bufio.Reader, dst []byte, budget *int) ([]byte, error) {
	for {
		frag, err := br.ReadSlice('\n')
		if take := min(len(frag), *budget); take > 0 {
			dst = append(dst, frag[:take]...)
			*budget -= take
		}
		if err != bufio.ErrBufferFull {
			return dst, err
		}
	}
}

// parseMIMEValue parses a Content-Type or Content-Disposition value
// leniently: the value before the first ';', lowercased, and the
// parameters with lowercased names. RFC 2231 continuations and charsets
// are decoded, and win over the plain form; otherwise the first
// occurrence of a name wins. Malformed parameters are skipped.
func parseMIMEValue(v string) (string, map[string]string) {
	value, rest, _ := strings.Cut(v, ";")
	value = strings.ToLower(strings.TrimSpace(value))
	params := map[string]string{}
	type segment struct {
		val string
		ext bool
	}
	var (
		plain    = map[string]string{}
		extended = map[string]string{}
		cont     map[string]map[int]segment
	)
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t;")
		i := strings.IndexAny(rest, "=;")
		if i < 0 {
			break
		}
		if rest[i] == ';' {
			rest = rest[i+1:]
			continue
		}
		name := strings.ToLower(strings.TrimSpace(rest[:i]))
		rest = strings.TrimLeft(rest[i+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			val, rest = unquote(rest[1:])
			if j := strings.IndexByte(rest, ';'); j >= 0 {
				rest = rest[j+1:]
			} else {
				rest = ""
			}
		} else {
			val, rest, _ = strings.Cut(rest, ";")
			val = strings.TrimSpace(val)
		}
		if name == "" {
			continue
		}
		base, ext := strings.CutSuffix(name, "*")
		if j := strings.LastIndexByte(base, '*'); j >= 0 && isDigits(base[j+1:]) && len(base)-j <= 4 {
			if cont == nil {
				cont = map[string]map[int]segment{}
			}
			n := 0
			for _, c := range base[j+1:] {
				n = n*10 + int(c-'0')
			}
			b := base[:j]
			if cont[b] == nil {
				cont[b] = map[int]segment{}
			}
			if _, dup := cont[b][n]; !dup {
				cont[b][n] = segment{val, ext}
			}
			continue
		}
		m := plain
		if ext {
			m = extended
			name = base
		}
		if _, dup := m[name]; !dup {
			m[name] = val
		}
	}
	for name, segs := range cont {
		var b []byte
		cs := ""
		for n := 0; ; n++ {
			s, ok := segs[n]
			if !ok {
				break
			}
			if !s.ext {
				b = append(b, s.val...)
				continue
			}
			v := s.val
			if n == 0 {
				cs, v = splitRFC2231(v)
			}
			b = appendUnescaped(b, v)
		}
		if _, ok := segs[0]; ok {
			params[name] = decodeCharsetString(cs, b)
		}
	}
	for name, v := range extended {
		if _, ok := params[name]; !ok {
			cs, v := splitRFC2231(v)
			params[name] = decodeCharsetString(cs, appendUnescaped(nil, v))
		}
	}
	for name, v := range plain {
		if _, ok := params[name]; !ok {
			params[name] = v
		}
	}
	return value, params
}

// unquote reads a quoted-string body (after the opening quote) and returns
// its value and what follows the closing quote. An unterminated string
// runs to the end.
func unquote(s string) (string, string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:]
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// splitRFC2231 splits charset'language'value; without the two quotes the
// whole string is the value.
func splitRFC2231(s string) (string, string) {
	cs, rest, ok := strings.Cut(s, "'")
	if !ok {
		return "", s
	}
	_, v, ok := strings.Cut(rest, "'")
	if !ok {
		return "", s
	}
	return cs, v
}

// appendUnescaped appends s with %XX escapes undone; a '%' not followed
// by two hex digits is kept.
func appendUnescaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && unhex(s[i+1]) >= 0 && unhex(s[i+2]) >= 0 {
			dst = append(dst, byte(unhex(s[i+1])<<4|unhex(s[i+2])))
			i += 2
			continue
		}
		dst = append(dst, s[i])
	}
	return dst
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

func validMediaType(t string) bool {
	typ, sub, ok := strings.Cut(t, "/")
	return ok && isToken(typ) && isToken(sub)
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 127 || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// Charsets.

// charsetReader converts r from the named charset to UTF-8; an unknown or
// absent charset leaves the bytes as they are (callers make them valid
// UTF-8 afterwards).
func charsetReader(label string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "", "utf-8", "utf8", "us-ascii", "ascii", "unknown-8bit", "x-unknown":
		return r
	}
	cr, err := charset.Reader(label, r)
	if err != nil || cr == nil {
		return r
	}
	return cr
}

func decodeCharsetString(label string, b []byte) string {
	r := charsetReader(label, bytes.NewReader(b))
	if out, err := io.ReadAll(r); err == nil {
		b = out
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(label string, r io.Reader) (io.Reader, error) {
	return charsetReader(label, r), nil
}}

// decodeWords decodes RFC 2047 encoded words, keeping s if it cannot.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// displayHeader makes a header value plain UTF-8 text on one line.
func displayHeader(v string) string {
	return strings.TrimSpace(stripControls(decodeWords(v)))
}

// stripControls makes s valid UTF-8, turns tabs and line ends into spaces
// and removes other control characters.
func stripControls(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\r' || r == '\n':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
}

// firstMsgID returns the first <...> of a Message-ID field; a bare id is
// put in brackets.
func firstMsgID(v string) string {
	v = stripControls(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 1 {
			id := v[i : i+j+1]
			if !strings.ContainsAny(id[1:len(id)-1], " <") {
				return id
			}
		}
		return ""
	}
	if v = strings.TrimSpace(v); v != "" && !strings.ContainsAny(v, " >") {
		return "<" + v + ">"
	}
	return ""
}

var addressParser = &mail.AddressParser{WordDecoder: wordDecoder}

// parseAddressList returns the addr-specs of an address list, domain
// lowercased. When the list does not parse as a whole, each
// comma-separated item is tried alone, then its <...> part. Addresses
// without a local part or a domain, or with white space, control
// characters or invalid UTF-8, are dropped.
func parseAddressList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var out []string
	add := func(a string) {
		at := strings.LastIndexByte(a, '@')
		if at <= 0 || at == len(a)-1 || !utf8.ValidString(a) ||
			strings.IndexFunc(a, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
			return
		}
		out = append(out, a[:at]+strings.ToLower(a[at:]))
	}
	if list, err := addressParser.ParseList(v); err == nil {
		for _, a := range list {
			add(a.Address)
		}
		return out
	}
	for _, item := range splitAddressList(v) {
		if a, err := addressParser.Parse(item); err == nil {
			add(a.Address)
			continue
		}
		if i := strings.LastIndexByte(item, '<'); i >= 0 {
			if j := strings.IndexByte(item[i:], '>'); j > 0 {
				if a := item[i+1 : i+j]; strings.Count(a, "@") == 1 {
					add(a)
				}
			}
		}
	}
	return out
}

// splitAddressList splits at commas outside quotes, comments and angle
// brackets.
func splitAddressList(v string) []string {
	var items []string
	quoted, depth, angle, start := false, 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && depth == 0 && !angle:
			items = append(items, v[start:i])
			start = i + 1
		}
	}
	return append(items, v[start:])
}

// Filenames.

// cleanAttachmentName makes a part's filename safe for display and for
// Content-Disposition: RFC 2047 words decoded, only the part after the
// last '/' or '\', no control or format (bidi, zero width) characters, at
// most maxFilename bytes keeping a short extension. It returns "" if
// nothing is left.
func cleanAttachmentName(name string) string {
	name = strings.ToValidUTF8(decodeWords(name), "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError:
			return -1
		case unicode.IsSpace(r):
			return ' '
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if len(name) > maxFilename {
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
			ext = name[i:]
		}
		name = strings.TrimSpace(cutUTF8(name[:len(name)-len(ext)], maxFilename-len(ext))) + ext
	}
	if name == "." || name == ".." {
		return ""
	}
	return name
}

// fallbackExt is the extension of made-up filenames.
var fallbackExt = map[string]string{
	"text/plain":      ".txt",
	"text/html":       ".html",
	"text/calendar":   ".ics",
	"message/rfc822":  ".eml",
	"image/png":       ".png",
	"image/jpeg":      ".jpg",
	"image/gif":       ".gif",
	"image/webp":      ".webp",
	"application/pdf": ".pdf",
}

// The MIME walk.

// mimeLeaf is a leaf part as the walk hands it out. body is valid only
// during the callback.
type mimeLeaf struct {
	index       int
	mediaType   string
	params      map[string]string
	disposition string
	named       bool   // the part gives a filename
	filename    string // cleaned, or a fallback
	contentID   string // without angle brackets
	cte         string
	known       bool // cte is one we decode
	body        io.Reader
}

func newLeaf(h mimeHeader, index int, mediaType string, params map[string]string, body io.Reader) *mimeLeaf {
	l := &mimeLeaf{index: index, mediaType: mediaType, params: params, body: body}
	disp, dparams := parseMIMEValue(h.get("content-disposition"))
	l.disposition = disp
	raw := dparams["filename"]
	if raw == "" {
		raw = params["name"]
	}
	l.named = strings.TrimSpace(raw) != ""
	l.filename = cleanAttachmentName(raw)
	if l.filename == "" {
		prefix, ext := "attachment-", fallbackExt[mediaType]
		if mediaType == "message/rfc822" {
			prefix = "message-"
		}
		if ext == "" {
			ext = ".bin"
		}
		l.filename = fmt.Sprintf("%s%d%s", prefix, index, ext)
	}
	l.contentID = strings.TrimSpace(h.get("content-id"))
	if i := strings.IndexByte(l.contentID, '<'); i >= 0 {
		if j := strings.IndexByte(l.contentID[i:], '>'); j > 0 {
			l.contentID = l.contentID[i+1 : i+j]
		}
	}
	l.cte = strings.ToLower(strings.TrimSpace(h.get("content-transfer-encoding")))
	if i := strings.IndexAny(l.cte, " \t;("); i >= 0 {
		l.cte = l.cte[:i]
	}
	switch l.cte {
	case "", "7bit", "8bit", "binary", "base64", "quoted-printable":
		l.known = true
	}
	return l
}

// decoded returns the body with its transfer encoding undone (the raw
// body for an unknown encoding).
func (l *mimeLeaf) decoded() io.Reader {
	switch l.cte {
	case "base64":
		return &transformReader{r: l.body, t: &base64Transform{}}
	case "quoted-printable":
		return &transformReader{r: l.body, t: &qpTransform{}}
	}
	return l.body
}

func (l *mimeLeaf) attachment(size int64) Attachment {
	return Attachment{Index: l.index, Filename: l.filename, ContentType: l.mediaType, Size: size}
}

var errStopWalk = errors.New("portal: stop walk")

// walkMessage reads the message's header and calls fn for each leaf in
// depth-first order. With readAll it then reads r to its end, so that a
// damaged or cut plaintext stream is reported even when the rest of the
// message is of no interest. It returns the message's header; its error
// is ErrMalformedMessage, a read error of r, or one from fn.
func walkMessage(r io.Reader, readAll bool, fn func(*mimeLeaf) error) (mimeHeader, error) {
	er := &readErrRecorder{r: r}
	br := bufio.NewReaderSize(er, 16<<10)
	h := readMIMEHeader(br, true)
	if len(h) == 0 {
		if er.err != nil {
			return nil, fmt.Errorf("read message: %w", er.err)
		}
		return nil, ErrMalformedMessage
	}
	w := &mimeWalker{fn: fn}
	err := w.entity(h, br, "text/plain", 0)
	if readAll && (err == nil || err == errStopWalk) {
		io.Copy(io.Discard, br)
	}
	if er.err != nil {
		return nil, fmt.Errorf("read message: %w", er.err)
	}
	if err != nil && err != errStopWalk {
		return nil, err
	}
	return h, nil
}

type mimeWalker struct {
	fn     func(*mimeLeaf) error
	leaves int
}

func (w *mimeWalker) entity(h mimeHeader, body *bufio.Reader, defaultType string, depth int) error {
	mt, params := parseMIMEValue(h.get("content-type"))
	if !validMediaType(mt) {
		mt = defaultType
	}
	if boundary := params["boundary"]; strings.HasPrefix(mt, "multipart/") && boundary != "" && depth < maxNesting {
		childType := "text/plain"
		if mt == "multipart/digest" {
			childType = "message/rfc822"
		}
		sc := newMultipartScanner(body, boundary)
		var pbr *bufio.Reader
		for sc.next() {
			if pbr == nil {
				pbr = bufio.NewReaderSize(sc, 4096)
			} else {
				pbr.Reset(sc)
			}
			ph := readMIMEHeader(pbr, false)
			if len(ph) == 0 {
				if _, err := pbr.Peek(1); err != nil {
					continue // nothing at all between two delimiters
				}
			}
			if err := w.entity(ph, pbr, childType, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if w.leaves >= maxLeaves {
		return errStopWalk
	}
	l := newLeaf(h, w.leaves, mt, params, body)
	w.leaves++
	return w.fn(l)
}

// readErrRecorder remembers the first error other than io.EOF, so that
// the lenient layers above cannot hide a failing plaintext stream.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (e *readErrRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// multipartScanner splits a multipart body into its parts (RFC 2046
// section 5.1.1). Read returns the current part's content: everything up
// to, not including, the line end before the next delimiter line. A
// delimiter line is "--" boundary, optionally "--" (the close delimiter),
// then only white space.
type multipartScanner struct {
	br        *bufio.Reader
	dash      []byte // "--" + boundary
	lineStart bool   // the next fragment starts a line
	pendingNL []byte // line end held back: it belongs to a delimiter if one follows
	emit      []byte // line end to return before out
	out       []byte // content not yet returned; points into br's buffer
	heldCR    bool   // a fragment ended in CR, not yet returned
	partEnd   bool   // the current part (the preamble, at first) ended
	final     bool   // the close delimiter or the end of input was seen
}

var (
	crlf = []byte("\r\n")
	lf   = []byte("\n")
)

func newMultipartScanner(br *bufio.Reader, boundary string) *multipartScanner {
	return &multipartScanner{br: br, dash: []byte("--" + boundary), lineStart: true}
}

// next skips the rest of the current part and reports whether another
// part follows.
func (s *multipartScanner) next() bool {
	for !s.partEnd {
		s.advance()
	}
	if s.final {
		return false
	}
	s.partEnd, s.lineStart, s.heldCR = false, true, false
	s.pendingNL, s.emit, s.out = nil, nil, nil
	return true
}

// advance reads the next line or fragment of a long line.
func (s *multipartScanner) advance() {
	line, err := s.br.ReadSlice('\n')
	var held []byte
	if s.heldCR {
		// The previous fragment ended in CR: with this LF it is a line end.
		s.heldCR = false
		if len(line) > 0 && line[0] == '\n' {
			line = crlf // the line end alone, handled below
		} else {
			held = cr
		}
	}
	if s.lineStart && err != bufio.ErrBufferFull && len(line) > 0 {
		if d := s.delimiter(line); d != 0 {
			s.partEnd = true
			s.final = d == 2 || err != nil
			s.pendingNL, s.emit, s.out = nil, nil, nil
			return
		}
	}
	s.emit, s.pendingNL = s.pendingNL, nil
	if held != nil {
		s.emit = held // pendingNL is nil after a fragment
	}
	s.out, s.lineStart = line, false
	if n := len(line); err == bufio.ErrBufferFull && n > 0 && line[n-1] == '\r' {
		s.out, s.heldCR = line[:n-1], true
	}
	if n := len(line); n > 0 && line[n-1] == '\n' {
		s.lineStart = true
		if n > 1 && line[n-2] == '\r' {
			s.out, s.pendingNL = line[:n-2], crlf
		} else {
			s.out, s.pendingNL = line[:n-1], lf
		}
	}
	if err != nil && err != bufio.ErrBufferFull {
		// The input ended (or failed) without a close delimiter.
		s.partEnd, s.final = true, true
	}
}

var cr = []byte("\r")

// delimiter returns 1 for a delimiter line, 2 for the close delimiter.
func (s *multipartScanner) delimiter(line []byte) int {
	rest, ok := bytes.CutPrefix(line, s.dash)
	if !ok {
		return 0
	}
	d := 1
	if r, ok := bytes.CutPrefix(rest, []byte("--")); ok {
		d, rest = 2, r
	}
	for _, c := range rest {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return 0
		}
	}
	return d
}

func (s *multipartScanner) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case len(s.emit) > 0:
			c := copy(p[n:], s.emit)
			s.emit = s.emit[c:]
			n += c
		case len(s.out) > 0:
			c := copy(p[n:], s.out)
			s.out = s.out[c:]
			n += c
		case s.partEnd:
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		default:
			s.advance()
		}
	}
	return n, nil
}

// Transfer decoding and line ends. Each transform is a small state
// machine that appends what a chunk of input decodes to; none of them
// fails on bad input.

type byteTransform interface {
	// transform appends src, decoded, to dst; final is set on the last
	// call, when src is the end of the input.
	transform(dst, src []byte, final bool) []byte
}

// transformReader applies t to r in chunks of 4 KiB.
type transformReader struct {
	r   io.Reader
	t   byteTransform
	in  []byte
	buf []byte
	out []byte // decoded, not yet returned
	err error
}

func (x *transformReader) Read(p []byte) (int, error) {
	for len(x.out) == 0 {
		if x.err != nil {
			return 0, x.err
		}
		if x.in == nil {
			x.in, x.buf = make([]byte, 4096), make([]byte, 0, 4096+256)
		}
		m, err := x.r.Read(x.in)
		x.err = err
		x.out = x.t.transform(x.buf[:0], x.in[:m], err != nil)
	}
	n := copy(p, x.out)
	x.out = x.out[n:]
	return n, nil
}

// base64Transform decodes base64 leniently: characters outside the
// alphabet are skipped, '=' ends a quantum (so concatenated encodings
// decode), and a trailing partial quantum yields what it holds.
type base64Transform struct {
	acc uint32
	n   int
}

var base64Values = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" {
		t[c] = byte(i)
	}
	return t
}()

func (b *base64Transform) transform(dst, src []byte, final bool) []byte {
	for _, c := range src {
		v := base64Values[c]
		if v == 0xff {
			if c == '=' {
				dst = b.flush(dst)
			}
			continue
		}
		b.acc = b.acc<<6 | uint32(v)
		if b.n++; b.n == 4 {
			dst = append(dst, byte(b.acc>>16), byte(b.acc>>8), byte(b.acc))
			b.acc, b.n = 0, 0
		}
	}
	if final {
		dst = b.flush(dst)
	}
	return dst
}

func (b *base64Transform) flush(dst []byte) []byte {
	switch b.n {
	case 2:
		dst = append(dst, byte(b.acc>>4))
	case 3:
		dst = append(dst, byte(b.acc>>10), byte(b.acc>>2))
	}
	b.acc, b.n = 0, 0
	return dst
}

// qpTransform decodes quoted-printable leniently: "=XX" is a byte,
// '=' before optional white space and a line end is a soft line break,
// any other '=' is kept as it is, and all other bytes pass.
type qpTransform struct {
	state int  // qpText, qpEq, qpHex, qpSpace, qpCR
	hex   byte // first hex digit after '='
	space []byte
}

const (
	qpText = iota
	qpEq
	qpHex
	qpSpace
	qpCR
)

func (q *qpTransform) transform(dst, src []byte, final bool) []byte {
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch q.state {
		case qpText:
			if c == '=' {
				q.state = qpEq
				continue
			}
			dst = append(dst, c)
		case qpEq:
			switch {
			case unhex(c) >= 0:
				q.hex, q.state = c, qpHex
			case c == '\n':
				q.state = qpText
			case c == '\r':
				q.state = qpCR
			case c == ' ' || c == '\t':
				q.space, q.state = append(q.space[:0], c), qpSpace
			default:
				dst = append(dst, '=')
				q.state = qpText
				i-- // c again, as text
			}
		case qpHex:
			q.state = qpText
			if unhex(c) >= 0 {
				dst = append(dst, byte(unhex(q.hex)<<4|unhex(c)))
				continue
			}
			dst = append(dst, '=', q.hex)
			i--
		case qpSpace:
			switch {
			case c == '\n':
				q.state = qpText
			case c == '\r':
				q.state = qpCR
			case (c == ' ' || c == '\t') && len(q.space) < 64:
				q.space = append(q.space, c)
			default:
				dst = append(append(dst, '='), q.space...)
				q.state = qpText
				i--
			}
		case qpCR:
			q.state = qpText
			if c != '\n' {
				i-- // "=\r" alone is a soft line break too
			}
		}
	}
	if final && q.state == qpHex {
		dst = append(dst, '=', q.hex)
	}
	if final {
		q.state = qpText
	}
	return dst
}

// crlfTransform turns CRLF into LF; a lone CR stays.
type crlfTransform struct {
	cr bool // the previous chunk ended in CR
}

func (t *crlfTransform) transform(dst, src []byte, final bool) []byte {
	for _, c := range src {
		if t.cr && c != '\n' {
			dst = append(dst, '\r')
		}
		t.cr = c == '\r'
		if !t.cr {
			dst = append(dst, c)
		}
	}
	if final && t.cr {
		dst = append(dst, '\r')
		t.cr = false
	}
	return dst
}

// HTML.

// htmlPolicy is the sanitiser for HTML bodies, built once. finishHTML
// runs on its output.
var htmlPolicy = newHTMLPolicy()

func newHTMLPolicy() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.RequireParseableURLs(true)
	p.AllowRelativeURLs(false)
	p.AllowURLSchemes("http", "https", "mailto", "cid")
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)

	p.AllowElements("a", "abbr", "acronym", "address", "article", "aside", "b", "bdi", "bdo",
		"big", "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup",
		"dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "font",
		"footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "i", "img", "ins", "kbd",
		"li", "mark", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "section", "small",
		"span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
		"th", "thead", "tr", "tt", "u", "ul", "var", "wbr")

	p.AllowAttrs("dir").Matching(bluemonday.Direction).Globally()
	p.AllowAttrs("lang").Matching(regexp.MustCompile(`^[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*$`)).Globally()
	// title and alt take any text: they are attribute values, escaped on
	// output, and a screen reader needs them whole (bluemonday.Paragraph
	// dropped any alt with ':', '&', '-', '+' or '%').
	p.AllowAttrs("title").Globally()
	p.AllowAttrs("align").Matching(regexp.MustCompile(`(?i)^(left|right|center|justify)$`)).Globally()

	p.AllowAttrs("href").Matching(regexp.MustCompile(`(?i)^\s*(https?|mailto):`)).OnElements("a")
	p.AllowAttrs("src").Matching(regexp.MustCompile(`(?i)^\s*cid:`)).OnElements("img")
	p.AllowAttrs("alt").OnElements("img")

	cells := []string{"td", "th"}
	p.AllowAttrs("width", "height").Matching(bluemonday.NumberOrPercent).OnElements("img", "table", "td", "th", "col", "colgroup")
	p.AllowAttrs("border", "cellpadding", "cellspacing").Matching(bluemonday.Integer).OnElements("table")
	p.AllowAttrs("border").Matching(bluemonday.Integer).OnElements("img")
	p.AllowAttrs("colspan", "rowspan").Matching(bluemonday.Integer).OnElements(cells...)
	p.AllowAttrs("span").Matching(bluemonday.Integer).OnElements("col", "colgroup")
	p.AllowAttrs("nowrap").Matching(regexp.MustCompile(`(?i)^(|nowrap)$`)).OnElements(cells...)
	p.AllowAttrs("valign").Matching(regexp.MustCompile(`(?i)^(top|middle|bottom|baseline)$`)).
		OnElements("td", "th", "tr", "tbody", "thead", "tfoot", "col", "colgroup")
	color := regexp.MustCompile(`^#?[0-9a-zA-Z]{1,20}$`)
	p.AllowAttrs("bgcolor").Matching(color).OnElements("table", "tr", "td", "th")
	p.AllowAttrs("color").Matching(color).OnElements("font")
	p.AllowAttrs("face").Matching(regexp.MustCompile(`^[\p{L}\p{N} ,'"-]{1,100}$`)).OnElements("font")
	p.AllowAttrs("size").Matching(regexp.MustCompile(`^[+-]?[1-7]$`)).OnElements("font")
	p.AllowAttrs("type").Matching(bluemonday.ListType).OnElements("ol", "ul", "li")
	p.AllowAttrs("start").Matching(bluemonday.Integer).OnElements("ol")
	p.AllowAttrs("value").Matching(bluemonday.Integer).OnElements("li")
	p.AllowAttrs("open").Matching(regexp.MustCompile(`(?i)^(|open)$`)).OnElements("details")

	// Each property's value is checked by bluemonday's handler for it;
	// none of these accepts url(), and position is not among them.
	p.AllowStyles("color", "background-color",
		"font-family", "font-size", "font-style", "font-weight", "font-variant",
		"text-align", "text-decoration", "text-indent", "text-transform",
		"line-height", "letter-spacing", "word-spacing", "white-space", "vertical-align",
		"word-break", "word-wrap", "overflow-wrap", "direction",
		"margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
		"padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
		"border", "border-top", "border-right", "border-bottom", "border-left",
		"border-color", "border-style", "border-width", "border-collapse", "border-radius",
		"width", "height", "max-width", "min-width", "max-height", "min-height",
		"list-style-type", "table-layout").Globally()
	return p
}

// sanitizeHTML converts an HTML body to UTF-8 (by the MIME charset, else
// by its BOM or <meta>, else UTF-8 if valid, else windows-1252) and runs
// htmlPolicy on it.
func sanitizeHTML(b []byte, label string) string {
	if strings.TrimSpace(label) != "" {
		b = []byte(decodeCharsetString(label, b))
	} else if enc, _, _ := htmlcharset.DetermineEncoding(b, "text/html"); enc != nil {
		if out, err := enc.NewDecoder().Bytes(b); err == nil {
			b = out
		}
	}
	b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	var out bytes.Buffer
	if err := htmlPolicy.SanitizeReaderToWriter(bytes.NewReader(b), &out); err != nil {
		return ""
	}
	return out.String()
}

// finishHTML rewrites htmlPolicy's output: an <img> keeps its src only if
// it is a cid: URL that resolve maps to a non-empty URL; an <a> with an
// href gets target="_blank" rel="noopener noreferrer nofollow"; a style
// attribute that somehow still mentions url(), expression(), @import or
// a CSS escape is dropped.
//
// The fragment is parsed as the HTML5 parser parses the content of the
// <article> that shows it, and rendered back from the tree, so the result
// is always balanced: a stray </article> is dropped and an <a>, <font> or
// <details> left open is closed at the end of the message, never around
// the portal's own page.
func finishHTML(s string, resolve func(contentID string) string) string {
	container := &html.Node{Type: html.ElementNode, Data: "article", DataAtom: atom.Article}
	nodes, err := html.ParseFragment(strings.NewReader(s), container)
	if err != nil {
		return ""
	}
	var tree strings.Builder
	tree.Grow(len(s))
	for _, n := range nodes {
		finishNode(n, resolve)
		if err := html.Render(&tree, n); err != nil {
			return ""
		}
	}
	// html.Render writes void elements as <br/>; write them as <br>, as
	// the rest of the page does.
	z := html.NewTokenizer(strings.NewReader(tree.String()))
	var b strings.Builder
	b.Grow(tree.Len())
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return b.String()
		}
		t := z.Token()
		if tt == html.SelfClosingTagToken {
			t.Type = html.StartTagToken
		}
		b.WriteString(t.String())
	}
}

// finishNode applies finishHTML's attribute rules to n and everything
// under it.
func finishNode(n *html.Node, resolve func(contentID string) string) {
	if n.Type == html.ElementNode {
		attrs := n.Attr[:0]
		hasHref := false
		for _, a := range n.Attr {
			switch {
			case a.Namespace != "":
				continue
			case n.Data == "img" && a.Key == "src":
				if a.Val = resolveCID(a.Val, resolve); a.Val == "" {
					continue
				}
			case n.Data == "a" && (a.Key == "rel" || a.Key == "target"):
				continue
			case n.Data == "a" && a.Key == "href":
				hasHref = true
			case a.Key == "style" && unsafeStyle(a.Val):
				continue
			}
			attrs = append(attrs, a)
		}
		if hasHref {
			attrs = append(attrs, html.Attribute{Key: "target", Val: "_blank"},
				html.Attribute{Key: "rel", Val: "noopener noreferrer nofollow"})
		}
		n.Attr = attrs
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		finishNode(c, resolve)
	}
}

// resolveCID maps a cid: URL to resolve's URL for its content ID; "" for
// anything else.
func resolveCID(src string, resolve func(string) string) string {
	src = strings.TrimSpace(src)
	if len(src) < 4 || !strings.EqualFold(src[:4], "cid:") {
		return ""
	}
	id := src[4:]
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	if id == "" {
		return ""
	}
	return resolve(id)
}

func unsafeStyle(v string) bool {
	v = strings.ToLower(v)
	for _, bad := range []string{"url(", "expression", "@import", `\`, "image-set", "var("} {
		if strings.Contains(v, bad) {
			return true
		}
	}
	return false
}
