package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore/pgstore"
)

func TestStoreConfigValidation(t *testing.T) {
	for _, c := range []struct {
		yaml, want string
	}{
		{"keystore:\n  backend: mysql\n", `keystore.backend "mysql" must be bolt or postgres`},
		{"keystore:\n  backend: postgres\n", "keystore.postgres.dsn must be set"},
		{"keystore:\n  backend: postgres\n  postgres:\n    dsn: host=db\n    max_conns: 0\n", "keystore.postgres.max_conns 0"},
		{"keystore:\n  backend: postgres\n  postgres:\n    dsn: host=db\n    statement_timeout: 0s\n", "statement_timeout must be positive"},
		{"keystore:\n  postgres:\n    dns: host=db\n", "keystore.postgres.dns"},
	} {
		_, err := loadConfig(writeConfig(t, c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error saying %q", c.yaml, err, c.want)
		}
	}
	t.Setenv("SECUREMAIL_KEYSTORE_BACKEND", "postgres")
	t.Setenv("SECUREMAIL_KEYSTORE_POSTGRES_DSN", "host=db1,db2 dbname=securemail target_session_attrs=read-write")
	t.Setenv("SECUREMAIL_KEYSTORE_POSTGRES_MAX_CONNS", "4")
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if pg := cfg.Keystore.Postgres; cfg.Keystore.Backend != backendPostgres || pg.MaxConns != 4 ||
		pg.StatementTimeout != 5*time.Second || !strings.Contains(pg.DSN, "db1,db2") {
		t.Fatalf("from the environment: %+v", cfg.Keystore.StoreConfig)
	}
}

// pgConfig writes a configuration for one host with its own data_dir and
// the shared master key file, on the database dsn.
func pgConfig(t *testing.T, dir, masterKey, dsn string) string {
	t.Helper()
	cfg := fmt.Sprintf(`data_dir: %s/data
log:
  level: warn
portal:
  url: https://secure.example.test
policy:
  internal_domains: [example.test]
  subject_tag: %q
keystore:
  master_key_file: %s
  backend: postgres
  postgres:
    dsn: %q
smtp:
  from: securemail@example.test
`, dir, rtTag, masterKey, dsn)
	path := filepath.Join(dir, "securemail.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Two hosts on one PostgreSQL: a message sealed on the first opens on the
// second, which has its own data_dir and a copy of the master key; a host
// without the key refuses to start instead of making a second one.
func TestPostgresBackendSharedByTwoHosts(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"fsync": "off"}})
	dsn := srv.DSN(srv.NewDatabase(t))
	shared := t.TempDir()
	keyFile := filepath.Join(shared, "master.key")

	first := newRTEnvFrom(t, pgConfig(t, t.TempDir(), keyFile, dsn))
	if _, ok := first.store.(*pgstore.Store); !ok {
		t.Fatalf("backend postgres opened a %T", first.store)
	}
	msg := []byte("From: zoe@example.test\r\nTo: alice@external.test\r\nSubject: [encrypt] hi\r\n\r\nTWO-HOSTS body\r\n")
	var sealed bytes.Buffer
	if err := first.filter.SealMessage(bytes.NewReader(msg), &sealed, rtFrom, []string{rtRcpt}); err != nil {
		t.Fatal(err)
	}

	second := newRTEnvFrom(t, pgConfig(t, t.TempDir(), keyFile, dsn))
	plain, _, err := openSealed(context.Background(), bytes.NewReader(sealed.Bytes()), second.store, second.master, time.Now())
	if err != nil || !bytes.Equal(plain, msg) {
		t.Fatalf("open on the second host: %v\n%s", err, plain)
	}

	cfg, err := loadConfig(pgConfig(t, t.TempDir(), filepath.Join(t.TempDir(), "missing.key"), dsn))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := openKeys(cfg, slog.New(slog.DiscardHandler), true); err == nil || !strings.Contains(err.Error(), "copy the master key file from another host") {
		t.Fatalf("a host without the master key on a database with records: %v", err)
	}
}

// TestReadinessOnPostgres: /readyz's keystore check on a PostgreSQL host
// asks the database (there is no keys.db file to look at), and fails once
// the database is gone.
func TestReadinessOnPostgres(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"fsync": "off"}})
	dsn := srv.DSN(srv.NewDatabase(t))
	env := newRTEnvFrom(t, pgConfig(t, t.TempDir(), filepath.Join(t.TempDir(), "master.key"), dsn))
	var keystoreCheck func(context.Context) error
	for _, c := range readinessChecks(env.cfg, env.store, env.master, &listening{}) {
		if c.Name == "keystore" {
			keystoreCheck = c.Fn
		}
	}
	if keystoreCheck == nil {
		t.Fatal("no keystore readiness check")
	}
	if err := keystoreCheck(context.Background()); err != nil {
		t.Fatalf("keystore readiness on a healthy PostgreSQL: %v", err)
	}
	srv.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := keystoreCheck(ctx); err == nil {
		t.Fatal("keystore readiness passed with PostgreSQL stopped")
	}
}
