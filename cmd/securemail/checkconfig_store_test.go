package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/pgstore"
	"github.com/securemail/securemail/keystore/storetest"
)

func TestCheckConfigPostgres(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"fsync": "off"}})
	db := srv.NewDatabase(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	if _, err := keystore.CreateMasterKey(keyFile, rand.Reader); err != nil {
		t.Fatal(err)
	}
	cfg := pgConfig(t, dir, keyFile, srv.DSN(db))
	run := func(t *testing.T, wantCode int, wants ...ccWant) {
		t.Helper()
		out, code := ccRun(t, "--config", cfg, "--postfix-config", skipCheck, "--sendmail-cf", skipCheck)
		ccCheck(t, out, code, wantCode, wants)
	}

	t.Run("EmptyDatabase", func(t *testing.T) {
		run(t, 0, "info: PostgreSQL 1", "info: the database holds no securemail schema yet",
			"info: no synchronous standby (synchronous_standby_names is empty)")
	})
	ctx := context.Background()
	s, err := pgstore.Open(ctx, pgstore.Options{DSN: srv.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(ctx, storetest.Record(1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	t.Run("Migrated", func(t *testing.T) {
		run(t, 0, fmt.Sprintf("info: the database's schema version is %d, current", pgstore.SchemaVersion()))
	})
	t.Run("AsynchronousCommit", func(t *testing.T) {
		srv.Exec(t, db, "ALTER DATABASE "+db+" SET synchronous_commit = off")
		defer srv.Exec(t, db, "ALTER DATABASE "+db+" RESET synchronous_commit")
		run(t, 1, "warning: synchronous_commit is off")
	})
	t.Run("StandbyNamedButAbsent", func(t *testing.T) {
		srv.Exec(t, db, "ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
		srv.Exec(t, db, "SELECT pg_reload_conf()")
		defer func() {
			srv.Exec(t, db, "ALTER SYSTEM RESET synchronous_standby_names")
			srv.Exec(t, db, "SELECT pg_reload_conf()")
		}()
		run(t, 1, `warning: synchronous_standby_names is "standby1" but no synchronous standby is visible`)
	})
	t.Run("NewerSchema", func(t *testing.T) {
		srv.Exec(t, db, "INSERT INTO securemail_schema (version, name) VALUES (999, 'future')")
		defer srv.Exec(t, db, "DELETE FROM securemail_schema WHERE version = 999")
		run(t, 2, fmt.Sprintf("error: the database's schema version 999 is newer than this securemail knows (%d)", pgstore.SchemaVersion()))
	})
	t.Run("MasterKeyMissing", func(t *testing.T) {
		other := t.TempDir()
		cfg := pgConfig(t, other, filepath.Join(other, "missing.key"), srv.DSN(db))
		out, code := ccRun(t, "--config", cfg, "--postfix-config", skipCheck, "--sendmail-cf", skipCheck)
		ccCheck(t, out, code, 2, []ccWant{
			"error: master key file " + filepath.Join(other, "missing.key") + " is missing but the PostgreSQL key store holds key records",
			"warning: master key file",
		})
	})
	t.Run("Unreachable", func(t *testing.T) {
		srv.Stop(t)
		defer srv.Restart(t)
		run(t, 2, "error: the PostgreSQL key store cannot be reached")
	})
}
