package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A lost master key must never be replaced silently by a new one: the new
// key could open nothing sealed so far.
func TestMissingMasterKeyIsNotReplacedWhenKeysExist(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SECUREMAIL_DATA_DIR", dir)
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mk, store, err := openKeys(cfg, log, true)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	store.Close()
	if err := os.Rename(cfg.Keystore.MasterKeyFile, filepath.Join(dir, "moved-away.key")); err != nil {
		t.Fatal(err)
	}
	_, _, err = openKeys(cfg, log, true)
	if err == nil || !strings.Contains(err.Error(), "restore the master key from your backup") {
		t.Fatalf("start without the master key but with keys.db: %v", err)
	}
	if _, statErr := os.Stat(cfg.Keystore.MasterKeyFile); !os.IsNotExist(statErr) {
		t.Fatal("a new master key file was written")
	}
	if err := os.Rename(filepath.Join(dir, "moved-away.key"), cfg.Keystore.MasterKeyFile); err != nil {
		t.Fatal(err)
	}
	again, store, err := openKeys(cfg, log, true)
	if err != nil {
		t.Fatalf("after restoring the key: %v", err)
	}
	store.Close()
	if again.ID() != mk.ID() {
		t.Fatal("the restored master key has another id")
	}
}

// Spool files left by a crash are removed at start, and the start says so.
func TestStartRemovesStaleSpoolFiles(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SECUREMAIL_DATA_DIR", dir)
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(spoolPath(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(spoolPath(cfg), "spool-crash"+strconv.Itoa(i)), []byte("ciphertext"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var logBuf strings.Builder
	_, store, err := openKeys(cfg, slog.New(slog.NewTextHandler(&logBuf, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	if left, _ := filepath.Glob(filepath.Join(spoolPath(cfg), "*")); len(left) != 0 {
		t.Fatalf("spool files left: %v", left)
	}
	if !strings.Contains(logBuf.String(), "removed spool files a previous run left behind") || !strings.Contains(logBuf.String(), "count=3") {
		t.Fatalf("log:\n%s", logBuf.String())
	}
}

// TestKeyLineSameAsFormatted: the fmt-free line of keys list is the one
// the fmt format gave (scripts read it by columns).
func TestKeyLineSameAsFormatted(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 4, 18, 30, 0, 5, time.FixedZone("x", 3600))
	for _, v := range []keyView{
		{ID: "k1", Sender: "alice@example.test", Recipients: []string{"b@example.org", "c@example.net"}, MessageID: "<m@x>", Created: t0, Expires: t0.Add(time.Hour), State: "live"},
		{ID: "k2", State: "revoked"},
		{ID: "k3", Recipients: []string{"b@example.org"}, State: "expired", Created: t0},
	} {
		mid := v.MessageID
		if mid == "" {
			mid = "-"
		}
		want := fmt.Sprintf("%s  %s  %s  %-7s  %s -> %s  %s\n", v.ID, fmtTime(v.Created), fmtTime(v.Expires), v.State,
			orDash(v.Sender), strings.Join(v.Recipients, ","), mid)
		if got := keyLine(v); got != want {
			t.Errorf("keyLine = %q, want %q", got, want)
		}
	}
}

// TestListPacerPausesAndStops: a pacer lets listPaceEvery records through,
// then pauses about as long as they took; a cancelled listing ends at
// that pause instead of sleeping it out.
func TestListPacerPausesAndStops(t *testing.T) {
	t.Parallel()
	p := newListPacer()
	p.since = time.Now().Add(-50 * time.Millisecond) // 50 ms of "work"
	start := time.Now()
	for range listPaceEvery {
		if err := p.tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("paused %v after %d records that took 50 ms, want about 50 ms", d, listPaceEvery)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.since = time.Now().Add(-time.Hour)
	var err error
	for range listPaceEvery {
		if err = p.tick(ctx); err != nil {
			break
		}
	}
	if err == nil {
		t.Error("a cancelled listing slept out its pause")
	}
}
