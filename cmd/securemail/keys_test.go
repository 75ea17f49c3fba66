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

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/milter"
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

// TestListPacerPausesAndStops: a pacer looks at the mail after every
// listPaceEvery records; while MTA connections are open or messages were
// done since its last look, it rests listBusyRest times as long as the
// records took, otherwise not at all; without a milter (the command runs
// on the store itself) never. A cancelled listing ends at its rest
// instead of sleeping it out.
func TestListPacerPausesAndStops(t *testing.T) {
	t.Parallel()
	mail := &mailActivity{Events: nopEvents{}}
	p := newListPacer(mail)
	var rests []time.Duration
	p.sleep = func(_ context.Context, d time.Duration) error { rests = append(rests, d); return nil }
	chunk := func(work time.Duration) {
		t.Helper()
		rests = nil
		p.since = time.Now().Add(-work)
		for range listPaceEvery {
			if err := p.tick(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	chunk(50 * time.Millisecond)
	if len(rests) != 0 {
		t.Errorf("rested %v with no mail flowing", rests)
	}
	mail.SessionOpened()
	chunk(50 * time.Millisecond)
	if want := time.Duration(listBusyRest) * 50 * time.Millisecond; len(rests) != 1 || rests[0] < want {
		t.Errorf("rested %v with an MTA connection open after 50 ms of work, want one rest of at least %v", rests, want)
	}
	mail.MessageDone(milter.VerdictSealed, "")
	mail.SessionClosed()
	chunk(10 * time.Millisecond)
	if len(rests) != 1 {
		t.Errorf("rested %v after a message was done since the last look, want one rest", rests)
	}
	chunk(10 * time.Millisecond)
	if len(rests) != 0 {
		t.Errorf("rested %v once the mail stopped", rests)
	}

	offline := newListPacer(nil)
	offline.sleep = p.sleep
	rests = nil
	for range 3 * listPaceEvery {
		if err := offline.tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if len(rests) != 0 {
		t.Errorf("rested %v without a milter", rests)
	}

	mail.SessionOpened()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q := newListPacer(mail)
	q.since = time.Now().Add(-time.Hour)
	var err error
	for range listPaceEvery {
		if err = q.tick(ctx); err != nil {
			break
		}
	}
	if err == nil {
		t.Error("a cancelled listing slept out its pause")
	}
}

// nopEvents is milter.Events that counts nothing.
type nopEvents struct{}

func (nopEvents) MessageDone(string, string)  {}
func (nopEvents) Sealed(time.Duration, int64) {}
func (nopEvents) KeyCommitted(time.Duration)  {}
func (nopEvents) SessionOpened()              {}
func (nopEvents) SessionClosed()              {}

// TestRecordLineSameAsKeyLine: the line keys list formats straight from a
// record is keyLine of its view, for times in every zone and year.
func TestRecordLineSameAsKeyLine(t *testing.T) {
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	var id keystore.KeyID
	copy(id[:], "0123456789abcdef")
	for i, tm := range []time.Time{
		{}, at, at.Add(999 * time.Millisecond), time.Date(999, 1, 2, 3, 4, 5, 6, time.UTC), time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-5, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 30, 0, 0, time.FixedZone("x", -3600)), at.In(time.FixedZone("y", 5*3600+1800)),
	} {
		for _, rec := range []keystore.KeyRecord{
			{ID: id, Created: tm, Expires: tm, Sender: "a@example.test", Recipients: []string{"b@example.org", "c@example.net"}, MessageID: "<m@x>"},
			{ID: id, Created: tm, Revoked: at, WrappedDEK: []byte{1}},
			{ID: id, Expires: tm, Recipients: []string{}},
		} {
			want := keyLine(viewKey(rec, at))
			if got := string(appendRecordLine(nil, rec, at)); got != want {
				t.Errorf("time %d (%v): appendRecordLine = %q, want %q", i, tm, got, want)
			}
		}
	}
}
