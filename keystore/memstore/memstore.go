// Package memstore is an in-memory keystore backend for tests and
// benchmarks. It implements keystore.Store and passes every suite in
// keystore/storetest, so a test that runs on it runs on the same contract
// as production; it keeps nothing across a restart and is never what
// `securemail serve` runs on.
//
// One mutex guards everything: every operation is atomic, Hit and
// ConsumeCode included. Every operation checks its context first.
package memstore

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/securemail/securemail/keystore"
)

// Store is the in-memory backend. The zero value is not usable; call New.
type Store struct {
	mu        sync.Mutex
	closed    bool
	keys      map[keystore.KeyID]keystore.KeyRecord
	accounts  map[string]keystore.Account
	codes     map[codeKey]keystore.Code
	sessions  map[string]keystore.Session // by string(digest)
	throttles map[string]keystore.Throttle
	limits    map[string]keystore.Limit
	reads     map[keystore.KeyID][]keystore.ReadEvent // in the order recorded
	copies    map[keystore.KeyID]*serverCopy
	links     map[string]keystore.KeyID // by string(link digest)
}

// serverCopy is a copy's description and its envelope, dropped once
// deleted.
type serverCopy struct {
	meta keystore.ServerCopy
	env  []byte
}

type codeKey struct {
	purpose keystore.CodePurpose
	email   string
}

var (
	_ keystore.Store    = (*Store)(nil)
	_ keystore.Exporter = (*Store)(nil)
	_ keystore.Importer = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{
		keys:      map[keystore.KeyID]keystore.KeyRecord{},
		accounts:  map[string]keystore.Account{},
		codes:     map[codeKey]keystore.Code{},
		sessions:  map[string]keystore.Session{},
		throttles: map[string]keystore.Throttle{},
		limits:    map[string]keystore.Limit{},
		reads:     map[keystore.KeyID][]keystore.ReadEvent{},
		copies:    map[keystore.KeyID]*serverCopy{},
		links:     map[string]keystore.KeyID{},
	}
}

// lock checks ctx and the store's state and takes the mutex; the caller
// unlocks.
func (s *Store) lock(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("keystore: %s: %w", op, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return keystore.ErrClosed
	}
	return nil
}

func cloneRecord(r keystore.KeyRecord) keystore.KeyRecord {
	r.WrappedDEK = bytes.Clone(r.WrappedDEK)
	r.Recipients = slices.Clone(r.Recipients)
	return r
}

func (s *Store) CreateKey(ctx context.Context, rec keystore.KeyRecord) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if err := s.lock(ctx, "create key"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	rec = cloneRecord(rec.Normalized())
	if old, ok := s.keys[rec.ID]; ok {
		if !old.Equal(rec) {
			return keystore.ErrKeyExists
		}
		return nil
	}
	s.keys[rec.ID] = rec
	return nil
}

func (s *Store) Key(ctx context.Context, id keystore.KeyID) (keystore.KeyRecord, error) {
	if err := s.lock(ctx, "read key"); err != nil {
		return keystore.KeyRecord{}, err
	}
	defer s.mu.Unlock()
	rec, ok := s.keys[id]
	if !ok {
		return keystore.KeyRecord{}, keystore.KeyNotFound(id)
	}
	return cloneRecord(rec), nil
}

func (s *Store) RevokeKey(ctx context.Context, id keystore.KeyID, at time.Time) error {
	_, err := s.modifyKey(ctx, "revoke key", id, func(r *keystore.KeyRecord) bool {
		// Under the mutex, with the revocation: the server copy goes.
		s.deleteEnvelopeLocked(id, at)
		if !r.Revoked.IsZero() {
			return false
		}
		r.Revoked = keystore.UTC(at)
		return true
	})
	return err
}

func (s *Store) SweepKeys(ctx context.Context, before time.Time) (int, error) {
	if err := s.lock(ctx, "sweep keys"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for id, r := range s.keys {
		if !r.Expires.IsZero() && r.Expires.Before(before) {
			delete(s.keys, id)
			s.deleteCopyLocked(id)
			n++
		}
	}
	// A key's read audit trail lives as long as the key.
	for id := range s.reads {
		if _, ok := s.keys[id]; !ok {
			delete(s.reads, id)
		}
	}
	return n, nil
}

// Close makes every later call fail with keystore.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *Store) modifyKey(ctx context.Context, op string, id keystore.KeyID, change func(*keystore.KeyRecord) bool) (bool, error) {
	if err := s.lock(ctx, op); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	rec, ok := s.keys[id]
	if !ok {
		return false, keystore.KeyNotFound(id)
	}
	rec = cloneRecord(rec)
	if !change(&rec) {
		return false, nil
	}
	s.keys[id] = rec
	return true, nil
}

// Portal state.

func cloneAccount(a keystore.Account) keystore.Account {
	a.Questions = slices.Clone(a.Questions)
	return a
}

func (s *Store) CreateAccount(ctx context.Context, a keystore.Account) error {
	a.Email = strings.ToLower(a.Email)
	if a.Email == "" {
		return errors.New("keystore: create account: no email")
	}
	if err := s.lock(ctx, "create account"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.accounts[a.Email]; ok {
		return keystore.ErrAccountExists
	}
	a = cloneAccount(a)
	a.Created, a.VerifiedAt, a.PasswordSet = keystore.UTC(a.Created), keystore.UTC(a.VerifiedAt), keystore.UTC(a.PasswordSet)
	s.accounts[a.Email] = a
	return nil
}

func (s *Store) Account(ctx context.Context, email string) (keystore.Account, error) {
	if err := s.lock(ctx, "read account"); err != nil {
		return keystore.Account{}, err
	}
	defer s.mu.Unlock()
	a, ok := s.accounts[strings.ToLower(email)]
	if !ok {
		return keystore.Account{}, keystore.AccountNotFound(email)
	}
	return cloneAccount(a), nil
}

func (s *Store) SetPassword(ctx context.Context, email, passwordHash string, at time.Time) error {
	if err := s.lock(ctx, "set password"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	email = strings.ToLower(email)
	a, ok := s.accounts[email]
	if !ok {
		return keystore.AccountNotFound(email)
	}
	a.PasswordHash, a.PasswordSet = passwordHash, keystore.UTC(at)
	s.accounts[email] = a
	return nil
}

func (s *Store) PutCode(ctx context.Context, c keystore.Code) error {
	if c.Purpose == "" || c.Email == "" || len(c.Digest) == 0 {
		return errors.New("keystore: put code: purpose, email and digest are required")
	}
	if err := s.lock(ctx, "put code"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	c.Email = strings.ToLower(c.Email)
	c.Digest = bytes.Clone(c.Digest)
	c.Expires = keystore.UTC(c.Expires)
	s.codes[codeKey{c.Purpose, c.Email}] = c
	return nil
}

func (s *Store) ConsumeCode(ctx context.Context, purpose keystore.CodePurpose, email string, digest []byte, now time.Time) error {
	if err := s.lock(ctx, "consume code"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	k := codeKey{purpose, strings.ToLower(email)}
	c, ok := s.codes[k]
	switch {
	case !ok:
		return keystore.CodeNotFound(purpose, email)
	case !now.Before(c.Expires):
		delete(s.codes, k)
		return keystore.ErrExpired
	case c.TriesLeft <= 0:
		return keystore.ErrTooManyAttempts
	case subtle.ConstantTimeCompare(c.Digest, digest) == 1:
		delete(s.codes, k)
		return nil
	}
	c.TriesLeft--
	s.codes[k] = c
	return keystore.ErrCodeMismatch
}

func (s *Store) PutSession(ctx context.Context, ss keystore.Session) error {
	if len(ss.Digest) == 0 {
		return errors.New("keystore: session has no digest")
	}
	if err := s.lock(ctx, "put session"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	ss.Digest = bytes.Clone(ss.Digest)
	ss.Email = strings.ToLower(ss.Email)
	ss.Created, ss.LastSeen, ss.Expires = keystore.UTC(ss.Created), keystore.UTC(ss.LastSeen), keystore.UTC(ss.Expires)
	s.sessions[string(ss.Digest)] = ss
	return nil
}

func (s *Store) Session(ctx context.Context, digest []byte) (keystore.Session, error) {
	if err := s.lock(ctx, "read session"); err != nil {
		return keystore.Session{}, err
	}
	defer s.mu.Unlock()
	ss, ok := s.sessions[string(digest)]
	if !ok || len(digest) == 0 {
		return keystore.Session{}, keystore.SessionNotFound(digest)
	}
	ss.Digest = bytes.Clone(ss.Digest)
	return ss, nil
}

func (s *Store) DeleteSession(ctx context.Context, digest []byte) error {
	if err := s.lock(ctx, "delete session"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.sessions, string(digest))
	return nil
}

func (s *Store) DeleteSessionsFor(ctx context.Context, email string, except []byte) (int, error) {
	email = strings.ToLower(email)
	if email == "" {
		return 0, errors.New("keystore: delete sessions: no email")
	}
	if err := s.lock(ctx, "delete sessions"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	return s.deleteSessionsLocked(email, except), nil
}

func (s *Store) deleteSessionsLocked(email string, except []byte) int {
	n := 0
	for k, ss := range s.sessions {
		if ss.Email == email && (except == nil || k != string(except)) {
			delete(s.sessions, k)
			n++
		}
	}
	return n
}

func (s *Store) AddFailure(ctx context.Context, key string, now time.Time, window time.Duration) (keystore.Throttle, error) {
	if key == "" {
		return keystore.Throttle{}, errors.New("keystore: throttle has no key")
	}
	if err := s.lock(ctx, "add failure"); err != nil {
		return keystore.Throttle{}, err
	}
	defer s.mu.Unlock()
	now = keystore.UTC(now)
	t := s.throttles[key]
	t.Key = key
	if t.WindowStart.IsZero() || now.Sub(t.WindowStart) >= window {
		t.WindowStart, t.InWindow = now, 0
	}
	t.Consecutive++
	t.InWindow++
	t.LastFailure = now
	s.throttles[key] = t
	return t, nil
}

func (s *Store) Throttle(ctx context.Context, key string) (keystore.Throttle, error) {
	if err := s.lock(ctx, "read throttle"); err != nil {
		return keystore.Throttle{Key: key}, err
	}
	defer s.mu.Unlock()
	t, ok := s.throttles[key]
	if !ok {
		return keystore.Throttle{Key: key}, nil
	}
	return t, nil
}

func (s *Store) ClearFailures(ctx context.Context, key string) error {
	if err := s.lock(ctx, "clear failures"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if t, ok := s.throttles[key]; ok {
		t.Consecutive = 0
		s.throttles[key] = t
	}
	return nil
}

func (s *Store) Hit(ctx context.Context, key string, now time.Time, window time.Duration, limit int) (keystore.HitResult, error) {
	if key == "" {
		return keystore.HitResult{}, errors.New("keystore: limit has no key")
	}
	if err := s.lock(ctx, "hit limit"); err != nil {
		return keystore.HitResult{}, err
	}
	defer s.mu.Unlock()
	now = keystore.UTC(now)
	l, ok := s.limits[key]
	if !ok || !now.Before(l.End) {
		l = keystore.Limit{Key: key, Start: now, End: now.Add(window)}
	}
	if l.Count >= limit {
		return keystore.HitResult{Count: l.Count, RetryAfter: l.End.Sub(now)}, nil
	}
	l.Count++
	s.limits[key] = l
	return keystore.HitResult{Allowed: true, Count: l.Count}, nil
}

func (s *Store) ResetHits(ctx context.Context, key string) error {
	if err := s.lock(ctx, "reset limit"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.limits, key)
	return nil
}

func (s *Store) RecordRead(ctx context.Context, ev keystore.ReadEvent) error {
	if ev.KeyID == (keystore.KeyID{}) {
		return errors.New("keystore: read event has no key id")
	}
	if err := s.lock(ctx, "record read"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	ev.Reader, ev.At = strings.ToLower(ev.Reader), keystore.UTC(ev.At)
	s.reads[ev.KeyID] = append(s.reads[ev.KeyID], ev)
	return nil
}

func (s *Store) Reads(ctx context.Context, id keystore.KeyID) ([]keystore.ReadEvent, error) {
	if err := s.lock(ctx, "read audit trail"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	evs := append([]keystore.ReadEvent{}, s.reads[id]...)
	slices.SortStableFunc(evs, func(a, b keystore.ReadEvent) int { return a.At.Compare(b.At) })
	return evs, nil
}

func (s *Store) SweepPortal(ctx context.Context, now time.Time, window time.Duration) (int, error) {
	if err := s.lock(ctx, "sweep portal"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for k, c := range s.codes {
		if c.Expires.Before(now) {
			delete(s.codes, k)
			n++
		}
	}
	for k, ss := range s.sessions {
		if ss.Expires.Before(now) {
			delete(s.sessions, k)
			n++
		}
	}
	idleSince := now.Add(-window)
	for k, t := range s.throttles {
		if t.LastFailure.Before(idleSince) {
			delete(s.throttles, k)
			n++
		}
	}
	for k, l := range s.limits {
		if l.End.Before(now) {
			delete(s.limits, k)
			n++
		}
	}
	return n, nil
}

// Administration.

func (s *Store) EachKey(ctx context.Context, f keystore.KeyFilter, fn func(keystore.KeyRecord) error) error {
	if err := s.lock(ctx, "list keys"); err != nil {
		return err
	}
	var recs []keystore.KeyRecord
	for _, r := range s.keys {
		if f.Match(r) {
			recs = append(recs, cloneRecord(r))
		}
	}
	s.mu.Unlock()
	slices.SortFunc(recs, func(a, b keystore.KeyRecord) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) ShredKey(ctx context.Context, id keystore.KeyID, at time.Time) error {
	_, err := s.modifyKey(ctx, "shred key", id, func(r *keystore.KeyRecord) bool {
		s.deleteEnvelopeLocked(id, at)
		if r.Revoked.IsZero() {
			r.Revoked = keystore.UTC(at)
		}
		r.WrappedDEK = nil
		return true
	})
	return err
}

func (s *Store) ExpireKey(ctx context.Context, id keystore.KeyID, at time.Time) (bool, error) {
	return s.modifyKey(ctx, "expire key", id, func(r *keystore.KeyRecord) bool {
		if !r.Expires.IsZero() && !r.Expires.After(at) {
			return false
		}
		r.Expires = keystore.UTC(at)
		return true
	})
}

func (s *Store) MasterKeyUse(ctx context.Context) (map[string]int, error) {
	if err := s.lock(ctx, "count master key use"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	use := map[string]int{}
	for _, r := range s.keys {
		if len(r.WrappedDEK) > 0 {
			use[r.MasterKeyID]++
		}
	}
	return use, nil
}

// RewrapKeys rewraps batch records per critical section and checks ctx
// between batches.
func (s *Store) RewrapKeys(ctx context.Context, mk *keystore.MasterKey, batch int, rand io.Reader) (keystore.RewrapProgress, error) {
	if batch <= 0 {
		batch = 500
	}
	var p keystore.RewrapProgress
	current := mk.ID()
	var todo []keystore.KeyID
	err := s.EachKey(ctx, keystore.KeyFilter{}, func(r keystore.KeyRecord) error {
		if len(r.WrappedDEK) == 0 || r.MasterKeyID == current {
			return nil
		}
		if _, err := mk.Unwrap(r); errors.Is(err, keystore.ErrWrongMasterKey) {
			p.Unreadable++
			return nil
		}
		todo = append(todo, r.ID)
		return nil
	})
	for len(todo) > 0 && err == nil {
		n := min(batch, len(todo))
		var done int
		done, err = s.rewrapBatch(ctx, mk, todo[:n], rand)
		p.Rewrapped += done
		todo = todo[n:]
	}
	use, uerr := s.MasterKeyUse(context.WithoutCancel(ctx))
	if uerr != nil {
		return p, errors.Join(err, uerr)
	}
	for id, n := range use {
		if id != current {
			p.Remaining += n
		}
	}
	return p, err
}

func (s *Store) rewrapBatch(ctx context.Context, mk *keystore.MasterKey, ids []keystore.KeyID, rand io.Reader) (int, error) {
	if err := s.lock(ctx, "rewrap keys"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	current := mk.ID()
	staged := map[keystore.KeyID]keystore.KeyRecord{}
	for _, id := range ids {
		r, ok := s.keys[id]
		if !ok || len(r.WrappedDEK) == 0 || r.MasterKeyID == current {
			continue // swept, shredded or rewrapped meanwhile
		}
		dek, err := mk.Unwrap(r)
		if err != nil {
			return 0, fmt.Errorf("keystore: rewrap key record %s: %w", id, err)
		}
		r = cloneRecord(r)
		r.WrappedDEK, r.MasterKeyID, err = mk.WrapKey(id, dek, rand)
		clear(dek)
		if err != nil {
			return 0, fmt.Errorf("keystore: rewrap keys: %w", err)
		}
		staged[id] = r
	}
	// All or nothing, like a transaction.
	for id, r := range staged {
		s.keys[id] = r
	}
	return len(staged), nil
}

func (s *Store) EachAccount(ctx context.Context, fn func(keystore.Account) error) error {
	if err := s.lock(ctx, "list accounts"); err != nil {
		return err
	}
	accts := make([]keystore.Account, 0, len(s.accounts))
	for _, a := range s.accounts {
		accts = append(accts, cloneAccount(a))
	}
	s.mu.Unlock()
	slices.SortFunc(accts, func(a, b keystore.Account) int { return strings.Compare(a.Email, b.Email) })
	for _, a := range accts {
		if err := fn(a); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) DeleteAccount(ctx context.Context, email string) (int, error) {
	email = strings.ToLower(email)
	if err := s.lock(ctx, "delete account"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	if _, ok := s.accounts[email]; !ok {
		return 0, keystore.AccountNotFound(email)
	}
	delete(s.accounts, email)
	for _, p := range []keystore.CodePurpose{keystore.CodeRegister, keystore.CodeReset} {
		delete(s.codes, codeKey{p, email})
	}
	delete(s.throttles, "acct:"+email)
	return s.deleteSessionsLocked(email, nil), nil
}

func (s *Store) RequirePasswordReset(ctx context.Context, email string) (int, error) {
	email = strings.ToLower(email)
	if err := s.lock(ctx, "require password reset"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	a, ok := s.accounts[email]
	if !ok {
		return 0, keystore.AccountNotFound(email)
	}
	a.PasswordHash = ""
	s.accounts[email] = a
	return s.deleteSessionsLocked(email, nil), nil
}

func (s *Store) DeleteThrottle(ctx context.Context, key string) error {
	if err := s.lock(ctx, "delete throttle"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.throttles, key)
	return nil
}

// Backup writes the store's dump (see keystore.WriteDump).
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return keystore.WriteDump(ctx, w, s)
}

// Export lists a copy taken under the mutex, so it is one consistent view.
func (s *Store) Export(ctx context.Context, fn func(keystore.Item) error) error {
	if err := s.lock(ctx, "export"); err != nil {
		return err
	}
	var items []keystore.Item
	for _, r := range s.keys {
		r := cloneRecord(r)
		items = append(items, keystore.Item{Key: &r})
	}
	for _, a := range s.accounts {
		a := cloneAccount(a)
		items = append(items, keystore.Item{Account: &a})
	}
	for _, c := range s.codes {
		items = append(items, keystore.Item{Code: &c})
	}
	for _, ss := range s.sessions {
		items = append(items, keystore.Item{Session: &ss})
	}
	for _, t := range s.throttles {
		items = append(items, keystore.Item{Throttle: &t})
	}
	for _, l := range s.limits {
		items = append(items, keystore.Item{Limit: &l})
	}
	for _, evs := range s.reads {
		for _, ev := range evs {
			items = append(items, keystore.Item{Read: &ev})
		}
	}
	for _, c := range s.copies {
		items = append(items, keystore.Item{Copy: &keystore.CopyItem{ServerCopy: c.meta.Normalized(), Envelope: bytes.Clone(c.env)}})
	}
	s.mu.Unlock()
	for _, it := range items {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

// Import adds what is missing and leaves what exists.
func (s *Store) Import(ctx context.Context, items []keystore.Item) error {
	if err := s.lock(ctx, "import"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, it := range items {
		switch {
		case it.Key != nil:
			if _, ok := s.keys[it.Key.ID]; !ok {
				s.keys[it.Key.ID] = cloneRecord(it.Key.Normalized())
			}
		case it.Account != nil:
			e := strings.ToLower(it.Account.Email)
			if _, ok := s.accounts[e]; !ok {
				a := cloneAccount(*it.Account)
				a.Email = e
				s.accounts[e] = a
			}
		case it.Code != nil:
			k := codeKey{it.Code.Purpose, strings.ToLower(it.Code.Email)}
			if _, ok := s.codes[k]; !ok {
				s.codes[k] = *it.Code
			}
		case it.Session != nil:
			if _, ok := s.sessions[string(it.Session.Digest)]; !ok {
				s.sessions[string(it.Session.Digest)] = *it.Session
			}
		case it.Throttle != nil:
			if _, ok := s.throttles[it.Throttle.Key]; !ok {
				s.throttles[it.Throttle.Key] = *it.Throttle
			}
		case it.Limit != nil:
			if _, ok := s.limits[it.Limit.Key]; !ok {
				s.limits[it.Limit.Key] = *it.Limit
			}
		case it.Read != nil:
			if !slices.Contains(s.reads[it.Read.KeyID], *it.Read) {
				s.reads[it.Read.KeyID] = append(s.reads[it.Read.KeyID], *it.Read)
			}
		case it.Copy != nil:
			c := it.Copy.Normalized()
			if err := c.Validate(); err != nil {
				return err
			}
			if _, ok := s.copies[c.KeyID]; ok {
				continue
			}
			sc := &serverCopy{meta: c}
			if c.Deleted.IsZero() {
				if int64(len(it.Copy.Envelope)) != c.Size {
					return keystore.ErrCopySize
				}
				sc.env = bytes.Clone(it.Copy.Envelope)
			}
			s.copies[c.KeyID] = sc
			s.links[string(c.LinkDigest)] = c.KeyID
		}
	}
	return nil
}

// Server copies.

var _ keystore.CopyStore = (*Store)(nil)

func (s *Store) PutCopy(ctx context.Context, c keystore.ServerCopy, env io.Reader) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c, buf, err := readCopy(c, env)
	if err != nil {
		return err
	}
	if err := s.lock(ctx, "put server copy"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.putCopyLocked(c, buf)
	return nil
}

func (s *Store) CreateKeyWithCopy(ctx context.Context, rec keystore.KeyRecord, c keystore.ServerCopy, env io.Reader) error {
	if err := keystore.ValidateKeyWithCopy(rec, c); err != nil {
		return err
	}
	c, buf, err := readCopy(c, env)
	if err != nil {
		return err
	}
	if err := s.lock(ctx, "create key with server copy"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	rec = cloneRecord(rec.Normalized())
	if old, ok := s.keys[rec.ID]; ok && !old.Equal(rec) {
		return keystore.ErrKeyExists
	}
	s.keys[rec.ID] = rec
	s.putCopyLocked(c, buf)
	return nil
}

// readCopy reads the envelope before the lock is taken: the reader may be
// slow, and nothing is stored unless it gives exactly Size bytes.
func readCopy(c keystore.ServerCopy, env io.Reader) (keystore.ServerCopy, []byte, error) {
	c = c.Normalized()
	c.Deleted = time.Time{}
	buf := make([]byte, 0, c.Size)
	err := keystore.EachCopyChunk(env, c.Size, func(_ int, chunk []byte) error {
		buf = append(buf, chunk...)
		return nil
	})
	return c, buf, err
}

func (s *Store) putCopyLocked(c keystore.ServerCopy, env []byte) {
	s.deleteCopyLocked(c.KeyID)
	s.copies[c.KeyID] = &serverCopy{meta: c, env: env}
	s.links[string(c.LinkDigest)] = c.KeyID
}

func (s *Store) GetCopy(ctx context.Context, linkDigest []byte) (keystore.ServerCopy, error) {
	if err := s.lock(ctx, "read server copy"); err != nil {
		return keystore.ServerCopy{}, err
	}
	defer s.mu.Unlock()
	id, ok := s.links[string(linkDigest)]
	if !ok {
		return keystore.ServerCopy{}, keystore.LinkNotFound(linkDigest)
	}
	return s.copies[id].meta.Normalized(), nil
}

func (s *Store) CopyOf(ctx context.Context, id keystore.KeyID) (keystore.ServerCopy, error) {
	if err := s.lock(ctx, "read server copy"); err != nil {
		return keystore.ServerCopy{}, err
	}
	defer s.mu.Unlock()
	c, ok := s.copies[id]
	if !ok {
		return keystore.ServerCopy{}, keystore.CopyNotFound(id)
	}
	return c.meta.Normalized(), nil
}

// OpenCopy hands out chunks of the envelope as it is at each read, like
// the other backends, so a deletion while reading ends the stream.
func (s *Store) OpenCopy(ctx context.Context, id keystore.KeyID) (io.ReadCloser, error) {
	c, err := s.CopyOf(ctx, id)
	if err != nil {
		return nil, err
	}
	if !c.Deleted.IsZero() {
		return nil, keystore.ErrCopyDeleted
	}
	return &keystore.ChunkReader{Next: func(seq int) ([]byte, error) {
		if err := s.lock(ctx, "read server copy"); err != nil {
			return nil, err
		}
		defer s.mu.Unlock()
		sc, ok := s.copies[id]
		if !ok || !sc.meta.Deleted.IsZero() {
			return nil, keystore.ErrCopyDeleted
		}
		start := int64(seq) * keystore.CopyChunk
		if start >= int64(len(sc.env)) {
			return nil, io.EOF
		}
		return bytes.Clone(sc.env[start:min(start+keystore.CopyChunk, int64(len(sc.env)))]), nil
	}}, nil
}

func (s *Store) DeleteCopy(ctx context.Context, id keystore.KeyID, at time.Time) (bool, error) {
	if err := s.lock(ctx, "delete server copy"); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	return s.deleteEnvelopeLocked(id, at), nil
}

func (s *Store) SweepCopies(ctx context.Context, now time.Time) (int, error) {
	if err := s.lock(ctx, "sweep server copies"); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := 0
	for id, c := range s.copies {
		rec, ok := s.keys[id]
		switch {
		case !ok && c.meta.Created.Before(now.Add(-keystore.CopyOrphanGrace)):
			if c.meta.Deleted.IsZero() {
				n++
			}
			s.deleteCopyLocked(id)
		case ok && (!now.Before(c.meta.Until) || rec.Usable(now) != nil):
			if s.deleteEnvelopeLocked(id, now) {
				n++
			}
		}
	}
	return n, nil
}

// deleteEnvelopeLocked drops id's envelope and marks its copy deleted.
func (s *Store) deleteEnvelopeLocked(id keystore.KeyID, at time.Time) bool {
	c, ok := s.copies[id]
	if !ok || !c.meta.Deleted.IsZero() {
		return false
	}
	c.env = nil
	c.meta.Deleted = keystore.UTC(at)
	return true
}

// deleteCopyLocked drops id's copy whole.
func (s *Store) deleteCopyLocked(id keystore.KeyID) {
	if c, ok := s.copies[id]; ok {
		delete(s.links, string(c.meta.LinkDigest))
		delete(s.copies, id)
	}
}
