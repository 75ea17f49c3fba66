package boltstore

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/securemail/securemail/keystore"
)

// The portal's buckets. Their keys and the JSON field names of the values
// below are the file format.
var (
	accountsBucket = []byte("accounts") // lowercased email -> boltAccount
	codesBucket    = []byte("codes")    // purpose NUL lowercased email -> boltCode
	sessionsBucket = []byte("sessions") // cookie digest -> boltSession
	throttleBucket = []byte("throttle") // throttle key -> boltThrottle
	readsBucket    = []byte("reads")    // key id -> bucket of big-endian sequence -> boltRead
)

var _ keystore.PortalStore = (*Store)(nil)

type boltAccount struct {
	Email        string       `json:"email"`
	PasswordHash string       `json:"password_hash"`
	Questions    []boltAnswer `json:"questions"`
	Created      time.Time    `json:"created"`
	VerifiedAt   time.Time    `json:"verified_at"`
	PasswordSet  time.Time    `json:"password_set"`
}

type boltAnswer struct {
	Question   int    `json:"question"`
	AnswerHash string `json:"answer_hash"`
}

type boltCode struct {
	Purpose   string    `json:"purpose"`
	Email     string    `json:"email"`
	Digest    []byte    `json:"digest"`
	Expires   time.Time `json:"expires"`
	TriesLeft int       `json:"tries_left"`
}

// boltSession is stored under its digest, which is not repeated here.
type boltSession struct {
	Email    string    `json:"email"`
	Stage    string    `json:"stage"`
	Token    string    `json:"token"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Expires  time.Time `json:"expires"`
}

// boltThrottle is stored under its key, which is not repeated here.
type boltThrottle struct {
	Consecutive int       `json:"consecutive"`
	LastFailure time.Time `json:"last_failure"`
	WindowStart time.Time `json:"window_start"`
	InWindow    int       `json:"in_window"`
}

// boltRead is stored in its key id's bucket, which names the key.
type boltRead struct {
	Reader string    `json:"reader"`
	At     time.Time `json:"at"`
	Remote string    `json:"remote"`
}

func utc(t time.Time) time.Time { return t.UTC().Round(0) }

// update runs fn in a read-write transaction, which bbolt commits with
// fsync before it returns. The portal's writes do not go through the group
// committer: they are few, and the mail path does not wait for them.
func (b *Store) update(ctx context.Context, op string, fn func(tx *bolt.Tx) error) error {
	return b.tx(ctx, op, true, fn)
}

// view runs fn in a read-only transaction.
func (b *Store) view(ctx context.Context, op string, fn func(tx *bolt.Tx) error) error {
	return b.tx(ctx, op, false, fn)
}

func (b *Store) tx(ctx context.Context, op string, write bool, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return wrapf(op, err)
	}
	select {
	case <-b.stop:
		return keystore.ErrClosed
	default:
	}
	var err error
	if write {
		err = b.db.Update(fn)
	} else {
		err = b.db.View(fn)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bolterrors.ErrDatabaseNotOpen):
		return keystore.ErrClosed // Close ran between the check above and the transaction
	case errors.Is(err, keystore.ErrNotFound), errors.Is(err, keystore.ErrExpired), errors.Is(err, keystore.ErrAccountExists),
		errors.Is(err, keystore.ErrCodeMismatch), errors.Is(err, keystore.ErrTooManyAttempts):
		return err
	}
	return wrapf(op, err)
}

func (b *Store) CreateAccount(ctx context.Context, a keystore.Account) error {
	a.Email = strings.ToLower(a.Email)
	if a.Email == "" {
		return errors.New("keystore: create account: no email")
	}
	val, err := json.Marshal(encodeAccount(a))
	if err != nil {
		return wrapf("create account", err)
	}
	return b.update(ctx, "create account", func(tx *bolt.Tx) error {
		accts := tx.Bucket(accountsBucket)
		if accts.Get([]byte(a.Email)) != nil {
			return keystore.ErrAccountExists
		}
		return accts.Put([]byte(a.Email), val)
	})
}

func encodeAccount(a keystore.Account) boltAccount {
	qs := make([]boltAnswer, len(a.Questions))
	for i, q := range a.Questions {
		qs[i] = boltAnswer(q)
	}
	return boltAccount{
		Email: strings.ToLower(a.Email), PasswordHash: a.PasswordHash, Questions: qs,
		Created: utc(a.Created), VerifiedAt: utc(a.VerifiedAt), PasswordSet: utc(a.PasswordSet),
	}
}

func decodeAccount(email string, v []byte) (keystore.Account, error) {
	var s boltAccount
	if err := json.Unmarshal(v, &s); err != nil {
		return keystore.Account{}, fmt.Errorf("account %q is damaged: %w", email, err)
	}
	var qs []keystore.SecurityAnswer
	for _, q := range s.Questions {
		qs = append(qs, keystore.SecurityAnswer(q))
	}
	return keystore.Account{
		Email: email, PasswordHash: s.PasswordHash, Questions: qs,
		Created: s.Created, VerifiedAt: s.VerifiedAt, PasswordSet: s.PasswordSet,
	}, nil
}

func (b *Store) Account(ctx context.Context, email string) (keystore.Account, error) {
	email = strings.ToLower(email)
	var a keystore.Account
	err := b.view(ctx, "read account", func(tx *bolt.Tx) error {
		v := get(tx, accountsBucket, []byte(email))
		if v == nil {
			return keystore.AccountNotFound(email)
		}
		var err error
		a, err = decodeAccount(email, v)
		return err
	})
	if err != nil {
		return keystore.Account{}, err
	}
	return a, nil
}

func (b *Store) SetPassword(ctx context.Context, email, passwordHash string, at time.Time) error {
	email = strings.ToLower(email)
	return b.update(ctx, "set password", func(tx *bolt.Tx) error {
		accts := tx.Bucket(accountsBucket)
		v := accts.Get([]byte(email))
		if v == nil {
			return keystore.AccountNotFound(email)
		}
		a, err := decodeAccount(email, v)
		if err != nil {
			return err
		}
		a.PasswordHash = passwordHash
		a.PasswordSet = at
		val, err := json.Marshal(encodeAccount(a))
		if err != nil {
			return err
		}
		return accts.Put([]byte(email), val)
	})
}

// codeKey is purpose NUL email; a purpose may not contain NUL, so no two
// (purpose, email) pairs share a key.
func codeKey(purpose keystore.CodePurpose, email string) ([]byte, error) {
	if purpose == "" || strings.IndexByte(string(purpose), 0) >= 0 {
		return nil, fmt.Errorf("keystore: bad code purpose %q", purpose)
	}
	if email == "" {
		return nil, errors.New("keystore: code has no email")
	}
	return []byte(string(purpose) + "\x00" + strings.ToLower(email)), nil
}

func (b *Store) PutCode(ctx context.Context, c keystore.Code) error {
	k, err := codeKey(c.Purpose, c.Email)
	if err != nil {
		return err
	}
	if len(c.Digest) == 0 {
		return errors.New("keystore: code has no digest")
	}
	val, err := json.Marshal(boltCode{
		Purpose: string(c.Purpose), Email: strings.ToLower(c.Email), Digest: c.Digest,
		Expires: utc(c.Expires), TriesLeft: c.TriesLeft,
	})
	if err != nil {
		return wrapf("put code", err)
	}
	return b.update(ctx, "put code", func(tx *bolt.Tx) error {
		codes := tx.Bucket(codesBucket)
		return codes.Put(k, val)
	})
}

// ConsumeCode decides in one transaction, so concurrent calls are
// serialised by bbolt's single writer. In order: no record, ErrNotFound;
// now at or past Expires, ErrExpired and the record is deleted; no tries
// left, ErrTooManyAttempts without looking at digest, and the record is
// kept (so every later call says the same until it expires or is swept);
// right digest, the record is deleted and nil returned; wrong digest, one
// try is spent and ErrCodeMismatch returned, also for the guess that spends
// the last try.
func (b *Store) ConsumeCode(ctx context.Context, purpose keystore.CodePurpose, email string, digest []byte, now time.Time) error {
	k, err := codeKey(purpose, email)
	if err != nil {
		return err
	}
	var outcome error
	err = b.update(ctx, "consume code", func(tx *bolt.Tx) error {
		outcome = nil
		codes := tx.Bucket(codesBucket)
		v := codes.Get(k)
		if v == nil {
			return keystore.CodeNotFound(purpose, email) // nothing changed: roll back, no fsync
		}
		var c boltCode
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("code %q is damaged: %w", k, err)
		}
		switch {
		case !now.Before(c.Expires):
			outcome = keystore.ErrExpired
			return codes.Delete(k)
		case c.TriesLeft <= 0:
			return keystore.ErrTooManyAttempts // nothing changed: roll back, no fsync
		case subtle.ConstantTimeCompare(c.Digest, digest) == 1:
			return codes.Delete(k)
		}
		outcome = keystore.ErrCodeMismatch
		c.TriesLeft--
		val, err := json.Marshal(c)
		if err != nil {
			return err
		}
		return codes.Put(k, val)
	})
	if err != nil {
		return err
	}
	return outcome
}

func (b *Store) PutSession(ctx context.Context, s keystore.Session) error {
	if len(s.Digest) == 0 {
		return errors.New("keystore: session has no digest")
	}
	val, err := json.Marshal(boltSession{
		Email: strings.ToLower(s.Email), Stage: s.Stage, Token: s.Token,
		Created: utc(s.Created), LastSeen: utc(s.LastSeen), Expires: utc(s.Expires),
	})
	if err != nil {
		return wrapf("put session", err)
	}
	return b.update(ctx, "put session", func(tx *bolt.Tx) error {
		sessions := tx.Bucket(sessionsBucket)
		return sessions.Put(s.Digest, val)
	})
}

func decodeSession(digest, v []byte) (keystore.Session, error) {
	var s boltSession
	if err := json.Unmarshal(v, &s); err != nil {
		return keystore.Session{}, fmt.Errorf("session %x is damaged: %w", digest, err)
	}
	return keystore.Session{
		Digest: bytes.Clone(digest), Email: s.Email, Stage: s.Stage, Token: s.Token,
		Created: s.Created, LastSeen: s.LastSeen, Expires: s.Expires,
	}, nil
}

// Session finds the session by a lookup on its digest. The lookup is not
// constant-time, and need not be: the digest of a random cookie tells an
// attacker nothing about the cookie.
func (b *Store) Session(ctx context.Context, digest []byte) (keystore.Session, error) {
	var s keystore.Session
	err := b.view(ctx, "read session", func(tx *bolt.Tx) error {
		if len(digest) == 0 {
			return keystore.SessionNotFound(digest)
		}
		v := get(tx, sessionsBucket, digest)
		if v == nil {
			return keystore.SessionNotFound(digest)
		}
		var err error
		s, err = decodeSession(digest, v)
		return err
	})
	if err != nil {
		return keystore.Session{}, err
	}
	return s, nil
}

func (b *Store) DeleteSession(ctx context.Context, digest []byte) error {
	if len(digest) == 0 {
		return nil
	}
	return b.update(ctx, "delete session", func(tx *bolt.Tx) error {
		sessions := tx.Bucket(sessionsBucket)
		return sessions.Delete(digest)
	})
}

// DeleteSessionsFor scans every session: fine for one host's portal. (The
// PostgreSQL backend will index sessions by email.)
func (b *Store) DeleteSessionsFor(ctx context.Context, email string, except []byte) (int, error) {
	email = strings.ToLower(email)
	if email == "" {
		return 0, errors.New("keystore: delete sessions: no email")
	}
	deleted := 0
	err := b.update(ctx, "delete sessions", func(tx *bolt.Tx) error {
		var err error
		deleted, err = deleteSessionsExcept(tx, email, except)
		return err
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}

func decodeThrottle(key string, v []byte) (keystore.Throttle, error) {
	t := keystore.Throttle{Key: key}
	if v == nil {
		return t, nil
	}
	var s boltThrottle
	if err := json.Unmarshal(v, &s); err != nil {
		return t, fmt.Errorf("throttle %q is damaged: %w", key, err)
	}
	t.Consecutive, t.LastFailure, t.WindowStart, t.InWindow = s.Consecutive, s.LastFailure, s.WindowStart, s.InWindow
	return t, nil
}

func putThrottle(b *bolt.Bucket, t keystore.Throttle) error {
	val, err := json.Marshal(boltThrottle{
		Consecutive: t.Consecutive, LastFailure: utc(t.LastFailure),
		WindowStart: utc(t.WindowStart), InWindow: t.InWindow,
	})
	if err != nil {
		return err
	}
	return b.Put([]byte(t.Key), val)
}

// AddFailure starts a new long window when there is none yet or the
// current one began window or more before now.
func (b *Store) AddFailure(ctx context.Context, key string, now time.Time, window time.Duration) (keystore.Throttle, error) {
	if key == "" {
		return keystore.Throttle{}, errors.New("keystore: throttle has no key")
	}
	now = utc(now)
	var t keystore.Throttle
	err := b.update(ctx, "add failure", func(tx *bolt.Tx) error {
		bk := tx.Bucket(throttleBucket)
		var err error
		t, err = decodeThrottle(key, bk.Get([]byte(key)))
		if err != nil {
			return err
		}
		if t.WindowStart.IsZero() || now.Sub(t.WindowStart) >= window {
			t.WindowStart, t.InWindow = now, 0
		}
		t.Consecutive++
		t.InWindow++
		t.LastFailure = now
		return putThrottle(bk, t)
	})
	if err != nil {
		return keystore.Throttle{}, err
	}
	return t, nil
}

func (b *Store) Throttle(ctx context.Context, key string) (keystore.Throttle, error) {
	var t keystore.Throttle
	err := b.view(ctx, "read throttle", func(tx *bolt.Tx) error {
		var err error
		t, err = decodeThrottle(key, get(tx, throttleBucket, []byte(key)))
		return err
	})
	if err != nil {
		return keystore.Throttle{Key: key}, err
	}
	return t, nil
}

// ClearFailures writes nothing when there is no entry for key or its
// Consecutive is already zero.
func (b *Store) ClearFailures(ctx context.Context, key string) error {
	t, err := b.Throttle(ctx, key)
	if err != nil || t.Consecutive == 0 {
		return err
	}
	return b.update(ctx, "clear failures", func(tx *bolt.Tx) error {
		bk := tx.Bucket(throttleBucket)
		v := bk.Get([]byte(key))
		if v == nil {
			return nil // swept meanwhile
		}
		t, err := decodeThrottle(key, v)
		if err != nil {
			return err
		}
		t.Consecutive = 0
		return putThrottle(bk, t)
	})
}

// RecordRead appends to a bucket per key id, under the next value of that
// bucket's sequence. SweepKeys deletes the bucket with the key record.
func (b *Store) RecordRead(ctx context.Context, ev keystore.ReadEvent) error {
	if ev.KeyID == (keystore.KeyID{}) {
		return errors.New("keystore: read event has no key id")
	}
	val, err := json.Marshal(boltRead{Reader: strings.ToLower(ev.Reader), At: utc(ev.At), Remote: ev.Remote})
	if err != nil {
		return wrapf("record read", err)
	}
	return b.update(ctx, "record read", func(tx *bolt.Tx) error {
		reads := tx.Bucket(readsBucket)
		trail, err := reads.CreateBucketIfNotExists(ev.KeyID[:])
		if err != nil {
			return err
		}
		seq, err := trail.NextSequence()
		if err != nil {
			return err
		}
		return trail.Put(binary.BigEndian.AppendUint64(nil, seq), val)
	})
}

// Reads returns the events sorted by At; events with the same At keep the
// order in which they were recorded.
func (b *Store) Reads(ctx context.Context, id keystore.KeyID) ([]keystore.ReadEvent, error) {
	evs := []keystore.ReadEvent{}
	err := b.view(ctx, "read audit trail", func(tx *bolt.Tx) error {
		evs = evs[:0]
		reads := tx.Bucket(readsBucket)
		if reads == nil {
			return nil
		}
		trail := reads.Bucket(id[:])
		if trail == nil {
			return nil
		}
		return trail.ForEach(func(k, v []byte) error {
			var s boltRead
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("read event %s/%x is damaged: %w", id, k, err)
			}
			evs = append(evs, keystore.ReadEvent{KeyID: id, Reader: s.Reader, At: s.At, Remote: s.Remote})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(evs, func(a, b keystore.ReadEvent) int { return a.At.Compare(b.At) })
	return evs, nil
}

// SweepPortal deletes, in one transaction, codes and sessions whose Expires
// is before now, throttle entries whose LastFailure is before now-window
// and limit windows that ended before now.
func (b *Store) SweepPortal(ctx context.Context, now time.Time, window time.Duration) (int, error) {
	idleSince := now.Add(-window)
	deleted := 0
	err := b.update(ctx, "sweep portal", func(tx *bolt.Tx) error {
		deleted = 0
		sweeps := []struct {
			bucket []byte
			what   string
			field  func(v []byte) (time.Time, error)
			before time.Time
		}{
			{codesBucket, "code", func(v []byte) (time.Time, error) {
				var s struct {
					Expires time.Time `json:"expires"`
				}
				err := json.Unmarshal(v, &s)
				return s.Expires, err
			}, now},
			{sessionsBucket, "session", func(v []byte) (time.Time, error) {
				var s struct {
					Expires time.Time `json:"expires"`
				}
				err := json.Unmarshal(v, &s)
				return s.Expires, err
			}, now},
			{throttleBucket, "throttle", func(v []byte) (time.Time, error) {
				var s struct {
					LastFailure time.Time `json:"last_failure"`
				}
				err := json.Unmarshal(v, &s)
				return s.LastFailure, err
			}, idleSince},
		}
		for _, sw := range sweeps {
			n, err := deleteMatching(tx.Bucket(sw.bucket), func(k, v []byte) (bool, error) {
				at, err := sw.field(v)
				if err != nil {
					return false, fmt.Errorf("%s %x is damaged: %w", sw.what, k, err)
				}
				return at.Before(sw.before), nil
			})
			deleted += n
			if err != nil {
				return err
			}
		}
		n, err := sweepLimits(tx, now)
		deleted += n
		return err
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}

// sweepReads deletes, inside SweepKeys's transaction, the audit trail of
// every key id that has no record: those SweepKeys just deleted, and any
// trail a RecordRead added while its key was being swept.
func sweepReads(tx *bolt.Tx) error {
	keys, reads := tx.Bucket(keysBucket), tx.Bucket(readsBucket)
	var orphans [][]byte
	err := reads.ForEachBucket(func(k []byte) error {
		if keys.Get(k) == nil {
			orphans = append(orphans, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range orphans {
		if err := reads.DeleteBucket(k); err != nil {
			return err
		}
	}
	return nil
}

// get returns the value under k in the named bucket, or nil if the bucket
// or the key is missing (a read-only view of a database that predates the
// bucket).
func get(tx *bolt.Tx, bucket, k []byte) []byte {
	bk := tx.Bucket(bucket)
	if bk == nil {
		return nil
	}
	return bk.Get(k)
}

// limitsBucket holds Hit's windows: limit key -> boltLimit. It is made on
// first use, so files written before it existed need no migration.
var limitsBucket = []byte("limits")

// boltLimit is stored under its key, which is not repeated here.
type boltLimit struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Count int       `json:"count"`
}

// Hit runs in one bbolt write transaction; bbolt has one writer at a
// time, so the read, the check and the write cannot interleave with
// another Hit. A read-only transaction first answers the attempts that are
// refused anyway without a write (and its fsync): counts only grow within
// a window, so a refusal read there stays right, and a burst past the
// limit costs reads, not commits.
func (b *Store) Hit(ctx context.Context, key string, now time.Time, window time.Duration, limit int) (keystore.HitResult, error) {
	if key == "" {
		return keystore.HitResult{}, errors.New("keystore: limit has no key")
	}
	now = utc(now)
	var res keystore.HitResult
	refused := false
	err := b.view(ctx, "read limit", func(tx *bolt.Tx) error {
		v := get(tx, limitsBucket, []byte(key))
		if v == nil {
			return nil
		}
		var l boltLimit
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("limit %q is damaged: %w", key, err)
		}
		if now.Before(l.End) && l.Count >= limit {
			res, refused = keystore.HitResult{Count: l.Count, RetryAfter: l.End.Sub(now)}, true
		}
		return nil
	})
	if err != nil || refused {
		return res, err
	}
	err = b.update(ctx, "hit limit", func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(limitsBucket)
		if err != nil {
			return err
		}
		var l boltLimit
		if v := bk.Get([]byte(key)); v != nil {
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("limit %q is damaged: %w", key, err)
			}
		}
		if l.End.IsZero() || !now.Before(l.End) {
			l = boltLimit{Start: now, End: now.Add(window)}
		}
		if l.Count >= limit {
			res = keystore.HitResult{Count: l.Count, RetryAfter: l.End.Sub(now)}
			return nil // nothing changed: no write
		}
		l.Count++
		res = keystore.HitResult{Allowed: true, Count: l.Count}
		val, err := json.Marshal(l)
		if err != nil {
			return err
		}
		return bk.Put([]byte(key), val)
	})
	if err != nil {
		return keystore.HitResult{}, err
	}
	return res, nil
}

func (b *Store) ResetHits(ctx context.Context, key string) error {
	var present bool
	if err := b.view(ctx, "read limit", func(tx *bolt.Tx) error {
		present = get(tx, limitsBucket, []byte(key)) != nil
		return nil
	}); err != nil || !present {
		return err
	}
	return b.update(ctx, "reset limit", func(tx *bolt.Tx) error {
		bk := tx.Bucket(limitsBucket)
		if bk == nil {
			return nil
		}
		return bk.Delete([]byte(key))
	})
}

// sweepLimits deletes, inside SweepPortal's transaction, the limit
// windows that ended before now.
func sweepLimits(tx *bolt.Tx, now time.Time) (int, error) {
	bk := tx.Bucket(limitsBucket)
	if bk == nil {
		return 0, nil
	}
	return deleteMatching(bk, func(k, v []byte) (bool, error) {
		var l boltLimit
		if err := json.Unmarshal(v, &l); err != nil {
			return false, fmt.Errorf("limit %q is damaged: %w", k, err)
		}
		return l.End.Before(now), nil
	})
}

// deleteMatching deletes, inside the bucket's write transaction, every
// entry for which doomed says true, and counts them. Keys are collected
// first: bbolt's cursor must not see its bucket change under it.
func deleteMatching(bk *bolt.Bucket, doomed func(k, v []byte) (bool, error)) (int, error) {
	var keys [][]byte
	err := bk.ForEach(func(k, v []byte) error {
		yes, err := doomed(k, v)
		if yes {
			keys = append(keys, bytes.Clone(k))
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := bk.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}
