package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtaconf"
	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

// ccWant is an expected finding: a line that starts with "error: ",
// "warning: " or "info: " and contains the rest of the string.
type ccWant = string

// ccRun runs "securemail check-config args..." in-process, through cobra,
// looking at this host, and returns its output and exit status.
func ccRun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return ccRunOn(t, systemCheckHost(), args...)
}

// ccRunOn is ccRun looking at host; it replaces host's exit.
func ccRunOn(t *testing.T, host *checkHost, args ...string) (string, int) {
	t.Helper()
	code := 0
	exited := false
	host.exit = func(c int) {
		if exited {
			t.Errorf("check-config exited twice (%d, then %d)", code, c)
		}
		code, exited = c, true
	}
	root := newRootCommandOn(host)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"check-config"}, args...))
	if err := root.Execute(); err != nil && !exited {
		t.Fatalf("check-config: %v\n%s", err, out.String())
	}
	return out.String(), code
}

// ccCheck compares check-config's output and exit status with what a case
// wants: every wanted finding is there, and every error and warning line
// is wanted. A clean run (want code 0) must end with the ok line.
func ccCheck(t *testing.T, out string, code, wantCode int, wants []ccWant) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	matched := make([]bool, len(lines))
	for _, w := range wants {
		sev, text, _ := strings.Cut(w, ": ")
		found := false
		for i, l := range lines {
			if strings.HasPrefix(l, sev+": ") && strings.Contains(l, text) {
				matched[i], found = true, true
			}
		}
		if !found {
			t.Errorf("no %s line containing %q", sev, text)
		}
	}
	for i, l := range lines {
		if !matched[i] && (strings.HasPrefix(l, "error: ") || strings.HasPrefix(l, "warning: ")) {
			t.Errorf("unexpected finding: %s", l)
		}
		if l != "" && !strings.HasPrefix(l, "error: ") && !strings.HasPrefix(l, "warning: ") &&
			!strings.HasPrefix(l, "info: ") && !strings.HasPrefix(l, "ok: ") {
			t.Errorf("line without a severity prefix: %q", l)
		}
		if (strings.HasPrefix(l, "error: ") || strings.HasPrefix(l, "warning: ")) && !strings.Contains(l, " — ") {
			t.Errorf("finding does not say what to change (no \" — \"): %s", l)
		}
	}
	if code != wantCode {
		t.Errorf("exit status %d, want %d", code, wantCode)
	}
	last := lines[len(lines)-1]
	if wantCode == 0 && !strings.HasPrefix(last, "ok: ") {
		t.Errorf("clean run does not end with an ok line: %q", last)
	}
	if wantCode != 0 && strings.Contains(out, "\nok: ") {
		t.Errorf("run with findings prints an ok line")
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// ccSetup is a test's securemail files: a data folder with a valid master
// key, and a configuration written from a fixture.
type ccSetup struct {
	dir  string // @DIR@
	data string
	key  string
}

func newCCSetup(t *testing.T) *ccSetup {
	t.Helper()
	s := &ccSetup{dir: t.TempDir()}
	s.data = filepath.Join(s.dir, "data")
	s.key = filepath.Join(s.data, "master.key")
	if err := os.MkdirAll(s.data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.key, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// config writes testdata/checkconfig/yaml/<fixture> with @DIR@ and
// @LISTEN@ replaced, and returns its path.
func (s *ccSetup) config(t *testing.T, fixture, listen string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "checkconfig", "yaml", fixture))
	if err != nil {
		t.Fatal(err)
	}
	if listen == "" {
		listen = "inet:127.0.0.1:8894"
	}
	text := strings.NewReplacer("@DIR@", s.dir, "@LISTEN@", listen).Replace(string(b))
	path := filepath.Join(s.dir, "securemail.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var ccNoMTA = []string{"--postfix-config", "none", "--sendmail-cf", "none"}

func TestCheckConfigYAML(t *testing.T) {
	cases := []struct {
		name    string
		fixture string // in testdata/checkconfig/yaml; "" = the example file
		setup   func(t *testing.T, s *ccSetup)
		code    int
		wants   []ccWant
	}{
		{name: "good", fixture: "good.yaml", code: 0},
		{name: "example file", code: 1, setup: func(t *testing.T, s *ccSetup) {
			t.Setenv("SECUREMAIL_DATA_DIR", filepath.Join(s.dir, "fresh"))
		}, wants: []ccWant{
			"warning: policy.internal_domains is empty: every triggered message will be sealed, even between your own users",
			"warning: smtp.from is empty",
			"warning: master key file " + "@DIR@/fresh/master.key does not exist: securemail serve will create it on its first start — back it up",
			"info: the environment overrides data_dir (SECUREMAIL_DATA_DIR)",
		}},
		{name: "many problems at once", fixture: "many-problems.yaml", code: 2, wants: []ccWant{
			"error: unknown key portal.lisen in @DIR@/securemail.yaml — did you mean portal.listen?",
			"error: unknown key policy.requre_tls in @DIR@/securemail.yaml — did you mean policy.require_tls?",
			"error: unknown key portl in @DIR@/securemail.yaml — did you mean portal?",
			`error: policy.max_message_size = 20XB: "20XB" is not a size`,
			"error: keystore.key_lifetime = 90d: ",
			`error: log.level "loud" is not a log level — use debug, info, warn or error`,
			`error: milter.listen "tcp:8894" is not a milter socket address — write inet:127.0.0.1:8894`,
			`error: milter.socket_mode "rw" is not an octal file mode`,
			`error: policy.trusted_networks: "10.0.0.0/33" is neither an address nor a CIDR network`,
			`error: policy.trusted_networks: "not-a-network" is neither an address nor a CIDR network`,
			`error: policy.tls_exempt_networks: "2001:db8::/129" is neither`,
		}},
		{name: "portal over plain HTTP on a public name", fixture: "public-http.yaml", code: 2, wants: []ccWant{
			"error: portal.url http://secure.example.com is plain HTTP on a host that is not loopback: recipients would type their passwords over an unencrypted connection — use https://secure.example.com",
		}},
		{name: "portal over plain HTTP on loopback", fixture: "loopback-http.yaml", code: 0},
		{name: "no internal domains", fixture: "no-internal-domains.yaml", code: 1, wants: []ccWant{
			"warning: policy.internal_domains is empty: every triggered message will be sealed, even between your own users — list your own domains",
		}},
		{name: "no smtp.from", fixture: "no-from.yaml", code: 1, wants: []ccWant{
			"warning: smtp.from is empty: the portal's codes and notices will come from securemail@secure.example.com, which recipients' mail servers may refuse — set it",
		}},
		{name: "nothing triggers", fixture: "no-trigger.yaml", code: 2, wants: []ccWant{
			"error: policy.subject_tag and policy.trigger_header are both empty: nothing could ever be encrypted",
			"error: keystore.key_lifetime is 0s, not a positive duration — set a Go duration such as 2160h",
		}},
		{name: "YAML syntax error", fixture: "syntax.yaml", code: 2, wants: []ccWant{
			"error: configuration @DIR@/securemail.yaml cannot be read: ",
		}},
		{name: "environment overrides", fixture: "good.yaml", code: 2, setup: func(t *testing.T, s *ccSetup) {
			t.Setenv("SECUREMAIL_POLICY_TRUSTED_NETWORKS", "192.0.2.0/24,192.0.2.300")
			t.Setenv("SECUREMAIL_POLICY_REQUIRE_TSL", "false")
		}, wants: []ccWant{
			`error: policy.trusted_networks: "192.0.2.300" is neither an address nor a CIDR network`,
			"info: the environment overrides policy.trusted_networks (SECUREMAIL_POLICY_TRUSTED_NETWORKS)",
			"info: SECUREMAIL_POLICY_REQUIRE_TSL is set but names no configuration key; securemail ignores it",
		}},
		{name: "master key missing", fixture: "good.yaml", code: 1, setup: func(t *testing.T, s *ccSetup) {
			os.Remove(s.key)
		}, wants: []ccWant{
			"warning: master key file @DIR@/data/master.key does not exist: securemail serve will create it on its first start — back it up right after the first start, apart from data_dir",
		}},
		{name: "master key missing but key database there", fixture: "good.yaml", code: 2, setup: func(t *testing.T, s *ccSetup) {
			os.Remove(s.key)
			ccWriteFile(t, filepath.Join(s.data, "keys.db"), "x", 0o600)
		}, wants: []ccWant{
			"error: master key file @DIR@/data/master.key is missing but the key database @DIR@/data/keys.db exists: serve would create a new master key, and no message sealed so far could ever be opened — restore",
		}},
		{name: "master key readable by group", fixture: "good.yaml", code: 2, setup: func(t *testing.T, s *ccSetup) {
			ccChmod(t, s.key, 0o640)
		}, wants: []ccWant{
			"error: master key file @DIR@/data/master.key has mode 0640: group or others may read it, and securemail refuses to start — chmod 600 @DIR@/data/master.key",
		}},
		{name: "master key of the wrong size", fixture: "good.yaml", code: 2, setup: func(t *testing.T, s *ccSetup) {
			ccWriteFile(t, s.key, "correct horse battery staple\n", 0o600)
		}, wants: []ccWant{
			"error: master key file @DIR@/data/master.key holds 29 bytes, not 32 — restore the original key file from your backup",
		}},
		{name: "master key is a folder", fixture: "good.yaml", code: 2, setup: func(t *testing.T, s *ccSetup) {
			os.Remove(s.key)
			os.Mkdir(s.key, 0o700)
		}, wants: []ccWant{"error: master key file @DIR@/data/master.key is a folder"}},
		{name: "data_dir is a file", fixture: "good.yaml", code: 2, setup: func(t *testing.T, s *ccSetup) {
			os.RemoveAll(s.data)
			ccWriteFile(t, s.data, "", 0o600)
		}, wants: []ccWant{
			"error: data_dir @DIR@/data is not a folder — point data_dir at a folder",
			"error: master key file @DIR@/data/master.key does not exist and cannot be created in @DIR@/data: it is a file, not a folder",
		}},
		{name: "data_dir cannot be created", fixture: "good.yaml", code: 2, setup: func(t *testing.T, s *ccSetup) {
			os.RemoveAll(s.data)
			ccWriteFile(t, filepath.Join(s.dir, "file"), "", 0o600)
			t.Setenv("SECUREMAIL_DATA_DIR", filepath.Join(s.dir, "file", "data"))
		}, wants: []ccWant{
			"error: data_dir @DIR@/file/data does not exist and cannot be created in @DIR@/file: it is a file, not a folder — make @DIR@/file/data a folder",
			"error: master key file @DIR@/file/data/master.key does not exist and cannot be created in @DIR@/file: it is a file, not a folder",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newCCSetup(t)
			path := filepath.Join("..", "..", "contrib", "securemail.example.yaml")
			if tc.fixture != "" {
				path = s.config(t, tc.fixture, "")
			}
			if tc.setup != nil {
				tc.setup(t, s)
			}
			out, code := ccRun(t, append([]string{"--config", path}, ccNoMTA...)...)
			wants := make([]ccWant, len(tc.wants))
			for i, w := range tc.wants {
				wants[i] = strings.ReplaceAll(w, "@DIR@", s.dir)
			}
			ccCheck(t, out, code, tc.code, wants)
			// check-config never passes what serve refuses.
			if _, err := loadConfig(path); err != nil && code != 2 {
				t.Errorf("loadConfig refuses the configuration (%v) but check-config exits %d", err, code)
			}
		})
	}
}

func TestCheckConfigMissingFile(t *testing.T) {
	t.Parallel()
	out, code := ccRun(t, append([]string{"--config", filepath.Join(t.TempDir(), "nope.yaml")}, ccNoMTA...)...)
	ccCheck(t, out, code, 2, []ccWant{
		"error: configuration ", // "... cannot be read: ... no such file ... — check the path given to --config"
		"info: the other checks need a configuration that loads; they were skipped",
	})
	if !strings.Contains(out, "— check the path given to --config") {
		t.Errorf("missing file: output does not point at --config:\n%s", out)
	}
}

func ccWriteFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	ccChmod(t, path, mode)
}

func ccChmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// ccTraversable makes dir and its parent searchable by every user, so that a
// process running as another user reaches what is below it.
func ccTraversable(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		ccChmod(t, d, 0o755)
	}
}

// ccBinary builds securemail once per test into a folder every user can
// reach.
func ccBinary(t *testing.T) string {
	t.Helper()
	built := e2eBuild(t)
	dir := t.TempDir()
	ccTraversable(t, dir)
	bin := filepath.Join(dir, "securemail")
	b, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	ccWriteFile(t, bin, string(b), 0o755)
	return bin
}

// ccExec runs the built binary and returns stdout and the exit status.
func ccExec(t *testing.T, cmd *exec.Cmd) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &ee):
		if stderr.Len() > 0 {
			t.Errorf("check-config wrote to stderr: %s", stderr.String())
		}
		return stdout.String(), ee.ExitCode()
	}
	t.Fatalf("run %v: %v", cmd.Args, err)
	return "", -1
}

// The exit status is what scripts see: run the real binary once for each.
func TestCheckConfigExitCodesFromBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs the securemail binary built (go build)")
	}
	bin := ccBinary(t)
	cases := []struct {
		name    string
		fixture string
		args    []string
		code    int
	}{
		{"clean", "good.yaml", nil, 0},
		{"warnings only", "no-from.yaml", nil, 1},
		{"errors", "public-http.yaml", nil, 2},
		{"unknown flag", "good.yaml", []string{"--postfix-dir", "/etc/postfix"}, 2},
		{"stray argument", "good.yaml", []string{"/etc/postfix"}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newCCSetup(t)
			cfg := s.config(t, tc.fixture, "")
			args := append(append([]string{"check-config", "--config", cfg}, ccNoMTA...), tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, code := ccExec(t, exec.CommandContext(ctx, bin, args...))
			if code != tc.code {
				t.Errorf("exit status %d, want %d:\n%s", code, tc.code, out)
			}
			if tc.args == nil {
				inProc, inCode := ccRun(t, args[1:]...)
				if inProc != out || inCode != code {
					t.Errorf("binary and in-process runs differ:\nbinary (%d):\n%s\nin-process (%d):\n%s", code, out, inCode, inProc)
				}
			}
		})
	}
}

// File permissions as the user securemail runs as: the files belong to
// someone else. As root the binary runs as nobody; otherwise the test takes
// the permissions away from itself.
func TestCheckConfigPermissions(t *testing.T) {
	if testing.Short() && os.Geteuid() == 0 {
		t.Skip("skipped in -short: needs the securemail binary built (go build)")
	}
	s := newCCSetup(t)
	ccTraversable(t, s.dir)
	cfg := s.config(t, "good.yaml", "")
	ccChmod(t, cfg, 0o644)
	ccChmod(t, s.data, 0o755) // searchable, not writable, by others
	wants := []ccWant{
		"error: data_dir " + s.data + " is not writable: permission denied — make the user securemail serve runs as its owner",
		"error: master key file " + s.key + " cannot be read: permission denied — make the user securemail runs as its owner (chown), mode 0600",
	}
	args := append([]string{"check-config", "--config", cfg}, ccNoMTA...)
	if os.Geteuid() != 0 {
		ccChmod(t, s.data, 0o500)
		ccChmod(t, s.key, 0o200)
		t.Cleanup(func() { os.Chmod(s.data, 0o700) })
		out, code := ccRun(t, args[1:]...)
		ccCheck(t, out, code, 2, wants)
		return
	}
	bin := ccBinary(t)
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, code := ccExec(t, cmd)
	ccCheck(t, out, code, 2, wants)
}

// --- Postfix -------------------------------------------------------------

// ccPostfixDir writes a private Postfix configuration directory as a
// Debian host has it with securemail's snippets added: main.cf is
// contrib/postfix/main.cf.snippet plus the certificate lines Debian's
// main.cf holds, master.cf is Debian's plus contrib/postfix/master.cf.snippet.
func ccPostfixDir(t *testing.T) string {
	t.Helper()
	read := func(parts ...string) string {
		b, err := os.ReadFile(filepath.Join(parts...))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	dir := t.TempDir()
	ccWriteFile(t, filepath.Join(dir, "main.cf"),
		read("..", "..", "contrib", "postfix", "main.cf.snippet")+"\n"+read("testdata", "checkconfig", "postfix", "site-main.cf"), 0o644)
	ccWriteFile(t, filepath.Join(dir, "master.cf"),
		read("testdata", "checkconfig", "postfix", "debian-master.cf")+"\n"+read("..", "..", "contrib", "postfix", "master.cf.snippet"), 0o644)
	return dir
}

// ccPostconf finds postconf; without it the test is skipped, or fails with
// CI set.
func ccPostconf(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix's postconf")
	}
	bin, err := lookSbin("postconf")
	if err == nil {
		return bin
	}
	msg := "postconf not installed (Debian: apt-get install postfix)"
	mtatest.SkipUnlessCI(t, msg)
	return ""
}

func TestCheckConfigPostfix(t *testing.T) {
	t.Parallel()
	postconf := ccPostconf(t)
	const queue = "@DIR@/spool" // queue_directory of every case
	cases := []struct {
		name   string
		listen string     // milter.listen; default inet:127.0.0.1:8894
		edits  [][]string // postconf -c DIR <edit...>, in order
		mainCF string     // appended to main.cf after the edits
		code   int
		wants  []ccWant
	}{
		{name: "as shipped", code: 0},
		{name: "Sendmail's address form in milter.listen", listen: "inet:8894@127.0.0.1", code: 0},
		{name: "milter named by localhost", edits: [][]string{{"-e", "smtpd_milters=inet:localhost:8894"}}, code: 0},
		{name: "milter through a $reference", code: 0, edits: [][]string{
			{"-e", "securemail_milter=inet:127.0.0.1:8894", "smtpd_milters=$securemail_milter"},
		}},
		{name: "milter missing", edits: [][]string{{"-e", "smtpd_milters=inet:127.0.0.1:8891"}}, code: 2, wants: []ccWant{
			`error: @DIR@/main.cf: smtpd_milters = "inet:127.0.0.1:8891" does not name securemail's inet:127.0.0.1:8894 (milter.listen): mail sent over SMTP bypasses encryption and [encrypt] messages leave in plaintext — add inet:127.0.0.1:8894 to smtpd_milters in @DIR@/main.cf`,
			`error: @DIR@/main.cf: non_smtpd_milters = "inet:127.0.0.1:8891" does not name securemail's inet:127.0.0.1:8894`,
		}},
		{name: "milter on another port", listen: "inet:127.0.0.1:9000", code: 2, wants: []ccWant{
			`error: @DIR@/main.cf: smtpd_milters = "inet:127.0.0.1:8894" does not name securemail's inet:127.0.0.1:9000`,
			`error: @DIR@/main.cf: non_smtpd_milters = "inet:127.0.0.1:8894" does not name securemail's inet:127.0.0.1:9000`,
		}},
		{name: "non_smtpd_milters empty", edits: [][]string{{"-e", "non_smtpd_milters="}}, code: 2, wants: []ccWant{
			`error: @DIR@/main.cf: non_smtpd_milters = "" does not name securemail's inet:127.0.0.1:8894: mail submitted with the sendmail command (webmail, scripts) bypasses encryption and [encrypt] messages leave in plaintext — set non_smtpd_milters = $smtpd_milters`,
		}},
		{name: "milter only on submission", code: 1, edits: [][]string{
			{"-e", "smtpd_milters=", "non_smtpd_milters=inet:127.0.0.1:8894"},
			{"-P", "-e", "submission/inet/smtpd_milters=inet:127.0.0.1:8894"},
		}, wants: []ccWant{
			`warning: @DIR@/main.cf: smtpd_milters = "" does not name securemail's inet:127.0.0.1:8894 (milter.listen); only submission/inet do, in master.cf: mail that clients in policy.trusted_networks send on port 25 bypasses encryption`,
		}},
		{name: "submission turns the milter off", edits: [][]string{{"-P", "-e", "submission/inet/smtpd_milters="}}, code: 2, wants: []ccWant{
			`error: @DIR@/master.cf: service submission/inet sets smtpd_milters = "", which does not name securemail's inet:127.0.0.1:8894 (milter.listen): submissions there bypass encryption`,
		}},
		{name: "no_milters", edits: [][]string{{"-e", "receive_override_options=no_milters"}}, code: 2, wants: []ccWant{
			"error: @DIR@/main.cf: receive_override_options = no_milters turns every milter off",
		}},
		{name: "default action accept", edits: [][]string{{"-e", "milter_default_action=accept"}}, code: 2, wants: []ccWant{
			"error: @DIR@/main.cf: milter_default_action = accept: while securemail is down or unreachable Postfix passes mail through unfiltered, so [encrypt] messages leave in plaintext (fail-open) — set milter_default_action = tempfail",
		}},
		{name: "default action quarantine", edits: [][]string{{"-e", "milter_default_action=quarantine"}}, code: 2, wants: []ccWant{
			"error: @DIR@/main.cf: milter_default_action = quarantine: while securemail is down Postfix accepts mail unfiltered into the hold queue",
		}},
		{name: "default action reject", edits: [][]string{{"-e", "milter_default_action=reject"}}, code: 1, wants: []ccWant{
			"warning: @DIR@/main.cf: milter_default_action = reject: this fails closed, but while securemail is down every sender gets a permanent error",
		}},
		{name: "per-milter default action", code: 2, edits: [][]string{
			{"-e", "smtpd_milters={ inet:127.0.0.1:8894, connect_timeout=10s, default_action=accept }"},
		}, wants: []ccWant{
			"error: @DIR@/main.cf: smtpd_milters gives securemail's entry default_action=accept: while securemail is down or unreachable Postfix passes mail through unfiltered",
		}},
		{name: "submission overrides the default action", edits: [][]string{{"-P", "-e", "submission/inet/milter_default_action=accept"}}, code: 2, wants: []ccWant{
			"error: @DIR@/master.cf: service submission/inet sets milter_default_action = accept: while securemail is down",
		}},
		{name: "content filter re-injection without milters", code: 0, edits: [][]string{
			{"-M", "-e", "127.0.0.1:10025/inet=127.0.0.1:10025 inet n - n - - smtpd"},
			{"-P", "-e", "127.0.0.1:10025/inet/smtpd_milters=", "127.0.0.1:10025/inet/milter_default_action=accept", "127.0.0.1:10025/inet/milter_mail_macros=i"},
		}},
		{name: "Postfix's default macros", edits: [][]string{{"-X", "milter_mail_macros"}}, code: 1, wants: []ccWant{
			"warning: @DIR@/main.cf: milter_mail_macros lacks {tls_version} {client_addr}: securemail also asks Postfix for them in the milter handshake, which Postfix honours, but should that ever fail: without {tls_version}, every submission counts as plaintext and policy.require_tls refuses it; without {client_addr}, ",
		}},
		{name: "submission without TLS", edits: [][]string{{"-P", "-e", "submission/inet/smtpd_tls_security_level=may"}}, code: 1, wants: []ccWant{
			"warning: @DIR@/master.cf: service submission/inet does not require TLS (smtpd_tls_security_level = may): securemail refuses plaintext submissions itself (policy.require_tls), but Postfix should refuse them first — add -o smtpd_tls_security_level=encrypt to service submission/inet",
		}},
		{name: "submissions on 465 with wrappermode", code: 0, edits: [][]string{
			{"-M", "-e", "submissions/inet=submissions inet n - y - - smtpd"},
			{"-P", "-e", "submissions/inet/smtpd_tls_wrappermode=yes", "submissions/inet/smtpd_sasl_auth_enable=yes"},
		}},
		{name: "submissions on 465 without wrappermode", code: 1, edits: [][]string{
			{"-M", "-e", "submissions/inet=submissions inet n - y - - smtpd"},
		}, wants: []ccWant{
			"warning: @DIR@/master.cf: service submissions/inet is on port 465 (implicit TLS) without smtpd_tls_wrappermode=yes",
			"warning: @DIR@/master.cf: service submissions/inet does not require TLS (smtpd_tls_security_level = (empty))",
		}},
		{name: "no certificate", edits: [][]string{{"-X", "smtpd_tls_cert_file", "smtpd_tls_key_file"}}, code: 2, wants: []ccWant{
			"error: @DIR@/master.cf: service submission/inet requires TLS but Postfix has no server certificate: it cannot offer TLS, so every submission there fails — name your certificate and key in @DIR@/main.cf",
		}},
		{name: "no submission service", edits: [][]string{{"-M", "-X", "submission/inet"}}, code: 0, wants: []ccWant{
			"info: @DIR@/master.cf defines no submission service",
		}},
		{name: "unix socket below queue_directory", listen: "unix:" + queue + "/securemail/milter.sock", code: 0, edits: [][]string{
			{"-e", "smtpd_milters=unix:securemail/milter.sock"},
		}},
		{name: "unix socket outside the chroot", listen: "unix:/run/securemail/milter.sock", code: 2, edits: [][]string{
			{"-e", "smtpd_milters=unix:/run/securemail/milter.sock"},
		}, wants: []ccWant{
			"error: Postfix services do not reach securemail's socket /run/securemail/milter.sock: smtp/inet (chrooted in @DIR@/spool) opens @DIR@/spool/run/securemail/milter.sock; cleanup/unix (chrooted in @DIR@/spool) opens @DIR@/spool/run/securemail/milter.sock; submission/inet (chrooted in @DIR@/spool) opens @DIR@/spool/run/securemail/milter.sock — put the socket below @DIR@/spool",
		}},
		{name: "unix socket by its full path from a chroot", listen: "unix:" + queue + "/securemail/milter.sock", code: 2, edits: [][]string{
			{"-e", "smtpd_milters=unix:" + queue + "/securemail/milter.sock"},
		}, wants: []ccWant{
			"error: Postfix services do not reach securemail's socket @DIR@/spool/securemail/milter.sock: smtp/inet (chrooted in @DIR@/spool) opens @DIR@/spool@DIR@/spool/securemail/milter.sock; " +
				"cleanup/unix (chrooted in @DIR@/spool) opens @DIR@/spool@DIR@/spool/securemail/milter.sock; submission/inet (chrooted in @DIR@/spool) opens @DIR@/spool@DIR@/spool/securemail/milter.sock" +
				" — write it relative to queue_directory in @DIR@/main.cf: unix:securemail/milter.sock (that works chrooted and unchrooted)",
		}},
		{name: "unix socket, unchrooted", listen: "unix:/run/securemail/milter.sock", code: 0, edits: [][]string{
			{"-e", "smtpd_milters=unix:/run/securemail/milter.sock"},
			{"-F", "-e", "smtp/inet/chroot=n", "submission/inet/chroot=n", "cleanup/unix/chroot=n"},
		}},
		{name: "main.cf does not parse", mainCF: "this line has no equals sign\n", code: 2, wants: []ccWant{
			`error: postconf cannot read @DIR@: @DIR@/main.cf, line `,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newCCSetup(t)
			pfDir := ccPostfixDir(t)
			subst := strings.NewReplacer("@DIR@", pfDir)
			run := func(args ...string) {
				t.Helper()
				cmd := exec.Command(postconf, append([]string{"-c", pfDir}, args...)...)
				if out, err := cmd.CombinedOutput(); err != nil || bytes.Contains(out, []byte("unmatched")) {
					t.Fatalf("postconf %v: %v\n%s", args, err, out)
				}
			}
			run("-e", "queue_directory="+filepath.Join(pfDir, "spool"))
			for _, e := range tc.edits {
				args := make([]string, len(e))
				for i, a := range e {
					args[i] = subst.Replace(a)
				}
				run(args...)
			}
			if tc.mainCF != "" {
				f, err := os.OpenFile(filepath.Join(pfDir, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(f, tc.mainCF)
				f.Close()
			}
			// Postfix does not trust a main.cf changed in this very second
			// (it may still be being written) and waits until it is older.
			past := time.Now().Add(-time.Minute)
			for _, f := range []string{"main.cf", "master.cf"} {
				if err := os.Chtimes(filepath.Join(pfDir, f), past, past); err != nil {
					t.Fatal(err)
				}
			}
			cfg := s.config(t, "good.yaml", subst.Replace(tc.listen))
			out, code := ccRunOn(t, ccMTAHost(), "--config", cfg, "--postfix-config", pfDir, "--sendmail-cf", "none")
			wants := make([]ccWant, len(tc.wants))
			for i, w := range tc.wants {
				wants[i] = subst.Replace(w)
			}
			ccCheck(t, out, code, tc.code, wants)
		})
	}
}

// The snippets are checked as shipped: the good case above must be exactly
// contrib's files plus the host's own lines.
func TestCheckConfigPostfixSnippetsUnchanged(t *testing.T) {
	t.Parallel()
	ccPostconf(t)
	dir := ccPostfixDir(t)
	main, err := os.ReadFile(filepath.Join(dir, "main.cf"))
	if err != nil {
		t.Fatal(err)
	}
	snippet, err := os.ReadFile(filepath.Join("..", "..", "contrib", "postfix", "main.cf.snippet"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(main, snippet) {
		t.Error("the test's main.cf does not start with contrib/postfix/main.cf.snippet")
	}
}

func TestCheckConfigWithoutPostconf(t *testing.T) {
	t.Parallel()
	host := systemCheckHost()
	host.lookPostconf = func() (string, error) { return "", exec.ErrNotFound }
	s := newCCSetup(t)
	cfg := s.config(t, "good.yaml", "")

	out, code := ccRunOn(t, host, "--config", cfg, "--sendmail-cf", "none")
	ccCheck(t, out, code, 0, []ccWant{"info: postconf not found: Postfix not checked"})

	pfDir := t.TempDir()
	out, code = ccRunOn(t, host, "--config", cfg, "--sendmail-cf", "none", "--postfix-config", pfDir)
	ccCheck(t, out, code, 2, []ccWant{"error: --postfix-config " + pfDir + " was given but postconf is not installed — install Postfix"})
}

// --- Sendmail ------------------------------------------------------------

func TestCheckConfigSendmail(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		cf      string // in testdata/checkconfig/sendmail
		listen  string
		code    int
		wants   []ccWant
		missing bool // the file does not exist
	}{
		{name: "good", cf: "good.cf", code: 0},
		{name: "good, Sendmail's form in milter.listen", cf: "good.cf", listen: "inet:8894@localhost", code: 0},
		{name: "no F=T", cf: "no-tempfail.cf", code: 2, wants: []ccWant{
			"error: @CF@: milter Xsecuremail has no F=T: while securemail is down Sendmail passes mail through unfiltered, so [encrypt] messages leave in plaintext (fail-open) — add F=T to securemail's INPUT_MAIL_FILTER line in sendmail.mc and rebuild sendmail.cf",
		}},
		{name: "F=R", cf: "reject.cf", code: 1, wants: []ccWant{
			"warning: @CF@: milter Xsecuremail has F=R: this fails closed, but while securemail is down every sender gets a permanent error",
		}},
		{name: "wrong socket", cf: "wrong-socket.cf", code: 2, wants: []ccWant{
			"error: @CF@ has no milter that connects to securemail's inet:8894@127.0.0.1 (milter.listen); it defines Xopendkim (S=inet:8891@localhost), Xsecuremail (S=inet:8895@127.0.0.1) — make S= of securemail's INPUT_MAIL_FILTER line in sendmail.mc inet:8894@127.0.0.1",
		}},
		{name: "Sendmail's default macros", cf: "default-macros.cf", code: 1, wants: []ccWant{
			"warning: @CF@: O Milter.macros.envfrom lacks {tls_version} {client_addr}: securemail also asks Sendmail for them in the milter handshake, which Sendmail honours, but should that ever fail: without {tls_version}, every submission counts as plaintext and policy.require_tls refuses it; without {client_addr}, policy.trusted_networks and policy.tls_exempt_networks never match — add {tls_version}, {client_addr} to confMILTER_MACROS_ENVFROM",
		}},
		{name: "no queue id macro", cf: "no-queue-id.cf", code: 1, wants: []ccWant{
			"warning: @CF@: O Milter.macros.envfrom lacks i: ",
		}},
		{name: "not an input filter", cf: "not-input.cf", code: 2, wants: []ccWant{
			"error: @CF@: milter Xsecuremail is defined but not in O InputMailFilters ((empty)): Sendmail never calls it and [encrypt] messages leave in plaintext — define it with INPUT_MAIL_FILTER",
		}},
		{name: "no milter at all", cf: "no-milter.cf", code: 2, wants: []ccWant{
			"error: @CF@ defines no milter (no X line): Sendmail never calls securemail and [encrypt] messages leave in plaintext — add INPUT_MAIL_FILTER(`securemail', `S=inet:8894@127.0.0.1, F=T,",
		}},
		{name: "unix socket, continued line", cf: "local-socket.cf", listen: "unix:/run/securemail/milter.sock", code: 0},
		{name: "unix socket, other path", cf: "local-socket.cf", listen: "unix:/run/other.sock", code: 2, wants: []ccWant{
			"error: @CF@ has no milter that connects to securemail's local:/run/other.sock (milter.listen)",
		}},
		{name: "file missing", cf: "does-not-exist.cf", missing: true, code: 2, wants: []ccWant{
			"error: cannot read Sendmail's @CF@: no such file or directory — give the sendmail.cf that Sendmail runs with",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newCCSetup(t)
			cf, err := filepath.Abs(filepath.Join("testdata", "checkconfig", "sendmail", tc.cf))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(cf); (err != nil) != tc.missing {
				t.Fatalf("fixture %s: %v", tc.cf, err)
			}
			cfg := s.config(t, "good.yaml", tc.listen)
			out, code := ccRunOn(t, ccMTAHost(), "--config", cfg, "--postfix-config", "none", "--sendmail-cf", cf)
			wants := make([]ccWant, len(tc.wants))
			for i, w := range tc.wants {
				wants[i] = strings.ReplaceAll(w, "@CF@", cf)
			}
			ccCheck(t, out, code, tc.code, wants)
		})
	}
}

func TestCheckConfigSendmailDefaultPath(t *testing.T) {
	t.Parallel()
	host := systemCheckHost()
	s := newCCSetup(t)
	cfg := s.config(t, "good.yaml", "")

	host.sendmailCF = filepath.Join(t.TempDir(), "sendmail.cf")
	out, code := ccRunOn(t, host, "--config", cfg, "--postfix-config", "none")
	ccCheck(t, out, code, 0, []ccWant{"info: no " + host.sendmailCF + ": Sendmail not checked"})

	host.sendmailCF, _ = filepath.Abs(filepath.Join("testdata", "checkconfig", "sendmail", "no-tempfail.cf"))
	out, code = ccRunOn(t, host, "--config", cfg, "--postfix-config", "none")
	ccCheck(t, out, code, 2, []ccWant{"error: " + host.sendmailCF + ": milter Xsecuremail has no F=T"})
}

// ccMTAHost is this host without the milter socket folder check: the MTA
// cases' example socket paths need not exist here
// (TestCheckConfigMilterSocketFolder checks that).
func ccMTAHost() *checkHost {
	h := systemCheckHost()
	h.socketFolder = false
	return h
}

// The sendmail.cf that contrib/sendmail/securemail.mc produces, built with
// Sendmail's own m4 macros, passes clean.
func TestCheckConfigSendmailFromContribMC(t *testing.T) {
	t.Parallel()
	mc, err := os.ReadFile(filepath.Join("..", "..", "contrib", "sendmail", "securemail.mc"))
	if err != nil {
		t.Skipf("contrib/sendmail/securemail.mc: %v", err)
	}
	root := os.Getenv("SECUREMAIL_SENDMAIL_ROOT")
	if root == "" {
		root = "/opt/securemail-ci/sendmail"
	}
	cfDir := filepath.Join(root, "usr", "share", "sendmail", "cf")
	m4, err := exec.LookPath("m4")
	if _, serr := os.Stat(filepath.Join(cfDir, "m4", "cf.m4")); err != nil || serr != nil {
		msg := "m4 and Sendmail's cf tree (" + cfDir + ") are needed to build a sendmail.cf"
		mtatest.SkipUnlessCI(t, msg)
	}
	dir := t.TempDir()
	site := "divert(-1)\ndivert(0)dnl\nOSTYPE(`linux')dnl\nDOMAIN(`generic')dnl\n" + string(mc) +
		"MAILER(`local')dnl\nMAILER(`smtp')dnl\n"
	ccWriteFile(t, filepath.Join(dir, "sendmail.mc"), site, 0o644)
	cmd := exec.Command(m4, "-D_CF_DIR_="+cfDir+"/", filepath.Join(cfDir, "m4", "cf.m4"), "sendmail.mc")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cf, err := cmd.Output()
	if err != nil {
		t.Fatalf("m4: %v\n%s", err, stderr.String())
	}
	path := filepath.Join(dir, "sendmail.cf")
	ccWriteFile(t, path, string(cf), 0o644)

	s := newCCSetup(t)
	cfg := s.config(t, "good.yaml", "")
	out, code := ccRun(t, "--config", cfg, "--postfix-config", "none", "--sendmail-cf", path)
	ccCheck(t, out, code, 0, nil)

	// The hand-written fixture good.cf stands for this file where m4 is
	// missing: the parser must see the same in both.
	fixture, err := os.ReadFile(filepath.Join("testdata", "checkconfig", "sendmail", "good.cf"))
	if err != nil {
		t.Fatal(err)
	}
	got, want := mtaconf.ParseSendmailCF(cf), mtaconf.ParseSendmailCF(fixture)
	if len(got.Filters) != 1 || got.Filters[0].Fields["S"] != want.Filters[0].Fields["S"] ||
		got.Filters[0].Fields["F"] != want.Filters[0].Fields["F"] ||
		strings.Join(got.InputFilters, " ") != strings.Join(want.InputFilters, " ") {
		t.Errorf("generated sendmail.cf and testdata good.cf differ:\ngenerated %+v\nfixture   %+v", got, want)
	}
}

func TestCheckConfigParsePostfixMilters(t *testing.T) {
	t.Parallel()
	got := mtaconf.ParsePostfixMilters("inet:127.0.0.1:8891,{ inet:127.0.0.1:8894, connect_timeout = 10s, default_action=accept }  unix:/x.sock")
	if len(got) != 3 || got[0].Addr != "inet:127.0.0.1:8891" || got[1].Addr != "inet:127.0.0.1:8894" ||
		got[1].Settings["default_action"] != "accept" || got[1].Settings["connect_timeout"] != "10s" || got[2].Addr != "unix:/x.sock" {
		t.Errorf("ParsePostfixMilters: %+v", got)
	}
}
