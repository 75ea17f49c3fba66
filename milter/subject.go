package milter

import (
	"mime"
	"regexp"
	"strings"

	"github.com/emersion/go-message/charset"
)

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

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
	return m.re.MatchString(text) || m.re.MatchString(unfold(value))
}

// strip returns the Subject value without the tag, ready to be written back
// as a header value (RFC 2047 encoded and folded when it is not plain ASCII).
func (m *tagMatcher) strip(value string) string {
	text, ok := decodeHeader(value)
	if !ok {
		// The tag sits outside the undecodable words, or we would not have
		// seen it: remove it from the raw value and keep the rest as is.
		return strings.TrimSpace(m.re.ReplaceAllString(unfold(value), " "))
	}
	text = strings.TrimSpace(m.re.ReplaceAllString(text, " "))
	return encodeHeader(text)
}

// encodeHeader writes text as a header value: as is when it is printable
// ASCII and cannot be mistaken for an encoded word, else as UTF-8 Q-encoded
// words, one per folded line so no line grows past 78 characters.
func encodeHeader(text string) string {
	plain := !strings.Contains(text, "=?")
	for i := 0; i < len(text) && plain; i++ {
		plain = text[i] >= 0x20 && text[i] < 0x7f
	}
	if plain {
		return fold(text)
	}
	return strings.ReplaceAll(mime.QEncoding.Encode("utf-8", text), "?= =?", "?=\r\n =?")
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
