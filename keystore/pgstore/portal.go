package pgstore

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemail/securemail/keystore"
)

func (s *Store) CreateAccount(ctx context.Context, a keystore.Account) error {
	a.Email = strings.ToLower(a.Email)
	if a.Email == "" {
		return errors.New("keystore: create account: no email")
	}
	if err := begin(ctx, "create account"); err != nil {
		return err
	}
	qs, err := json.Marshal(questions(a.Questions))
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO accounts (email, password_hash, questions, created, verified_at, password_set)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING`,
		a.Email, a.PasswordHash, string(qs), ns(a.Created), ns(a.VerifiedAt), ns(a.PasswordSet))
	if err != nil {
		return wrap("create account", err)
	}
	if tag.RowsAffected() == 0 {
		return keystore.ErrAccountExists
	}
	return nil
}

// storedAnswer is the JSON form of a security answer in accounts.questions.
type storedAnswer struct {
	Question   int    `json:"question"`
	AnswerHash string `json:"answer_hash"`
}

func questions(qs []keystore.SecurityAnswer) []storedAnswer {
	out := make([]storedAnswer, len(qs))
	for i, q := range qs {
		out[i] = storedAnswer(q)
	}
	return out
}

const accountColumns = "email, password_hash, questions, created, verified_at, password_set"

func scanAccount(row pgx.Row) (keystore.Account, error) {
	var (
		a                  keystore.Account
		qs                 []byte
		created, ver, pset *int64
	)
	if err := row.Scan(&a.Email, &a.PasswordHash, &qs, &created, &ver, &pset); err != nil {
		return keystore.Account{}, err
	}
	var stored []storedAnswer
	if err := json.Unmarshal(qs, &stored); err != nil {
		return keystore.Account{}, fmt.Errorf("account questions are damaged: %w", err)
	}
	for _, q := range stored {
		a.Questions = append(a.Questions, keystore.SecurityAnswer(q))
	}
	a.Created, a.VerifiedAt, a.PasswordSet = tm(created), tm(ver), tm(pset)
	return a, nil
}

func (s *Store) Account(ctx context.Context, email string) (keystore.Account, error) {
	if err := begin(ctx, "read account"); err != nil {
		return keystore.Account{}, err
	}
	a, err := scanAccount(s.pool.QueryRow(ctx, "SELECT "+accountColumns+" FROM accounts WHERE email = $1", strings.ToLower(email)))
	if errors.Is(err, pgx.ErrNoRows) {
		return keystore.Account{}, keystore.AccountNotFound(email)
	}
	if err != nil {
		return keystore.Account{}, wrap("read account", err)
	}
	return a, nil
}

func (s *Store) SetPassword(ctx context.Context, email, passwordHash string, at time.Time) error {
	if err := begin(ctx, "set password"); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, "UPDATE accounts SET password_hash = $2, password_set = $3 WHERE email = $1",
		strings.ToLower(email), passwordHash, ns(at))
	if err != nil {
		return wrap("set password", err)
	}
	if tag.RowsAffected() == 0 {
		return keystore.AccountNotFound(email)
	}
	return nil
}

func (s *Store) PutCode(ctx context.Context, c keystore.Code) error {
	if c.Purpose == "" || c.Email == "" || len(c.Digest) == 0 {
		return errors.New("keystore: put code: purpose, email and digest are required")
	}
	if err := begin(ctx, "put code"); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO codes (purpose, email, digest, expires, tries_left) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (purpose, email) DO UPDATE SET digest = excluded.digest, expires = excluded.expires, tries_left = excluded.tries_left`,
		string(c.Purpose), strings.ToLower(c.Email), c.Digest, ns(c.Expires), c.TriesLeft)
	return wrap("put code", err)
}

// ConsumeCode decides in one transaction that holds the code's row lock,
// so concurrent calls, from any host, are serialised.
func (s *Store) ConsumeCode(ctx context.Context, purpose keystore.CodePurpose, email string, digest []byte, now time.Time) error {
	if err := begin(ctx, "consume code"); err != nil {
		return err
	}
	email = strings.ToLower(email)
	var outcome error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		outcome = nil
		var (
			stored  []byte
			expires *int64
			tries   int
		)
		err := tx.QueryRow(ctx, "SELECT digest, expires, tries_left FROM codes WHERE purpose = $1 AND email = $2 FOR UPDATE",
			string(purpose), email).Scan(&stored, &expires, &tries)
		if errors.Is(err, pgx.ErrNoRows) {
			outcome = keystore.CodeNotFound(purpose, email)
			return nil
		}
		if err != nil {
			return err
		}
		del := func() error {
			_, err := tx.Exec(ctx, "DELETE FROM codes WHERE purpose = $1 AND email = $2", string(purpose), email)
			return err
		}
		switch {
		case expires == nil || !now.Before(time.Unix(0, *expires)):
			outcome = keystore.ErrExpired
			return del()
		case tries <= 0:
			outcome = keystore.ErrTooManyAttempts
			return nil
		case subtle.ConstantTimeCompare(stored, digest) == 1:
			return del()
		}
		outcome = keystore.ErrCodeMismatch
		_, err = tx.Exec(ctx, "UPDATE codes SET tries_left = tries_left - 1 WHERE purpose = $1 AND email = $2", string(purpose), email)
		return err
	})
	if err != nil {
		return wrap("consume code", err)
	}
	return outcome
}

func (s *Store) PutSession(ctx context.Context, ss keystore.Session) error {
	if len(ss.Digest) == 0 {
		return errors.New("keystore: session has no digest")
	}
	if err := begin(ctx, "put session"); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO sessions (digest, email, stage, token, created, last_seen, expires) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (digest) DO UPDATE SET email = excluded.email, stage = excluded.stage, token = excluded.token,
		created = excluded.created, last_seen = excluded.last_seen, expires = excluded.expires`,
		ss.Digest, strings.ToLower(ss.Email), ss.Stage, ss.Token, ns(ss.Created), ns(ss.LastSeen), ns(ss.Expires))
	return wrap("put session", err)
}

const sessionColumns = "digest, email, stage, token, created, last_seen, expires"

func scanSession(row pgx.Row) (keystore.Session, error) {
	var (
		ss                  keystore.Session
		created, seen, ends *int64
	)
	if err := row.Scan(&ss.Digest, &ss.Email, &ss.Stage, &ss.Token, &created, &seen, &ends); err != nil {
		return keystore.Session{}, err
	}
	ss.Created, ss.LastSeen, ss.Expires = tm(created), tm(seen), tm(ends)
	return ss, nil
}

func (s *Store) Session(ctx context.Context, digest []byte) (keystore.Session, error) {
	if err := begin(ctx, "read session"); err != nil {
		return keystore.Session{}, err
	}
	if len(digest) == 0 {
		return keystore.Session{}, keystore.SessionNotFound(digest)
	}
	ss, err := scanSession(s.pool.QueryRow(ctx, "SELECT "+sessionColumns+" FROM sessions WHERE digest = $1", digest))
	if errors.Is(err, pgx.ErrNoRows) {
		return keystore.Session{}, keystore.SessionNotFound(digest)
	}
	if err != nil {
		return keystore.Session{}, wrap("read session", err)
	}
	return ss, nil
}

func (s *Store) DeleteSession(ctx context.Context, digest []byte) error {
	if err := begin(ctx, "delete session"); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, "DELETE FROM sessions WHERE digest = $1", digest)
	return wrap("delete session", err)
}

func (s *Store) DeleteSessionsFor(ctx context.Context, email string, except []byte) (int, error) {
	email = strings.ToLower(email)
	if email == "" {
		return 0, errors.New("keystore: delete sessions: no email")
	}
	if err := begin(ctx, "delete sessions"); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM sessions WHERE email = $1 AND ($2::bytea IS NULL OR digest <> $2)", email, except)
	if err != nil {
		return 0, wrap("delete sessions", err)
	}
	return int(tag.RowsAffected()), nil
}

func scanThrottle(key string, row pgx.Row) (keystore.Throttle, error) {
	t := keystore.Throttle{Key: key}
	var last, start *int64
	if err := row.Scan(&t.Consecutive, &last, &start, &t.InWindow); err != nil {
		return keystore.Throttle{Key: key}, err
	}
	t.LastFailure, t.WindowStart = tm(last), tm(start)
	return t, nil
}

// AddFailure is one upsert: the row lock serialises concurrent failures.
func (s *Store) AddFailure(ctx context.Context, key string, now time.Time, window time.Duration) (keystore.Throttle, error) {
	if key == "" {
		return keystore.Throttle{}, errors.New("keystore: throttle has no key")
	}
	if err := begin(ctx, "add failure"); err != nil {
		return keystore.Throttle{}, err
	}
	t, err := scanThrottle(key, s.pool.QueryRow(ctx, `INSERT INTO throttles AS t (key, consecutive, last_failure, window_start, in_window)
		VALUES ($1, 1, $2, $2, 1)
		ON CONFLICT (key) DO UPDATE SET
			consecutive = t.consecutive + 1,
			last_failure = $2,
			window_start = CASE WHEN t.window_start IS NULL OR $2::int8 - t.window_start >= $3::int8 THEN $2 ELSE t.window_start END,
			in_window = CASE WHEN t.window_start IS NULL OR $2::int8 - t.window_start >= $3::int8 THEN 1 ELSE t.in_window + 1 END
		RETURNING consecutive, last_failure, window_start, in_window`, key, now.UnixNano(), int64(window)))
	if err != nil {
		return keystore.Throttle{}, wrap("add failure", err)
	}
	return t, nil
}

func (s *Store) Throttle(ctx context.Context, key string) (keystore.Throttle, error) {
	if err := begin(ctx, "read throttle"); err != nil {
		return keystore.Throttle{Key: key}, err
	}
	t, err := scanThrottle(key, s.pool.QueryRow(ctx, "SELECT consecutive, last_failure, window_start, in_window FROM throttles WHERE key = $1", key))
	if errors.Is(err, pgx.ErrNoRows) {
		return keystore.Throttle{Key: key}, nil
	}
	if err != nil {
		return keystore.Throttle{Key: key}, wrap("read throttle", err)
	}
	return t, nil
}

func (s *Store) ClearFailures(ctx context.Context, key string) error {
	if err := begin(ctx, "clear failures"); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, "UPDATE throttles SET consecutive = 0 WHERE key = $1 AND consecutive <> 0", key)
	return wrap("clear failures", err)
}

func (s *Store) DeleteThrottle(ctx context.Context, key string) error {
	if err := begin(ctx, "delete throttle"); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, "DELETE FROM throttles WHERE key = $1", key)
	return wrap("delete throttle", err)
}

// hitSQL is Hit in one statement. $1 key, $2 now, $3 window, $4 limit
// (at least 1). A missing row starts a window with this hit. An existing
// row is locked by ON CONFLICT, so the CASEs read its newest version: an
// ended window restarts with this hit; a live one under the limit counts
// it; a full one is left as it is and the hit refused. allowed records the
// outcome so RETURNING can report it.
const hitSQL = `INSERT INTO limits AS l (key, start_ns, end_ns, count, allowed) VALUES ($1, $2::int8, $2::int8 + $3::int8, 1, true)
ON CONFLICT (key) DO UPDATE SET
	start_ns = CASE WHEN l.end_ns <= $2 THEN $2 ELSE l.start_ns END,
	end_ns   = CASE WHEN l.end_ns <= $2 THEN $2::int8 + $3::int8 ELSE l.end_ns END,
	count    = CASE WHEN l.end_ns <= $2 THEN 1 WHEN l.count < $4::int4 THEN l.count + 1 ELSE l.count END,
	allowed  = l.end_ns <= $2 OR l.count < $4
RETURNING allowed, count, end_ns`

func (s *Store) Hit(ctx context.Context, key string, now time.Time, window time.Duration, limit int) (keystore.HitResult, error) {
	if key == "" {
		return keystore.HitResult{}, errors.New("keystore: limit has no key")
	}
	if err := begin(ctx, "hit limit"); err != nil {
		return keystore.HitResult{}, err
	}
	if limit < 1 {
		return keystore.HitResult{RetryAfter: window}, nil
	}
	var (
		res keystore.HitResult
		end int64
	)
	at := now.UnixNano()
	if err := s.pool.QueryRow(ctx, hitSQL, key, at, int64(window), limit).Scan(&res.Allowed, &res.Count, &end); err != nil {
		return keystore.HitResult{}, wrap("hit limit", err)
	}
	if !res.Allowed {
		res.RetryAfter = time.Duration(end - at)
	}
	return res, nil
}

func (s *Store) ResetHits(ctx context.Context, key string) error {
	if err := begin(ctx, "reset limit"); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, "DELETE FROM limits WHERE key = $1", key)
	return wrap("reset limit", err)
}

func (s *Store) RecordRead(ctx context.Context, ev keystore.ReadEvent) error {
	if ev.KeyID == (keystore.KeyID{}) {
		return errors.New("keystore: read event has no key id")
	}
	if err := begin(ctx, "record read"); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, "INSERT INTO reads (key_id, reader, at, remote) VALUES ($1, $2, $3, $4)",
		ev.KeyID[:], strings.ToLower(ev.Reader), ev.At.UnixNano(), ev.Remote)
	return wrap("record read", err)
}

func (s *Store) Reads(ctx context.Context, id keystore.KeyID) ([]keystore.ReadEvent, error) {
	if err := begin(ctx, "read audit trail"); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT reader, at, remote FROM reads WHERE key_id = $1 ORDER BY at, seq", id[:])
	if err != nil {
		return nil, wrap("read audit trail", err)
	}
	evs := []keystore.ReadEvent{}
	var (
		reader, remote string
		at             int64
	)
	_, err = pgx.ForEachRow(rows, []any{&reader, &at, &remote}, func() error {
		evs = append(evs, keystore.ReadEvent{KeyID: id, Reader: reader, At: time.Unix(0, at).UTC(), Remote: remote})
		return nil
	})
	if err != nil {
		return nil, wrap("read audit trail", err)
	}
	return evs, nil
}

// SweepPortal runs on one host at a time, like SweepKeys.
func (s *Store) SweepPortal(ctx context.Context, now time.Time, window time.Duration) (int, error) {
	if err := begin(ctx, "sweep portal"); err != nil {
		return 0, err
	}
	n := 0
	err := s.sweep(ctx, lockSweepPortal, func(tx pgx.Tx) error {
		n = 0
		at, idleSince := now.UnixNano(), now.Add(-window).UnixNano()
		for _, q := range []struct {
			sql string
			arg int64
		}{
			{"DELETE FROM codes WHERE expires < $1 OR expires IS NULL", at},
			{"DELETE FROM sessions WHERE expires < $1 OR expires IS NULL", at},
			{"DELETE FROM throttles WHERE last_failure < $1 OR last_failure IS NULL", idleSince},
			{"DELETE FROM limits WHERE end_ns < $1", at},
		} {
			tag, err := tx.Exec(ctx, q.sql, q.arg)
			if err != nil {
				return err
			}
			n += int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return 0, wrap("sweep portal", err)
	}
	return n, nil
}
