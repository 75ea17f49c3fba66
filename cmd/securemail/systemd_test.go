package main

// Tests of contrib/systemd: the service unit, its sysusers.d and tmpfiles.d
// companions, and the YAML examples of docs/operators.md that go with them
// (TestSystemdGuideConfig).
//
// No systemd runs here (the tests may run in a container whose PID 1 is not
// systemd), so the unit is checked the ways that need none: its directives
// are read and asserted, its ExecStart command line is run against the real
// binary, "systemd-analyze verify" loads a copy whose ExecStart names the
// built binary, "systemd-analyze security --offline=yes" rates it, and
// systemd-sysusers and systemd-tmpfiles apply the companions to a scratch
// root directory. The systemd tools come with Debian's "systemd" package;
// without them those parts skip (and fail with CI set).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

const (
	sysdUnitPath     = "../../contrib/systemd/securemail.service"
	sysdSysusersPath = "../../contrib/systemd/securemail.sysusers"
	sysdTmpfilesPath = "../../contrib/systemd/securemail-postfix.tmpfiles"
	sysdGuidePath    = "../../docs/operators.md"
	// What the unit's paths must be, as docs/operators.md describes them.
	sysdBinary     = "/usr/local/bin/securemail"
	sysdConfig     = "/etc/securemail/securemail.yaml"
	sysdStateDir   = "/var/lib/securemail"
	sysdSocketDir  = "/var/spool/postfix/securemail"
	sysdMaxExposed = 2.0 // "systemd-analyze security" overall exposure; 1.2 when written
)

// sysdUnit is a parsed unit file: section -> key -> every value, in order.
type sysdUnit map[string]map[string][]string

func sysdParseUnit(t *testing.T, path string) sysdUnit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := sysdUnit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, "\\"):
			t.Fatalf("%s:%d: continuation lines are not expected in this unit", path, n)
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// last is the effective value of a single-valued key; ok is false when the
// key is absent.
func (u sysdUnit) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// sysdRequireTool finds a systemd tool, skipping the test (failing it with
// CI set) when it is missing.
func sysdRequireTool(t *testing.T, name string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/bin/" + name, "/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := fmt.Sprintf("systemd: %s not found (Debian: apt-get install systemd; it need not run)", name)
	mtatest.SkipUnlessCI(t, msg)
	return ""
}

func sysdRun(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestSystemdUnit checks contrib/systemd/securemail.service.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	u := sysdParseUnit(t, sysdUnitPath)

	t.Run("directives", func(t *testing.T) {
		want := []struct{ section, key, value string }{
			{"Service", "Type", "simple"},
			{"Service", "User", "securemail"},
			{"Service", "Group", "securemail"},
			{"Service", "StateDirectory", "securemail"},
			{"Service", "StateDirectoryMode", "0700"},
			{"Service", "WorkingDirectory", sysdStateDir},
			{"Service", "RuntimeDirectory", "securemail"},
			{"Service", "ConfigurationDirectory", "securemail"},
			{"Service", "Restart", "on-failure"},
			{"Service", "KillSignal", "SIGTERM"},
			{"Service", "UMask", "0077"},
			{"Service", "NoNewPrivileges", "yes"},
			{"Service", "CapabilityBoundingSet", ""},
			{"Service", "AmbientCapabilities", ""},
			{"Service", "ProtectSystem", "strict"},
			{"Service", "ProtectHome", "yes"},
			{"Service", "PrivateTmp", "yes"},
			{"Service", "PrivateDevices", "yes"},
			{"Service", "ProtectKernelTunables", "yes"},
			{"Service", "ProtectKernelModules", "yes"},
			{"Service", "ProtectControlGroups", "yes"},
			{"Service", "RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
			{"Service", "LockPersonality", "yes"},
			{"Service", "MemoryDenyWriteExecute", "yes"},
			{"Install", "WantedBy", "multi-user.target"},
		}
		for _, w := range want {
			got, ok := u.last(w.section, w.key)
			if !ok || got != w.value {
				t.Errorf("[%s] %s = %q (present: %v), want %q", w.section, w.key, got, ok, w.value)
			}
		}
		if f := u["Service"]["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
			t.Errorf("SystemCallFilter = %q, want @system-service first", f)
		}
		if rw := u["Service"]["ReadWritePaths"]; len(rw) != 1 || rw[0] != "-"+sysdSocketDir {
			t.Errorf("ReadWritePaths = %q, want [-%s] (optional: only unix-socket setups have it)", rw, sysdSocketDir)
		}
		// The unit must wait longer than serve's drain before SIGKILL.
		stop, _ := u.last("Service", "TimeoutStopSec")
		d, err := sysdDuration(stop)
		if err != nil {
			t.Errorf("TimeoutStopSec %q: %v", stop, err)
		} else if d <= drainTimeout {
			t.Errorf("TimeoutStopSec = %v, want more than serve's drain timeout %v", d, drainTimeout)
		}
		if got, _ := u.last("Service", "ExecReload"); got != "/bin/kill -HUP $MAINPID" {
			t.Errorf("ExecReload = %q, want SIGHUP (serve reloads the policy on it)", got)
		}
		for _, forbidden := range []string{"PrivateUsers", "DynamicUser"} {
			// PrivateUsers would
			// hide group postfix that the socket directory relies on;
			// DynamicUser would change the owner of /var/lib/securemail.
			if _, ok := u.last("Service", forbidden); ok {
				t.Errorf("[Service] %s is set; see the comment in systemd_test.go", forbidden)
			}
		}
	})

	execStart, _ := u.last("Service", "ExecStart")
	argv := strings.Fields(execStart)
	t.Run("ExecStart", func(t *testing.T) {
		want := []string{sysdBinary, "serve", "--config", sysdConfig}
		if strings.Join(argv, " ") != strings.Join(want, " ") {
			t.Fatalf("ExecStart = %q, want %q", execStart, strings.Join(want, " "))
		}
	})

	bin := e2eBuild(t)
	t.Run("ExecStart accepted by securemail", func(t *testing.T) {
		// --help makes cobra parse every flag of the line and stop before
		// serve loads the (absent) file: an unknown flag or command fails.
		out, err := sysdRun(t, bin, append(argv[1:], "--help")...)
		if err != nil {
			t.Fatalf("securemail %s --help: %v\n%s", strings.Join(argv[1:], " "), err, out)
		}
		if !strings.Contains(out, "--config") || !strings.Contains(out, "serve") {
			t.Errorf("help output does not describe serve --config:\n%s", out)
		}
		bad, err := sysdRun(t, bin, "serve", "--confg", sysdConfig, "--help")
		if err == nil {
			t.Errorf("a misspelt flag was accepted too, so this check proves nothing:\n%s", bad)
		}
	})

	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze := sysdRequireTool(t, "systemd-analyze")
		// verify fails on an ExecStart binary that does not exist, so it
		// checks a copy that names the binary just built. It reports
		// unknown keys and bad values on its output but still exits 0:
		// any output at all is a failure.
		copyPath := sysdUnitCopy(t, bin)
		out, err := sysdRun(t, analyze, "verify", copyPath)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		// The check itself works: a misspelt directive is reported.
		broken := filepath.Join(filepath.Dir(copyPath), "broken.service")
		text, _ := os.ReadFile(copyPath)
		os.WriteFile(broken, bytes.Replace(text, []byte("ProtectSystem=strict"), []byte("ProtectSystem=strickt"), 1), 0o644)
		if out, _ := sysdRun(t, analyze, "verify", broken); !strings.Contains(out, "strickt") {
			t.Errorf("systemd-analyze verify did not report a bad value; its silence proves nothing:\n%s", out)
		}
	})

	t.Run("systemd-analyze security", func(t *testing.T) {
		analyze := sysdRequireTool(t, "systemd-analyze")
		copyPath := sysdUnitCopy(t, bin)
		out, err := sysdRun(t, analyze, "security", "--offline=yes", "--no-pager", copyPath)
		if err != nil {
			t.Fatalf("systemd-analyze security --offline=yes: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no overall exposure level in:\n%s", out)
		}
		level, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("systemd-analyze security: overall exposure %.1f (0 = locked down, 10 = unprotected)", level)
		if level > sysdMaxExposed {
			t.Errorf("overall exposure %.1f, want at most %.1f:\n%s", level, sysdMaxExposed, out)
		}
	})
}

// sysdUnitCopy writes the unit with ExecStart's binary replaced by bin into
// a new directory and returns its path.
func sysdUnitCopy(t *testing.T, bin string) string {
	t.Helper()
	text, err := os.ReadFile(sysdUnitPath)
	if err != nil {
		t.Fatal(err)
	}
	old := "ExecStart=" + sysdBinary + " "
	if !bytes.Contains(text, []byte(old)) {
		t.Fatalf("unit has no %q line", old)
	}
	text = bytes.Replace(text, []byte(old), []byte("ExecStart="+bin+" "), 1)
	path := filepath.Join(t.TempDir(), "securemail.service")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sysdDuration reads a systemd time span: plain seconds or Go-style units
// ("45", "45s", "1min 30s" is not used here).
func sysdDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(strings.ReplaceAll(s, "min", "m"))
}

// TestSystemdUsersAndSocketDir applies contrib/systemd/securemail.sysusers
// and securemail-postfix.tmpfiles to a scratch root (systemd-sysusers and
// systemd-tmpfiles with --root need no running systemd) and checks that
// they make the user the unit runs as and the socket directory its
// ReadWritePaths names: owner securemail, group postfix, mode 2750.
func TestSystemdUsersAndSocketDir(t *testing.T) {
	t.Parallel()
	sysusers := sysdRequireTool(t, "systemd-sysusers")
	tmpfiles := sysdRequireTool(t, "systemd-tmpfiles")
	u := sysdParseUnit(t, sysdUnitPath)
	user, _ := u.last("Service", "User")

	root := t.TempDir()
	// A root that already has Postfix's user and group, as a Debian host
	// with postfix installed does.
	for name, text := range map[string]string{
		"etc/passwd":                             "root:x:0:0:root:/root:/bin/sh\npostfix:x:4242:4243::/var/spool/postfix:/usr/sbin/nologin\n",
		"etc/group":                              "root:x:0:\npostfix:x:4243:\n",
		"etc/sysusers.d/securemail.conf":         sysdReadFile(t, sysdSysusersPath),
		"etc/tmpfiles.d/securemail-postfix.conf": sysdReadFile(t, sysdTmpfilesPath),
	} {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := sysdRun(t, sysusers, "--root="+root, "securemail.conf"); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd := sysdReadFile(t, filepath.Join(root, "etc/passwd"))
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(user) + `:x:(\d+):(\d+):[^:]*:([^:]*):([^:\n]*)$`).FindStringSubmatch(passwd)
	if m == nil {
		t.Fatalf("systemd-sysusers made no user %q (the unit's User=):\n%s", user, passwd)
	}
	uid, _ := strconv.Atoi(m[1])
	if m[3] != sysdStateDir || m[4] != "/usr/sbin/nologin" {
		t.Errorf("user %s: home %q shell %q, want %s and /usr/sbin/nologin", user, m[3], m[4], sysdStateDir)
	}
	if uid == 0 || uid >= 1000 {
		t.Errorf("user %s has uid %d, want a system uid (1..999)", user, uid)
	}

	if os.Geteuid() != 0 {
		msg := "systemd: systemd-tmpfiles must run as root to set the socket directory's owner"
		mtatest.SkipUnlessCI(t, msg)
	}
	if out, err := sysdRun(t, tmpfiles, "--create", "--root="+root, "securemail-postfix.conf"); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	rw, _ := u.last("Service", "ReadWritePaths")
	dir := filepath.Join(root, strings.TrimPrefix(rw, "-"))
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("the unit's ReadWritePaths %s was not created by the tmpfiles file: %v", rw, err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) != uid || sys.Gid != 4243 {
		t.Errorf("%s: owner %d:%d, want %s:postfix (%d:4243)", rw, sys.Uid, sys.Gid, user, uid)
	}
	if want := os.ModeDir | os.ModeSetgid | 0o750; st.Mode() != want {
		t.Errorf("%s: mode %v, want %v (set-group-ID, so the socket gets group postfix)", rw, st.Mode(), want)
	}
}

func sysdReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSystemdGuideConfig loads every ```yaml block of docs/operators.md with
// the real configuration loader, and checks that the production example
// agrees with the unit: data_dir is the unit's state directory.
func TestSystemdGuideConfig(t *testing.T) {
	t.Parallel()
	text := sysdReadFile(t, sysdGuidePath)
	blocks := regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllStringSubmatch(text, -1)
	if len(blocks) == 0 {
		t.Fatalf("%s has no ```yaml block", sysdGuidePath)
	}
	for i, b := range blocks {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("guide-%d.yaml", i+1))
		if err := os.WriteFile(path, []byte(b[1]), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path)
		if err != nil {
			t.Errorf("YAML block %d of %s does not load: %v\n%s", i+1, sysdGuidePath, err, b[1])
			continue
		}
		if !strings.Contains(b[1], "/etc/securemail/securemail.yaml") {
			continue
		}
		if cfg.DataDir != sysdStateDir {
			t.Errorf("the guide's securemail.yaml has data_dir %q, want the unit's %s", cfg.DataDir, sysdStateDir)
		}
		if !strings.HasPrefix(cfg.Portal.URL, "https://") {
			t.Errorf("the guide's securemail.yaml has portal.url %q, want an https:// URL", cfg.Portal.URL)
		}
		for _, n := range [][]netip.Prefix{cfg.Policy.TrustedNetworks, cfg.Policy.TLSExemptNetworks} {
			if !slices.Contains(n, netip.MustParsePrefix("127.0.0.0/8")) {
				t.Errorf("the guide's securemail.yaml drops loopback from %v; sendmail(1) mail depends on it", n)
			}
		}
	}
}
