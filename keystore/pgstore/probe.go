package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Probe is what `securemail check-config` learns from the database
// without changing anything in it.
type Probe struct {
	ServerVersion     string // server_version
	InRecovery        bool   // a standby: it cannot take writes
	SchemaVersion     int    // 0: no securemail schema yet
	HasKeyRecords     bool   // keys holds at least one record
	SynchronousCommit string // synchronous_commit
	SyncStandbyNames  string // synchronous_standby_names; "" = none
	SyncStandbys      int    // connected standbys in sync or quorum state
}

// ProbeDatabase connects once to dsn, reads, and disconnects. It never
// applies migrations.
func ProbeDatabase(ctx context.Context, dsn string, timeout time.Duration) (Probe, error) {
	var p Probe
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return p, errors.New("keystore: postgres: the DSN does not parse (see keystore.postgres.dsn)")
	}
	cfg.ConnectTimeout = timeout
	ctx, cancel := context.WithTimeout(ctx, 2*timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return p, wrap("connect", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var hasSchema, hasKeys bool
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version'), pg_is_in_recovery(),
		to_regclass('securemail_schema') IS NOT NULL, to_regclass('keys') IS NOT NULL,
		current_setting('synchronous_commit'), current_setting('synchronous_standby_names')`).
		Scan(&p.ServerVersion, &p.InRecovery, &hasSchema, &hasKeys, &p.SynchronousCommit, &p.SyncStandbyNames)
	if err != nil {
		return p, wrap("probe", err)
	}
	if hasSchema {
		if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM securemail_schema").Scan(&p.SchemaVersion); err != nil {
			return p, wrap("probe", err)
		}
	}
	if hasKeys {
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM keys)").Scan(&p.HasKeyRecords); err != nil {
			return p, wrap("probe", err)
		}
	}
	// pg_stat_replication shows other sessions' rows only to superusers
	// and pg_monitor members; without the right, the count stays 0 and
	// check-config says it could not see.
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')").Scan(&p.SyncStandbys); err != nil {
		return p, wrap("probe", err)
	}
	return p, nil
}
