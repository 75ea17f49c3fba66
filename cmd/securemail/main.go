// Command securemail is the securemail binary: the milter and portal daemon
// (serve) and the offline tools (seal, open). It loads the configuration,
// builds the parts and wires them; the logic lives in the packages.
package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/internal/metrics"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/milter"
	"github.com/securemail/securemail/portal"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "securemail:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command { return newRootCommandOn(systemCheckHost()) }

// newRootCommandOn is the command tree with check-config looking at host.
func newRootCommandOn(host *checkHost) *cobra.Command {
	var configPath string
	root := &cobra.Command{
		Use:           "securemail",
		Short:         "Encryption gateway milter for Postfix and Sendmail",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&configPath, "config", "", "YAML configuration file (default: the embedded default, everything on loopback)")
	load := func() (*Config, error) { return loadConfig(configPath) }
	root.AddCommand(newServeCommand(load), newSealCommand(load), newOpenCommand(load))
	root.AddCommand(newCheckConfigCommand(host))
	root.AddCommand(newMigrateCommand(load))
	root.AddCommand(newKeysCommand(load), newAccountsCommand(load), newBackupCommand(load), newRestoreCommand(load),
		newMasterKeyCommand(load), newVersionCommand(), newReloadCommand(load))
	root.Version = readVersion().String()
	root.SetVersionTemplate("{{.Version}}\n")
	return root
}

func newLogger(cfg *Config) *slog.Logger {
	return newLevelLogger(cfg, new(slog.LevelVar))
}

// newLevelLogger logs at level, which it first sets to log.level; a reload
// changes it.
func newLevelLogger(cfg *Config, level *slog.LevelVar) *slog.Logger {
	level.Set(cfg.Log.Level)
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// openMasterKey loads the master key, creating it first when create is set
// and the file does not exist yet.
func openMasterKey(cfg *Config, log *slog.Logger, create bool) (*keystore.MasterKey, error) {
	path := cfg.Keystore.MasterKeyFile
	mk, err := loadMasterKeyRing(cfg, log)
	if err == nil || !create || !errors.Is(err, fs.ErrNotExist) {
		return mk, err
	}
	if _, err := os.Stat(keystorePath(cfg)); err == nil {
		// A new key could open nothing sealed so far, and the old one,
		// restored later, nothing sealed from now on.
		return nil, fmt.Errorf("the master key file %s is missing but the key database %s exists: restore the master key from your backup; a new one could not open any message sealed so far", path, keystorePath(cfg))
	}
	mk, err = keystore.CreateMasterKey(path, rand.Reader)
	if err != nil {
		return nil, err
	}
	log.Warn("CREATED A NEW MASTER KEY: back it up now, and separately from the data directory; without it no sealed message can ever be opened",
		"master_key_file", path, "master_key_id", mk.ID())
	return mk, nil
}

// openKeys opens the master key and the key store. Writable (serve,
// seal) prepares the data folder and creates a missing master key;
// otherwise (open) both must exist and a bbolt database opens read-only.
func openKeys(cfg *Config, log *slog.Logger, writable bool) (*keystore.MasterKey, keystore.Store, error) {
	if writable {
		removed, err := prepareDataDir(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("data directory: %w", err)
		}
		if removed > 0 {
			log.Warn("removed spool files a previous run left behind (messages that were never answered; their MTA kept or retried them)",
				"count", removed, "spool", spoolPath(cfg))
		}
	}
	if cfg.Keystore.Backend == backendPostgres {
		return openPostgresKeys(cfg, log, writable)
	}
	mk, err := openMasterKey(cfg, log, writable)
	if err != nil {
		return nil, nil, err
	}
	store, err := openStore(cfg, writable)
	if err != nil {
		return nil, nil, err
	}
	return mk, store, nil
}

func keystorePath(cfg *Config) string { return filepath.Join(cfg.DataDir, "keys.db") }
func spoolPath(cfg *Config) string    { return filepath.Join(cfg.DataDir, "spool") }

// prepareDataDir creates the data and spool folders and removes spool files
// a previous run left behind (ciphertext of messages that were never
// accepted).
func prepareDataDir(cfg *Config) (removed int, err error) {
	if err := os.MkdirAll(spoolPath(cfg), 0o700); err != nil {
		return 0, err
	}
	stale, err := filepath.Glob(filepath.Join(spoolPath(cfg), "spool-*"))
	if err != nil {
		return 0, err
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// newFilter builds the milter's filter from cfg.
func newFilter(cfg *Config, store keystore.KeyStore, mk *keystore.MasterKey, log *slog.Logger) (*milter.Filter, error) {
	return newFilterEvents(cfg, store, mk, log, nil)
}

// newFilterEvents is newFilter that reports to events (nil: nowhere).
func newFilterEvents(cfg *Config, store keystore.KeyStore, mk *keystore.MasterKey, log *slog.Logger, events milter.Events) (*milter.Filter, error) {
	copies, _ := store.(keystore.CopyStore)
	return milter.NewFilter(milter.Config{
		Events:        events,
		Policy:        cfg.policy(),
		PortalURL:     cfg.Portal.URL,
		KeyLifetime:   cfg.Keystore.KeyLifetime,
		SpoolDir:      spoolPath(cfg),
		Store:         store,
		MasterKey:     mk,
		Logger:        log,
		LinkFallback:  cfg.Portal.LinkFallback,
		LinkRetention: cfg.Portal.LinkRetention,
		Copies:        copies,
	})
}

func portalSpoolPath(cfg *Config) string {
	if cfg.Portal.SpoolDir != "" {
		return cfg.Portal.SpoolDir
	}
	return filepath.Join(cfg.DataDir, "portal-spool")
}

// newPortal builds the recipient portal on the same key store the milter
// writes.
func newPortal(cfg *Config, store keystore.Store, mk *keystore.MasterKey, log *slog.Logger) (*portal.Handler, error) {
	return newBrandedPortal(cfg, store, mk, log, newPortalBrands(cfg), nil)
}

// newBrandedPortal is newPortal with the branding that brands serves, and
// its store counted by mets (nil: not counted).
func newBrandedPortal(cfg *Config, store keystore.Store, mk *keystore.MasterKey, log *slog.Logger, brands *portalBrands, mets *metrics.Metrics) (*portal.Handler, error) {
	var portalStore keystore.PortalStore = store
	if mets != nil {
		portalStore = mets.PortalStore(store)
	}
	// On PostgreSQL every portal host shares the uploaded envelopes, so a
	// browser's steps may land on any of them; bbolt keeps the folder.
	var shared keystore.SpoolStore
	if cfg.Keystore.Backend == backendPostgres {
		ss, ok := store.(keystore.SpoolStore)
		if !ok {
			return nil, fmt.Errorf("portal: the %s key store cannot hold the shared upload spool", cfg.Keystore.Backend)
		}
		shared = ss
	}
	a := cfg.Portal.Argon2
	return portal.New(portal.Options{
		SharedSpool:    shared,
		PortalURL:      cfg.Portal.URL,
		Keys:           store,
		Store:          portalStore,
		MasterKey:      mk,
		SpoolDir:       portalSpoolPath(cfg),
		SpoolTTL:       cfg.Portal.SpoolTTL,
		SpoolMax:       int64(cfg.Portal.SpoolMax),
		Limits:         portalLimits(cfg),
		MaxMessageSize: int64(cfg.Policy.MaxMessageSize),
		Mailer:         &portal.SMTPMailer{Addr: cfg.SMTP.Relay, HelloName: portalHost(cfg)},
		From:           cfg.portalFrom(),
		TriggerHeader:  cfg.Policy.TriggerHeader,
		SubjectTag:     cfg.Policy.SubjectTag,
		ReplyAll:       cfg.Portal.ReplyAll,
		// Links already sent keep working to their end even after
		// link_fallback is turned off.
		Copies:     store,
		ReadNotice: cfg.Portal.ReadNotice,
		Hasher: portal.NewHasher(portal.Argon2Params{
			Time: a.Time, MemoryKiB: uint32(a.Memory / 1024), Threads: a.Threads,
		}, a.Concurrency),
		MinPassword:    cfg.Portal.MinPasswordLength,
		TrustedProxies: cfg.Portal.TrustedProxies,
		Brands:         brands,
		Logger:         log,
	})
}

// portalLimits are the portal's budgets that the configuration sets; the
// others keep portal.DefaultLimits.
func portalLimits(cfg *Config) portal.Limits {
	return portal.Limits{
		RepliesPerAccount: portal.Rate{N: cfg.Portal.RepliesPerHour, Per: time.Hour},
		CodesPerClient:    portal.Rate{N: cfg.Portal.CodeRequestsPerHour, Per: time.Hour},
	}
}

func portalHost(cfg *Config) string {
	if u, err := url.Parse(cfg.Portal.URL); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return "localhost"
}
