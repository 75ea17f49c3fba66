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

// SpoolTokenKey returns the shared token key, storing newKey if there is
// none yet; two hosts starting together agree on the first one stored.
func (s *Store) SpoolTokenKey(ctx context.Context, newKey []byte) ([]byte, error) {
	if err := begin(ctx, "spool key"); err != nil {
		return nil, err
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO spool_meta (id, token_key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", newKey); err != nil {
		return nil, wrap("spool key", err)
	}
	var key []byte
	err := s.pool.QueryRow(ctx, "SELECT token_key FROM spool_meta WHERE id = 1").Scan(&key)
	return key, wrap("spool key", err)
}

// BeginUpload checks the quota and records the reservation in one
// transaction holding the spool's quota lock, so reservations made on
// several hosts at once never add up past the quota.
func (s *Store) BeginUpload(ctx context.Context, reserve, quota int64, now time.Time) (int64, error) {
	if err := begin(ctx, "spool reserve"); err != nil {
		return 0, err
	}
	var id int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockSpoolQuota); err != nil {
			return err
		}
		var used int64
		if err := tx.QueryRow(ctx, `SELECT (SELECT coalesce(sum(size), 0) FROM spool_envelopes)
			+ (SELECT coalesce(sum(reserved), 0) FROM spool_uploads)`).Scan(&used); err != nil {
			return err
		}
		if used+reserve > quota {
			return keystore.ErrSpoolFull
		}
		return tx.QueryRow(ctx, "INSERT INTO spool_uploads (reserved, began_ns) VALUES ($1, $2) RETURNING id",
			reserve, now.UnixNano()).Scan(&id)
	})
	if errors.Is(err, keystore.ErrSpoolFull) {
		return 0, err
	}
	return id, wrap("spool reserve", err)
}

// WriteChunk stores one chunk of an upload in progress.
func (s *Store) WriteChunk(ctx context.Context, upload int64, seq int, data []byte) error {
	if err := begin(ctx, "spool write"); err != nil {
		return err
	}
	// A chunk's commit does not wait for its WAL flush: CommitUpload's
	// commit, which does, flushes the WAL up to it and every chunk before
	// it (WAL is written in order, and so reaches a standby), so an
	// envelope is never filed with a chunk a crash could lose. Until then
	// a lost chunk costs only an upload the recipient posts again.
	var missing bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit TO off"); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO spool_chunks (upload_id, seq, data)
			SELECT id, $2, $3 FROM spool_uploads WHERE id = $1`, upload, seq, data)
		missing = err == nil && tag.RowsAffected() == 0
		return err
	})
	if missing {
		return keystore.NotFound(fmt.Sprintf("spool upload %d", upload))
	}
	return wrap("spool write", err)
}

// CommitUpload files the upload under token, or keeps the envelope
// already there and drops the upload.
func (s *Store) CommitUpload(ctx context.Context, upload int64, token string, size int64, now time.Time) (bool, error) {
	if err := begin(ctx, "spool commit"); err != nil {
		return false, err
	}
	existed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM spool_uploads WHERE id = $1", upload)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return keystore.NotFound(fmt.Sprintf("spool upload %d", upload))
		}
		// The same envelope again keeps its rows; its age starts again.
		if _, err := tx.Exec(ctx, `INSERT INTO spool_envelopes (token, upload_id, size, touched_ns) VALUES ($1, $2, $3, $4)
			ON CONFLICT (token) DO UPDATE SET touched_ns = EXCLUDED.touched_ns`, token, upload, size, now.UnixNano()); err != nil {
			return err
		}
		var inserted bool
		if err := tx.QueryRow(ctx, "SELECT upload_id = $2 FROM spool_envelopes WHERE token = $1", token, upload).Scan(&inserted); err != nil {
			return err
		}
		if !inserted {
			existed = true
			_, err = tx.Exec(ctx, "DELETE FROM spool_chunks WHERE upload_id = $1", upload)
		}
		return err
	})
	return existed, wrap("spool commit", err)
}

// AbortUpload drops an upload's chunks and reservation.
func (s *Store) AbortUpload(ctx context.Context, upload int64) error {
	if err := begin(ctx, "spool abort"); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM spool_uploads WHERE id = $1", upload); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM spool_chunks WHERE upload_id = $1", upload)
		return err
	})
	return wrap("spool abort", err)
}

// OpenSpooled streams the envelope under token chunk by chunk, one query
// per chunk, holding no connection between reads.
func (s *Store) OpenSpooled(ctx context.Context, token string, notBefore time.Time) (io.ReadCloser, error) {
	if err := begin(ctx, "spool open"); err != nil {
		return nil, err
	}
	var upload, touched int64
	err := s.pool.QueryRow(ctx, "SELECT upload_id, touched_ns FROM spool_envelopes WHERE token = $1", token).Scan(&upload, &touched)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && touched < notBefore.UnixNano()) {
		return nil, keystore.SpooledNotFound(token)
	}
	if err != nil {
		return nil, wrap("spool open", err)
	}
	return &chunkReader{ctx: ctx, s: s, upload: upload}, nil
}

// chunkReader reads an envelope's chunks in order. A chunk missing
// half-way (the envelope removed while read) is an error, not an EOF, so a
// truncated envelope is never taken for a whole one.
type chunkReader struct {
	ctx    context.Context
	s      *Store
	upload int64
	seq    int
	buf    []byte
	eof    bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		var data []byte
		var last bool
		err := r.s.pool.QueryRow(r.ctx, `SELECT data, NOT EXISTS (SELECT 1 FROM spool_chunks WHERE upload_id = $1 AND seq = $2 + 1)
			FROM spool_chunks WHERE upload_id = $1 AND seq = $2`, r.upload, r.seq).Scan(&data, &last)
		if errors.Is(err, pgx.ErrNoRows) {
			if r.seq == 0 {
				r.eof = true // an empty envelope
				continue
			}
			return 0, keystore.NotFound(fmt.Sprintf("chunk %d of spool upload %d", r.seq, r.upload))
		}
		if err != nil {
			return 0, wrap("spool read", err)
		}
		r.seq++
		r.buf, r.eof = data, last
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *chunkReader) Close() error { r.buf, r.eof = nil, true; return nil }

// RemoveSpooled deletes an envelope and its chunks.
func (s *Store) RemoveSpooled(ctx context.Context, token string) error {
	if err := begin(ctx, "spool remove"); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var upload int64
		err := tx.QueryRow(ctx, "DELETE FROM spool_envelopes WHERE token = $1 RETURNING upload_id", token).Scan(&upload)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM spool_chunks WHERE upload_id = $1", upload)
		return err
	})
	return wrap("spool remove", err)
}

// SweepSpool deletes expired envelopes and abandoned uploads with their
// chunks, on one host at a time.
func (s *Store) SweepSpool(ctx context.Context, notBefore, abandonedBefore time.Time) (int, error) {
	if err := begin(ctx, "sweep spool"); err != nil {
		return 0, err
	}
	n := 0
	err := s.sweep(ctx, lockSweepSpool, func(tx pgx.Tx) error {
		// Unreferenced data-modifying WITH parts run all the same.
		for _, q := range []struct {
			sql    string
			before int64
		}{
			{`WITH gone AS (DELETE FROM spool_envelopes WHERE touched_ns < $1 RETURNING upload_id),
				chunks AS (DELETE FROM spool_chunks WHERE upload_id IN (SELECT upload_id FROM gone))
				SELECT count(*) FROM gone`, notBefore.UnixNano()},
			{`WITH gone AS (DELETE FROM spool_uploads WHERE began_ns < $1 RETURNING id),
				chunks AS (DELETE FROM spool_chunks WHERE upload_id IN (SELECT id FROM gone))
				SELECT count(*) FROM gone`, abandonedBefore.UnixNano()},
		} {
			var c int
			if err := tx.QueryRow(ctx, q.sql, q.before).Scan(&c); err != nil {
				return err
			}
			n += c
		}
		return nil
	})
	return n, wrap("sweep spool", err)
}
