package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/portal"
)

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "securemail.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestEmbeddedDefault(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Milter.Listen.Spec != "inet:127.0.0.1:8894" || cfg.Portal.Listen != "127.0.0.1:8080" {
		t.Errorf("default listeners %q %q are not on loopback", cfg.Milter.Listen, cfg.Portal.Listen)
	}
	if cfg.Policy.MaxMessageSize != 20<<20 || !cfg.Policy.RequireTLS || cfg.Policy.SubjectTag != "[encrypt]" || cfg.Policy.TriggerHeader != "X-Secure-Send" {
		t.Errorf("default policy: %+v", cfg.Policy)
	}
	if cfg.Keystore.MasterKeyFile != filepath.Join("securemail-data", "master.key") || cfg.Keystore.KeyLifetime != 90*24*time.Hour {
		t.Errorf("default keystore: %+v", cfg.Keystore)
	}
	p := cfg.policy()
	if len(p.TrustedNetworks) != 2 || len(p.TLSExemptNetworks) != 2 {
		t.Errorf("default networks: %v %v", p.TrustedNetworks, p.TLSExemptNetworks)
	}
}

// The example file is the operator's documentation: it must load, and it
// must name every key there is.
func TestExampleConfigIsCompleteAndValid(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "..", "contrib", "securemail.example.yaml")
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	def, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.MaxMessageSize != def.Policy.MaxMessageSize || cfg.Milter.Listen != def.Milter.Listen {
		t.Error("the example file's values differ from the defaults it claims to show")
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for key := range defaults {
		parts := strings.Split(key, ".")
		leaf := parts[len(parts)-1] + ":"
		if !strings.Contains(string(text), leaf) {
			t.Errorf("contrib/securemail.example.yaml does not document %s", key)
		}
	}
}

func TestUnknownKeysAreNamed(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "data_dir: /tmp/x\npolicy:\n  requre_tls: false\nportl:\n  url: https://x\n")
	_, err := loadConfig(path)
	if err == nil {
		t.Fatal("a config with unknown keys loaded")
	}
	for _, want := range []string{"unknown key", "policy.requre_tls", "portl"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	path := writeConfig(t, "policy:\n  require_tls: true\n  internal_domains: [a.test]\n")
	t.Setenv("SECUREMAIL_POLICY_REQUIRE_TLS", "false")
	t.Setenv("SECUREMAIL_POLICY_INTERNAL_DOMAINS", "b.test,c.test")
	t.Setenv("SECUREMAIL_POLICY_MAX_MESSAGE_SIZE", "1MiB")
	t.Setenv("SECUREMAIL_POLICY_TRUSTED_NETWORKS", "")
	t.Setenv("SECUREMAIL_PORTAL_URL", "https://secure.example.test")
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.RequireTLS {
		t.Error("SECUREMAIL_POLICY_REQUIRE_TLS=false did not override the file")
	}
	if strings.Join(cfg.Policy.InternalDomains, ",") != "b.test,c.test" {
		t.Errorf("internal domains from the environment: %q", cfg.Policy.InternalDomains)
	}
	if cfg.Policy.MaxMessageSize != 1<<20 {
		t.Errorf("max size %d", cfg.Policy.MaxMessageSize)
	}
	if len(cfg.policy().TrustedNetworks) != 0 {
		t.Errorf("an empty variable did not clear trusted_networks: %v", cfg.Policy.TrustedNetworks)
	}
	if cfg.Portal.URL != "https://secure.example.test" {
		t.Errorf("portal url %q", cfg.Portal.URL)
	}
}

func TestInvalidValuesExplained(t *testing.T) {
	t.Parallel()
	tests := []struct {
		yaml, want string
	}{
		{"policy:\n  trusted_networks: [10.0.0.0/33]\n", "policy.trusted_networks"},
		{"policy:\n  tls_exempt_networks: [localhost]\n", "policy.tls_exempt_networks"},
		{"milter:\n  listen: 8894\n", "milter.listen"},
		{"milter:\n  socket_mode: rw\n", "milter.socket_mode"},
		{"portal:\n  url: secure.example.test\n", "portal.url"},
		{"policy:\n  max_message_size: 20 parsecs\n", "20 parsecs"},
		{"policy:\n  subject_tag: \"\"\n  trigger_header: \"\"\n", "nothing could ever be encrypted"},
		{"keystore:\n  key_lifetime: -1h\n", "keystore.key_lifetime"},
		{"log:\n  level: loud\n", "log.level"},
		{"data_dir: [\n", "config"},
		// 16KiB for 4 threads: the hasher needs 8KiB per thread (issue 9).
		{"portal:\n  argon2:\n    memory: 16KiB\n", "portal.argon2"},
		{"portal:\n  spool_max: 1MiB\n", "portal.spool_max"},
		{"portal:\n  replies_per_hour: 0\n", "portal.replies_per_hour"},
		{"portal:\n  code_requests_per_hour: 0\n", "portal.code_requests_per_hour"},
		{"portal:\n  code_requests_per_hour: many\n", "portal.code_requests_per_hour"},
	}
	for _, tc := range tests {
		_, err := loadConfig(writeConfig(t, tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want one that mentions %q", tc.yaml, err, tc.want)
		}
	}
}

func TestParseListen(t *testing.T) {
	t.Parallel()
	tests := []struct{ spec, network, address string }{
		{"inet:127.0.0.1:8894", "tcp", "127.0.0.1:8894"},
		{"inet:8894@127.0.0.1", "tcp", "127.0.0.1:8894"},
		{"inet6:8894@[::1]", "tcp", "[::1]:8894"},
		{"unix:/run/securemail/milter.sock", "unix", "/run/securemail/milter.sock"},
		{"local:/run/m.sock", "unix", "/run/m.sock"},
	}
	for _, tc := range tests {
		n, a, err := parseListen(tc.spec)
		if err != nil || n != tc.network || a != tc.address {
			t.Errorf("parseListen(%q) = %q %q %v, want %q %q", tc.spec, n, a, err, tc.network, tc.address)
		}
	}
	for _, bad := range []string{"", "inet:", "inet:host", "unix:relative.sock", "tcp:127.0.0.1:1", "inet:127.0.0.1:99999"} {
		if _, _, err := parseListen(bad); err == nil {
			t.Errorf("parseListen(%q) accepted", bad)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	t.Parallel()
	tests := map[string]ByteSize{
		"1048576": 1 << 20, "20MiB": 20 << 20, "512 KiB": 512 << 10, "20MB": 20_000_000, "1GiB": 1 << 30, "7B": 7,
	}
	for in, want := range tests {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "-1", "1.5MiB", "99999999999GiB"} {
		if _, err := parseByteSize(bad); err == nil {
			t.Errorf("parseByteSize(%q) accepted", bad)
		}
	}
}

// serve refuses a public plain-HTTP portal: passwords would cross the
// network in clear and the session cookie could not be Secure.
func TestPortalURLPlainHTTPOnlyOnLoopback(t *testing.T) {
	for url, ok := range map[string]bool{
		"http://127.0.0.1:8080":         true,
		"http://localhost:8080":         true,
		"http://[::1]:8080":             true,
		"https://secure.example.com":    true,
		"http://secure.example.com":     false,
		"http://192.0.2.10:8080":        false,
		"http://secure.example.com:443": false,
	} {
		t.Setenv("SECUREMAIL_PORTAL_URL", url)
		_, err := loadConfig("")
		if (err == nil) != ok {
			t.Errorf("portal.url %s: err %v, want ok=%v", url, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "plain HTTP") {
			t.Errorf("portal.url %s: %v", url, err)
		}
	}
}

// TestPortalLimitsFromConfig: the configured budgets reach the portal, the
// defaults when nothing is set.
func TestPortalLimitsFromConfig(t *testing.T) {
	t.Parallel()
	def, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if l := portalLimits(def); l.CodesPerClient != (portal.Rate{N: 20, Per: time.Hour}) || l.RepliesPerAccount != (portal.Rate{N: 20, Per: time.Hour}) {
		t.Errorf("default limits %+v", l)
	}
	cfg, err := loadConfig(writeConfig(t, "portal:\n  code_requests_per_hour: 150\n  replies_per_hour: 7\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := portalLimits(cfg); l.CodesPerClient != (portal.Rate{N: 150, Per: time.Hour}) || l.RepliesPerAccount != (portal.Rate{N: 7, Per: time.Hour}) {
		t.Errorf("configured limits %+v", l)
	}
}
