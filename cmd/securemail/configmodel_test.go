package main

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestConfigValidatorSameWordsEverywhere: a file with a bad value for
// every key that can have one: serve (loadConfig) refuses it listing every
// problem at once, and check-config reports exactly the same problems in
// the same words, each with its key and its fix.
func TestConfigValidatorSameWordsEverywhere(t *testing.T) {
	dir := t.TempDir()
	bad := []struct{ key, yaml, want string }{
		{"data_dir", `data_dir: ""`, "data_dir is empty"},
		{"log.level", "log:\n  level: loud", `log.level "loud" is not a log level`},
		{"milter.listen", "milter:\n  listen: tcp:1\n  socket_mode: rw", `milter.listen "tcp:1" is not a milter socket address`},
		{"milter.socket_mode", "", `milter.socket_mode "rw" is not an octal file mode`},
		{"portal.listen", "portal:\n  listen: 8080\n  url: secure.example.test\n  spool_ttl: -1h\n  reply_all: maybe\n  min_password_length: 4\n  trusted_proxies: [proxy]\n  argon2:\n    time: 0\n    memory: lots\n    threads: many\n    concurrency: 0\n  link_fallback: maybe\n  link_retention: 30d\n  read_notice: sometimes",
			`portal.listen "8080" is not a HOST:PORT address`},
		{"portal.url", "", `portal.url "secure.example.test" is not an http:// or https:// URL`},
		{"portal.spool_ttl", "", "portal.spool_ttl is -1h0m0s, not a positive duration"},
		{"portal.reply_all", "", "portal.reply_all = maybe: maybe is not a boolean"},
		{"portal.min_password_length", "", "portal.min_password_length 4 is out of range"},
		{"portal.trusted_proxies", "", `portal.trusted_proxies: "proxy" is neither an address nor a CIDR network`},
		{"portal.argon2.time", "", "portal.argon2.time is 0"},
		{"portal.argon2.memory", "", `portal.argon2.memory = lots: "lots" is not a size`},
		{"portal.argon2.threads", "", "portal.argon2.threads = many: many is not a whole number"},
		{"portal.argon2.concurrency", "", "portal.argon2.concurrency is 0"},
		{"portal.link_fallback", "", "portal.link_fallback = maybe: maybe is not a boolean"},
		{"portal.link_retention", "", `portal.link_retention = 30d: "30d" is not a Go duration`},
		{"portal.read_notice", "", "portal.read_notice = sometimes: sometimes is not a boolean"},
		{"policy.trusted_networks", "policy:\n  trusted_networks: [10.0.0.0/33]\n  tls_exempt_networks: [localhost]\n  require_tls: perhaps\n  max_message_size: 20XB\n  subject_tag: \"\"\n  trigger_header: \"\"\n  internal_domains: [example.test]",
			`policy.trusted_networks: "10.0.0.0/33" is neither an address nor a CIDR network`},
		{"policy.tls_exempt_networks", "", `policy.tls_exempt_networks: "localhost" is neither`},
		{"policy.require_tls", "", "policy.require_tls = perhaps: perhaps is not a boolean"},
		{"policy.max_message_size", "", `policy.max_message_size = 20XB: "20XB" is not a size`},
		{"policy.subject_tag", "", "policy.subject_tag and policy.trigger_header are both empty"},
		{"keystore.key_lifetime", "keystore:\n  key_lifetime: 90d", `keystore.key_lifetime = 90d: "90d" is not a Go duration`},
		{"smtp.relay", "smtp:\n  relay: mail.example.test\n  from: not an address", `smtp.relay "mail.example.test" is not a HOST:PORT address`},
		{"smtp.from", "", `smtp.from "not an address" is not a mail address`},
		{"portl", "portl:\n  url: x", "unknown key portl in "},
	}
	var yaml []string
	for _, b := range bad {
		if b.yaml != "" {
			yaml = append(yaml, b.yaml)
		}
	}
	path := filepath.Join(dir, "securemail.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(yaml, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := loadConfig(path)
	var ce *configErrors
	if !errors.As(err, &ce) {
		t.Fatalf("serve accepted the file: %v", err)
	}
	var serveLines []string
	for _, p := range ce.problems {
		serveLines = append(serveLines, p.sentence())
	}
	out, code := ccRun(t, "--config", path, "--postfix-config", "none", "--sendmail-cf", "none")
	if code != 2 {
		t.Fatalf("check-config exit %d", code)
	}
	var ccLines []string
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "error: "); ok && !strings.Contains(s, "master key") && !strings.Contains(s, "data_dir  ") {
			ccLines = append(ccLines, s)
		}
	}
	sort.Strings(serveLines)
	for _, b := range bad {
		found := false
		for _, l := range serveLines {
			if strings.Contains(l, b.want) {
				found = true
				if !strings.Contains(l, " — ") {
					t.Errorf("%s: no fix in %q", b.key, l)
				}
			}
		}
		if !found {
			t.Errorf("%s: serve does not report %q", b.key, b.want)
		}
	}
	ccSet := map[string]bool{}
	for _, l := range ccLines {
		ccSet[l] = true
	}
	for _, l := range serveLines {
		if !ccSet[l] {
			t.Errorf("serve says %q; check-config does not, in those words", l)
		}
	}
	if t.Failed() {
		t.Logf("serve:\n%v\ncheck-config:\n%s", err, out)
	}
	if !strings.HasPrefix(err.Error(), "config "+path+": ") || strings.Count(err.Error(), "\n") != len(serveLines) {
		t.Errorf("serve's error does not list one problem per line:\n%v", err)
	}
}

// TestTypedValuesDecodedOnce: the typed keys reach the service as typed
// values from the file and from the environment, and a list with several
// bad entries reports each one under its key.
func TestTypedValuesDecodedOnce(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, "log:\n  level: warn\nmilter:\n  listen: inet:8894@127.0.0.1\n  socket_mode: \"0640\"\n"+
		"policy:\n  trusted_networks: [10.1.2.3/16, 192.0.2.7, \"::1\"]\nportal:\n  trusted_proxies: [127.0.0.1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != slog.LevelWarn {
		t.Errorf("log.level %v, want WARN", cfg.Log.Level)
	}
	if l := cfg.Milter.Listen; l.Spec != "inet:8894@127.0.0.1" || l.Network != "tcp" || l.Address != "127.0.0.1:8894" {
		t.Errorf("milter.listen %+v", l)
	}
	if cfg.Milter.SocketMode != 0o640 {
		t.Errorf("milter.socket_mode %o, want 640", cfg.Milter.SocketMode)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("::1/128")}
	if !slices.Equal(cfg.policy().TrustedNetworks, want) {
		t.Errorf("policy.trusted_networks %v, want %v (masked, bare addresses as hosts)", cfg.policy().TrustedNetworks, want)
	}
	if !slices.Equal(cfg.Portal.TrustedProxies, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}) {
		t.Errorf("portal.trusted_proxies %v", cfg.Portal.TrustedProxies)
	}

	t.Setenv("SECUREMAIL_POLICY_TLS_EXEMPT_NETWORKS", "10.0.0.0/8, 192.0.2.1")
	t.Setenv("SECUREMAIL_LOG_LEVEL", "debug")
	t.Setenv("SECUREMAIL_MILTER_LISTEN", "unix:/run/securemail/milter.sock")
	cfg, err = loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != slog.LevelDebug || cfg.Milter.Listen.Network != "unix" || cfg.Milter.Listen.Address != "/run/securemail/milter.sock" {
		t.Errorf("from the environment: level %v listen %+v", cfg.Log.Level, cfg.Milter.Listen)
	}
	if len(cfg.Policy.TLSExemptNetworks) != 2 {
		t.Errorf("tls_exempt_networks from the environment: %v", cfg.Policy.TLSExemptNetworks)
	}

	t.Setenv("SECUREMAIL_POLICY_TLS_EXEMPT_NETWORKS", "")
	t.Setenv("SECUREMAIL_LOG_LEVEL", "")
	t.Setenv("SECUREMAIL_MILTER_LISTEN", "")
	_, err = loadConfig(writeConfig(t, "policy:\n  trusted_networks: [10.0.0.0/33, 10.0.0.0/8, mail.example.test]\nmilter:\n  socket_mode: 0660\n"))
	var ce *configErrors
	if !errors.As(err, &ce) {
		t.Fatalf("accepted: %v", err)
	}
	var got []string
	for _, p := range ce.problems {
		got = append(got, p.key+": "+p.sentence())
	}
	for _, w := range []string{
		`policy.trusted_networks: policy.trusted_networks: "10.0.0.0/33" is neither an address nor a CIDR network — write an address`,
		`policy.trusted_networks: policy.trusted_networks: "mail.example.test" is neither`,
		// Unquoted, YAML reads 0660 as the number 432: refused, not guessed.
		`milter.socket_mode: milter.socket_mode "432" is not an octal file mode — write an octal mode in quotes`,
	} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Errorf("no finding %q in\n%s", w, strings.Join(got, "\n"))
		}
	}
}

// TestLinkFallbackConfig: the link fallback's keys reach the service, a
// retention that is not positive is refused and one past the key lifetime
// is a warning.
func TestLinkFallbackConfig(t *testing.T) {
	cfg, err := loadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Portal.LinkFallback || cfg.Portal.ReadNotice || cfg.Portal.LinkRetention != 720*time.Hour {
		t.Fatalf("defaults: link_fallback %v read_notice %v link_retention %v; want off, off, 720h",
			cfg.Portal.LinkFallback, cfg.Portal.ReadNotice, cfg.Portal.LinkRetention)
	}
	cfg, err = loadConfig(writeConfig(t, "portal:\n  link_fallback: true\n  link_retention: 168h\n  read_notice: true\n"))
	if err != nil || !cfg.Portal.LinkFallback || !cfg.Portal.ReadNotice || cfg.Portal.LinkRetention != 168*time.Hour {
		t.Fatalf("loaded %+v, %v", cfg.Portal, err)
	}
	_, err = loadConfig(writeConfig(t, "portal:\n  link_fallback: true\n  link_retention: 0s\n"))
	if err == nil || !strings.Contains(err.Error(), "portal.link_retention is 0s, not a positive duration") {
		t.Fatalf("a zero retention with the fallback on: %v", err)
	}
	// Off, the retention is not looked at.
	if _, err := loadConfig(writeConfig(t, "portal:\n  link_retention: 0s\n")); err != nil {
		t.Fatalf("a zero retention with the fallback off: %v", err)
	}
	path := writeConfig(t, "portal:\n  link_fallback: true\n  link_retention: 3000h\n")
	out, _ := ccRun(t, "--config", path, "--postfix-config", "none", "--sendmail-cf", "none")
	if !strings.Contains(out, "warning: portal.link_retention 3000h0m0s is longer than keystore.key_lifetime 2160h0m0s") ||
		!strings.Contains(out, "info: portal.link_fallback is on: the server keeps each sealed envelope for 3000h0m0s") {
		t.Fatalf("check-config with a retention past the key lifetime:\n%s", out)
	}
}
