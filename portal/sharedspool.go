package portal

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
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

// sharedSpool keeps envelopes in a keystore.SpoolStore (PostgreSQL), which
// every portal host reaches and which alone says whether an envelope is
// spooled and how old it is, and keeps a copy of each envelope this host
// received or read in a local folder, so its bytes cross the network once
// per host instead of at every read:
//
//   - put writes the upload to the folder first (its token is known only
//     at the end), then files it in the store (StartCommit: the
//     reservation ends and the entry is filed, unseen until committed)
//     and answers; the bytes are stored from the copy, and the filing
//     committed, in the background (a filing), or only the entry's age
//     restarts when the store has it. The quota is checked before the
//     upload, as before: a filing counts as its reservation until it
//     commits;
//   - get serves this host's copy of an envelope it is filing without
//     asking the store (it has just received it); otherwise it asks the
//     store for the entry (one small query; an entry another host is
//     filing is waited for, a few seconds at most) and reads the local
//     copy when it has the entry's size; otherwise (the envelope was
//     posted through another host, or the copy was cut short) it copies
//     the envelope from the store, in one streaming query, and reads that;
//   - a filing that fails (the database went away, the host stopped)
//     leaves nothing in the store and no copy: the recipient posts the
//     attachment again, as for any envelope the spool no longer has;
//   - drop ends a filing of its token first (cancelled; the store's
//     removal waits for another host's), then removes both; the sweep
//     removes both; a local copy is swept by its file time, which get
//     moves up to the store's when another host posted the envelope
//     again, so a copy lives as long as the entry;
//   - wait returns when the filings in progress have ended. Without it,
//     a filing in progress holds a connection of the store's pool, whose
//     Close waits for it.
//
// A copy is named by its token, derived from the envelope's content, so
// it can never be of another envelope than the store's entry.
type sharedSpool struct {
	st    keystore.SpoolStore
	dir   string // this host's copies
	ttl   time.Duration
	max   int64
	quota int64
	key   []byte
	mu    sync.Mutex // serialises filing copies in dir

	log *slog.Logger // nil: a failed filing is not logged (tests)

	fmu     sync.Mutex         // guards filings; taken before mu, never after
	filings map[string]*filing // by token: this host's filings in progress
	running sync.WaitGroup     // their goroutines
}

// filing is an envelope this host received whose bytes are being stored.
type filing struct {
	size   int64
	now    time.Time // its age, on the handler's clock
	cancel context.CancelFunc
	done   chan struct{} // closed when it has ended
}

// filingTimeout bounds storing one envelope's bytes in the background.
const filingTimeout = 2 * time.Minute

func newSharedSpool(ctx context.Context, st keystore.SpoolStore, dir string, ttl time.Duration, max, quota int64) (*sharedSpool, error) {
	if dir == "" {
		return nil, errors.New("portal: shared spool: a folder (SpoolDir) for this host's copies is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("portal: shared spool: %w", err)
	}
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	key, err := st.SpoolTokenKey(ctx, fresh)
	if err != nil {
		return nil, fmt.Errorf("portal: shared spool: %w", err)
	}
	if len(key) != 32 {
		return nil, errors.New("portal: shared spool: the stored token key is damaged")
	}
	return &sharedSpool{st: st, dir: dir, ttl: ttl, max: max, quota: quota, key: key, filings: map[string]*filing{}}, nil
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
	tmp, token, n, err := receive(s.dir, s.key, s.max, src)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	existed, _, err := fileUpload(s.dir, tmp, token, n, now)
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	// Opened before the filing starts: the bytes stored are this file's
	// even if the copy is replaced or removed meanwhile.
	f, err := os.Open(spoolPath(s.dir, token))
	if err != nil {
		return "", err
	}
	c, err := s.st.StartCommit(ctx, upload, token, n, now)
	if err != nil {
		f.Close()
		if !existed {
			// The store has not got it: no copy of it here either.
			s.removeCopy(token)
		}
		return "", err
	}
	committed = true // the reservation is the filing's now
	if c.Existed() {
		f.Close()
		return token, nil
	}
	s.finishLater(token, upload, n, now, c, f)
	return token, nil
}

// finishLater stores f's n bytes and commits the filing c of token in
// the background. A filing that fails gives its reservation back and
// removes this host's copy, unless a newer filing of the same token has
// taken its place.
func (s *sharedSpool) finishLater(token string, upload, n int64, now time.Time, c keystore.SpoolCommit, f *os.File) {
	ctx, cancel := context.WithTimeout(context.Background(), filingTimeout)
	fl := &filing{size: n, now: now, cancel: cancel, done: make(chan struct{})}
	s.fmu.Lock()
	s.filings[token] = fl
	s.running.Add(1)
	s.fmu.Unlock()
	go func() {
		defer s.running.Done()
		defer close(fl.done)
		defer cancel()
		err := c.Finish(ctx, f)
		f.Close()
		if err != nil {
			if s.log != nil {
				// The token's fingerprint, never the token: it reads the envelope.
				s.log.Warn("portal: an envelope was not stored in the shared spool; its reader posts it again",
					"envelope", keystore.Fingerprint([]byte(token)), "bytes", n, "err", err)
			}
			actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = s.st.AbortUpload(actx, upload)
			acancel()
		}
		s.fmu.Lock()
		defer s.fmu.Unlock()
		if s.filings[token] != fl {
			return
		}
		delete(s.filings, token)
		if err != nil {
			s.removeCopy(token)
		}
	}()
}

// filingOf returns this host's filing of token in progress, or nil.
func (s *sharedSpool) filingOf(token string) *filing {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.filings[token]
}

// wait returns when the filings in progress have ended.
func (s *sharedSpool) wait() { s.running.Wait() }

func (s *sharedSpool) get(ctx context.Context, token string, now time.Time) (io.ReadCloser, error) {
	if !validToken(token) {
		return nil, os.ErrNotExist
	}
	path := spoolPath(s.dir, token)
	if fl := s.filingOf(token); fl != nil && now.Sub(fl.now) <= s.ttl {
		// Received here moments ago; the store does not show it yet.
		if f, err := os.Open(path); err == nil {
			if st, err := f.Stat(); err == nil && st.Size() == fl.size {
				return f, nil
			}
			f.Close()
		}
	}
	rc, ent, err := s.st.OpenSpooled(ctx, token, now.Add(-s.ttl))
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, os.ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close() // unread when the copy here serves
	if f, err := os.Open(path); err == nil {
		if st, err := f.Stat(); err == nil && st.Size() == ent.Size {
			if st.ModTime().Before(ent.Touched) {
				// Posted again through another host: keep the copy as
				// long as the entry.
				_ = os.Chtimes(path, ent.Touched, ent.Touched)
			}
			return f, nil
		}
		f.Close()
	}
	return s.fetch(token, rc, ent)
}

// fetch copies the envelope read from rc into this host's folder and
// returns the copy, at its start.
func (s *sharedSpool) fetch(token string, rc io.Reader, ent keystore.SpoolEntry) (f *os.File, err error) {
	f, err = os.CreateTemp(s.dir, "upload-*")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// Buffered: the store hands out one row (8000 bytes) at a time.
	w := bufio.NewWriterSize(f, 256<<10)
	n, err := io.Copy(w, rc)
	if err == nil {
		err = w.Flush()
	}
	if errors.Is(err, keystore.ErrNotFound) && !errors.Is(err, keystore.ErrUnavailable) {
		return nil, os.ErrNotExist // removed while read
	}
	if err != nil {
		return nil, err
	}
	if n != ent.Size {
		return nil, fmt.Errorf("portal: shared spool: %d bytes read of %d", n, ent.Size)
	}
	if err := os.Chtimes(f.Name(), ent.Touched, ent.Touched); err != nil {
		return nil, err
	}
	s.mu.Lock()
	err = os.Rename(f.Name(), spoolPath(s.dir, token))
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return f, nil
}

func (s *sharedSpool) removeCopy(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	os.Remove(spoolPath(s.dir, token))
}

func (s *sharedSpool) drop(ctx context.Context, token string) {
	if !validToken(token) {
		return
	}
	if fl := s.filingOf(token); fl != nil {
		fl.cancel()
		<-fl.done
	}
	s.removeCopy(token)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = s.st.RemoveSpooled(actx, token)
}

// sweepOld removes envelopes past the TTL (handler's clock, which
// touched them) and uploads abandoned for an hour (real clock, which
// began them; an upload in progress is never that old) from the store,
// and the same from this host's folder. It counts the store's.
func (s *sharedSpool) sweepOld(ctx context.Context, now time.Time) (int, error) {
	if _, err := sweepDir(s.dir, s.ttl, now); err != nil {
		return 0, err
	}
	return s.st.SweepSpool(ctx, now.Add(-s.ttl), time.Now().Add(-time.Hour))
}
