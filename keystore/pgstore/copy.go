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

var _ keystore.CopyStore = (*Store)(nil)

const copyColumns = "key_id, link_digest, created, keep_until, size, deleted"

func scanCopy(row pgx.Row) (keystore.ServerCopy, error) {
	var (
		c              keystore.ServerCopy
		id             []byte
		created, until int64
		deleted        *int64
	)
	if err := row.Scan(&id, &c.LinkDigest, &created, &until, &c.Size, &deleted); err != nil {
		return keystore.ServerCopy{}, err
	}
	if len(id) != len(c.KeyID) {
		return keystore.ServerCopy{}, fmt.Errorf("server copy %x has the wrong id length", id)
	}
	c.KeyID = keystore.KeyID(id)
	c.Created, c.Until, c.Deleted = time.Unix(0, created).UTC(), time.Unix(0, until).UTC(), tm(deleted)
	return c, nil
}

// PutCopy replaces any copy under the key id and streams the chunks in
// with COPY, in one transaction.
func (s *Store) PutCopy(ctx context.Context, c keystore.ServerCopy, env io.Reader) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return s.putCopy(ctx, "put server copy", c, env, nil)
}

// CreateKeyWithCopy writes the copy and inserts the record in one
// transaction, so the message waits for one durable commit, not two.
func (s *Store) CreateKeyWithCopy(ctx context.Context, rec keystore.KeyRecord, c keystore.ServerCopy, env io.Reader) error {
	if err := keystore.ValidateKeyWithCopy(rec, c); err != nil {
		return err
	}
	rec = rec.Normalized()
	return s.putCopy(ctx, "create key with server copy", c, env, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, insertKey, keyArgs(rec)...)
		if err != nil || tag.RowsAffected() == 1 {
			return err
		}
		// As in CreateKey: the same record again is a retry whose first
		// attempt committed.
		old, err := scanKey(tx.QueryRow(ctx, "SELECT "+keyColumns+" FROM keys WHERE id = $1", rec.ID[:]))
		if err != nil {
			return err
		}
		if !old.Equal(rec) {
			return keystore.ErrKeyExists
		}
		return nil
	})
}

// putCopy replaces c's copy with the envelope streamed from env and runs
// also, when set, in the same transaction.
func (s *Store) putCopy(ctx context.Context, op string, c keystore.ServerCopy, env io.Reader, also func(pgx.Tx) error) error {
	if err := begin(ctx, op); err != nil {
		return err
	}
	c = c.Normalized()
	// One byte past the size lets a longer envelope show itself.
	src := &chunkSource{owner: c.KeyID[:], r: io.LimitReader(env, c.Size+1), buf: make([]byte, min(c.Size+1, keystore.CopyChunk))}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `WITH c AS (DELETE FROM copies WHERE key_id = $1)
			DELETE FROM copy_chunks WHERE key_id = $1`, c.KeyID[:]); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO copies ("+copyColumns+") VALUES ($1, $2, $3, $4, $5, NULL)",
			c.KeyID[:], c.LinkDigest, c.Created.UnixNano(), c.Until.UnixNano(), c.Size); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"copy_chunks"}, []string{"key_id", "seq", "data"}, src); err != nil {
			return err
		}
		if src.err == nil && src.size != c.Size {
			return keystore.ErrCopySize
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if src.err != nil {
		// The envelope's reader failed, not the store.
		return fmt.Errorf("keystore: server copy: read envelope: %w", src.err)
	}
	if errors.Is(err, keystore.ErrCopySize) || errors.Is(err, keystore.ErrKeyExists) {
		return err
	}
	return wrap(op, err)
}

func (s *Store) GetCopy(ctx context.Context, linkDigest []byte) (keystore.ServerCopy, error) {
	return s.readCopy(ctx, "link_digest", linkDigest, keystore.LinkNotFound(linkDigest))
}

func (s *Store) CopyOf(ctx context.Context, id keystore.KeyID) (keystore.ServerCopy, error) {
	return s.readCopy(ctx, "key_id", id[:], keystore.CopyNotFound(id))
}

func (s *Store) readCopy(ctx context.Context, column string, v []byte, notFound error) (keystore.ServerCopy, error) {
	if err := begin(ctx, "read server copy"); err != nil {
		return keystore.ServerCopy{}, err
	}
	c, err := scanCopy(s.pool.QueryRow(ctx, "SELECT "+copyColumns+" FROM copies WHERE "+column+" = $1", v))
	if errors.Is(err, pgx.ErrNoRows) {
		return keystore.ServerCopy{}, notFound
	}
	return c, wrap("read server copy", err)
}

// OpenCopy reads one chunk per query.
func (s *Store) OpenCopy(ctx context.Context, id keystore.KeyID) (io.ReadCloser, error) {
	c, err := s.CopyOf(ctx, id)
	if err != nil {
		return nil, err
	}
	if !c.Deleted.IsZero() {
		return nil, keystore.ErrCopyDeleted
	}
	chunks := int((c.Size + keystore.CopyChunk - 1) / keystore.CopyChunk)
	return &keystore.ChunkReader{Next: func(seq int) ([]byte, error) {
		if seq >= chunks {
			return nil, io.EOF
		}
		if err := begin(ctx, "read server copy"); err != nil {
			return nil, err
		}
		var data []byte
		err := s.pool.QueryRow(ctx, "SELECT data FROM copy_chunks WHERE key_id = $1 AND seq = $2", id[:], seq).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, keystore.ErrCopyDeleted
		}
		return data, wrap("read server copy", err)
	}}, nil
}

func (s *Store) DeleteCopy(ctx context.Context, id keystore.KeyID, at time.Time) (bool, error) {
	if err := begin(ctx, "delete server copy"); err != nil {
		return false, err
	}
	var n int
	err := s.pool.QueryRow(ctx, `WITH c AS (
			UPDATE copies SET deleted = $2 WHERE key_id = $1 AND deleted IS NULL RETURNING key_id),
		d AS (DELETE FROM copy_chunks WHERE key_id IN (SELECT key_id FROM c))
		SELECT count(*) FROM c`, id[:], keystore.UTC(at).UnixNano()).Scan(&n)
	return n > 0, wrap("delete server copy", err)
}

// SweepCopies runs on one host at a time, like the other sweeps.
func (s *Store) SweepCopies(ctx context.Context, now time.Time) (int, error) {
	if err := begin(ctx, "sweep server copies"); err != nil {
		return 0, err
	}
	n := 0
	err := s.sweep(ctx, lockSweepCopies, func(tx pgx.Tx) error {
		var orphans, ended int
		err := tx.QueryRow(ctx, `WITH o AS (
				DELETE FROM copies c WHERE c.created < $1
				AND NOT EXISTS (SELECT 1 FROM keys k WHERE k.id = c.key_id)
				RETURNING key_id, deleted),
			d AS (DELETE FROM copy_chunks WHERE key_id IN (SELECT key_id FROM o))
			SELECT count(*) FROM o WHERE deleted IS NULL`, now.Add(-keystore.CopyOrphanGrace).UnixNano()).Scan(&orphans)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `WITH e AS (
				UPDATE copies c SET deleted = $1 FROM keys k
				WHERE k.id = c.key_id AND c.deleted IS NULL
				AND (c.keep_until <= $1 OR k.revoked IS NOT NULL OR k.expires <= $1)
				RETURNING c.key_id),
			d AS (DELETE FROM copy_chunks WHERE key_id IN (SELECT key_id FROM e))
			SELECT count(*) FROM e`, keystore.UTC(now).UnixNano()).Scan(&ended)
		n = orphans + ended
		return err
	})
	if err != nil {
		return 0, wrap("sweep server copies", err)
	}
	return n, nil
}
