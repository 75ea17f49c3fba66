package portal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/securemail/securemail/keystore"
)

// envelopeSpool is where uploaded envelopes wait between POST /open and
// the reads: a local folder (spool) on a single host, or a store every
// portal host shares (sharedSpool), so that any step reaches any host.
// Both keep only ciphertext, stream it, reuse one entry per distinct
// envelope (tokens derived from content under a key they share), honour
// the quota with uploads in progress counted, and sweep after the TTL.
type envelopeSpool interface {
	maxEnvelope() int64
	// put stores the base64 textarea content read from src; errSpoolFull
	// without reading src when there is no room.
	put(ctx context.Context, src io.Reader, now time.Time) (string, error)
	// get opens an envelope; os.ErrNotExist when unknown or too old.
	get(ctx context.Context, token string, now time.Time) (io.ReadCloser, error)
	drop(ctx context.Context, token string)
	sweepOld(ctx context.Context, now time.Time) (int, error)
}

func (s *spool) maxEnvelope() int64 { return s.max }
func (s *spool) put(_ context.Context, src io.Reader, now time.Time) (string, error) {
	return s.store(src, now)
}
func (s *spool) get(_ context.Context, token string, now time.Time) (io.ReadCloser, error) {
	return s.open(token, now)
}
func (s *spool) drop(_ context.Context, token string)                   { s.remove(token) }
func (s *spool) sweepOld(_ context.Context, now time.Time) (int, error) { return s.sweep(now) }

// sharedChunk is the size of one stored chunk: what an upload holds in
// memory at a time, and one row of the store.
const sharedChunk = 256 << 10

// sharedSpool keeps envelopes in a keystore.SpoolStore (PostgreSQL).
type sharedSpool struct {
	st    keystore.SpoolStore
	ttl   time.Duration
	max   int64
	quota int64
	key   []byte
}

func newSharedSpool(ctx context.Context, st keystore.SpoolStore, ttl time.Duration, max, quota int64) (*sharedSpool, error) {
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	key, err := st.SpoolTokenKey(ctx, fresh)
	if err != nil {
		return nil, fmt.Errorf("portal: shared spool: %w", err)
	}
	if len(key) != 32 {
		return nil, errors.New("portal: shared spool: the stored token key is damaged")
	}
	return &sharedSpool{st: st, ttl: ttl, max: max, quota: quota, key: key}, nil
}

func (s *sharedSpool) maxEnvelope() int64 { return s.max }

func (s *sharedSpool) put(ctx context.Context, src io.Reader, now time.Time) (string, error) {
	upload, err := s.st.BeginUpload(ctx, s.max, s.quota, time.Now())
	if errors.Is(err, keystore.ErrSpoolFull) {
		// Expired envelopes may make room; then try once more.
		if _, err := s.sweepOld(ctx, now); err != nil {
			return "", err
		}
		upload, err = s.st.BeginUpload(ctx, s.max, s.quota, time.Now())
		if errors.Is(err, keystore.ErrSpoolFull) {
			return "", errSpoolFull
		}
	}
	if err != nil {
		return "", err
	}
	committed := false
	defer func() {
		if !committed {
			// Not ctx: a cancelled request must still give its room back.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = s.st.AbortUpload(actx, upload)
		}
	}()
	sum := sha256.New()
	dec := io.LimitReader(base64.NewDecoder(base64.StdEncoding, &spaceStripper{r: src}), s.max+1)
	buf := make([]byte, sharedChunk)
	var size int64
	for seq := 0; ; seq++ {
		n, rerr := io.ReadFull(dec, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return "", fmt.Errorf("portal: envelope is not base64: %w", rerr)
		}
		size += int64(n)
		if size > s.max {
			return "", errSpoolTooLarge
		}
		if n > 0 {
			sum.Write(buf[:n])
			if err := s.st.WriteChunk(ctx, upload, seq, buf[:n]); err != nil {
				return "", err
			}
		}
		if rerr != nil {
			break
		}
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write(sum.Sum(nil))
	token := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
	if _, err := s.st.CommitUpload(ctx, upload, token, size, now); err != nil {
		return "", err
	}
	committed = true
	return token, nil
}

func (s *sharedSpool) get(ctx context.Context, token string, now time.Time) (io.ReadCloser, error) {
	if !validToken(token) {
		return nil, os.ErrNotExist
	}
	rc, err := s.st.OpenSpooled(ctx, token, now.Add(-s.ttl))
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, os.ErrNotExist
	}
	return rc, err
}

func (s *sharedSpool) drop(ctx context.Context, token string) {
	if !validToken(token) {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = s.st.RemoveSpooled(actx, token)
}

// sweepOld removes envelopes past the TTL (handler's clock, which
// touched them) and uploads abandoned for an hour (real clock, which
// began them; an upload in progress is never that old).
func (s *sharedSpool) sweepOld(ctx context.Context, now time.Time) (int, error) {
	return s.st.SweepSpool(ctx, now.Add(-s.ttl), time.Now().Add(-time.Hour))
}
