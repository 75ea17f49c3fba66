package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/milter"
)

// serveOptions are serve's command-line switches.
type serveOptions struct {
	// allowMasterKeyMismatch starts even when the master key wraps none
	// of the key records.
	allowMasterKeyMismatch bool
}

// refuseForeignMasterKey refuses a master key that belongs to another database, unless
// the operator said to start anyway.
func refuseForeignMasterKey(cfg *Config, store keystore.Store, mk *keystore.MasterKey, log *slog.Logger, opts serveOptions) error {
	err := checkMasterKeyMatches(context.Background(), cfg, store, mk)
	if err != nil && opts.allowMasterKeyMismatch {
		log.Error("starting although the master key wraps none of the key records (--allow-master-key-mismatch): messages sealed so far cannot be opened", "err", err)
		return nil
	}
	return err
}

// startAdmin opens the control socket of the admin commands.
func startAdmin(cfg *Config, store keystore.Store, mk *keystore.MasterKey, filter *milter.Filter, log *slog.Logger, reload *reloader, mail *mailActivity) (*adminServer, error) {
	ln, err := listenAdmin(adminSocketPath(cfg))
	if err != nil {
		return nil, err
	}
	return startAdminServer(ln, adminEnv{
		cfg: cfg, store: store, mk: mk, filter: filter, log: log, live: true, rotateMu: &sync.Mutex{}, reload: reload, mail: mail,
	}), nil
}
