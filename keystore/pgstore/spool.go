package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemail/securemail/keystore"
)

// spoolChunk is the size of one spool_chunks row: small enough that a
// row fits in one 8 KiB heap page (STORAGE PLAIN, migration 0004), so
// it is stored as one tuple instead of TOAST's 2 KB pieces, each inserted
// and indexed on its own. Filing 1 MiB in such rows costs the server
// about half the processor time of 64 KiB rows out of line, and reading
// it the same (BENCHMARKS.md, issue 12).
const spoolChunk = 8000

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

// CommitUpload files the upload in one call: StartCommit, then Finish
// with data.
func (s *Store) CommitUpload(ctx context.Context, upload int64, token string, size int64, now time.Time, data io.Reader) (bool, error) {
	c, err := s.StartCommit(ctx, upload, token, size, now)
	if err != nil {
		return false, err
	}
	if c.Existed() {
		return true, nil
	}
	return false, c.Finish(ctx, data)
}

// lockSpoolFiling is the first key of the two-key advisory lock that a
// transaction filing an envelope holds on its token (the second key is
// tokenLockKey), a key space apart from the one-key locks of pgstore.go.
const lockSpoolFiling int32 = 0x5ec0e3a1

// spoolFilingWait bounds how long OpenSpooled and RemoveSpooled wait for
// another host's filing of the same token: longer than filing the
// largest envelope takes, short enough for a recipient to wait.
const spoolFilingWait = 10 * time.Second

// tokenLockKey is token's key in the lockSpoolFiling space; two tokens
// that share one only wait for each other.
func tokenLockKey(token string) int32 {
	h := fnv.New32a()
	h.Write([]byte(token))
	return int32(h.Sum32())
}

// StartCommit files the upload under token, or restarts the age of the
// envelope already there and drops the upload. For a new envelope it
// opens the transaction that Finish commits, holding the token's filing
// lock and the envelope's row: the reservation, the row and its chunks,
// streamed with COPY, are committed together. The lock is taken first,
// so a second host committing the same token waits for this one and then
// finds it, and never copies its chunks for nothing; OpenSpooled and
// RemoveSpooled on another host wait for it too.
func (s *Store) StartCommit(ctx context.Context, upload int64, token string, size int64, now time.Time) (keystore.SpoolCommit, error) {
	if err := begin(ctx, "spool commit"); err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, wrap("spool commit", err)
	}
	var reserved bool
	var filed int64
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(spoolAsync)
	b.Queue("SELECT pg_advisory_xact_lock($1::int4, $2::int4)", lockSpoolFiling, tokenLockKey(token))
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
	c := &spoolCommit{conn: conn, upload: upload, size: size, existed: filed != upload}
	if err == nil && c.existed {
		_, err = conn.Exec(ctx, "COMMIT")
		if err == nil {
			conn.Release()
			c.conn = nil
			return c, nil
		}
	}
	if err != nil {
		c.end(ctx)
		if errors.Is(err, keystore.ErrNotFound) {
			return nil, err
		}
		return nil, wrap("spool commit", err)
	}
	return c, nil
}

// spoolCommit is a filing begun by StartCommit, holding its connection
// with the transaction open until Finish or Abort.
type spoolCommit struct {
	conn    *pgxpool.Conn // nil once ended
	upload  int64
	size    int64
	existed bool
}

func (c *spoolCommit) Existed() bool { return c.existed }

// Finish streams the chunks with COPY and commits, or rolls back.
func (c *spoolCommit) Finish(ctx context.Context, data io.Reader) error {
	if c.conn == nil {
		return errors.New("keystore: spool commit: already ended")
	}
	src := &chunkSource{owner: c.upload, r: data, buf: make([]byte, min(c.size, spoolChunk))}
	_, err := c.conn.CopyFrom(ctx, pgx.Identifier{"spool_chunks"}, []string{"upload_id", "seq", "data"}, src)
	if err == nil && src.size != c.size {
		err = fmt.Errorf("upload %d: %d bytes to store, not %d", c.upload, src.size, c.size)
	}
	if err == nil {
		_, err = c.conn.Exec(ctx, "COMMIT")
	}
	if err != nil {
		c.end(ctx)
		return wrap("spool commit", err)
	}
	c.conn.Release()
	c.conn = nil
	return nil
}

// Abort rolls the filing back; the upload's reservation is kept.
func (c *spoolCommit) Abort() {
	if c.conn != nil {
		c.end(context.Background())
	}
}

// end rolls back and gives the connection back.
func (c *spoolCommit) end(ctx context.Context) {
	rollback(ctx, c.conn)
	c.conn.Release()
	c.conn = nil
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
	const entry = "SELECT upload_id, size, touched_ns FROM spool_envelopes WHERE token = $1"
	err := s.pool.QueryRow(ctx, entry, token).Scan(&upload, &size, &touched)
	if errors.Is(err, pgx.ErrNoRows) {
		// Perhaps being filed by another host: wait for its filing to
		// end (the lock is taken before that host answers the upload),
		// then look again, in one round trip. A filing not ended in
		// spoolFilingWait counts as none (55P03).
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue(fmt.Sprintf("SET LOCAL lock_timeout = %d", spoolFilingWait.Milliseconds()))
		b.Queue("SELECT pg_advisory_xact_lock_shared($1::int4, $2::int4)", lockSpoolFiling, tokenLockKey(token))
		b.Queue(entry, token).QueryRow(func(row pgx.Row) error {
			return row.Scan(&upload, &size, &touched)
		})
		b.Queue("COMMIT")
		err = s.pool.SendBatch(ctx, b).Close()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
			err = pgx.ErrNoRows
		}
	}
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
	batch  pgx.BatchResults // the read's transaction, ended by endBatch
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
		// In their order by the primary key's index: rows of a whole
		// page each would otherwise be gathered and sorted in the
		// server's memory (a bitmap scan), several milliseconds per
		// MiB. SET LOCAL is the transaction's: one round trip still.
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue("SET LOCAL enable_sort = off")
		b.Queue("SELECT seq, data FROM spool_chunks WHERE upload_id = $1 ORDER BY seq", r.upload)
		b.Queue("COMMIT")
		br := r.s.pool.SendBatch(r.ctx, b)
		var rows pgx.Rows
		_, err := br.Exec()
		if err == nil {
			_, err = br.Exec()
		}
		if err == nil {
			rows, err = br.Query()
		}
		if err != nil {
			br.Close()
			return wrap("spool read", err)
		}
		r.batch = br
		r.rows = rows
	}
	if !r.rows.Next() {
		r.rows.Close()
		err := r.rows.Err()
		if cerr := r.endBatch(); err == nil {
			err = cerr
		}
		if err != nil {
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
		r.endBatch()
		return wrap("spool read", err)
	}
	if seq != r.seq || r.got+int64(len(data)) > r.size {
		r.rows.Close()
		r.endBatch()
		return fmt.Errorf("keystore: spooled envelope: chunk %d does not follow %d bytes of %d", seq, r.got, r.size)
	}
	r.seq++
	r.got += int64(len(data))
	r.buf = data
	return nil
}

// endBatch ends the read's transaction and gives its connection back.
func (r *chunkReader) endBatch() error {
	if r.batch == nil {
		return nil
	}
	err := r.batch.Close()
	r.batch = nil
	return err
}

func (r *chunkReader) Close() error {
	if r.rows != nil {
		r.rows.Close()
	}
	r.endBatch()
	r.buf = nil
	if r.err == nil {
		r.err = errors.New("keystore: spooled envelope: read after close")
	}
	return nil
}

// RemoveSpooled deletes an envelope and its chunks, after waiting for a
// filing of the same token in progress (StartCommit) to end.
func (s *Store) RemoveSpooled(ctx context.Context, token string) error {
	if err := begin(ctx, "spool remove"); err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(spoolAsync)
	// After a filing of token in progress on another host, which would
	// otherwise commit the envelope right after it was removed.
	b.Queue(fmt.Sprintf("SET LOCAL lock_timeout = %d", spoolFilingWait.Milliseconds()))
	b.Queue("SELECT pg_advisory_xact_lock_shared($1::int4, $2::int4)", lockSpoolFiling, tokenLockKey(token))
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
