package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/keystore"
)

const (
	drainTimeout  = 30 * time.Second
	sweepInterval = time.Hour
	// sweepGrace keeps expired records a while, so the portal can say
	// "expired" rather than "unknown".
	sweepGrace = 30 * 24 * time.Hour
)

func newServeCommand(load func() (*Config, error)) *cobra.Command {
	var opts serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the milter and the portal until SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			level := new(slog.LevelVar)
			log := newLevelLogger(cfg, level)
			return serve(cfg, log, &reloader{load: load, level: level, cur: cfg, log: log}, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.allowMasterKeyMismatch, "allow-master-key-mismatch", false, "start even if the master key wraps none of the existing key records (they stay unreadable)")
	return cmd
}

func serve(cfg *Config, log *slog.Logger, reload *reloader, opts serveOptions) error {
	// go-milter reports connection errors through the standard logger.
	slog.SetDefault(log)
	mk, store, err := openKeys(cfg, log, true)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing the keystore failed", "err", err)
		}
	}()
	if err := refuseForeignMasterKey(cfg, store, mk, log, opts); err != nil {
		return err
	}
	mets := newMetrics(cfg)
	filter, err := newFilterEvents(cfg, store, mk, log, mets.Milter())
	if err != nil {
		return err
	}
	reload.filter, reload.onReload = filter, mets.Reloaded
	admin, err := startAdmin(cfg, store, mk, filter, log, reload)
	if err != nil {
		return err
	}
	defer admin.Close()

	// Roles: a submission host may run only the milter, a portal host
	// only the portal (milter.enabled, portal.enabled). The filter is
	// built either way: reload and the admin socket use its policy.
	var milterLn, httpLn net.Listener
	closeListeners := func() {
		for _, ln := range []net.Listener{milterLn, httpLn} {
			if ln != nil {
				ln.Close()
			}
		}
	}
	if cfg.Milter.Enabled {
		if milterLn, err = listenMilter(cfg); err != nil {
			return err
		}
	}
	var httpSrv *http.Server
	if cfg.Portal.Enabled {
		if httpLn, err = net.Listen("tcp", cfg.Portal.Listen); err != nil {
			closeListeners()
			return fmt.Errorf("portal.listen: %w", err)
		}
		reload.brands = newPortalBrands(cfg)
		web, err := newBrandedPortal(cfg, store, mk, log, reload.brands, mets)
		if err != nil {
			closeListeners()
			return err
		}
		defer web.Close()
		reload.hosts = newHostCheck(cfg, web)
		if strings.TrimSpace(cfg.SMTP.From) == "" {
			log.Warn("smtp.from is empty: the portal's codes and notices come from a made-up address; set smtp.from", "from", cfg.portalFrom())
		}
		httpSrv = &http.Server{
			Handler:           mets.Portal(reload.hosts),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
	}
	errc := make(chan error, 3)
	var up listening
	var milterSrv = filter.Server()
	if milterLn != nil {
		up.milter.Store(true)
		go func() { errc <- filter.Serve(milterSrv, milterLn); up.milter.Store(false) }()
	}
	if httpSrv != nil {
		up.portal.Store(true)
		go func() {
			err := httpSrv.Serve(httpLn)
			up.portal.Store(false)
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("portal: %w", err)
			}
		}()
	}
	milterAddr, portalAddr := "off", "off"
	if cfg.Milter.Enabled {
		milterAddr = cfg.Milter.Listen.Spec
	}
	if cfg.Portal.Enabled {
		portalAddr = cfg.Portal.Listen
	}
	log.Info("securemail started", "roles", cfg.roles(), "milter", milterAddr, "portal", portalAddr,
		"portal_url", cfg.Portal.URL, "data_dir", cfg.DataDir, "master_key_id", mk.ID(), "admin_socket", adminSocketPath(cfg),
		"version", readVersion().Version)

	metricsSrv, err := startMetrics(cfg, mets, readinessChecks(cfg, store, mk, &up), log, errc)
	if err != nil {
		errc <- err // shut down like any other failed listener
	}

	sweepCtx, stopSweep := context.WithCancel(context.Background())
	defer stopSweep()
	go sweepKeys(sweepCtx, store, log)

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	var runErr error
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				reload.reloadAndLog("SIGHUP")
				continue
			}
			log.Info("shutting down: draining messages in flight", "signal", s.String(), "timeout", drainTimeout)
			break wait
		case runErr = <-errc:
			log.Error("listener failed, shutting down", "err", runErr)
			break wait
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if httpSrv != nil {
		if err := httpSrv.Shutdown(ctx); err != nil {
			log.Warn("portal shutdown", "err", err)
		}
	}
	if milterLn != nil {
		if err := filter.Shutdown(ctx); err != nil {
			log.Warn("milter shutdown", "err", err)
		}
	}
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	log.Info("securemail stopped")
	return runErr
}

// listenMilter opens the milter socket. A unix socket left by a previous
// run is replaced, and gets milter.socket_mode so the MTA can connect.
func listenMilter(cfg *Config) (net.Listener, error) {
	network, address := cfg.Milter.Listen.Network, cfg.Milter.Listen.Address
	if network == "unix" {
		if st, err := os.Lstat(address); err == nil && st.Mode()&os.ModeSocket != 0 {
			if err := os.Remove(address); err != nil {
				return nil, fmt.Errorf("milter.listen: remove stale socket: %w", err)
			}
		}
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("milter.listen: %w", err)
	}
	if network == "unix" {
		if err := os.Chmod(address, cfg.Milter.SocketMode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("milter.socket_mode: %w", err)
		}
	}
	return ln, nil
}

func sweepKeys(ctx context.Context, store keystore.Store, log *slog.Logger) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := store.SweepKeys(ctx, now.Add(-sweepGrace))
			if err != nil {
				log.Error("sweeping expired keys failed", "err", err)
			} else if n > 0 {
				log.Info("swept expired keys", "deleted", n)
			}
			// Server copies end long before their keys are swept.
			if n, err := store.SweepCopies(ctx, now); err != nil {
				log.Error("sweeping server copies failed", "err", err)
			} else if n > 0 {
				log.Info("swept server copies", "deleted", n)
			}
		}
	}
}
