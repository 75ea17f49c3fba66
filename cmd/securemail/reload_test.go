package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
)

// reloadFixture is a config file with a senders file and an internal
// domains file, and a filter built from it as serve builds one.
type reloadFixture struct {
	dir, config, senders, domains string
	r                             *reloader
	logs                          *strings.Builder
}

func (f *reloadFixture) writeConfig(t *testing.T, extra string) {
	t.Helper()
	yaml := fmt.Sprintf(`data_dir: %[1]s/data
log:
  level: info
milter:
  listen: inet:127.0.0.1:18894
policy:
  internal_domains: [example.test]
  internal_domains_files: [%[1]s/domains.txt]
  senders: [boss@example.test]
  senders_files: [%[1]s/senders.txt]
%[2]s`, f.dir, extra)
	writeFile(t, f.config, yaml)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// As a billing system should: write aside, then rename over.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newReloadFixture(t *testing.T) *reloadFixture {
	t.Helper()
	dir := t.TempDir()
	f := &reloadFixture{dir: dir, config: filepath.Join(dir, "securemail.yaml"),
		senders: filepath.Join(dir, "senders.txt"), domains: filepath.Join(dir, "domains.txt"), logs: &strings.Builder{}}
	f.writeConfig(t, "")
	writeFile(t, f.senders, "# from billing\nzoe@example.test\n@shop.test\n")
	writeFile(t, f.domains, "hosted.test\n.customers.test\n")
	cfg, err := loadConfig(f.config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prepareDataDir(cfg); err != nil {
		t.Fatal(err)
	}
	store, err := boltstore.Open(keystorePath(cfg), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	mk, err := keystore.CreateMasterKey(cfg.Keystore.MasterKeyFile, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: level}))
	filter, err := newFilter(cfg, store, mk, log)
	if err != nil {
		t.Fatal(err)
	}
	f.r = &reloader{load: func() (*Config, error) { return loadConfig(f.config) }, level: level, cur: cfg, filter: filter, log: log}
	return f
}

func TestListsCombineInlineAndFiles(t *testing.T) {
	f := newReloadFixture(t)
	l := f.r.cur.lists
	if got := strings.Join(l.senders, " "); got != "boss@example.test zoe@example.test @shop.test" || !l.restrictSenders {
		t.Errorf("senders %q (restricted %v)", got, l.restrictSenders)
	}
	if got := strings.Join(l.internalDomains, " "); got != "example.test hosted.test .customers.test" {
		t.Errorf("internal domains %q", got)
	}
	if st := f.r.filter.PolicyStats(); st.Senders != 3 || st.InternalDomains != 3 {
		t.Errorf("filter policy %+v", st)
	}
	// Neither senders nor senders_files: everyone.
	cfg, err := loadConfig(writeConfig(t, "policy:\n  internal_domains: [example.test]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.policy().RestrictSenders {
		t.Error("no sender list, yet sealing is restricted")
	}
}

func TestBadListFilesRefuseTheConfig(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"missing file":   {"policy:\n  senders_files: [/nonexistent/senders.txt]\n", "policy.senders_files: open /nonexistent/senders.txt"},
		"bad inline":     {"policy:\n  senders: [\"zoe example.test\"]\n", "policy.senders: \"zoe example.test\""},
		"address domain": {"policy:\n  internal_domains: [bob@example.test]\n", "policy.internal_domains"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loadConfig error %v, want %q", err, tc.want)
			}
			rep := runCheckConfig(checkConfigOptions{config: writeConfig(t, tc.yaml), postfixDir: "none", sendmailCF: "none"})
			var out strings.Builder
			rep.write(&out)
			if rep.worst() != sevError || !strings.Contains(out.String(), strings.SplitN(tc.want, ":", 2)[0]) {
				t.Errorf("check-config did not report it:\n%s", out.String())
			}
		})
	}
}

func TestReloadAppliesListsLevelAndKeepsRestartOnlyKeys(t *testing.T) {
	f := newReloadFixture(t)
	writeFile(t, f.senders, "zoe@example.test\nnew@example.test\n@shop.test\n.more.test\n")
	writeFile(t, f.domains, "hosted.test\n")
	f.writeConfig(t, "portal:\n  listen: 127.0.0.1:18443\n")
	// Change the log level and the milter socket too.
	yaml, _ := os.ReadFile(f.config)
	writeFile(t, f.config, strings.Replace(strings.Replace(string(yaml), "level: info", "level: debug", 1), "18894", "18895", 1))

	res, err := f.r.reload()
	if err != nil {
		t.Fatal(err)
	}
	if res.Policy.Senders != 5 || res.Policy.InternalDomains != 2 {
		t.Errorf("policy after reload %+v", res.Policy)
	}
	if f.r.level.Level() != slog.LevelDebug {
		t.Errorf("log level %v after reload, want debug", f.r.level.Level())
	}
	if got := strings.Join(res.NeedRestart, ","); got != "milter.listen,portal.listen" {
		t.Errorf("keys needing a restart %q", got)
	}
	if f.r.cur.Milter.Listen.Spec != "inet:127.0.0.1:18894" {
		t.Errorf("milter.listen in force %q: a restart-only key was applied", f.r.cur.Milter.Listen)
	}
	f.r.reloadAndLog("test")
	if !strings.Contains(f.logs.String(), "need a restart") || !strings.Contains(f.logs.String(), "configuration reloaded") {
		t.Errorf("log:\n%s", f.logs)
	}
}

func TestReloadRefusesABadConfigWhole(t *testing.T) {
	f := newReloadFixture(t)
	before := f.r.filter.PolicyStats()
	for name, breakIt := range map[string]func(){
		"bad entry in a list file": func() { writeFile(t, f.senders, "fine@example.test\nnot an address\n") },
		"list file gone":           func() { os.Remove(f.domains) },
		"bad YAML value":           func() { f.writeConfig(t, "  max_message_size: -3\n") },
		"unknown key":              func() { f.writeConfig(t, "  sendres: [x@example.test]\n") },
	} {
		t.Run(name, func(t *testing.T) {
			f.writeConfig(t, "")
			writeFile(t, f.senders, "zoe@example.test\nnew@example.test\n")
			writeFile(t, f.domains, "hosted.test\n")
			// A good file set, changed, so that a half-applied bad one
			// would show.
			f.writeConfig(t, "")
			breakIt()
			if _, err := f.r.reload(); err == nil {
				t.Fatal("reload accepted a bad configuration")
			}
			if got := f.r.filter.PolicyStats(); got != before {
				t.Errorf("policy changed by a refused reload: %+v, was %+v", got, before)
			}
			f.r.reloadAndLog("test")
			if !strings.Contains(f.logs.String(), "reload refused") {
				t.Errorf("log does not say the reload was refused:\n%s", f.logs)
			}
		})
	}
}

// TestReloadOf100000Entries checks the performance promise: a reload of
// 100 000 sender entries and 100 000 domains stays under a second.
func TestReloadOf100000Entries(t *testing.T) {
	f := newReloadFixture(t)
	writeBigLists(t, f.senders, f.domains, 100_000)
	res, err := f.r.reload()
	if err != nil {
		t.Fatal(err)
	}
	if res.Policy.Senders != 100_001 || res.Policy.InternalDomains != 100_001 {
		t.Fatalf("policy %+v", res.Policy)
	}
	t.Logf("reload of 2 x 100 000 entries took %v", res.Took)
	if res.Took > time.Second {
		t.Errorf("reload took %v, want under 1s", res.Took)
	}
}

// writeBigLists writes n senders and n domains, as a provider's billing
// system and control panel would.
func writeBigLists(t testing.TB, senders, domains string, n int) {
	var s, d strings.Builder
	s.WriteString("# generated\n")
	for i := range n {
		fmt.Fprintf(&s, "user%06d@customer%05d.test\n", i, i%50_000)
		fmt.Fprintf(&d, "customer%06d.test\n", i)
	}
	for path, b := range map[string]*strings.Builder{senders: &s, domains: &d} {
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReloadCommandThroughTheAdminSocket runs `securemail reload` against a
// live admin socket: the new sender list is in force afterwards and the
// command prints what was applied; a bad list is refused with the reason
// and the old policy stays.
func TestReloadCommandThroughTheAdminSocket(t *testing.T) {
	f := newReloadFixture(t)
	cfg := f.r.cur
	ln, err := listenAdmin(adminSocketPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv := startAdminServer(ln, adminEnv{cfg: cfg, store: nil, log: f.r.log, live: true, rotateMu: &sync.Mutex{}, reload: f.r})
	t.Cleanup(func() { srv.Close() })

	writeFile(t, f.senders, "zoe@example.test\nnew@example.test\n")
	var out strings.Builder
	if err := runAdmin(context.Background(), cfg, "reload", struct{}{}, nil, &out, nil); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "reloaded: 3 internal domain entries, 3 sender entries") {
		t.Errorf("reload printed %q", got)
	}
	if st := f.r.filter.PolicyStats(); st.Senders != 3 {
		t.Errorf("sender entries in force %d after reload, want 3", st.Senders)
	}

	writeFile(t, f.senders, "not an entry at all\n")
	out.Reset()
	err = runAdmin(context.Background(), cfg, "reload", struct{}{}, nil, &out, nil)
	if err == nil || !strings.Contains(err.Error(), "reload refused") || !strings.Contains(err.Error(), "senders_files") {
		t.Fatalf("reload of a bad list: %v (printed %q)", err, out.String())
	}
	if st := f.r.filter.PolicyStats(); st.Senders != 3 {
		t.Errorf("sender entries in force %d after a refused reload, want the old 3", st.Senders)
	}
	if !strings.Contains(f.logs.String(), "reload refused") {
		t.Errorf("log does not say the reload was refused:\n%s", f.logs)
	}
}
