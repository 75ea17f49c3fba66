package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/securemail/securemail/internal/metrics"
	"github.com/securemail/securemail/keystore"
)

// validateMetrics checks metrics.listen: empty (off) or host:port.
func (c *Config) validateMetrics() error {
	if c.Metrics.Listen == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(c.Metrics.Listen); err != nil || port == "" {
		return fmt.Errorf("metrics.listen %q must be host:port, e.g. 127.0.0.1:9894 (empty: off)", c.Metrics.Listen)
	}
	return nil
}

// newMetrics makes the metrics of one serve run. They are collected even
// with metrics.listen off: counting costs an atomic add per event.
func newMetrics(cfg *Config) *metrics.Metrics {
	return metrics.New("", map[string]string{"milter": spoolPath(cfg), "portal": portalSpoolPath(cfg)})
}

// listening is set while a listener of serve accepts connections.
type listening struct{ milter, portal atomic.Bool }

// readinessChecks are what /readyz checks.
func readinessChecks(cfg *Config, store keystore.Store, mk *keystore.MasterKey, up *listening) []metrics.Check {
	checks := []metrics.Check{
		{Name: "keystore", Fn: func(ctx context.Context) error {
			// The database answers, and can be written.
			if _, err := store.Key(ctx, keystore.KeyID{}); err != nil && !errors.Is(err, keystore.ErrNotFound) {
				return err
			}
			if cfg.Keystore.Backend == backendPostgres {
				// A shared database has no file here; a standby or a
				// read-only primary refuses this one-row write.
				_, err := store.Hit(ctx, "readyz", time.Now(), time.Second, 1<<30)
				return err
			}
			f, err := os.OpenFile(keystorePath(cfg), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			return f.Close()
		}},
		{Name: "spool", Fn: metrics.WritableDir(spoolPath(cfg))},
		{Name: "master_key", Fn: func(context.Context) error {
			if mk == nil || mk.ID() == "" {
				return errors.New("no master key loaded")
			}
			return nil
		}},
	}
	// A role this host does not run is not waited for (roles, serve.go).
	if cfg.Milter.Enabled {
		checks = append(checks, metrics.Check{Name: "milter", Fn: func(context.Context) error {
			if !up.milter.Load() {
				return errors.New("milter listener not serving")
			}
			return nil
		}})
	}
	if cfg.Portal.Enabled {
		checks = append(checks, metrics.Check{Name: "portal", Fn: func(context.Context) error {
			if !up.portal.Load() {
				return errors.New("portal listener not serving")
			}
			return nil
		}})
	}
	return checks
}

// startMetrics serves /metrics, /healthz and /readyz on metrics.listen;
// it returns nil when that is empty.
func startMetrics(cfg *Config, m *metrics.Metrics, checks []metrics.Check, log *slog.Logger, errc chan<- error) (*http.Server, error) {
	if cfg.Metrics.Listen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	srv := &http.Server{
		Handler:           m.Handler(checks, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics: %w", err)
		}
	}()
	return srv, nil
}
