package portal

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/securemail/securemail/envelope"
)

// spool keeps uploaded envelopes, as binary ciphertext, one file per
// upload, named by a random token. A file older than ttl is swept; the
// recipient can always post the attachment again.
type spool struct {
	dir string
	ttl time.Duration
	max int64 // bytes of decoded envelope
}

// maxUpload is the largest envelope, in binary, that a message of
// maxMessage bytes seals to: the header, the message, a 16-byte tag per
// 64 KiB chunk, plus slack for headers the MTA adds.
func maxUpload(maxMessage int64) int64 {
	chunks := maxMessage/envelope.ChunkSize + 1
	return 64 + maxMessage + 16*chunks + 1<<20
}

// maxUploadBody bounds a whole POST /open body: base64 of the envelope in
// 76-character lines plus the form's other fields.
func maxUploadBody(maxEnvelope int64) int64 {
	b64 := (maxEnvelope + 2) / 3 * 4
	return b64 + b64/76*2 + 64<<10
}

var errSpoolTooLarge = errors.New("portal: envelope larger than any message this server seals")

func newSpool(dir string, ttl time.Duration, max int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("portal: spool: %w", err)
	}
	return &spool{dir: dir, ttl: ttl, max: max}, nil
}

func newToken() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validToken accepts exactly what newToken makes, so a token can never
// name a path outside the spool.
func validToken(t string) bool {
	if len(t) != 22 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (s *spool) path(token string) string { return filepath.Join(s.dir, token+".env") }

// store decodes the base64 textarea content from src into a new spool file
// and returns its token. Whitespace of any kind between base64 characters
// is ignored (browsers rewrite a textarea's line ends).
func (s *spool) store(src io.Reader, now time.Time) (string, error) {
	f, err := os.CreateTemp(s.dir, "upload-*")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	dec := base64.NewDecoder(base64.StdEncoding, &spaceStripper{r: src})
	n, err := io.Copy(f, io.LimitReader(dec, s.max+1))
	if err != nil {
		return "", fmt.Errorf("portal: envelope is not base64: %w", err)
	}
	if n > s.max {
		return "", errSpoolTooLarge
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	// The file's time is the entry's age on the handler's clock.
	if err := os.Chtimes(tmp, now, now); err != nil {
		return "", err
	}
	token := newToken()
	if err := os.Rename(tmp, s.path(token)); err != nil {
		return "", err
	}
	ok = true
	return token, nil
}

// open returns the spooled envelope for token, or os.ErrNotExist when it
// is unknown or past its time.
func (s *spool) open(token string, now time.Time) (*os.File, error) {
	if !validToken(token) {
		return nil, os.ErrNotExist
	}
	f, err := os.Open(s.path(token))
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || now.Sub(st.ModTime()) > s.ttl {
		f.Close()
		return nil, os.ErrNotExist
	}
	return f, nil
}

func (s *spool) remove(token string) {
	if validToken(token) {
		os.Remove(s.path(token))
	}
}

// sweep removes spool files older than the TTL, and uploads abandoned
// half-way for more than an hour.
func (s *spool) sweep(now time.Time) (int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			continue
		}
		age := now.Sub(info.ModTime())
		name := e.Name()
		if (strings.HasSuffix(name, ".env") && age > s.ttl) || (strings.HasPrefix(name, "upload-") && age > time.Hour) {
			if os.Remove(filepath.Join(s.dir, name)) == nil {
				removed++
			}
		}
	}
	return removed, nil
}

// spaceStripper drops ASCII whitespace, so the base64 decoder sees only
// the alphabet.
type spaceStripper struct{ r io.Reader }

func (s *spaceStripper) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			switch c {
			case ' ', '\t', '\r', '\n', '\f', '\v':
			default:
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
