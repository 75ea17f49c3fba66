package main

// securemail migrate --to postgres: copy the bbolt store into PostgreSQL.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/pgstore"
)

// migrateBatch is how many records one import transaction carries.
const migrateBatch = 1000

func newMigrateCommand(load func() (*Config, error)) *cobra.Command {
	var to, dsn string
	cmd := &cobra.Command{
		Use:   "migrate --to postgres",
		Short: "Copy the bbolt key store (data_dir/keys.db) into PostgreSQL (admin; stop serve first; safe to run again)",
		Long: `Copy every key record, account, code, session, throttle, limit and read
event from data_dir/keys.db into the PostgreSQL database of
keystore.postgres.dsn (or --dsn), creating the schema if needed. Records
that are already there are left as they are, so an interrupted migration
is finished by running it again. serve must be stopped (the bbolt file is
locked while it runs). Afterwards set keystore.backend: postgres and copy
the master key file to every host.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to != backendPostgres {
				return fmt.Errorf("migrate: --to must be postgres, the one backend to migrate to")
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			if dsn == "" {
				dsn = cfg.Keystore.Postgres.DSN
			}
			if dsn == "" {
				return errors.New("migrate: no database: set keystore.postgres.dsn or pass --dsn")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			pg := cfg.Keystore.Postgres
			c, err := migrateToPostgres(ctx, keystorePath(cfg), pgstore.Options{DSN: dsn, MaxConns: 4, StatementTimeout: max(pg.StatementTimeout, migrateTimeout)})
			if err != nil {
				return fmt.Errorf("migrate: %w (nothing is lost: run the same command again)", err)
			}
			c.report(cmd.OutOrStdout(), keystorePath(cfg))
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the backend to copy into: postgres")
	cmd.Flags().StringVar(&dsn, "dsn", "", "PostgreSQL connection string (default: keystore.postgres.dsn)")
	return cmd
}

// migrateTimeout is the statement timeout of the migration's batches,
// which are larger than anything the mail path sends.
const migrateTimeout = 60 * time.Second

// migrateCounts is what a migration copied, by kind.
type migrateCounts struct {
	keys, accounts, codes, sessions, throttles, limits, reads, copies int
}

func (c *migrateCounts) add(it keystore.Item) {
	switch {
	case it.Key != nil:
		c.keys++
	case it.Account != nil:
		c.accounts++
	case it.Code != nil:
		c.codes++
	case it.Session != nil:
		c.sessions++
	case it.Throttle != nil:
		c.throttles++
	case it.Limit != nil:
		c.limits++
	case it.Read != nil:
		c.reads++
	case it.Copy != nil:
		c.copies++
	}
}

func (c migrateCounts) report(w io.Writer, from string) {
	fmt.Fprintf(w, "migrate: %s is in PostgreSQL: %d key records, %d accounts, %d codes, %d sessions, %d throttle entries, %d limit windows, %d read events, %d server copies; every one checked\n",
		from, c.keys, c.accounts, c.codes, c.sessions, c.throttles, c.limits, c.reads, c.copies)
	fmt.Fprintln(w, "migrate: next: set keystore.backend: postgres (and keystore.postgres.dsn) on every host, copy the master key file to each, then start serve")
}

// migrateToPostgres streams the bbolt file's dump into PostgreSQL in
// batches, each imported in one transaction and then checked: every record
// of the batch must be in the database afterwards.
func migrateToPostgres(ctx context.Context, boltPath string, opts pgstore.Options) (migrateCounts, error) {
	var c migrateCounts
	src, err := boltstore.Open(boltPath, boltstore.Options{ReadOnly: true})
	if err != nil {
		return c, err
	}
	defer src.Close()
	dst, err := pgstore.Open(ctx, opts)
	if err != nil {
		return c, err
	}
	defer dst.Close()
	batch := make([]keystore.Item, 0, migrateBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := dst.Import(ctx, batch); err != nil {
			return err
		}
		missing, err := dst.Missing(ctx, batch)
		if err != nil {
			return err
		}
		if missing > 0 {
			return fmt.Errorf("%d records of a batch are not in PostgreSQL after importing it", missing)
		}
		for _, it := range batch {
			c.add(it)
		}
		batch = batch[:0]
		return nil
	}
	err = src.Export(ctx, func(it keystore.Item) error {
		batch = append(batch, it)
		// A server copy carries its envelope (up to the largest message):
		// it ends its batch, so a batch never holds more than one.
		if len(batch) == migrateBatch || it.Copy != nil {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return c, err
}
