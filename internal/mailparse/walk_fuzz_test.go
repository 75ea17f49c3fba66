package mailparse

import (
	"bytes"
	"errors"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// FuzzWalk checks that no input panics Walk, that it fails only with
// ErrNoHeader, that leaves are numbered 0, 1, ... in walk order and at
// most MaxLeaves, and that every decoded body reads to its end. Seeds:
// testdata/fuzz/FuzzWalk, copied from portal's FuzzParseMessage corpus.
func FuzzWalk(f *testing.F) {
	f.Add([]byte("From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\nQQ==\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		next := 0
		h, err := Walk(bytes.NewReader(data), true, func(l *Leaf) error {
			if l.Index != next {
				t.Fatalf("leaf %d, want %d", l.Index, next)
			}
			next++
			if _, err := io.Copy(io.Discard, l.Decoded()); err != nil {
				t.Fatalf("leaf %d: %v", l.Index, err)
			}
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrNoHeader) || h != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		if len(h) == 0 || next > MaxLeaves {
			t.Fatalf("header %d fields, %d leaves", len(h), next)
		}
	})
}

// TestQPKeepsWhatTheStandardReaderStopsAt shows why quoted-printable is
// not decoded with mime/quotedprintable: its reader stops with an error
// at a control byte or at '=' before a lone CR, and everything after
// would be hidden from the recipient. The lenient decoder keeps going.
func TestQPKeepsWhatTheStandardReaderStopsAt(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"a\x01b rest":   "a\x01b rest",
		"x=\rY rest":    "xY rest",
		"x=ZZ rest\r\n": "x=ZZ rest\r\n",
	} {
		if _, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(in))); err == nil && !strings.Contains(in, "=ZZ") {
			t.Errorf("%q: the standard reader accepts it now; reconsider using it", in)
		}
		if got := readAllChunked(t, &qpTransform{}, in, 3); string(got) != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
