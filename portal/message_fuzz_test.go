package portal

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// FuzzParseMessage checks that no input panics ParseMessage or OpenPart,
// that both see the same leaves, and that what ParseMessage hands out
// keeps its promises (see checkConsistent). Seeds: the small messages in
// testdata/message, and testdata/fuzz/FuzzParseMessage.
func FuzzParseMessage(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "message", "*.eml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		// The fuzzer minimizes each new input byte by byte: large seeds
		// spend the fuzzing time there. mixedMessage covers attachments.
		if len(b) <= 8<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte(relatedMessage(htmlSanitizeInput)))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(bytes.NewReader(data), RenderLimits{MaxInlineText: 1 << 10, MaxInlineHTML: 4 << 10}, testCIDURL)
		if err != nil {
			if !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		checkConsistent(t, data, m)
	})
}

// consistencySample is how many leaves at each end checkConsistent opens
// when a message has many.
const consistencySample = 8

var (
	fuzzHrefRe = regexp.MustCompile(`(?i)^(https?|mailto):`)
	// fuzzTags are the elements the policy may let through.
	fuzzTags = map[string]bool{}
)

func init() {
	for _, t := range strings.Fields(`a abbr acronym address article aside b bdi bdo big blockquote br caption
		center cite code col colgroup dd del details dfn div dl dt em figcaption figure font footer
		h1 h2 h3 h4 h5 h6 header hr i img ins kbd li mark ol p pre q rp rt ruby s samp section
		small span strike strong sub summary sup table tbody td tfoot th thead tr tt u ul var wbr`) {
		fuzzTags[t] = true
	}
}

// checkConsistent checks m against the message data it came from:
// OpenPart finds exactly m.leaves leaves, agrees on each attachment's
// name, type and size (for the first and last consistencySample when
// there are more), and the strings and HTML are well formed and safe.
func checkConsistent(t *testing.T, data []byte, m *Message) {
	t.Helper()
	if !utf8.ValidString(m.Text) || int64(len(m.Text)) > 1<<20 {
		t.Errorf("Text invalid or too long: %d bytes", len(m.Text))
	}
	for _, s := range []string{m.From, m.To, m.Cc, m.Date, m.Subject, m.MessageID, m.References, m.FromAddress} {
		if !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n\x00") {
			t.Errorf("header string %q not clean", s)
		}
	}
	for _, list := range [][]string{m.ToAddresses, m.CcAddresses, m.ReplyToAddresses} {
		for _, a := range list {
			if !utf8.ValidString(a) || strings.ContainsAny(a, "\r\n\x00 ") || a == "" {
				t.Errorf("address %q not clean", a)
			}
		}
	}
	checkSafeHTML(t, string(m.HTML))

	// Each OpenPart reads the whole message again: with many leaves,
	// check the first and last few.
	sample := func(i, n int) bool {
		return n <= 2*consistencySample || i < consistencySample || i >= n-consistencySample
	}
	last := -1
	for i, a := range m.Attachments {
		if a.Index <= last || a.Index >= m.leaves {
			t.Errorf("attachment index %d out of order or range (%d leaves)", a.Index, m.leaves)
		}
		last = a.Index
		if a.Filename == "" || len(a.Filename) > maxFilename || !utf8.ValidString(a.Filename) ||
			strings.ContainsAny(a.Filename, `/\`) || a.Filename == "." || a.Filename == ".." ||
			strings.IndexFunc(a.Filename, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) >= 0 {
			t.Errorf("filename %q not clean", a.Filename)
		}
		if a.ContentType != strings.ToLower(a.ContentType) {
			t.Errorf("content type %q not lowercase", a.ContentType)
		}
		if !sample(i, len(m.Attachments)) {
			continue
		}
		var n countingWriter
		var info PartInfo
		err := OpenPart(bytes.NewReader(data), PartSelector{Index: a.Index}, func(pi PartInfo) (io.Writer, error) {
			info = pi
			return &n, nil
		})
		if err != nil {
			t.Fatalf("OpenPart(%d): %v", a.Index, err)
		}
		if info != (PartInfo{a.Filename, a.ContentType}) || int64(n) != a.Size {
			t.Errorf("OpenPart(%d) = %+v, %d bytes; ParseMessage said %+v", a.Index, info, n, a)
		}
	}
	for i := 0; i < m.leaves; i++ {
		if !sample(i, m.leaves) {
			continue
		}
		if err := OpenPart(bytes.NewReader(data), PartSelector{Index: i}, func(PartInfo) (io.Writer, error) { return io.Discard, nil }); err != nil {
			t.Fatalf("OpenPart(%d) of %d leaves: %v", i, m.leaves, err)
		}
	}
	err := OpenPart(bytes.NewReader(data), PartSelector{Index: m.leaves}, func(PartInfo) (io.Writer, error) { return io.Discard, nil })
	if !errors.Is(err, ErrPartNotFound) {
		t.Errorf("OpenPart(%d) past %d leaves: %v", m.leaves, m.leaves, err)
	}
}

// checkSafeHTML parses s as a browser would and checks that only allowed
// elements remain, with no event handlers, no URLs but cid links to this
// portal and http(s)/mailto links, and no url() in styles.
func checkSafeHTML(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("HTML not valid UTF-8")
	}
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return
		}
		tok := z.Token()
		switch tt {
		case html.CommentToken, html.DoctypeToken:
			t.Errorf("HTML keeps %v %q", tt, tok.Data)
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			if !fuzzTags[tok.Data] {
				t.Errorf("HTML keeps element %q", tok.Data)
			}
		}
		for _, a := range tok.Attr {
			v := strings.ToLower(a.Val)
			switch {
			case strings.HasPrefix(a.Key, "on") || a.Key == "srcset" || a.Key == "background" || a.Key == "action" || a.Key == "formaction":
				t.Errorf("HTML keeps attribute %s=%q", a.Key, a.Val)
			case a.Key == "src" && (tok.Data != "img" || !strings.HasPrefix(a.Val, "/m/tok/cid/")):
				t.Errorf("HTML keeps src %q on %s", a.Val, tok.Data)
			case a.Key == "href" && (tok.Data != "a" || !fuzzHrefRe.MatchString(a.Val)):
				t.Errorf("HTML keeps href %q on %s", a.Val, tok.Data)
			case a.Key == "style" && (strings.Contains(v, "url(") || strings.Contains(v, "expression") || strings.Contains(v, `\`)):
				t.Errorf("HTML keeps style %q", a.Val)
			}
		}
	}
}
