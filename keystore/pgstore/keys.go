package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/securemail/securemail/keystore"
)

const keyColumns = "id, wrapped_dek, master_key_id, sender, recipients, created, expires, revoked, message_id, size, copy_until"

func scanKey(row pgx.Row) (keystore.KeyRecord, error) {
	var (
		r                         keystore.KeyRecord
		id                        []byte
		created, expires, revoked *int64
		copyUntil                 *int64
	)
	if err := row.Scan(&id, &r.WrappedDEK, &r.MasterKeyID, &r.Sender, &r.Recipients, &created, &expires, &revoked, &r.MessageID, &r.Size, &copyUntil); err != nil {
		return keystore.KeyRecord{}, err
	}
	if len(id) != len(r.ID) {
		return keystore.KeyRecord{}, fmt.Errorf("key record id %x has the wrong length", id)
	}
	r.ID = keystore.KeyID(id)
	r.Created, r.Expires, r.Revoked, r.CopyUntil = tm(created), tm(expires), tm(revoked), tm(copyUntil)
	return r, nil
}

func keyArgs(r keystore.KeyRecord) []any {
	return []any{r.ID[:], r.WrappedDEK, r.MasterKeyID, r.Sender, r.Recipients, ns(r.Created), ns(r.Expires), ns(r.Revoked), r.MessageID, r.Size, ns(r.CopyUntil)}
}

const insertKey = "INSERT INTO keys (" + keyColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"

// CreateKey inserts the record unless its id exists; when it does, the
// stored record decides: the same record is success (a retry whose first
// attempt committed), another is ErrKeyExists.
func (s *Store) CreateKey(ctx context.Context, rec keystore.KeyRecord) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if err := begin(ctx, "create key"); err != nil {
		return err
	}
	rec = rec.Normalized()
	tag, err := s.pool.Exec(ctx, insertKey, keyArgs(rec)...)
	if err != nil {
		return wrap("create key", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	old, err := s.Key(ctx, rec.ID)
	if err != nil {
		return err
	}
	if !old.Equal(rec) {
		return keystore.ErrKeyExists
	}
	return nil
}

func (s *Store) Key(ctx context.Context, id keystore.KeyID) (keystore.KeyRecord, error) {
	if err := begin(ctx, "read key"); err != nil {
		return keystore.KeyRecord{}, err
	}
	rec, err := scanKey(s.pool.QueryRow(ctx, "SELECT "+keyColumns+" FROM keys WHERE id = $1", id[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return keystore.KeyRecord{}, keystore.KeyNotFound(id)
	}
	if err != nil {
		return keystore.KeyRecord{}, wrap("read key", err)
	}
	return rec, nil
}

// updateKey runs an UPDATE of one record and says ErrNotFound, naming the
// record, when there is none.
func (s *Store) updateKey(ctx context.Context, op string, id keystore.KeyID, sql string, args ...any) (bool, error) {
	if err := begin(ctx, op); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, sql, append([]any{id[:]}, args...)...)
	if err != nil {
		return false, wrap(op, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var one int
	err = s.pool.QueryRow(ctx, "SELECT 1 FROM keys WHERE id = $1", id[:]).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, keystore.KeyNotFound(id)
	}
	return false, wrap(op, err)
}

// deleteCopyWith is the part of a revocation's statement that deletes the
// key's server copy with it: data-modifying WITH clauses run to completion
// whatever the main statement reads, in the same transaction.
const deleteCopyWith = `WITH copy_gone AS (
		UPDATE copies SET deleted = $2 WHERE key_id = $1 AND deleted IS NULL RETURNING key_id),
	chunks_gone AS (DELETE FROM copy_chunks WHERE key_id = $1) `

func (s *Store) RevokeKey(ctx context.Context, id keystore.KeyID, at time.Time) error {
	_, err := s.updateKey(ctx, "revoke key", id, deleteCopyWith+"UPDATE keys SET revoked = coalesce(revoked, $2) WHERE id = $1", ns(keystore.UTC(at)))
	return err
}

func (s *Store) ShredKey(ctx context.Context, id keystore.KeyID, at time.Time) error {
	_, err := s.updateKey(ctx, "shred key", id, deleteCopyWith+"UPDATE keys SET wrapped_dek = NULL, revoked = coalesce(revoked, $2) WHERE id = $1", ns(keystore.UTC(at)))
	return err
}

func (s *Store) ExpireKey(ctx context.Context, id keystore.KeyID, at time.Time) (bool, error) {
	return s.updateKey(ctx, "expire key", id, "UPDATE keys SET expires = $2 WHERE id = $1 AND (expires IS NULL OR expires > $2)", ns(keystore.UTC(at)))
}

// SweepKeys deletes expired records and the read trails of every key id
// that has no record, in one transaction, on one host at a time.
func (s *Store) SweepKeys(ctx context.Context, before time.Time) (int, error) {
	if err := begin(ctx, "sweep keys"); err != nil {
		return 0, err
	}
	n := 0
	err := s.sweep(ctx, lockSweepKeys, func(tx pgx.Tx) error {
		// A key's server copy goes with it.
		err := tx.QueryRow(ctx, `WITH gone AS (DELETE FROM keys WHERE expires < $1 RETURNING id),
			copies_gone AS (DELETE FROM copies WHERE key_id IN (SELECT id FROM gone)),
			chunks_gone AS (DELETE FROM copy_chunks WHERE key_id IN (SELECT id FROM gone))
			SELECT count(*) FROM gone`, ns(before)).Scan(&n)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM reads r WHERE NOT EXISTS (SELECT 1 FROM keys k WHERE k.id = r.key_id)")
		return err
	})
	if err != nil {
		return 0, wrap("sweep keys", err)
	}
	return n, nil
}

// sweep runs fn in a transaction that holds the advisory lock key, or does
// nothing when another session holds it.
func (s *Store) sweep(ctx context.Context, lock int64, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", lock).Scan(&got); err != nil {
			return err
		}
		if !got {
			return nil // another host is sweeping
		}
		return fn(tx)
	})
}

// listChunk bounds the records one query of EachKey reads.
const listChunk = 1024

// EachKey reads the records in id order, listChunk per query, and calls fn
// between queries, holding nothing open.
func (s *Store) EachKey(ctx context.Context, f keystore.KeyFilter, fn func(keystore.KeyRecord) error) error {
	after := []byte{}
	for {
		if err := begin(ctx, "list keys"); err != nil {
			return err
		}
		rows, err := s.pool.Query(ctx, "SELECT "+keyColumns+" FROM keys WHERE id > $1 ORDER BY id LIMIT $2", after, listChunk)
		if err != nil {
			return wrap("list keys", err)
		}
		chunk, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.KeyRecord, error) { return scanKey(row) })
		if err != nil {
			return wrap("list keys", err)
		}
		for _, rec := range chunk {
			if !f.Match(rec) {
				continue
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(chunk) < listChunk {
			return nil
		}
		last := chunk[len(chunk)-1].ID
		after = last[:]
	}
}

func (s *Store) MasterKeyUse(ctx context.Context) (map[string]int, error) {
	if err := begin(ctx, "count master key use"); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT master_key_id, count(*) FROM keys WHERE wrapped_dek IS NOT NULL GROUP BY master_key_id")
	if err != nil {
		return nil, wrap("count master key use", err)
	}
	use := map[string]int{}
	var (
		id string
		n  int
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error { use[id] = n; return nil })
	if err != nil {
		return nil, wrap("count master key use", err)
	}
	return use, nil
}

// RewrapKeys finds the records to rewrap, then rewraps them batch records
// per transaction, each re-reading its records FOR UPDATE so that a record
// shredded or rewrapped meanwhile is left as it now is. ctx is checked
// before each batch; a batch that has started commits.
func (s *Store) RewrapKeys(ctx context.Context, mk *keystore.MasterKey, batch int, rand io.Reader) (keystore.RewrapProgress, error) {
	if batch <= 0 {
		batch = 500
	}
	var p keystore.RewrapProgress
	current := mk.ID()
	var todo [][]byte
	err := s.EachKey(ctx, keystore.KeyFilter{}, func(rec keystore.KeyRecord) error {
		if len(rec.WrappedDEK) == 0 || rec.MasterKeyID == current {
			return nil
		}
		if _, err := mk.Unwrap(rec); errors.Is(err, keystore.ErrWrongMasterKey) {
			p.Unreadable++
			return nil
		}
		todo = append(todo, rec.ID[:])
		return nil
	})
	for len(todo) > 0 && err == nil {
		if err = begin(ctx, "rewrap keys"); err != nil {
			break
		}
		n := min(batch, len(todo))
		var done int
		done, err = s.rewrapBatch(context.WithoutCancel(ctx), mk, todo[:n], rand)
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

func (s *Store) rewrapBatch(ctx context.Context, mk *keystore.MasterKey, ids [][]byte, rand io.Reader) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, "SELECT "+keyColumns+" FROM keys WHERE id = ANY($1) ORDER BY id FOR UPDATE", ids)
		if err != nil {
			return err
		}
		recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.KeyRecord, error) { return scanKey(row) })
		if err != nil {
			return err
		}
		current := mk.ID()
		b := &pgx.Batch{}
		for _, rec := range recs {
			if len(rec.WrappedDEK) == 0 || rec.MasterKeyID == current {
				continue // shredded or rewrapped meanwhile
			}
			dek, err := mk.Unwrap(rec)
			if err != nil {
				return fmt.Errorf("key record %s: %w", rec.ID, err)
			}
			wrapped, keyID, err := mk.WrapKey(rec.ID, dek, rand)
			clear(dek)
			if err != nil {
				return err
			}
			b.Queue("UPDATE keys SET wrapped_dek = $2, master_key_id = $3 WHERE id = $1", rec.ID[:], wrapped, keyID)
			n++
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, wrap("rewrap keys", err)
	}
	return n, nil
}
