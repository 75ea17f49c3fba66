package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
