package main

// check-config for keystore.backend: postgres: can this host reach the
// database, which schema it holds, and whether an acknowledged key record
// survives a crash or a failover.

import (
	"context"
	"time"

	"github.com/securemail/securemail/keystore/pgstore"
)

// probeTimeout bounds check-config's connection attempt.
const probeTimeout = 5 * time.Second

func checkStore(r *checkReport, c *Config) {
	if c.Keystore.Backend != backendPostgres || c.Keystore.Postgres.DSN == "" {
		return
	}
	r.checked = append(r.checked, "PostgreSQL key store")
	p, err := pgstore.ProbeDatabase(context.Background(), c.Keystore.Postgres.DSN, probeTimeout)
	if err != nil {
		r.errorf("keystore.postgres.dsn", "check host, port, dbname and user in keystore.postgres.dsn, the password (~/.pgpass of the user securemail runs as) and that pg_hba.conf admits this host",
			"the PostgreSQL key store cannot be reached: %v", err)
		return
	}
	r.infof("PostgreSQL %s reached", p.ServerVersion)
	if p.InRecovery {
		r.errorf("keystore.postgres.dsn", "list every database server in the DSN and add target_session_attrs=read-write",
			"keystore.postgres.dsn reaches a standby, which refuses writes: every tagged message would get 451")
	}
	switch known := pgstore.SchemaVersion(); {
	case p.SchemaVersion == 0:
		r.infof("the database holds no securemail schema yet: serve creates it on its first start (its user needs CREATE on the schema)")
	case p.SchemaVersion > known:
		r.errorf("keystore.postgres.dsn", "upgrade securemail on this host to the version the other hosts run",
			"the database's schema version %d is newer than this securemail knows (%d): serve refuses to start", p.SchemaVersion, known)
	case p.SchemaVersion < known:
		r.infof("the database's schema version is %d: serve migrates it to %d on its first start", p.SchemaVersion, known)
	default:
		r.infof("the database's schema version is %d, current", p.SchemaVersion)
	}
	switch p.SynchronousCommit {
	case "off", "local":
		r.warnf("keystore.postgres.dsn", "set synchronous_commit = on for the database (ALTER DATABASE ... SET synchronous_commit = on)",
			"synchronous_commit is %s: a key record acknowledged to the MTA can be lost in a crash or failover, and the sealed message becomes unreadable", p.SynchronousCommit)
	}
	switch {
	case p.SyncStandbyNames == "":
		r.infof("no synchronous standby (synchronous_standby_names is empty): a failover to an asynchronous standby can lose the key records of messages already accepted (docs/scaling.md)")
	case p.SyncStandbys == 0:
		r.warnf("keystore.postgres.dsn", "start or repair the standby, or grant pg_monitor to this database user so the check can see it",
			"synchronous_standby_names is %q but no synchronous standby is visible: if none is connected, every commit waits and tagged mail gets 451 after keystore.postgres.statement_timeout", p.SyncStandbyNames)
	default:
		r.infof("%d synchronous standby(s) connected (synchronous_standby_names %q)", p.SyncStandbys, p.SyncStandbyNames)
	}
	if p.HasKeyRecords && !fileExists(c.Keystore.MasterKeyFile) {
		r.errorf("keystore.master_key_file", "copy the master key file from another securemail host (mode 0600, owner securemail)",
			"master key file %s is missing but the PostgreSQL key store holds key records: serve refuses to start", c.Keystore.MasterKeyFile)
	}
}
