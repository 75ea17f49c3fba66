package main

// securemail backup and restore: a consistent copy of the key database,
// taken while serve runs, and putting one back while it does not. The
// master key is never in the copy; it is backed up separately.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
)

func init() {
	registerAdminOp("backup", adminOp{run: opBackup})
}

// opBackup writes the copy as the output body: one read transaction,
// while commits go on.
func opBackup(ctx context.Context, env *adminEnv, _ json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	start := time.Now()
	n, err := env.store.Backup(ctx, out)
	if err != nil {
		return nil, err
	}
	env.log.Info("admin: backup taken", "who", env.who, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	return countResult{Count: int(n)}, nil
}

// writeFileAtomic writes what fill writes to a temporary file next to path
// (mode 0600), syncs it, checks it with verify, and renames it over path.
func writeFileAtomic(path string, fill func(w io.Writer) error, verify func(tmp string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if verify != nil {
		if err := verify(tmp); err != nil {
			return err
		}
	}
	if err := renameSynced(tmp, path); err != nil {
		return err
	}
	ok = true
	return nil
}

// inspectBackup opens a copy read-only and counts its key records by
// master key.
func inspectBackup(path string) (map[string]int, error) {
	b, err := boltstore.Open(path, boltstore.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("%s is not a usable key database: %w", path, err)
	}
	defer b.Close()
	use, err := b.MasterKeyUse(context.Background())
	if err != nil {
		return nil, fmt.Errorf("%s is damaged: %w", path, err)
	}
	return use, nil
}

func sumUse(use map[string]int) int {
	n := 0
	for _, c := range use {
		n += c
	}
	return n
}

func newBackupCommand(load func() (*Config, error)) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "backup --to FILE",
		Short: "Write a consistent copy of the key database to FILE (mode 0600), while serve runs; the master key is not in it: back it up separately",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			if to == "" {
				return errors.New("backup: --to FILE is required")
			}
			if cfg.Keystore.Backend == backendPostgres {
				return errPostgresBackup
			}
			ctx := adminContext(cmd)
			var use map[string]int
			err = writeFileAtomic(to, func(w io.Writer) error {
				return runAdmin(ctx, cfg, "backup", nil, nil, w, nil)
			}, func(tmp string) error {
				var err error
				use, err = inspectBackup(tmp)
				return err
			})
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			st, err := os.Stat(to)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s: %d bytes, %d key(s); it opens only with the master key file %s, which is not in it\n",
				to, st.Size(), sumUse(use), cfg.Keystore.MasterKeyFile)
			return err
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "file to write (replaced atomically)")
	return cmd
}

func newRestoreCommand(load func() (*Config, error)) *cobra.Command {
	var from string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore --from FILE [--force]",
		Short: "Put a backup of the key database in place (serve must be stopped); checks it opens under the configured master key first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			if from == "" {
				return errors.New("restore: --from FILE is required")
			}
			if cfg.Keystore.Backend == backendPostgres {
				return errPostgresBackup
			}
			return restore(adminContext(cmd), cfg, from, force, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the backup file")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing key database (it is kept as keys.db.replaced-TIME)")
	return cmd
}

func restore(ctx context.Context, cfg *Config, from string, force bool, out io.Writer) error {
	if err := serveRunning(ctx, adminSocketPath(cfg)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	dst := keystorePath(cfg)
	exists := fileExists(dst)
	if exists && !force {
		return fmt.Errorf("restore: %s exists; pass --force to replace it (it is kept as %s.replaced-TIME)", dst, dst)
	}
	if exists {
		// Getting the lock, even shared, proves no serve uses the file.
		b, err := boltstore.Open(dst, boltstore.Options{ReadOnly: true, LockTimeout: time.Second})
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if err := b.Close(); err != nil {
			return err
		}
	}
	mk, err := keystore.LoadMasterKey(cfg.Keystore.MasterKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: the master key file %s is missing: restore it first (a backup of keys.db opens only with the master key it was taken under)", cfg.Keystore.MasterKeyFile)
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	use, err := inspectBackup(from)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if total := sumUse(use); total > 0 && use[mk.ID()] == 0 {
		return fmt.Errorf("restore: none of the %d key record(s) in %s is wrapped under the master key %s (id %s): restore the master key file this backup was taken under (a rotated-away key is kept as %s.retired-ID)",
			total, from, cfg.Keystore.MasterKeyFile, mk.ID(), cfg.Keystore.MasterKeyFile)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	src, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer src.Close()
	tmpDst := dst + ".restoring"
	err = writeFileAtomic(tmpDst, func(w io.Writer) error {
		_, err := io.Copy(w, src)
		return err
	}, func(tmp string) error {
		_, err := inspectBackup(tmp)
		return err
	})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if exists {
		kept := dst + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
		if err := renameSynced(dst, kept); err != nil {
			os.Remove(tmpDst)
			return fmt.Errorf("restore: %w", err)
		}
		fmt.Fprintf(out, "the key database it replaced is kept as %s\n", kept)
	}
	if err := renameSynced(tmpDst, dst); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	_, err = fmt.Fprintf(out, "restored %s from %s: %d key(s) under master key %s; start securemail serve\n", dst, from, sumUse(use), mk.ID())
	return err
}

// errPostgresBackup: backup and restore copy the bbolt file; a PostgreSQL
// store is backed up by PostgreSQL's own tools.
var errPostgresBackup = errors.New("keystore.backend is postgres: back up and restore with PostgreSQL's tools (pg_dump, or a base backup with WAL archiving; docs/scaling.md), and keep the master key file apart")
