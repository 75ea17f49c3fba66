package milter

import (
	"fmt"
	"io"
	"mime"
	"regexp"
	"strings"

	"github.com/emersion/go-message/charset"
)

// wordDecoder decodes every word it can. A word in a charset it does not
// know keeps its bytes, so that one such word never hides the tag in the
// words around it.
var wordDecoder = &mime.WordDecoder{CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
	if cr, err := charset.Reader(cs, r); err == nil {
		return cr, nil
	}
	return r, nil
}}

// unfold removes the line breaks of a folded header value (RFC 5322 2.2.3),
// whichever line ends the MTA used.
func unfold(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "\n")
	return strings.ReplaceAll(v, "\n", "")
}

// decodeHeader returns the text a mail program shows for a header value:
// unfolded and RFC 2047 decoded. ok is false when a word could not be
// decoded (unknown charset, bad encoding); text is then the unfolded value.
func decodeHeader(v string) (text string, ok bool) {
	raw := unfold(v)
	dec, err := wordDecoder.DecodeHeader(raw)
	if err != nil {
		return raw, false
	}
	return dec, true
}

// tagMatcher finds the subject tag, ignoring case, with the blanks around it.
type tagMatcher struct {
	tag string
	re  *regexp.Regexp
}

func newTagMatcher(tag string) *tagMatcher {
	return &tagMatcher{
		tag: tag,
		re:  regexp.MustCompile(`(?i)[ \t]*` + regexp.QuoteMeta(tag) + `[ \t]*`),
	}
}

// in reports whether a Subject value carries the tag. It looks at the
// decoded text and, to fail closed on values it cannot decode, at the raw
// unfolded value too.
func (m *tagMatcher) in(value string) bool {
	text, _ := decodeHeader(value)
	if m.re.MatchString(text) {
		return true
	}
	raw := unfold(value)
	// Without encoded words the decoded text is the raw value: one look is enough.
	return raw != text && m.re.MatchString(raw)
}

// strip returns the Subject value without the tag, ready to be written back
// as a header value: control characters become blanks, and anything that is
// not plain ASCII is RFC 2047 encoded and folded.
func (m *tagMatcher) strip(value string) string {
	text, _ := decodeHeader(value)
	text = m.re.ReplaceAllString(text, " ")
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	return encodeHeader(strings.TrimSpace(text))
}

// encodeHeader writes text as a header value: as is when it is printable
// ASCII that cannot be mistaken for an encoded word, else as UTF-8 Q-encoded
// words, one per folded line so no line grows past 78 characters.
func encodeHeader(text string) string {
	plain := true
	for i := 0; i < len(text) && plain; i++ {
		plain = text[i] >= 0x20 && text[i] < 0x7f
	}
	switch {
	case plain && !strings.Contains(text, "=?"):
		return fold(text)
	case plain:
		// mime's encoder returns printable ASCII unchanged, "=?" and all,
		// which a mail program would decode once more.
		return qWords(text)
	}
	return strings.ReplaceAll(mime.QEncoding.Encode("utf-8", text), "?= =?", "?=\r\n =?")
}

// qWords writes text as UTF-8 Q-encoded words (RFC 2047 section 4.2), each
// at most 75 characters, one per folded line.
func qWords(text string) string {
	const room = 75 - len("=?utf-8?q??=")
	var words []string
	var w strings.Builder
	for i := 0; i < len(text); i++ {
		c := text[i]
		enc := string(c)
		switch {
		case c == ' ':
			enc = "_"
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("!*+-/", c) >= 0:
		default:
			enc = fmt.Sprintf("=%02X", c)
		}
		if w.Len()+len(enc) > room {
			words = append(words, "=?utf-8?q?"+w.String()+"?=")
			w.Reset()
		}
		w.WriteString(enc)
	}
	if w.Len() > 0 {
		words = append(words, "=?utf-8?q?"+w.String()+"?=")
	}
	return strings.Join(words, "\r\n ")
}

// fold breaks a long plain value at blanks so lines stay near 78 characters.
func fold(text string) string {
	words := strings.Split(text, " ")
	var b strings.Builder
	lineLen := len("Subject: ")
	for i, w := range words {
		if i > 0 {
			if lineLen+1+len(w) > 78 && lineLen > 1 {
				b.WriteString("\r\n ")
				lineLen = 1
			} else {
				b.WriteByte(' ')
				lineLen++
			}
		}
		b.WriteString(w)
		lineLen += len(w)
	}
	return b.String()
}
