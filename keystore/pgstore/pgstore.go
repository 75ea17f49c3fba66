// Package pgstore is the PostgreSQL keystore backend, for sites with more
// than one host: every milter and portal host opens the same database, so
// a message sealed on one host opens on any portal host, and sessions,
// codes and limits hold across hosts. It implements keystore.Store and
// passes every suite in keystore/storetest against a real server.
//
// # Contract beyond keystore's
//
//   - Open applies the embedded schema migrations under a session advisory
//     lock, so hosts starting together do not race; a database whose
//     schema is newer than this binary knows is refused.
//   - Every write is one autocommitted statement or one short transaction,
//     durable on return as far as the server's synchronous_commit (and a
//     synchronous standby, if configured) makes it; except the portal's
//     upload spool (keystore.SpoolStore), a cache whose transactions
//     commit with synchronous_commit off, so a crash or failover may lose
//     its last envelopes, which recipients then post again.
//   - CreateKey is idempotent by id: a create retried after a failover,
//     whose first attempt did commit, finds the same record and succeeds;
//     a different record under the id fails with keystore.ErrKeyExists.
//   - Hit is one INSERT .. ON CONFLICT DO UPDATE .. RETURNING statement;
//     the row lock it takes serialises concurrent hits for one key across
//     hosts.
//   - SweepKeys and SweepPortal run on one host at a time: each takes a
//     transaction-level advisory lock and, when another host holds it,
//     returns 0 without waiting (that host is sweeping).
//   - Every operation honours its context, and the configured statement
//     timeout bounds every statement. An error that is not an answer from
//     the server (cannot connect, connection lost, timeout) also matches
//     keystore.ErrUnavailable; callers on the mail path turn any error into
//     451 4.3.0.
//   - Times are stored as int8 nanoseconds since the Unix epoch, NULL for
//     none, so what is read back is what was written, to the nanosecond.
//
// Backup writes a dump (keystore.WriteDump) from one REPEATABLE READ
// transaction; for disaster recovery use the database's own tools
// (pg_dump, base backups with WAL archiving).
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/securemail/securemail/keystore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Advisory lock keys: arbitrary constants, the same on every host.
const (
	lockMigrate     int64 = 0x5ec0e3a1_00000001
	lockSweepKeys   int64 = 0x5ec0e3a1_00000002
	lockSweepPortal int64 = 0x5ec0e3a1_00000003
	lockSpoolQuota  int64 = 0x5ec0e3a1_00000004
	lockSweepSpool  int64 = 0x5ec0e3a1_00000005
	lockSweepCopies int64 = 0x5ec0e3a1_00000006
)

// Options configures the backend.
type Options struct {
	// DSN is a libpq connection string or URL. Several hosts with
	// target_session_attrs=read-write find the primary after a failover.
	DSN string
	// MaxConns bounds the pool; default 16.
	MaxConns int32
	// StatementTimeout bounds every statement on the server
	// (statement_timeout); default 5 s. A stuck database then costs a
	// message a 451, not a hung SMTP session.
	StatementTimeout time.Duration
	// ConnectTimeout bounds one connection attempt; default 5 s.
	ConnectTimeout time.Duration
}

// Store is the PostgreSQL backend.
type Store struct {
	pool *pgxpool.Pool
}

var (
	_ keystore.Store      = (*Store)(nil)
	_ keystore.Exporter   = (*Store)(nil)
	_ keystore.Importer   = (*Store)(nil)
	_ keystore.SpoolStore = (*Store)(nil)
)

// Open connects, applies pending migrations and returns the store.
func Open(ctx context.Context, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		// The parse error may quote the DSN, password included.
		return nil, errors.New("keystore: postgres: the DSN does not parse (see keystore.postgres.dsn)")
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 16
	}
	if opts.StatementTimeout <= 0 {
		opts.StatementTimeout = 5 * time.Second
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	cfg.ConnConfig.RuntimeParams["application_name"] = "securemail"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, wrap("connect", err)
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pool, waiting for connections in use.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Pool is the connection pool, for check-config and tests.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// migration is one embedded file, NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("keystore: migration %s has no version number", base)
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	return ms, nil
}

// SchemaVersion is the newest schema this binary knows.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies what is missing, one migration per transaction, while
// holding a session advisory lock on one connection: a second host
// starting at the same moment waits, then finds nothing left to do.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return wrap("migrate", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockMigrate); err != nil {
		return wrap("migrate: lock", err)
	}
	defer func() {
		// Unlock even when ctx has ended; a lost connection drops it anyway.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", lockMigrate); err != nil {
			conn.Conn().Close(uctx) // the lock goes with the session
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS securemail_schema (
		version int4 PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return wrap("migrate", err)
	}
	var have int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM securemail_schema").Scan(&have); err != nil {
		return wrap("migrate", err)
	}
	if known := ms[len(ms)-1].version; have > known {
		return fmt.Errorf("keystore: database schema version %d is newer than this securemail knows (%d); upgrade securemail", have, known)
	}
	for _, m := range ms {
		if m.version <= have {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO securemail_schema (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return wrap("migrate: "+m.name, err)
		}
	}
	return nil
}

// DatabaseSchemaVersion reads the schema version the database is at.
func (s *Store) DatabaseSchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM securemail_schema").Scan(&v)
	return v, wrap("schema version", err)
}

// wrap adds the operation to err and marks errors that are not an answer
// from the server as keystore.ErrUnavailable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, keystore.ErrNotFound): // an answer, not an outage
		return fmt.Errorf("keystore: %s: %w", op, err)
	case errors.As(err, &pgErr) && pgErr.Code != "57014" && !strings.HasPrefix(pgErr.Code, "08") &&
		!strings.HasPrefix(pgErr.Code, "57P") && pgErr.Code != "25006":
		// An answer: constraint, syntax, ... Not 57014 (statement
		// timeout), class 08 (connection), 57P (shutdown, failover) or
		// 25006 (read-only: a standby after a failover).
		return fmt.Errorf("keystore: %s: %w", op, err)
	}
	return fmt.Errorf("keystore: %s: %w: %w", op, keystore.ErrUnavailable, err)
}

// begin checks ctx before any work, so a call with an ended context never
// writes.
func begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("keystore: %s: %w", op, err)
	}
	return nil
}

// ns converts a time to its column value; the zero time is NULL.
func ns(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.UnixNano()
	return &v
}

// tm converts a column value back.
func tm(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return time.Unix(0, *v).UTC()
}
