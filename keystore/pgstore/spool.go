package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemail/securemail/keystore"
)

// spoolChunk is the size of one spool_chunks row. Rows of 1 MiB cost the
// server twice the processor time per byte that rows of 64 KiB do (large
// allocations, page faults; BENCHMARKS.md, issue 12), and smaller ones
// gain little more.
const spoolChunk = 64 << 10

// The spool is a cache of what recipients posted (keystore.SpoolStore), so
// its transactions commit without waiting for their WAL flush: a crash or
// a failover may lose the last few, which costs a recipient posting the
// attachment again, and no spool write waits on the disk or the standby.
const spoolAsync = "SET LOCAL synchronous_commit TO off"

// SpoolTokenKey returns the shared token key, storing newKey if there is
// none yet; two hosts starting together agree on the first one stored.
// Unlike the spool's rows it is committed durably: it is written once.
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
// several hosts at once never add up past the quota. The transaction is
// one batch: one round trip.
func (s *Store) BeginUpload(ctx context.Context, reserve, quota int64, now time.Time) (int64, error) {
	if err := begin(ctx, "spool reserve"); err != nil {
		return 0, err
	}
	var id int64
	full := false
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(spoolAsync)
	b.Queue("SELECT pg_advisory_xact_lock($1)", lockSpoolQuota)
	// Each statement of a batch takes its own snapshot: this one's is
	// taken under the lock.
	b.Queue(`INSERT INTO spool_uploads (reserved, began_ns) SELECT $1::int8, $2::int8
		WHERE (SELECT coalesce(sum(size), 0) FROM spool_envelopes)
			+ (SELECT coalesce(sum(reserved), 0) FROM spool_uploads) + $1::int8 <= $3::int8
		RETURNING id`, reserve, now.UnixNano(), quota).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			full = true
			return nil
		}
		return err
	})
	b.Queue("COMMIT")
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, wrap("spool reserve", err)
	}
	if full {
		return 0, keystore.ErrSpoolFull
	}
	return id, nil
}

// CommitUpload files the upload under token, or restarts the age of the
// envelope already there and drops the upload, in one transaction: the
// reservation, the envelope's row and (for a new envelope) its chunks,
// streamed with COPY, are committed together. The envelope's row is
// inserted first, so a second host committing the same token waits for
// this one and then finds it, and never copies its chunks for nothing.
func (s *Store) CommitUpload(ctx context.Context, upload int64, token string, size int64, now time.Time, data io.Reader) (bool, error) {
	if err := begin(ctx, "spool commit"); err != nil {
		return false, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, wrap("spool commit", err)
	}
	defer conn.Release()
	var reserved bool
	var filed int64
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(spoolAsync)
	b.Queue("DELETE FROM spool_uploads WHERE id = $1", upload).Exec(func(tag pgconn.CommandTag) error {
		reserved = tag.RowsAffected() == 1
		return nil
	})
	b.Queue(`INSERT INTO spool_envelopes (token, upload_id, size, touched_ns) VALUES ($1, $2, $3, $4)
		ON CONFLICT (token) DO UPDATE SET touched_ns = greatest(spool_envelopes.touched_ns, EXCLUDED.touched_ns)
		RETURNING upload_id`, token, upload, size, now.UnixNano()).QueryRow(func(row pgx.Row) error {
		return row.Scan(&filed)
	})
	err = conn.SendBatch(ctx, b).Close()
	if err == nil && !reserved {
		err = keystore.NotFound(fmt.Sprintf("spool upload %d", upload))
	}
	existed := filed != upload
	if err == nil && !existed {
		src := &chunkSource{owner: upload, r: data, buf: make([]byte, min(size, spoolChunk))}
		_, err = conn.CopyFrom(ctx, pgx.Identifier{"spool_chunks"}, []string{"upload_id", "seq", "data"}, src)
		if err == nil && src.size != size {
			err = fmt.Errorf("upload %d: %d bytes to store, not %d", upload, src.size, size)
		}
	}
	if err == nil {
		_, err = conn.Exec(ctx, "COMMIT")
	}
	if err != nil {
		rollback(ctx, conn)
		if errors.Is(err, keystore.ErrNotFound) {
			return false, err
		}
		return false, wrap("spool commit", err)
	}
	return existed, nil
}

// rollback ends a failed transaction on conn, so the pool gets it back
// idle; a connection it cannot roll back is closed, with the transaction.
func rollback(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(rctx, "ROLLBACK"); err != nil {
		conn.Conn().Close(rctx)
	}
}

// AbortUpload drops an upload's chunks and reservation.
func (s *Store) AbortUpload(ctx context.Context, upload int64) error {
	if err := begin(ctx, "spool abort"); err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(spoolAsync)
	b.Queue("DELETE FROM spool_uploads WHERE id = $1", upload)
	b.Queue("DELETE FROM spool_chunks WHERE upload_id = $1", upload)
	b.Queue("COMMIT")
	return wrap("spool abort", s.pool.SendBatch(ctx, b).Close())
}

// OpenSpooled looks the envelope up; its chunks come in one query, sent
// at the first Read, which holds a pooled connection until the last
// chunk or Close.
func (s *Store) OpenSpooled(ctx context.Context, token string, notBefore time.Time) (io.ReadCloser, keystore.SpoolEntry, error) {
	if err := begin(ctx, "spool open"); err != nil {
		return nil, keystore.SpoolEntry{}, err
	}
	var upload, size, touched int64
	err := s.pool.QueryRow(ctx, "SELECT upload_id, size, touched_ns FROM spool_envelopes WHERE token = $1", token).Scan(&upload, &size, &touched)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && touched < notBefore.UnixNano()) {
		return nil, keystore.SpoolEntry{}, keystore.SpooledNotFound(token)
	}
	if err != nil {
		return nil, keystore.SpoolEntry{}, wrap("spool open", err)
	}
	return &chunkReader{ctx: ctx, s: s, upload: upload, size: size},
		keystore.SpoolEntry{Size: size, Touched: time.Unix(0, touched).UTC()}, nil
}

// chunkReader streams an envelope's chunks in order. Chunks missing or
// fewer bytes than the envelope's size (the envelope removed while read)
// are an error, not an EOF, so a truncated envelope is never taken for a
// whole one.
type chunkReader struct {
	ctx    context.Context
	s      *Store
	upload int64
	size   int64
	rows   pgx.Rows
	seq    int32
	got    int64
	buf    []byte
	err    error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// next loads the next chunk into buf, or returns why there is none.
func (r *chunkReader) next() error {
	if r.rows == nil {
		if r.got == r.size {
			return io.EOF // an empty envelope
		}
		rows, err := r.s.pool.Query(r.ctx, "SELECT seq, data FROM spool_chunks WHERE upload_id = $1 ORDER BY seq", r.upload)
		if err != nil {
			return wrap("spool read", err)
		}
		r.rows = rows
	}
	if !r.rows.Next() {
		r.rows.Close()
		if err := r.rows.Err(); err != nil {
			return wrap("spool read", err)
		}
		if r.got != r.size {
			return keystore.NotFound(fmt.Sprintf("byte %d of %d of spool upload %d", r.got, r.size, r.upload))
		}
		return io.EOF
	}
	// The row's bytes as the driver holds them, valid until the next
	// row: no copy of each chunk.
	var seq int32
	var data pgtype.DriverBytes
	if err := r.rows.Scan(&seq, &data); err != nil {
		r.rows.Close()
		return wrap("spool read", err)
	}
	if seq != r.seq || r.got+int64(len(data)) > r.size {
		r.rows.Close()
		return fmt.Errorf("keystore: spooled envelope: chunk %d does not follow %d bytes of %d", seq, r.got, r.size)
	}
	r.seq++
	r.got += int64(len(data))
	r.buf = data
	return nil
}

func (r *chunkReader) Close() error {
	if r.rows != nil {
		r.rows.Close()
	}
	r.buf = nil
	if r.err == nil {
		r.err = errors.New("keystore: spooled envelope: read after close")
	}
	return nil
}

// RemoveSpooled deletes an envelope and its chunks.
func (s *Store) RemoveSpooled(ctx context.Context, token string) error {
	if err := begin(ctx, "spool remove"); err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(spoolAsync)
	b.Queue(`WITH gone AS (DELETE FROM spool_envelopes WHERE token = $1 RETURNING upload_id)
		DELETE FROM spool_chunks WHERE upload_id IN (SELECT upload_id FROM gone)`, token)
	b.Queue("COMMIT")
	return wrap("spool remove", s.pool.SendBatch(ctx, b).Close())
}

// SweepSpool deletes expired envelopes and abandoned uploads with their
// chunks, on one host at a time.
func (s *Store) SweepSpool(ctx context.Context, notBefore, abandonedBefore time.Time) (int, error) {
	if err := begin(ctx, "sweep spool"); err != nil {
		return 0, err
	}
	n := 0
	err := s.sweep(ctx, lockSweepSpool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, spoolAsync); err != nil {
			return err
		}
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
