// Package mailparse is the lenient streaming MIME reader behind the
// portal's read page (portal.ParseMessage and portal.OpenPart). It reads
// an RFC 5322 message once, as a stream: nothing is held in memory beyond
// the header fields and a few small buffers per nesting level.
//
// Structure. Walk goes through the MIME tree depth first. Every part that
// is not a multipart (message/rfc822 included: it is not opened) is a
// leaf, numbered from 0 in walk order; a message that is not multipart is
// leaf 0. Two walks of the same input number the leaves the same way, so
// a leaf index from one is valid for the other. Multiparts nested deeper
// than MaxNesting, and multiparts without a boundary, are leaves holding
// their raw body. A multipart whose boundary never occurs yields no
// leaves, and a part with nothing at all between two delimiters is
// skipped. At most MaxLeaves leaves are read; the rest is ignored.
//
// The reader is lenient, as mail readers must be, because a strict one
// would hide parts the sender sent (go-message's readers stop at the
// first malformed header line or bad parameter): header lines that are
// not fields end the header and start the body, a missing close
// delimiter ends the multipart at the end of input, unknown charsets are
// read as UTF-8, invalid base64 characters are skipped and broken
// quoted-printable escapes are kept literally. Walk fails only when the
// input does not start with a header (ErrNoHeader) or when reading the
// input fails (that error, wrapped). The standard library is used where
// it is lenient enough: mime.ParseMediaType first for parameters,
// mime.WordDecoder for RFC 2047 words. Quoted-printable keeps its own
// decoder because mime/quotedprintable stops at a control byte (see
// TestQPKeepsWhatTheStandardReaderStopsAt).
package mailparse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"
)

const (
	MaxHeaderBytes = 1 << 20 // per header section; more is read and dropped
	MaxNesting     = 16      // multipart levels opened
	MaxLeaves      = 1000    // leaves read; the rest of the message is ignored
)

// NewTextReader decodes a text body from the named charset to UTF-8 with
// CRLF turned into LF (a lone CR stays). Invalid UTF-8 is left for the
// caller to replace.
func NewTextReader(label string, body io.Reader) io.Reader {
	return &transformReader{r: CharsetReader(label, body), t: &crlfTransform{}}
}

// Header fields.

// Field is one header field.
type Field struct {
	Name  string // lowercased
	Value string // unfolded, trimmed
}

// Header is a header section in order; names may repeat.

type Header []Field

// Get returns the value of the first field called name (lowercase), or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// Values returns the values of every field called name (lowercase).
func (h Header) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if f.Name == name {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// ReadHeader reads a header section leniently. It stops after the
// empty line, at the end of input, or before the first line that is
// neither a field nor a continuation line (that line is left unread, it
// is the first line of the body). A leading mbox "From " line is skipped
// when mbox is set. Beyond MaxHeaderBytes, lines are read and dropped.
func ReadHeader(br *bufio.Reader, mbox bool) (h Header) {
	var (
		field  []byte // the field being read, continuation lines included
		colon  = -1   // offset of its colon; -1 if none is being read
		budget = MaxHeaderBytes
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
		h = append(h, Field{Name: name, Value: value})
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

// ParseValue parses a Content-Type or Content-Disposition value
// leniently: the value before the first ';', lowercased, and the
// parameters with lowercased names. RFC 2231 continuations and charsets
// are decoded, and win over the plain form; otherwise the first
// occurrence of a name wins. Malformed parameters are skipped.
func ParseValue(v string) (string, map[string]string) {
	// The standard parser is strict, so its answer is taken only when it
	// accepts the whole value. Values with RFC 2231 extended parameters
	// ('*') always take the lenient path: the standard parser drops those
	// in charsets other than UTF-8 and US-ASCII instead of converting them.
	if !strings.Contains(v, "*") {
		if value, params, err := mime.ParseMediaType(v); err == nil {
			return value, params
		}
	}
	return parseValueLenient(v)
}

// parseValueLenient is ParseValue for the values the standard parser
// rejects.
func parseValueLenient(v string) (string, map[string]string) {
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
			params[name] = DecodeCharsetString(cs, b)
		}
	}
	for name, v := range extended {
		if _, ok := params[name]; !ok {
			cs, v := splitRFC2231(v)
			params[name] = DecodeCharsetString(cs, appendUnescaped(nil, v))
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

// CharsetReader converts r from the named charset to UTF-8; an unknown or
// absent charset leaves the bytes as they are (callers make them valid
// UTF-8 afterwards).
func CharsetReader(label string, r io.Reader) io.Reader {
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

// DecodeCharsetString converts b from the named charset to valid UTF-8.
func DecodeCharsetString(label string, b []byte) string {
	r := CharsetReader(label, bytes.NewReader(b))
	if out, err := io.ReadAll(r); err == nil {
		b = out
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// WordDecoder decodes RFC 2047 words in any charset CharsetReader knows.
var WordDecoder = &mime.WordDecoder{CharsetReader: func(label string, r io.Reader) (io.Reader, error) {
	return CharsetReader(label, r), nil
}}

// DecodeWords decodes RFC 2047 encoded words, keeping s if it cannot.
func DecodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	if d, err := WordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// The MIME walk.

// Leaf is a leaf part as the walk hands it out. body is valid only
// during the callback.
type Leaf struct {
	Index       int // from 0 in walk order
	MediaType   string
	Params      map[string]string // Content-Type parameters
	Disposition string
	Named       bool   // the part gives a filename
	RawFilename string // filename or name parameter as sent, not cleaned
	ContentID   string // without angle brackets
	CTE         string // Content-Transfer-Encoding, lowercased
	Known       bool   // CTE is one Decoded undoes
	body        io.Reader
}

func newLeaf(h Header, index int, mediaType string, params map[string]string, body io.Reader) *Leaf {
	l := &Leaf{Index: index, MediaType: mediaType, Params: params, body: body}
	disp, dparams := ParseValue(h.Get("content-disposition"))
	l.Disposition = disp
	raw := dparams["filename"]
	if raw == "" {
		raw = params["name"]
	}
	l.Named = strings.TrimSpace(raw) != ""
	l.RawFilename = raw
	l.ContentID = strings.TrimSpace(h.Get("content-id"))
	if i := strings.IndexByte(l.ContentID, '<'); i >= 0 {
		if j := strings.IndexByte(l.ContentID[i:], '>'); j > 0 {
			l.ContentID = l.ContentID[i+1 : i+j]
		}
	}
	l.CTE = strings.ToLower(strings.TrimSpace(h.Get("content-transfer-encoding")))
	if i := strings.IndexAny(l.CTE, " \t;("); i >= 0 {
		l.CTE = l.CTE[:i]
	}
	switch l.CTE {
	case "", "7bit", "8bit", "binary", "base64", "quoted-printable":
		l.Known = true
	}
	return l
}

// Decoded returns the body with its transfer encoding undone (the raw
// body for an unknown encoding).
func (l *Leaf) Decoded() io.Reader {
	switch l.CTE {
	case "base64":
		return &transformReader{r: l.body, t: &base64Transform{}}
	case "quoted-printable":
		return &transformReader{r: l.body, t: &qpTransform{}}
	}
	return l.body
}

// ErrStopWalk, returned by a Walk callback, ends the walk without error.
var ErrStopWalk = errors.New("mailparse: stop walk")

// ErrNoHeader is returned by Walk when the input does not start with a
// header section.
var ErrNoHeader = errors.New("mailparse: input does not start with a header")

// Walk reads the message's header and calls fn for each leaf in
// depth-first order. With readAll it then reads r to its end, so that a
// damaged or cut plaintext stream is reported even when the rest of the
// message is of no interest. It returns the message's header; its error
// is ErrNoHeader, a read error of r, or one from fn.
func Walk(r io.Reader, readAll bool, fn func(*Leaf) error) (Header, error) {
	er := &readErrRecorder{r: r}
	br := bufio.NewReaderSize(er, 16<<10)
	h := ReadHeader(br, true)
	if len(h) == 0 {
		if er.err != nil {
			return nil, fmt.Errorf("read message: %w", er.err)
		}
		return nil, ErrNoHeader
	}
	w := &mimeWalker{fn: fn}
	err := w.entity(h, br, "text/plain", 0)
	if readAll && (err == nil || err == ErrStopWalk) {
		io.Copy(io.Discard, br)
	}
	if er.err != nil {
		return nil, fmt.Errorf("read message: %w", er.err)
	}
	if err != nil && err != ErrStopWalk {
		return nil, err
	}
	return h, nil
}

type mimeWalker struct {
	fn     func(*Leaf) error
	leaves int
}

func (w *mimeWalker) entity(h Header, body *bufio.Reader, defaultType string, depth int) error {
	mt, params := ParseValue(h.Get("content-type"))
	if !validMediaType(mt) {
		mt = defaultType
	}
	if boundary := params["boundary"]; strings.HasPrefix(mt, "multipart/") && boundary != "" && depth < MaxNesting {
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
			ph := ReadHeader(pbr, false)
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
	if w.leaves >= MaxLeaves {
		return ErrStopWalk
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
