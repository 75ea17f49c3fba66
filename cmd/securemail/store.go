package main

// The key store behind one interface: bbolt on one host (the default), or
// PostgreSQL shared by several hosts (docs/scaling.md).

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/pgstore"
)

const (
	backendBolt     = "bolt"
	backendPostgres = "postgres"
)

// StoreConfig is the backend part of the keystore section.
type StoreConfig struct {
	// Backend is bolt (data_dir/keys.db, one host) or postgres.
	Backend  string         `mapstructure:"backend"`
	Postgres PostgresConfig `mapstructure:"postgres"`
}

// PostgresConfig is keystore.postgres.
type PostgresConfig struct {
	// DSN is a libpq connection string or URL. Several hosts with
	// target_session_attrs=read-write follow a failover to the new primary.
	DSN string `mapstructure:"dsn"`
	// MaxConns bounds the connections this host opens.
	MaxConns int32 `mapstructure:"max_conns"`
	// StatementTimeout bounds every statement; past it the message gets
	// a 451 and the MTA retries.
	StatementTimeout time.Duration `mapstructure:"statement_timeout"`
}

func init() {
	defaults["keystore.backend"] = backendBolt
	defaults["keystore.postgres.dsn"] = ""
	defaults["keystore.postgres.max_conns"] = 16
	defaults["keystore.postgres.statement_timeout"] = "5s"
}

func (c StoreConfig) validate() []error {
	var errs []error
	switch c.Backend {
	case backendBolt:
	case backendPostgres:
		if c.Postgres.DSN == "" {
			errs = append(errs, errors.New("keystore.postgres.dsn must be set when keystore.backend is postgres, e.g. \"host=db1,db2 dbname=securemail user=securemail target_session_attrs=read-write\""))
		}
		if c.Postgres.MaxConns < 1 || c.Postgres.MaxConns > 1000 {
			errs = append(errs, fmt.Errorf("keystore.postgres.max_conns %d must be between 1 and 1000 (default 16)", c.Postgres.MaxConns))
		}
		if c.Postgres.StatementTimeout <= 0 {
			errs = append(errs, errors.New("keystore.postgres.statement_timeout must be positive, e.g. 5s"))
		}
	default:
		errs = append(errs, fmt.Errorf("keystore.backend %q must be bolt or postgres", c.Backend))
	}
	return errs
}

// openStoreTimeout bounds connecting and migrating at start.
const openStoreTimeout = 30 * time.Second

// openStore opens the configured backend. Writable matters to bbolt only:
// read-only opens take a shared lock, so an offline tool can read while
// nothing writes.
func openStore(cfg *Config, writable bool) (keystore.Store, error) {
	if cfg.Keystore.Backend == backendPostgres {
		ctx, cancel := context.WithTimeout(context.Background(), openStoreTimeout)
		defer cancel()
		pg := cfg.Keystore.Postgres
		return pgstore.Open(ctx, pgstore.Options{DSN: pg.DSN, MaxConns: pg.MaxConns, StatementTimeout: pg.StatementTimeout})
	}
	return boltstore.Open(keystorePath(cfg), boltstore.Options{ReadOnly: !writable})
}

// openPostgresKeys opens the shared database first, then the master key:
// every host must hold the same master key file, so a missing one is
// created only for a database that holds no key record yet, and the log
// says to copy it to every other host.
func openPostgresKeys(cfg *Config, log *slog.Logger, writable bool) (*keystore.MasterKey, keystore.Store, error) {
	store, err := openStore(cfg, writable)
	if err != nil {
		return nil, nil, err
	}
	path := cfg.Keystore.MasterKeyFile
	mk, err := keystore.LoadMasterKey(path)
	if err != nil && writable && errors.Is(err, fs.ErrNotExist) {
		mk, err = createSharedMasterKey(store, path, log)
	}
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return mk, store, nil
}

func createSharedMasterKey(store keystore.Store, path string, log *slog.Logger) (*keystore.MasterKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), openStoreTimeout)
	defer cancel()
	use, err := store.MasterKeyUse(ctx)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, c := range use {
		n += c
	}
	if n > 0 {
		return nil, fmt.Errorf("the master key file %s is missing but the PostgreSQL database holds %d key records: copy the master key file from another host (or restore it from your backup); a new key could open none of them", path, n)
	}
	mk, err := keystore.CreateMasterKey(path, rand.Reader)
	if err != nil {
		return nil, err
	}
	log.Warn("CREATED A NEW MASTER KEY for an empty PostgreSQL key store: copy this file to every other securemail host before it starts, and back it up apart from the database; without it no sealed message can ever be opened",
		"master_key_file", path, "master_key_id", mk.ID())
	return mk, nil
}
