package main

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
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
		{"portal.listen", "portal:\n  listen: 8080\n  url: secure.example.test\n  spool_ttl: -1h\n  reply_all: maybe\n  min_password_length: 4\n  trusted_proxies: [proxy]\n  argon2:\n    time: 0\n    memory: lots\n    threads: many\n    concurrency: 0",
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
