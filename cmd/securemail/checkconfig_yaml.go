package main

import (
	"errors"
	"github.com/securemail/securemail/portal"
	"io/fs"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
)

// --- the YAML file -------------------------------------------------------

// checkConfigFile loads the configuration as loadConfig does, with the same
// validator, and reports every finding. It returns nil when the file cannot
// be read at all.
func checkConfigFile(r *checkReport, path string) *Config {
	name := orDefault(path)
	checkEnvironment(r)
	v, err := newConfigViper(path)
	if err != nil {
		fix := "correct the YAML at the place named (contrib/securemail.example.yaml is a valid starting point)"
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fix = "check the path given to --config"
		case errors.Is(err, fs.ErrPermission):
			fix = "make it readable by the user securemail runs as"
		}
		r.errorf("", fix, "configuration %s cannot be read: %v", name, strings.TrimPrefix(err.Error(), "config "+path+": "))
		return nil
	}
	r.checked = append(r.checked, "configuration "+name)
	return validateConfig(v, name, r)
}

// checkEnvironment names the SECUREMAIL_* variables in effect: they override
// the file, and one that names no key is ignored by securemail.
func checkEnvironment(r *checkReport) {
	byEnv := map[string]string{}
	for k := range defaults {
		byEnv["SECUREMAIL_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = k
	}
	var over, unknown []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "SECUREMAIL_") {
			continue
		}
		if k, ok := byEnv[name]; ok {
			over = append(over, k+" ("+name+")")
		} else {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(over)
	sort.Strings(unknown)
	if len(over) > 0 {
		r.infof("the environment overrides %s", strings.Join(over, ", "))
	}
	for _, name := range unknown {
		r.infof("%s is set but names no configuration key; securemail ignores it", name)
	}
}

// closestKey suggests a known key (or section) for a misspelt one.
func closestKey(k string) string {
	cands := map[string]bool{}
	for d := range defaults {
		cands[d] = true
		if sec, _, ok := strings.Cut(d, "."); ok {
			cands[sec] = true
		}
	}
	best, bestD := "", 4
	for c := range cands {
		if d := editDistance(k, c); d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	if bestD > len(k)/3 {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkConfigValues checks each key in its own words. Keys in bad did not
// decode and were reported already.
func checkConfigValues(r *checkReport, c *Config, bad map[string]bool) {
	ok := func(key string) bool { return !bad[key] }
	if c.DataDir == "" {
		r.errorf("data_dir", "set it to the folder for the key database and the spool, e.g. /var/lib/securemail", "data_dir is empty")
	}
	checkPortalURL(r, c.Portal.URL)
	checkRoles(r, c, bad)
	if ok("policy.max_message_size") && c.Policy.MaxMessageSize <= 0 {
		r.errorf("policy.max_message_size", "set a size such as 20MiB", "policy.max_message_size is %d, not a positive size", c.Policy.MaxMessageSize)
	}
	if c.Policy.SubjectTag == "" && c.Policy.TriggerHeader == "" {
		r.errorf("policy.subject_tag", `set subject_tag: "[encrypt]" or trigger_header: X-Secure-Send`,
			"policy.subject_tag and policy.trigger_header are both empty: nothing could ever be encrypted")
	}
	if ok("keystore.key_lifetime") && c.Keystore.KeyLifetime <= 0 {
		r.errorf("keystore.key_lifetime", "set a Go duration such as 2160h (90 days)", "keystore.key_lifetime is %v, not a positive duration", c.Keystore.KeyLifetime)
	}
	if ok("portal.spool_ttl") && c.Portal.SpoolTTL <= 0 {
		r.errorf("portal.spool_ttl", "set a Go duration such as 24h", "portal.spool_ttl is %v, not a positive duration", c.Portal.SpoolTTL)
	}
	checkLinkFallback(r, c, ok)
	if ok("portal.min_password_length") && (c.Portal.MinPasswordLength < 8 || c.Portal.MinPasswordLength > 64) {
		r.errorf("portal.min_password_length", "set a length between 8 and 64 (NIST 800-63B asks for at least 8; 12 is the default)",
			"portal.min_password_length %d is out of range", c.Portal.MinPasswordLength)
	}
	a := c.Portal.Argon2
	for _, n := range []struct {
		key   string
		value int64
	}{{"portal.argon2.time", int64(a.Time)}, {"portal.argon2.threads", int64(a.Threads)}, {"portal.argon2.concurrency", int64(a.Concurrency)}} {
		if ok(n.key) && n.value < 1 {
			r.errorf(n.key, "set at least 1 (defaults: time 3, threads 4, concurrency 2)", "%s is %d", n.key, n.value)
		}
	}
	if ok("portal.argon2.memory") && (a.Memory < 8<<10 || a.Memory > 4<<30) {
		r.errorf("portal.argon2.memory", "set a size between 8KiB and 4GiB (default 64MiB)", "portal.argon2.memory is %d bytes, out of range", a.Memory)
	}
	for _, n := range []struct{ key, value, example string }{
		{"portal.listen", c.Portal.Listen, "127.0.0.1:8080"},
		{"smtp.relay", c.SMTP.Relay, "127.0.0.1:25"},
	} {
		if _, port, err := net.SplitHostPort(n.value); err != nil || port == "" {
			r.errorf(n.key, "write HOST:PORT, such as "+n.example, "%s %q is not a HOST:PORT address", n.key, n.value)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			r.errorf(n.key, "write HOST:PORT, such as "+n.example, "%s %q has no valid port", n.key, n.value)
		}
	}
	if from := strings.TrimSpace(c.SMTP.From); from != "" {
		if _, err := mail.ParseAddress(from); err != nil {
			r.errorf("smtp.from", "write an address such as securemail@example.com", "smtp.from %q is not a mail address", c.SMTP.From)
		}
	}
	if ok("portal.argon2.time") && ok("portal.argon2.memory") && ok("portal.argon2.threads") && a.Time >= 1 && a.Threads >= 1 {
		// The hasher's own rule (memory per thread, whole KiB), so a value
		// that passes here cannot break the first registration.
		if err := portal.ValidateArgon2Config(a.Time, uint64(a.Memory), a.Threads); err != nil {
			r.errorf("portal.argon2.memory", "set at least 8KiB per thread, in whole KiB (default 64MiB with 4 threads)", "%v", err)
		}
	}
	if ok("portal.spool_max") && ok("policy.max_message_size") {
		if min := portal.MinSpoolMax(int64(c.Policy.MaxMessageSize)); int64(c.Portal.SpoolMax) < min {
			r.errorf("portal.spool_max", "set at least one upload of the largest envelope; the default is 2GiB",
				"portal.spool_max %d bytes cannot hold one upload of the largest envelope (%d bytes for policy.max_message_size)", int64(c.Portal.SpoolMax), min)
		}
	}
	if ok("portal.replies_per_hour") && c.Portal.RepliesPerHour < 1 {
		r.errorf("portal.replies_per_hour", "set at least 1 (default 20)", "portal.replies_per_hour is %d", c.Portal.RepliesPerHour)
	}
	if ok("portal.code_requests_per_hour") && c.Portal.CodeRequestsPerHour < 1 {
		r.errorf("portal.code_requests_per_hour", "set at least 1 (default 20; raise it for many readers behind one office address)",
			"portal.code_requests_per_hour is %d", c.Portal.CodeRequestsPerHour)
	}
	if err := c.validateMetrics(); err != nil {
		r.errorf("metrics.listen", "write HOST:PORT such as 127.0.0.1:9894, or leave it empty for no metrics", "%v", err)
	}
	for _, err := range c.Keystore.StoreConfig.validate() {
		key, _, _ := strings.Cut(err.Error(), " ")
		r.errorf(key, "contrib/securemail.example.yaml shows the keystore section", "%v", err)
	}
	if ok("policy.internal_domains") && len(nonEmpty(c.Policy.InternalDomains)) == 0 {
		r.warnf("policy.internal_domains", "list your own domains, e.g. internal_domains: [example.com, .example.com]",
			"policy.internal_domains is empty: every triggered message will be sealed, even between your own users")
	}
	if strings.TrimSpace(c.SMTP.From) == "" {
		r.warnf("smtp.from", "set it to the sender address of securemail's own mail, e.g. securemail@example.com",
			"smtp.from is empty: the portal's codes and notices will come from %s, which recipients' mail servers may refuse", c.portalFrom())
	}
}

func nonEmpty(list []string) []string {
	var out []string
	for _, s := range list {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

func checkPortalURL(r *checkReport, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		r.errorf("portal.url", "write the public address of the portal, e.g. https://secure.example.com", "portal.url %q is not an http:// or https:// URL", raw)
		return
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		https := *u
		https.Scheme = "https"
		if https.Port() == "80" {
			https.Host = https.Hostname()
		}
		r.errorf("portal.url", "use "+https.String()+" (serve the portal behind a TLS reverse proxy)",
			"portal.url %s is plain HTTP on a host that is not loopback: recipients would type their passwords over an unencrypted connection", raw)
	}
}

func isLoopbackHost(h string) bool {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// checkRoles refuses a host that would run nothing and says which role
// runs, so an operator sees at once what a host will expose.
func checkRoles(r *checkReport, c *Config, bad map[string]bool) {
	if bad["milter.enabled"] || bad["portal.enabled"] {
		return
	}
	if !c.Milter.Enabled && !c.Portal.Enabled {
		r.errorf("portal.enabled", "set milter.enabled or portal.enabled (or both) to true",
			"milter.enabled and portal.enabled are both false: this host would run nothing")
		return
	}
	r.infof("%s", c.roleSentence())
}

// checkLinkFallback checks portal.link_fallback and its retention, and
// says what the server copy means when it is on.
func checkLinkFallback(r *checkReport, c *Config, ok func(string) bool) {
	if !c.Portal.LinkFallback || !ok("portal.link_retention") {
		return
	}
	if c.Portal.LinkRetention <= 0 {
		r.errorf("portal.link_retention", "set a Go duration such as 720h (30 days)",
			"portal.link_retention is %v, not a positive duration, and portal.link_fallback is on", c.Portal.LinkRetention)
		return
	}
	if ok("keystore.key_lifetime") && c.Keystore.KeyLifetime > 0 && c.Portal.LinkRetention > c.Keystore.KeyLifetime {
		r.warnf("portal.link_retention", "set it to at most keystore.key_lifetime ("+c.Keystore.KeyLifetime.String()+"); a copy ends with its key anyway",
			"portal.link_retention %v is longer than keystore.key_lifetime %v: the links end when the keys expire", c.Portal.LinkRetention, c.Keystore.KeyLifetime)
	}
	r.infof("portal.link_fallback is on: the server keeps each sealed envelope for %v (docs/security.md, \"The server copy\")", c.Portal.LinkRetention)
}
