package milter

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/charset"
)

// The seed corpora in testdata/fuzz/Fuzz*/seed-* are made by fuzzSeeds;
// regenerate them with go test ./milter -run TestFuzzSeeds -update-seeds.
// Other files there are inputs the fuzzer found, or regressions for bugs
// found by hand; keep them.

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpora under testdata/fuzz")

const fuzzTag = "[encrypt]"

// fuzzSeeds returns the committed seeds of each fuzz target. Some are
// regressions for bugs found with these targets: FuzzSubjectTag's
// double-encoded, tag-beside-unknown-charset and raw-*-unknown-charset,
// FuzzSealMessage's no-sep and no-sep-cr.
func fuzzSeeds() map[string]map[string][]byte {
	long := strings.Repeat("Quarterly numbers and more words ", 12) + fuzzTag + strings.Repeat(" tail", 30)
	msg := "From: Zoe <zoe@example.test>\r\nTo: alice@external.test\r\nSubject: Quarterly [encrypt] numbers\r\n" +
		"X-Folded: a\r\n b\r\n\tc\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Hello Alice,\r\n\r\nthe code is 1234.\r\n"
	return map[string]map[string][]byte{
		"FuzzSubjectTag": {
			"plain":                      []byte("Quarterly [encrypt] numbers"),
			"upper":                      []byte("[ENCRYPT] Team lunch"),
			"only-tag":                   []byte(fuzzTag),
			"empty":                      nil,
			"folded-crlf":                []byte("A long subject line that goes on\r\n and on [Encrypt]\r\n\tuntil here"),
			"folded-lf":                  []byte("Quarterly\n [encrypt] numbers"),
			"q-utf8":                     []byte("=?utf-8?q?=5Bencrypt=5D_Gr=C3=BC=C3=9Fe?="),
			"b-utf8":                     []byte("=?UTF-8?B?W2VuY3J5cHRdIEdlaGFsdHNhYnJlY2hudW5n?="),
			"split-words":                []byte("=?UTF-8?Q?Hi_[enc?= =?UTF-8?Q?rypt]_there?="),
			"latin1":                     []byte("=?ISO-8859-1?Q?Gr=FC=DFe_=5BEncrypt=5D_aus_K=F6ln?="),
			"shift-jis":                  []byte("=?Shift_JIS?B?jKmQz4+RgsyMjw==?= [encrypt]"),
			"unknown-charset":            []byte("[encrypt] =?x-unknown-charset?Q?abc?="),
			"bad-base64":                 []byte("=?utf-8?b?!!!?= [encrypt]"),
			"unterminated":               []byte("=?utf-8?q?[encrypt]"),
			"nested-tag":                 []byte("[enc[encrypt]rypt]"),
			"encoded-crlf":               []byte("=?utf-8?q?hi=0D=0ABcc:_evil@example.test?= [encrypt]"),
			"encoded-nul":                []byte("=?utf-8?q?a=00b?= [encrypt]"),
			"long":                       []byte(long),
			"long-word":                  []byte(strings.Repeat("x", 200) + " " + fuzzTag),
			"tabs":                       []byte("\t[encrypt]\ta\tb"),
			"looks-encoded":              []byte("price =?x [encrypt]"),
			"invalid-utf8":               []byte("caf\xe9 [encrypt] \xff"),
			"utf16-raw-tag":              []byte("=?utf-16?q?[encrypt]?="),
			"trailing-newline":           []byte("[encrypt] x\r\n"),
			"double-encoded":             []byte("=?utf-8?q?=3D=3Futf-8=3Fq=3F=3D5Bencrypt=3D5D=3F=3D?= [encrypt]"),
			"tag-beside-unknown-charset": []byte("=?utf-8?q?=5Bencrypt=5D_Report?= =?x-unknown-charset?q?abc?="),
			"raw-nul-unknown-charset":    []byte("[encrypt] =?x-unknown-charset?q?a?= \x00"),
			"raw-cr-unknown-charset":     []byte("[encrypt] =?x-unknown-charset?q?a?=\rBcc: evil@example.test"),
		},
		"FuzzReadHeaderSection": {
			"message":      []byte(msg),
			"message-lf":   []byte(strings.ReplaceAll(msg, "\r\n", "\n")),
			"empty":        nil,
			"only-sep":     []byte("\r\n"),
			"no-sep":       []byte("Subject: x\r\nFrom: a@b"),
			"no-sep-eol":   []byte("Subject: x\r\n"),
			"continuation": []byte(" leading blank\r\n\r\n"),
			"no-colon":     []byte("Subject x\r\n\r\n"),
			"space-name":   []byte("Sub ject: x\r\n\r\n"),
			"empty-name":   []byte(": x\r\n\r\n"),
			"bare-cr":      []byte("Subject: a\rb\r\n\r\nbody"),
			"cr-cr-lf":     []byte("Subject: a\r\r\n\r\n"),
			"ws-only-cont": []byte("X: a\r\n \r\n\t\r\nY: b\r\n\r\nbody"),
			"8bit":         []byte("Subject: Gr\xfc\xdfe\r\n\r\n\xff\x00"),
			"long-line":    []byte("X: " + strings.Repeat("y", 5000) + "\r\n\r\n"),
		},
		"FuzzReadList": {
			"mixed":        []byte("# billing export\nzoe@example.test\n@shop.test # whole domain\n.corp.test\nalice\n\n"),
			"crlf":         []byte("a@b.test\r\n@c.test\r\n"),
			"upper":        []byte("ZOE@Example.TEST.\n"),
			"bad-entry":    []byte("zoe example.test\n"),
			"double-at":    []byte("a@b@c.test\n"),
			"only-comment": []byte("# nothing\n"),
			"bare-at":      []byte("@\n"),
			"bare-dot":     []byte(".\n"),
			"long-line":    []byte(strings.Repeat("x", 5000) + "\n"),
			"nul":          []byte("a\x00b@c.test\n"),
			"no-eol":       []byte("last@example.test"),
		},
		"FuzzSealMessage": {
			"message":      []byte(msg),
			"message-lf":   []byte(strings.ReplaceAll(msg, "\r\n", "\n")),
			"empty":        nil,
			"empty-body":   []byte("Subject: x\r\n\r\n"),
			"no-sep":       []byte("Subject: x\r\nX-Last: y"),
			"no-sep-cr":    []byte("X-Last: y\r"),
			"headers-only": []byte("Subject: x\r\n"),
			"two-ctypes":   []byte("Content-Type: text/plain\r\ncontent-type: text/html\r\nContent-Disposition: attachment; filename=SecureMessageATT.html\r\n\r\nhi"),
			"ws-only-cont": []byte("X: a\r\n \r\nY: b\r\n\r\nbody"),
			"body-only":    []byte("\r\nno header at all"),
			"binary":       []byte("X: \x00\xff\r\n\r\n\x00\x01\x02\xff\xfe"),
		},
	}
}

func corpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

func stringCorpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\nstring(%q)\n", data)
}

// seedFile renders a seed in the type its target takes.
func seedFile(target string, data []byte) []byte {
	if target == "FuzzSubjectTag" {
		return stringCorpusFile(data)
	}
	return corpusFile(data)
}

// TestFuzzSeeds checks that the committed seed corpora are what fuzzSeeds
// makes, or rewrites them with -update-seeds.
func TestFuzzSeeds(t *testing.T) {
	t.Parallel()
	for target, seeds := range fuzzSeeds() {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateSeeds {
			old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
			for _, name := range old {
				if err := os.Remove(name); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, data := range seeds {
				if err := os.WriteFile(filepath.Join(dir, "seed-"+name), seedFile(target, data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		files, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
		if len(files) != len(seeds) {
			t.Errorf("%s: %d seed files, want %d; run go test ./milter -run TestFuzzSeeds -update-seeds", target, len(files), len(seeds))
		}
		for name, data := range seeds {
			got, err := os.ReadFile(filepath.Join(dir, "seed-"+name))
			if err != nil || !bytes.Equal(got, seedFile(target, data)) {
				t.Errorf("%s: seed-%s missing or stale (%v); run with -update-seeds", target, name, err)
			}
		}
	}
}

// containsFoldASCII reports whether s contains substr, ASCII letters
// compared without case (the tag is ASCII).
func containsFoldASCII(s, substr string) bool {
	return strings.Contains(asciiLower(s), asciiLower(substr))
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// shownDecoder decodes a header value the way a lenient mail program shows
// it: every encoded word it can decode is decoded, whatever the others
// hold; a word in a charset it does not know shows its bytes as they are.
var shownDecoder = &mime.WordDecoder{CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
	if cr, err := charset.Reader(cs, r); err == nil {
		return cr, nil
	}
	return r, nil
}}

// checkHeaderValue fails when v, written back as a header value, could
// end the field early or smuggle in another one: every line break must be
// a fold (followed by a space or a tab), and there is no NUL.
func checkHeaderValue(t *testing.T, what, v string) {
	t.Helper()
	if strings.IndexByte(v, 0) >= 0 {
		t.Fatalf("%s %q contains a NUL", what, v)
	}
	for i := 0; i < len(v); i++ {
		if v[i] != '\r' && v[i] != '\n' {
			continue
		}
		j := i + 1
		if v[i] == '\r' && j < len(v) && v[j] == '\n' {
			j++
		}
		if j >= len(v) || (v[j] != ' ' && v[j] != '\t') {
			t.Fatalf("%s %q has a line break at byte %d that is not a fold", what, v, i)
		}
		i = j - 1
	}
}

// FuzzSubjectTag checks the subject tag matcher on raw Subject values:
// it fails closed (a tag the raw value or a lenient mail program shows, in
// any case, triggers), and strip leaves a value that neither triggers nor
// shows the tag, and that is a safe header value.
func FuzzSubjectTag(f *testing.F) {
	m := newTagMatcher(fuzzTag)
	f.Fuzz(func(t *testing.T, v string) {
		got := m.in(v)
		if !got && containsFoldASCII(unfold(v), fuzzTag) {
			t.Fatalf("in(%q) = false, but the unfolded raw value carries the tag", v)
		}
		if shown, err := shownDecoder.DecodeHeader(unfold(v)); err == nil && !got && containsFoldASCII(shown, fuzzTag) {
			t.Fatalf("in(%q) = false, but a mail program shows %q", v, shown)
		}
		stripped := m.strip(v) // must not panic, whatever the value
		if !got {
			return
		}
		if m.in(stripped) {
			t.Fatalf("strip(%q) = %q, which still triggers", v, stripped)
		}
		if shown, err := shownDecoder.DecodeHeader(unfold(stripped)); err == nil && containsFoldASCII(shown, fuzzTag) {
			t.Fatalf("strip(%q) = %q, which a mail program shows as %q", v, stripped, shown)
		}
		checkHeaderValue(t, fmt.Sprintf("strip(%q) =", v), stripped)
	})
}

// FuzzReadHeaderSection parses arbitrary bytes as a message. It must not
// panic; an accepted header section must give back the input byte for
// byte (fields, separator, rest), with well-formed field names; a refusal
// must be ErrMalformedHeader.
func FuzzReadHeaderSection(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		fields, sep, err := readHeaderSection(br)
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		rest, err := io.ReadAll(br)
		if err != nil {
			t.Fatal(err)
		}
		var again []byte
		for i, fl := range fields {
			if fl.name == "" || strings.ContainsAny(fl.name, ": \t\r\n") {
				t.Fatalf("field %d has name %q", i, fl.name)
			}
			if !bytes.HasPrefix(fl.raw, []byte(fl.name+":")) {
				t.Fatalf("field %d raw %q does not start with its name %q", i, fl.raw, fl.name)
			}
			if strings.HasSuffix(fl.value, "\n") {
				t.Fatalf("field %d value %q keeps its line end", i, fl.value)
			}
			again = append(again, fl.raw...)
		}
		switch string(sep) {
		case "\r\n", "\n":
		case "":
			if len(rest) != 0 {
				t.Fatalf("no separator, but %d bytes follow the header section", len(rest))
			}
		default:
			t.Fatalf("separator %q", sep)
		}
		again = append(append(again, sep...), rest...)
		if !bytes.Equal(again, data) {
			t.Fatalf("parse -> serialise changed the message:\n%q\nwant\n%q", again, data)
		}
	})
}

// FuzzSealMessage seals arbitrary bytes with the offline tool. It must
// either fail without writing anything, or write a well-formed sealed
// message whose envelope opens to exactly the input.
func FuzzSealMessage(f *testing.F) {
	e := newTestEnv(f, nil, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		err := e.filter.SealMessage(bytes.NewReader(data), &out, "zoe@example.test", []string{"alice@external.test"})
		if err != nil {
			if out.Len() != 0 {
				t.Fatalf("SealMessage failed (%v) after writing %d bytes", err, out.Len())
			}
			return
		}
		checkSealedShape(t, data, out.Bytes())
		plain, _ := e.open(t, out.Bytes())
		if !bytes.Equal(plain, data) {
			t.Fatalf("envelope opens to\n%q\nwant\n%q", plain, data)
		}
	})
}

// checkSealedShape checks the sealed message's header section: it parses,
// has exactly one MIME-Version and one Content-Type of our own, and every
// field is either one of the input's fields as it was or 7-bit; and its
// body is 7-bit with lines of at most 998 bytes.
func checkSealedShape(t *testing.T, in, sealed []byte) {
	t.Helper()
	inFields, _, _ := readHeaderSection(bufio.NewReader(bytes.NewReader(in)))
	br := bufio.NewReaderSize(bytes.NewReader(sealed), 1<<20)
	fields, sep, err := readHeaderSection(br)
	if err != nil {
		t.Fatalf("sealed message's header section: %v", err)
	}
	if len(sep) == 0 {
		t.Fatal("sealed message has no blank line after its header section")
	}
	mimeVersions, ctypes := 0, 0
	for _, fl := range fields {
		switch {
		case strings.EqualFold(fl.name, "MIME-Version"):
			mimeVersions++
		case strings.EqualFold(fl.name, "Content-Type"):
			ctypes++
			if !strings.HasPrefix(fl.value, `multipart/mixed; boundary="securemail-`) {
				t.Errorf("Content-Type %q is not ours", fl.value)
			}
		case strings.EqualFold(fl.name, "Subject"):
			if newTagMatcher(fuzzTag).in(fl.value) {
				t.Errorf("sealed Subject %q still triggers", fl.value)
			}
		}
		if isSevenBit(fl.raw) {
			continue
		}
		copied := false
		for _, f := range inFields {
			copied = copied || bytes.Equal(trimLineEnd(f.raw), trimLineEnd(fl.raw))
		}
		if !copied {
			t.Errorf("8-bit field %q is not one of the input's", fl.raw)
		}
	}
	if mimeVersions != 1 || ctypes != 1 {
		t.Errorf("sealed header section has %d MIME-Version and %d Content-Type fields, want 1 and 1:\n%q", mimeVersions, ctypes, sealed[:len(sealed)-br.Buffered()])
	}
	body, _ := io.ReadAll(br)
	if !isSevenBit(body) {
		t.Error("sealed body is not 7-bit")
	}
	for i, line := range bytes.Split(body, []byte("\n")) {
		if len(bytes.TrimSuffix(line, []byte("\r"))) > 998 {
			t.Errorf("sealed body line %d is %d bytes long", i+1, len(line))
		}
	}
}

func trimLineEnd(b []byte) []byte {
	return bytes.TrimRight(b, "\r\n")
}

func isSevenBit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 || c == 0 {
			return false
		}
	}
	return true
}
