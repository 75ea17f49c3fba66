package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore"
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

// TestSealOnFreshPostgresHost: "securemail seal" on a PostgreSQL host
// where serve never ran. Without the master key file it says what is
// missing and creates none (a key of its own would seal what no other host
// opens); with the file copied from another host it seals a message large
// enough to be spooled to disk, though the data folder did not exist.
func TestSealOnFreshPostgresHost(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"fsync": "off"}})
	dsn := srv.DSN(srv.NewDatabase(t))
	dir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "master.key")
	cfg, err := loadConfig(pgConfig(t, dir, keyFile, dsn))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := append([]byte("From: zoe@example.test\r\nTo: alice@external.test\r\nSubject: [encrypt] big\r\n\r\nFRESH-HOST body\r\n"),
		bytes.Repeat([]byte("a line of the body, and another one just like it.\r\n"), 8000)...) // 400 kB: past the milter's memory spool
	seal := func() (bytes.Buffer, error) {
		var out bytes.Buffer
		err := runAdmin(ctx, cfg, "seal", sealArgs{From: rtFrom, Rcpts: []string{rtRcpt}}, bytes.NewReader(msg), &out, nil)
		return out, err
	}

	if _, err := seal(); err == nil || !strings.Contains(err.Error(), "no master key file at "+keyFile) {
		t.Fatalf("seal without the master key file: %v", err)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("seal created a master key file: %v", err)
	}

	mk, err := keystore.CreateMasterKey(keyFile, rand.Reader) // copied from another host
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := seal()
	if err != nil {
		t.Fatalf("seal with the master key on a host where serve never ran: %v", err)
	}
	store, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	plain, _, err := openSealed(ctx, &sealed, store, mk, time.Now())
	if err != nil || !bytes.Equal(plain, msg) {
		t.Fatalf("open what seal wrote: %v, %d bytes of %d", err, len(plain), len(msg))
	}
}
