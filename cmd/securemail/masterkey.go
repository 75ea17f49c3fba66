package main

// The master key: loading it (with a rotation that may be under way), the
// start-up check that it belongs to the key database, and
// securemail master-key rotate.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/keystore"
)

func init() {
	registerAdminOp("master-key.rotate", adminOp{run: opMasterKeyRotate, writable: true})
	registerAdminOp("master-key.status", adminOp{run: opMasterKeyStatus})
}

// nextMasterKeyPath holds the key a rotation moves to until it completes.
func nextMasterKeyPath(cfg *Config) string { return cfg.Keystore.MasterKeyFile + ".next" }

// retiredMasterKeyPath is where the old key file goes when a rotation
// completes: kept, not deleted, because backups taken before the rotation
// need it.
func retiredMasterKeyPath(cfg *Config, id string) string {
	return cfg.Keystore.MasterKeyFile + ".retired-" + id
}

// loadMasterKeyRing loads the master key file. When a rotation is under way
// (a .next file exists) the result wraps under the next key and unwraps
// under both. A rotation interrupted between its two renames is completed.
func loadMasterKeyRing(cfg *Config, log *slog.Logger) (*keystore.MasterKey, error) {
	path, next := cfg.Keystore.MasterKeyFile, nextMasterKeyPath(cfg)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && fileExists(next) {
		if err := renameSynced(next, path); err != nil {
			return nil, fmt.Errorf("completing the master-key rotation: %w", err)
		}
		log.Warn("completed an interrupted master-key rotation: the next key file is now the master key file", "master_key_file", path)
	}
	mk, err := keystore.LoadMasterKey(path)
	if err != nil {
		return nil, err
	}
	if !fileExists(next) {
		return mk, nil
	}
	nk, err := keystore.LoadMasterKey(next)
	if err != nil {
		return nil, fmt.Errorf("a master-key rotation is under way but its next key cannot be read: %w", err)
	}
	if err := mk.StartRotation(nk); err != nil {
		return nil, err
	}
	log.Info("a master-key rotation is under way: new keys are wrapped under the next key, both keys open messages; run securemail master-key rotate to finish it",
		"master_key_id", mk.PreviousID(), "next_master_key_id", mk.ID())
	return mk, nil
}

// renameSynced renames and syncs the directory, so the rename survives a
// crash.
func renameSynced(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(to))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// errMasterKeyMismatch: the master key wraps none of the records.
var errMasterKeyMismatch = errors.New("master key mismatch")

// checkMasterKeyMatches refuses a master key that wraps none of the key
// records (the file was replaced, or restored from another host's backup):
// every message sealed so far would silently become unreadable.
func checkMasterKeyMatches(ctx context.Context, cfg *Config, store keystore.AdminStore, mk *keystore.MasterKey) error {
	use, err := store.MasterKeyUse(ctx)
	if err != nil {
		return err
	}
	return masterKeyMismatch(cfg, use, mk.ID(), mk.PreviousID())
}

// masterKeyMismatch is the one sentence serve and check-config use: nil
// unless there are records and none is wrapped under current or previous.
func masterKeyMismatch(cfg *Config, use map[string]int, current, previous string) error {
	total, ours := 0, use[current]
	if previous != "" {
		ours += use[previous]
	}
	var others []string
	for id, n := range use {
		total += n
		if id != current && id != previous {
			others = append(others, fmt.Sprintf("%s (%d record(s))", id, n))
		}
	}
	if total == 0 || ours > 0 {
		return nil
	}
	sort.Strings(others)
	return fmt.Errorf("%w: the master key %s has id %s, but the %d key record(s) in %s are wrapped under %s, so no message sealed so far could be opened: put back the master key file that belongs to this database (from your backup), or pass --allow-master-key-mismatch to start anyway",
		errMasterKeyMismatch, cfg.Keystore.MasterKeyFile, current, total, keystorePath(cfg), strings.Join(others, ", "))
}

type masterKeyStatus struct {
	MasterKeyID     string         `json:"master_key_id"`
	NextMasterKeyID string         `json:"next_master_key_id,omitempty"`
	Use             map[string]int `json:"use"`
}

func opMasterKeyStatus(ctx context.Context, env *adminEnv, _ json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	use, err := env.store.MasterKeyUse(ctx)
	if err != nil {
		return nil, err
	}
	st := masterKeyStatus{MasterKeyID: env.mk.ID(), Use: use}
	if p := env.mk.PreviousID(); p != "" {
		st.MasterKeyID, st.NextMasterKeyID = p, env.mk.ID()
	}
	return st, nil
}

type rotateArgs struct {
	Batch int `json:"batch"`
}

// opMasterKeyRotate starts or resumes a rotation and runs it to the end:
// a next key file, every record rewrapped in small transactions while
// mail flows, then the old file retired.
func opMasterKeyRotate(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	var a rotateArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	env.rotateMu.Lock()
	defer env.rotateMu.Unlock()
	cfg, log := env.cfg, env.log
	next := nextMasterKeyPath(cfg)
	if env.mk.PreviousID() == "" {
		nk, err := keystore.LoadMasterKey(next)
		if errors.Is(err, fs.ErrNotExist) {
			nk, err = keystore.CreateMasterKey(next, rand.Reader)
			if err == nil {
				log.Warn("admin: master-key rotation started: NEW MASTER KEY FILE created; back it up now", "who", env.who,
					"next_master_key_file", next, "next_master_key_id", nk.ID(), "master_key_id", env.mk.ID())
			}
		}
		if err != nil {
			return nil, err
		}
		if err := env.mk.StartRotation(nk); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "rotating from master key %s to %s (new key file %s)\n", env.mk.PreviousID(), env.mk.ID(), next)
	} else {
		log.Info("admin: master-key rotation resumed", "who", env.who, "master_key_id", env.mk.PreviousID(), "next_master_key_id", env.mk.ID())
		fmt.Fprintf(out, "resuming the rotation from master key %s to %s\n", env.mk.PreviousID(), env.mk.ID())
	}
	oldID := env.mk.PreviousID()
	p, err := env.store.RewrapKeys(ctx, env.mk, a.Batch, rand.Reader)
	if err != nil {
		log.Warn("admin: master-key rotation interrupted; run it again to resume", "who", env.who, "rewrapped", p.Rewrapped, "remaining", p.Remaining, "err", err)
		return nil, fmt.Errorf("rotation interrupted after rewrapping %d key(s), %d left: %w (run securemail master-key rotate again to resume)", p.Rewrapped, p.Remaining, err)
	}
	fmt.Fprintf(out, "rewrapped %d key(s)\n", p.Rewrapped)
	if p.Unreadable > 0 || p.Remaining > 0 {
		return nil, fmt.Errorf("%d key record(s) are wrapped under neither master key (%d left in all); the rotation is not finished and both key files stay in place", p.Unreadable, p.Remaining)
	}
	retired := retiredMasterKeyPath(cfg, oldID)
	if err := renameSynced(cfg.Keystore.MasterKeyFile, retired); err != nil {
		return nil, err
	}
	if err := renameSynced(next, cfg.Keystore.MasterKeyFile); err != nil {
		return nil, err
	}
	env.mk.FinishRotation()
	log.Warn("admin: master-key rotation complete: the old key file was renamed; keep it with the backups taken before now, and back up the new master key",
		"who", env.who, "master_key_id", env.mk.ID(), "old_master_key_id", oldID, "old_master_key_file", retired, "rewrapped", p.Rewrapped)
	_, err = fmt.Fprintf(out, "rotation complete: master key %s now wraps every key; the old key file is now %s (backups taken before now need it)\n", env.mk.ID(), retired)
	return nil, err
}

func newMasterKeyCommand(load func() (*Config, error)) *cobra.Command {
	mk := &cobra.Command{Use: "master-key", Short: "Rotate the master key that wraps every message key"}
	var batch int
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Create a new master key and rewrap every message key under it, while serve runs; run it again to resume an interrupted rotation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			return runAdmin(adminContext(cmd), cfg, "master-key.rotate", rotateArgs{Batch: batch}, nil, cmd.OutOrStdout(), nil)
		},
	}
	rotate.Flags().IntVar(&batch, "batch", 500, "keys rewrapped per transaction")
	mk.AddCommand(rotate)
	return mk
}
