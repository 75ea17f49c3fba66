package mailparse

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"reflect"
	"strings"
	"testing"
)

func TestParseMIMEValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		value  string
		params map[string]string
	}{
		{`Text/Plain; Charset="UTF-8"; format=flowed`, "text/plain", map[string]string{"charset": "UTF-8", "format": "flowed"}},
		{`attachment; filename="a \"quoted\" name.txt"`, "attachment", map[string]string{"filename": `a "quoted" name.txt`}},
		{`attachment; filename*=UTF-8''%E2%82%AC%zz.txt; filename=fallback.txt`, "attachment", map[string]string{"filename": "€%zz.txt"}},
		{`attachment; filename*0="a"; filename*1="b"; filename*3="d"`, "attachment", map[string]string{"filename": "ab"}},
		{`attachment; filename*1="b"; filename=plain.txt`, "attachment", map[string]string{"filename": "plain.txt"}},
		{`attachment; filename*=windows-1252''%80.txt`, "attachment", map[string]string{"filename": "€.txt"}},
		{`attachment; filename*=x-nonsense''%C3%A4.txt`, "attachment", map[string]string{"filename": "ä.txt"}},
		{`attachment; filename*=no-quotes%41`, "attachment", map[string]string{"filename": "no-quotesA"}},
		{`inline;;; ; = ; filename = spaced name.txt ;`, "inline", map[string]string{"filename": "spaced name.txt"}},
		{``, "", map[string]string{}},
	}
	for _, tt := range tests {
		value, params := ParseValue(tt.in)
		if value != tt.value || !reflect.DeepEqual(params, tt.params) {
			t.Errorf("ParseValue(%q) = %q %q, want %q %q", tt.in, value, params, tt.value, tt.params)
		}
	}
}

// TestTransforms checks the lenient decoders against the standard
// library's encoders at every chunk size.
func TestTransforms(t *testing.T) {
	t.Parallel()
	data := make([]byte, 5000)
	for i := range data {
		data[i] = byte(i*31 + i>>8)
	}
	b64 := base64.StdEncoding.EncodeToString(data)
	var wrapped strings.Builder
	for i := 0; i < len(b64); i += 76 {
		wrapped.WriteString(b64[i:min(i+76, len(b64))] + "\r\n")
	}
	var qpb bytes.Buffer
	qw := quotedprintable.NewWriter(&qpb)
	qw.Binary = true
	qw.Write(data)
	qw.Close()
	qp := qpb.String()
	text := "a\r\nb\rc\n\r\n\r\r\n"
	for _, chunk := range []int{1, 2, 3, 4, 5, 7, 64, 4096} {
		if got := readAllChunked(t, &base64Transform{}, wrapped.String(), chunk); !bytes.Equal(got, data) {
			t.Errorf("base64, chunk %d: differs", chunk)
		}
		if got := readAllChunked(t, &base64Transform{}, "QQ==Qg==", chunk); string(got) != "AB" {
			t.Errorf("base64 concatenated, chunk %d: %q", chunk, got)
		}
		if got := readAllChunked(t, &qpTransform{}, qp, chunk); !bytes.Equal(got, data) {
			t.Errorf("quoted-printable, chunk %d: differs", chunk)
		}
		if got := readAllChunked(t, &qpTransform{}, "soft=  \r\nbreak=\nx=4", chunk); string(got) != "softbreakx=4" {
			t.Errorf("quoted-printable soft breaks, chunk %d: %q", chunk, got)
		}
		if got := readAllChunked(t, &crlfTransform{}, text, chunk); string(got) != "a\nb\rc\n\n\r\n" {
			t.Errorf("crlf, chunk %d: %q", chunk, got)
		}
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func readAllChunked(t *testing.T, tr byteTransform, in string, chunk int) []byte {
	t.Helper()
	out, err := io.ReadAll(chunkReader{&transformReader{r: chunkReader{strings.NewReader(in), chunk}, t: tr}, chunk})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMultipartScannerFragments puts line ends and delimiters at every
// offset of a 16-byte buffer, so lines arrive in fragments.
func TestMultipartScannerFragments(t *testing.T) {
	t.Parallel()
	for n := 0; n < 50; n++ {
		for _, content := range []string{
			strings.Repeat("x", n),
			strings.Repeat("x", n) + "\r",
			strings.Repeat("x", n) + "\r\n" + strings.Repeat("y", n) + "\r",
			strings.Repeat("x", n) + "\r\r\n\n" + strings.Repeat("y", 50-n),
		} {
			body := "pre\r\n--b\r\n" + content + "\r\n--b\r\n" + content + "\r\n--b--\r\n"
			sc := newMultipartScanner(bufio.NewReaderSize(strings.NewReader(body), 16), "b")
			var parts []string
			for sc.next() {
				b, err := io.ReadAll(chunkReader{sc, 7})
				if err != nil {
					t.Fatal(err)
				}
				parts = append(parts, string(b))
			}
			if len(parts) != 2 || parts[0] != content || parts[1] != content {
				t.Errorf("content %q: parts %q", content, parts)
			}
		}
	}
}

// FuzzParseValue checks that ParseValue gives the standard answer
// whenever mime.ParseMediaType accepts a value, and that the lenient
// parser agrees with it there too, except on a backslash before a
// character that is not a tspecial: the standard parser keeps that
// backslash (so an unescaped Windows path in a filename keeps its last
// element), the lenient one drops it.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{
		`text/plain; charset="us-ascii"`,
		`multipart/mixed; boundary="=_b"; charset=utf-8`,
		`attachment; filename="a \"b\".pdf"`,
		`TEXT/HTML; Charset=ISO-8859-1`,
		`inline`,
		`text/plain; name*0="a"; name*1="b"`,
		`text/plain; name*=utf-8''%C3%A9`,
		`text/plain; a=1; a=2`,
		`text/plain;; x`,
		`attachment; filename="C:\dir\a.pdf"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		value, params := ParseValue(v)
		if strings.Contains(v, "*") {
			return
		}
		stdValue, stdParams, err := mime.ParseMediaType(v)
		if err != nil {
			return
		}
		lenValue, lenParams := parseValueLenient(v)
		if value != stdValue || !reflect.DeepEqual(params, stdParams) {
			t.Fatalf("ParseValue(%q) = %q %q, want the standard %q %q", v, value, params, stdValue, stdParams)
		}
		if !strings.Contains(v, `\`) && (lenValue != stdValue || !reflect.DeepEqual(lenParams, stdParams)) {
			t.Fatalf("lenient(%q) = %q %q, standard %q %q", v, lenValue, lenParams, stdValue, stdParams)
		}
	})
}

// TestParseValueWindowsPath: an unescaped Windows path, as some old
// clients send it, keeps its backslashes, so the filename's last element
// survives cleaning.
func TestParseValueWindowsPath(t *testing.T) {
	t.Parallel()
	_, params := ParseValue(`attachment; filename="C:\dir\a.pdf"`)
	if got := params["filename"]; got != `C:\dir\a.pdf` {
		t.Errorf("filename %q", got)
	}
}
