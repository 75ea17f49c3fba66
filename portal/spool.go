package portal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/securemail/securemail/envelope"
)

// spool keeps uploaded envelopes, as binary ciphertext, one file per
// distinct envelope, named by a token derived from its content (an HMAC of
// its SHA-256 under a key kept in the spool), so the same envelope posted
// again reuses its file instead of adding one. A file older than ttl is
// swept; the recipient can always post the attachment again.
//
// The spool holds at most quota bytes, uploads in progress included: each
// upload reserves the largest envelope before it starts, and when the
// reservation does not fit, expired files are swept first and the upload
// is refused (errSpoolFull) if it still does not fit.
type spool struct {
	dir   string
	ttl   time.Duration
	max   int64 // bytes of decoded envelope
	quota int64
	key   []byte // HMAC key for tokens

	mu     sync.Mutex
	stored int64 // bytes in .env files
	inUse  int64 // stored plus reservations of uploads in progress
}

// spoolKeyFile holds the spool's token key, so that tokens survive a
// restart and the same envelope keeps its file.
const spoolKeyFile = "token.key"

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

// MinSpoolMax is the smallest spool quota that can take one upload of the
// largest envelope a message of maxMessage bytes seals to.
func MinSpoolMax(maxMessage int64) int64 { return maxUpload(maxMessage) }

var (
	errSpoolTooLarge = errors.New("portal: envelope larger than any message this server seals")
	errSpoolFull     = errors.New("portal: spool full")
)

func newSpool(dir string, ttl time.Duration, max, quota int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("portal: spool: %w", err)
	}
	s := &spool{dir: dir, ttl: ttl, max: max, quota: quota}
	keyPath := filepath.Join(dir, spoolKeyFile)
	key, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		err = writeFileSync(keyPath, key)
	}
	if err != nil {
		return nil, fmt.Errorf("portal: spool: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("portal: spool: %s is damaged; remove it (uploaded envelopes are posted again as needed)", keyPath)
	}
	s.key = key
	if err := s.recount(); err != nil {
		return nil, fmt.Errorf("portal: spool: %w", err)
	}
	return s, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// recount sets stored from the files on disk.
func (s *spool) recount() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	var total int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".env") {
			total += info.Size()
		}
	}
	s.mu.Lock()
	s.inUse += total - s.stored
	s.stored = total
	s.mu.Unlock()
	return nil
}

// reserve takes room for one upload of the largest envelope, sweeping
// expired files first if it does not fit. release gives back what the
// upload did not keep.
func (s *spool) reserve(now time.Time) error {
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		if s.inUse+s.max <= s.quota {
			s.inUse += s.max
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		if attempt > 0 {
			return errSpoolFull
		}
		if _, err := s.sweep(now); err != nil {
			return err
		}
	}
}

func (s *spool) release(n int64) {
	s.mu.Lock()
	s.inUse -= n
	s.mu.Unlock()
}

// used reports the bytes stored and reserved.
func (s *spool) used() (stored, inUse int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stored, s.inUse
}

// validToken accepts exactly what store makes (22 characters of
// unpadded base64url), so a token can never
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

func (s *spool) path(token string) string { return spoolPath(s.dir, token) }

// spoolPath is token's file in dir.
func spoolPath(dir, token string) string { return filepath.Join(dir, token+".env") }

// store decodes the base64 textarea content from src into the spool and
// returns its token; an envelope already spooled keeps its file, whose
// age starts again. It fails with errSpoolFull, without reading src, when
// the spool has no room.
func (s *spool) store(src io.Reader, now time.Time) (string, error) {
	if err := s.reserve(now); err != nil {
		return "", err
	}
	defer s.release(s.max)
	tmp, token, n, err := receive(s.dir, s.key, s.max, src)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	existed, replaced, err := fileUpload(s.dir, tmp, token, n, now)
	if err == nil && !existed {
		s.stored += n - replaced
		s.inUse += n - replaced
	}
	return token, err
}

// receive decodes the base64 textarea content from src into a new file in
// dir, at most max bytes (errSpoolTooLarge past it), and returns the
// file, the envelope's token under key and its size. Whitespace of any
// kind between base64 characters is ignored (browsers rewrite a
// textarea's line ends). The token is derived from the content, so the
// same envelope always gets the same one.
func receive(dir string, key []byte, max int64, src io.Reader) (tmp, token string, n int64, err error) {
	f, err := os.CreateTemp(dir, "upload-*")
	if err != nil {
		return "", "", 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	sum := sha256.New()
	dec := base64.NewDecoder(base64.StdEncoding, &spaceStripper{r: src})
	n, err = io.Copy(io.MultiWriter(f, sum), io.LimitReader(dec, max+1))
	if err != nil {
		return "", "", 0, fmt.Errorf("portal: envelope is not base64: %w", err)
	}
	if n > max {
		return "", "", 0, errSpoolTooLarge
	}
	if err = f.Close(); err != nil {
		return "", "", 0, err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(sum.Sum(nil))
	return f.Name(), base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16]), n, nil
}

// fileUpload renames the received file tmp, of n bytes, to token's file
// in dir, with its time set to now (the entry's age on the handler's
// clock). When token's file is there already with n bytes (the same
// envelope again), tmp is removed, the file's age starts again and
// existed is true; a file of another size (cut short by a crash) is
// replaced, and replaced is its size. The caller serialises calls for
// one dir.
func fileUpload(dir, tmp, token string, n int64, now time.Time) (existed bool, replaced int64, err error) {
	path := spoolPath(dir, token)
	if st, err := os.Stat(path); err == nil {
		if st.Size() == n {
			os.Remove(tmp)
			return true, 0, os.Chtimes(path, now, now)
		}
		replaced = st.Size()
	}
	if err := os.Chtimes(tmp, now, now); err != nil {
		os.Remove(tmp)
		return false, 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, 0, err
	}
	return false, replaced, nil
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
	if !validToken(token) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if info, err := os.Stat(s.path(token)); err == nil && os.Remove(s.path(token)) == nil {
		s.stored -= info.Size()
		s.inUse -= info.Size()
	}
}

// sweep removes spool files older than the TTL and abandoned uploads
// (sweepDir), then counts what is left.
func (s *spool) sweep(now time.Time) (int, error) {
	removed, err := sweepDir(s.dir, s.ttl, now)
	if err != nil {
		return 0, err
	}
	return removed, s.recount()
}

// sweepDir removes the envelope files in dir older than ttl (on the
// handler's clock, which set their times), and uploads abandoned half-way
// for more than an hour (on the real clock, which wrote them: an upload
// in progress is never that old, since UploadGuard.Deadline is shorter).
func sweepDir(dir string, ttl time.Duration, now time.Time) (int, error) {
	entries, err := os.ReadDir(dir)
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
		if (strings.HasSuffix(name, ".env") && age > ttl) || (strings.HasPrefix(name, "upload-") && time.Since(info.ModTime()) > time.Hour) {
			if os.Remove(filepath.Join(dir, name)) == nil {
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
