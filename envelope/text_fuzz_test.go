package envelope

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// The first implementations of toASCII and of the line ends, kept as the
// reference the one-pass versions must agree with byte for byte.
func toASCIIReference(s string) string {
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

func linesReference(s string, lf bool) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
	if lf {
		s = strings.ReplaceAll(s, "\r\n", "\n")
	}
	return s
}

// FuzzMailText: toASCII and lineEnds write what the two-pass code they
// replaced wrote, for any input, valid UTF-8 or not, with any mix of CR,
// LF and CRLF.
func FuzzMailText(f *testing.F) {
	for _, s := range []string{"", "plain", "a\nb\r\nc\rd\n", "\r\r\n\n\r", "\n", "\r\n", "Grüße\nMüller\r\n", "\xff\xfe\n日本\r", "€\r\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := toASCII(s), toASCIIReference(s); got != want {
			t.Fatalf("toASCII(%q) = %q, want %q", s, got, want)
		}
		for _, lf := range []bool{false, true} {
			if got, want := (Notice{LF: lf}).lines(s), linesReference(s, lf); got != want {
				t.Fatalf("lines(%q), LF %v = %q, want %q", s, lf, got, want)
			}
		}
		if got, want := crlf(s), linesReference(s, false); got != want {
			t.Fatalf("crlf(%q) = %q, want %q", s, got, want)
		}
	})
}
