package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securemail/securemail/keystore"
)

func ccLines(out, prefix string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			got = append(got, l)
		}
	}
	return got
}

func TestCheckConfigMilterSocketFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missingDir := filepath.Join(dir, "run", "securemail")
	cfg := filepath.Join(dir, "securemail.yaml")
	ccWriteFile(t, cfg, "data_dir: "+filepath.Join(dir, "data")+"\nmilter:\n  listen: unix:"+missingDir+"/milter.sock\n", 0o600)
	out, code := ccRun(t, append([]string{"--config", cfg}, ccNoMTA...)...)
	want := "error: the folder " + missingDir + " of the milter socket " + missingDir + "/milter.sock does not exist"
	if code != 2 || !strings.Contains(out, want) || !strings.Contains(out, "contrib/systemd/securemail-postfix.tmpfiles") {
		t.Fatalf("exit %d, want 2 and %q with the tmpfiles fix:\n%s", code, want, out)
	}
	if err := os.MkdirAll(missingDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, _ = ccRun(t, append([]string{"--config", cfg}, ccNoMTA...)...)
	if strings.Contains(out, "of the milter socket") {
		t.Fatalf("the folder exists now:\n%s", out)
	}
}

func TestCheckConfigSystemConfigNotUsed(t *testing.T) {
	dir := t.TempDir()
	host := systemCheckHost()
	host.systemConfig = filepath.Join(dir, "securemail.yaml")
	t.Setenv("SECUREMAIL_DATA_DIR", filepath.Join(dir, "data"))
	ccWriteFile(t, host.systemConfig, "data_dir: /var/lib/securemail\n", 0o600)
	out, _ := ccRunOn(t, host, ccNoMTA...)
	want := "warning: no --config given, so this checked the embedded default, but " + host.systemConfig + " exists"
	if !strings.Contains(out, want) {
		t.Fatalf("want %q:\n%s", want, out)
	}
	out, _ = ccRunOn(t, host, append([]string{"--config", host.systemConfig}, ccNoMTA...)...)
	if strings.Contains(out, "no --config given") {
		t.Fatalf("warned with --config given:\n%s", out)
	}
}

// TestCheckConfigForeignMasterKey: check-config reports, in serve's words,
// a master key that wraps none of the records, whether serve runs or not.
func TestCheckConfigForeignMasterKey(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	cfg := f.env.cfg
	config := filepath.Join(filepath.Dir(cfg.DataDir), "securemail.yaml")
	out, _ := ccRun(t, append([]string{"--config", config}, ccNoMTA...)...)
	if lines := ccLines(out, "error:"); len(lines) != 0 {
		t.Fatalf("errors with the right master key: %v\n%s", lines, out)
	}
	f.srv.Close()
	if err := f.env.store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cfg.Keystore.MasterKeyFile, cfg.Keystore.MasterKeyFile+".real"); err != nil {
		t.Fatal(err)
	}
	foreign, err := keystore.CreateMasterKey(cfg.Keystore.MasterKeyFile, strings.NewReader(strings.Repeat("f", 32)))
	if err != nil {
		t.Fatal(err)
	}
	mismatch := masterKeyMismatch(cfg, map[string]int{f.env.master.ID(): 3}, foreign.ID(), "")
	if mismatch == nil {
		t.Fatal("no mismatch computed")
	}
	out, code := ccRun(t, append([]string{"--config", config}, ccNoMTA...)...)
	want := "error: " + mismatch.Error()
	if code != 2 || !strings.Contains(out, want) {
		t.Fatalf("exit %d, want 2 and\n%s\n in:\n%s", code, want, out)
	}
	if !strings.Contains(out, foreign.ID()) || !strings.Contains(out, f.env.master.ID()) {
		t.Fatalf("both ids must be named:\n%s", out)
	}
}
