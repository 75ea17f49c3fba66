package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemail/securemail/keystore"
)

// Export lists every row in one REPEATABLE READ, READ ONLY transaction:
// one snapshot, while writers go on.
func (s *Store) Export(ctx context.Context, fn func(keystore.Item) error) error {
	if err := begin(ctx, "export"); err != nil {
		return err
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		each := func(sql string, scan func(pgx.CollectableRow) (keystore.Item, error)) error {
			rows, err := tx.Query(ctx, sql)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				it, err := scan(rows)
				if err != nil {
					return err
				}
				if err := fn(it); err != nil {
					return err
				}
			}
			return rows.Err()
		}
		steps := []struct {
			sql  string
			scan func(pgx.CollectableRow) (keystore.Item, error)
		}{
			{"SELECT " + keyColumns + " FROM keys ORDER BY id", func(r pgx.CollectableRow) (keystore.Item, error) {
				rec, err := scanKey(r)
				return keystore.Item{Key: &rec}, err
			}},
			{"SELECT " + accountColumns + " FROM accounts ORDER BY email", func(r pgx.CollectableRow) (keystore.Item, error) {
				a, err := scanAccount(r)
				return keystore.Item{Account: &a}, err
			}},
			{"SELECT purpose, email, digest, expires, tries_left FROM codes", func(r pgx.CollectableRow) (keystore.Item, error) {
				var (
					c       keystore.Code
					purpose string
					expires *int64
				)
				err := r.Scan(&purpose, &c.Email, &c.Digest, &expires, &c.TriesLeft)
				c.Purpose, c.Expires = keystore.CodePurpose(purpose), tm(expires)
				return keystore.Item{Code: &c}, err
			}},
			{"SELECT " + sessionColumns + " FROM sessions", func(r pgx.CollectableRow) (keystore.Item, error) {
				ss, err := scanSession(r)
				return keystore.Item{Session: &ss}, err
			}},
			{"SELECT key, consecutive, last_failure, window_start, in_window FROM throttles", func(r pgx.CollectableRow) (keystore.Item, error) {
				var (
					t           keystore.Throttle
					last, start *int64
				)
				err := r.Scan(&t.Key, &t.Consecutive, &last, &start, &t.InWindow)
				t.LastFailure, t.WindowStart = tm(last), tm(start)
				return keystore.Item{Throttle: &t}, err
			}},
			{"SELECT key, start_ns, end_ns, count FROM limits", func(r pgx.CollectableRow) (keystore.Item, error) {
				var (
					l          keystore.Limit
					start, end int64
				)
				err := r.Scan(&l.Key, &start, &end, &l.Count)
				l.Start, l.End = time.Unix(0, start).UTC(), time.Unix(0, end).UTC()
				return keystore.Item{Limit: &l}, err
			}},
			{"SELECT key_id, reader, at, remote FROM reads ORDER BY seq", func(r pgx.CollectableRow) (keystore.Item, error) {
				var (
					ev keystore.ReadEvent
					id []byte
					at int64
				)
				err := r.Scan(&id, &ev.Reader, &at, &ev.Remote)
				copy(ev.KeyID[:], id)
				ev.At = time.Unix(0, at).UTC()
				return keystore.Item{Read: &ev}, err
			}},
		}
		for _, st := range steps {
			if err := each(st.sql, st.scan); err != nil {
				return err
			}
		}
		return exportCopies(ctx, tx, fn)
	})
	return wrap("export", err)
}

// Import inserts items in one transaction, skipping every record whose
// key exists: a rerun after an interruption adds only what is missing and
// never overwrites what the running service changed meanwhile. Read
// events have no key of their own; one equal in every field is skipped.
func (s *Store) Import(ctx context.Context, items []keystore.Item) error {
	if err := begin(ctx, "import"); err != nil {
		return err
	}
	b := &pgx.Batch{}
	for _, it := range items {
		switch {
		case it.Key != nil:
			b.Queue(insertKey, keyArgs(it.Key.Normalized())...)
		case it.Account != nil:
			a := it.Account
			qs, err := json.Marshal(questions(a.Questions))
			if err != nil {
				return err
			}
			b.Queue(`INSERT INTO accounts (`+accountColumns+`) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING`,
				strings.ToLower(a.Email), a.PasswordHash, string(qs), ns(a.Created), ns(a.VerifiedAt), ns(a.PasswordSet))
		case it.Code != nil:
			c := it.Code
			b.Queue(`INSERT INTO codes (purpose, email, digest, expires, tries_left) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
				string(c.Purpose), strings.ToLower(c.Email), c.Digest, ns(c.Expires), c.TriesLeft)
		case it.Session != nil:
			ss := it.Session
			b.Queue(`INSERT INTO sessions (`+sessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
				ss.Digest, strings.ToLower(ss.Email), ss.Stage, ss.Token, ns(ss.Created), ns(ss.LastSeen), ns(ss.Expires))
		case it.Throttle != nil:
			t := it.Throttle
			b.Queue(`INSERT INTO throttles (key, consecutive, last_failure, window_start, in_window) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
				t.Key, t.Consecutive, ns(t.LastFailure), ns(t.WindowStart), t.InWindow)
		case it.Limit != nil:
			l := it.Limit
			b.Queue(`INSERT INTO limits (key, start_ns, end_ns, count, allowed) VALUES ($1, $2, $3, $4, true) ON CONFLICT DO NOTHING`,
				l.Key, l.Start.UnixNano(), l.End.UnixNano(), l.Count)
		case it.Copy != nil:
			c := it.Copy.Normalized()
			if err := c.Validate(); err != nil {
				return err
			}
			b.Queue(`INSERT INTO copies (`+copyColumns+`) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
				c.KeyID[:], c.LinkDigest, c.Created.UnixNano(), c.Until.UnixNano(), c.Size, ns(c.Deleted))
			if c.Deleted.IsZero() {
				if int64(len(it.Copy.Envelope)) != c.Size {
					return keystore.ErrCopySize
				}
				// Only into a copy that is kept: a rerun over a copy
				// deleted meanwhile adds nothing.
				for seq := 0; int64(seq)*keystore.CopyChunk < c.Size; seq++ {
					start := int64(seq) * keystore.CopyChunk
					b.Queue(`INSERT INTO copy_chunks (key_id, seq, data) SELECT $1, $2, $3
						WHERE EXISTS (SELECT 1 FROM copies WHERE key_id = $1 AND deleted IS NULL) ON CONFLICT DO NOTHING`,
						c.KeyID[:], int32(seq), it.Copy.Envelope[start:min(start+keystore.CopyChunk, c.Size)])
				}
			}
		case it.Read != nil:
			ev := it.Read
			b.Queue(`INSERT INTO reads (key_id, reader, at, remote) SELECT $1, $2, $3, $4
				WHERE NOT EXISTS (SELECT 1 FROM reads WHERE key_id = $1 AND reader = $2 AND at = $3 AND remote = $4)`,
				ev.KeyID[:], strings.ToLower(ev.Reader), ev.At.UnixNano(), ev.Remote)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	return wrap("import", err)
}

// Missing counts the items whose record is not in the database, by key
// (key id, address, session digest, ...); read events, which have no key,
// are not counted. `securemail migrate` checks every batch with it.
func (s *Store) Missing(ctx context.Context, items []keystore.Item) (int, error) {
	if err := begin(ctx, "check import"); err != nil {
		return 0, err
	}
	var (
		keys, sessions, copies           [][]byte
		accounts, throttles, limits      []string
		codePurposes, codeEmails         []string
		nKeys, nAccts, nSess, nThr, nLim int
		nCodes, nCopies                  int
	)
	for _, it := range items {
		switch {
		case it.Key != nil:
			keys = append(keys, it.Key.ID[:])
		case it.Account != nil:
			accounts = append(accounts, strings.ToLower(it.Account.Email))
		case it.Session != nil:
			sessions = append(sessions, it.Session.Digest)
		case it.Code != nil:
			codePurposes = append(codePurposes, string(it.Code.Purpose))
			codeEmails = append(codeEmails, strings.ToLower(it.Code.Email))
		case it.Throttle != nil:
			throttles = append(throttles, it.Throttle.Key)
		case it.Limit != nil:
			limits = append(limits, it.Limit.Key)
		case it.Copy != nil:
			copies = append(copies, it.Copy.KeyID[:])
		}
	}
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM keys WHERE id = ANY($1)),
		(SELECT count(*) FROM accounts WHERE email = ANY($2)),
		(SELECT count(*) FROM sessions WHERE digest = ANY($3)),
		(SELECT count(*) FROM throttles WHERE key = ANY($4)),
		(SELECT count(*) FROM limits WHERE key = ANY($5)),
		(SELECT count(*) FROM codes c JOIN unnest($6::text[], $7::text[]) AS u(purpose, email)
			ON c.purpose = u.purpose AND c.email = u.email),
		(SELECT count(*) FROM copies WHERE key_id = ANY($8))`,
		keys, accounts, sessions, throttles, limits, codePurposes, codeEmails, copies).Scan(&nKeys, &nAccts, &nSess, &nThr, &nLim, &nCodes, &nCopies)
	if err != nil {
		return 0, wrap("check import", err)
	}
	return len(keys) - nKeys + len(accounts) - nAccts + len(sessions) - nSess +
		len(throttles) - nThr + len(limits) - nLim + len(codeEmails) - nCodes + len(copies) - nCopies, nil
}

// exportCopies lists the copies with their envelopes, in tx's snapshot:
// descriptions first, then each envelope, since one connection runs one
// query at a time.
func exportCopies(ctx context.Context, tx pgx.Tx, fn func(keystore.Item) error) error {
	rows, err := tx.Query(ctx, "SELECT "+copyColumns+" FROM copies ORDER BY key_id")
	if err != nil {
		return err
	}
	copies, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (keystore.ServerCopy, error) { return scanCopy(r) })
	if err != nil {
		return err
	}
	for _, c := range copies {
		it := keystore.CopyItem{ServerCopy: c}
		if c.Deleted.IsZero() {
			rows, err := tx.Query(ctx, "SELECT data FROM copy_chunks WHERE key_id = $1 ORDER BY seq", c.KeyID[:])
			if err != nil {
				return err
			}
			env := make([]byte, 0, c.Size)
			var data []byte
			if _, err := pgx.ForEachRow(rows, []any{&data}, func() error { env = append(env, data...); return nil }); err != nil {
				return err
			}
			if int64(len(env)) != c.Size {
				return fmt.Errorf("server copy %s is damaged: %d of %d bytes", c.KeyID, len(env), c.Size)
			}
			it.Envelope = env
		}
		if err := fn(keystore.Item{Copy: &it}); err != nil {
			return err
		}
	}
	return nil
}
