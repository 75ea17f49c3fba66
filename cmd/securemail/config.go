package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/securemail/securemail/milter"
)

// Config is the operator interface: one YAML file, every key overridable by
// a SECUREMAIL_* environment variable (dots become underscores, e.g.
// SECUREMAIL_POLICY_REQUIRE_TLS). contrib/securemail.example.yaml documents
// every key.
type Config struct {
	DataDir string `mapstructure:"data_dir"`
	Log     struct {
		Level slog.Level `mapstructure:"level"`
	} `mapstructure:"log"`
	Milter struct {
		// Enabled runs the milter on this host (roles: a portal-only
		// host sets it false).
		Enabled    bool         `mapstructure:"enabled"`
		Listen     MilterListen `mapstructure:"listen"`
		SocketMode os.FileMode  `mapstructure:"socket_mode"`
	} `mapstructure:"milter"`
	Portal struct {
		// Enabled serves the portal on this host (roles: a submission
		// host sets it false and exposes no web port).
		Enabled        bool          `mapstructure:"enabled"`
		Listen         string        `mapstructure:"listen"`
		URL            string        `mapstructure:"url"`
		SpoolTTL       time.Duration `mapstructure:"spool_ttl"`
		SpoolDir       string        `mapstructure:"spool_dir"`
		SpoolMax       ByteSize      `mapstructure:"spool_max"`
		RepliesPerHour int           `mapstructure:"replies_per_hour"`
		// CodeRequestsPerHour is the code budget of one client address:
		// every address step asks for a code, so many readers behind one
		// office address share it.
		CodeRequestsPerHour int  `mapstructure:"code_requests_per_hour"`
		ReplyAll            bool `mapstructure:"reply_all"`
		// LinkFallback keeps a server copy of each sealed envelope for
		// LinkRetention and puts a link to it in the notice, for phones
		// that cannot post the attachment's form (the milter stores it,
		// the portal serves it).
		LinkFallback  bool          `mapstructure:"link_fallback"`
		LinkRetention time.Duration `mapstructure:"link_retention"`
		// ReadNotice mails the sender the first read of each recipient.
		ReadNotice        bool           `mapstructure:"read_notice"`
		MinPasswordLength int            `mapstructure:"min_password_length"`
		TrustedProxies    []netip.Prefix `mapstructure:"trusted_proxies"`
		Argon2            struct {
			Time        uint32   `mapstructure:"time"`
			Memory      ByteSize `mapstructure:"memory"`
			Threads     uint8    `mapstructure:"threads"`
			Concurrency int      `mapstructure:"concurrency"`
		} `mapstructure:"argon2"`
	} `mapstructure:"portal"`
	Policy struct {
		InternalDomains   []string       `mapstructure:"internal_domains"`
		TrustedNetworks   []netip.Prefix `mapstructure:"trusted_networks"`
		TLSExemptNetworks []netip.Prefix `mapstructure:"tls_exempt_networks"`
		RequireTLS        bool           `mapstructure:"require_tls"`
		MaxMessageSize    ByteSize       `mapstructure:"max_message_size"`
		SubjectTag        string         `mapstructure:"subject_tag"`
		TriggerHeader     string         `mapstructure:"trigger_header"`
		// Entitlement and list files (lists.go).
		InternalDomainsFiles []string `mapstructure:"internal_domains_files"`
		Senders              []string `mapstructure:"senders"`
		SendersFiles         []string `mapstructure:"senders_files"`
	} `mapstructure:"policy"`
	Keystore struct {
		MasterKeyFile string        `mapstructure:"master_key_file"`
		KeyLifetime   time.Duration `mapstructure:"key_lifetime"`

		// keystore.backend and keystore.postgres.*: store.go
		StoreConfig `mapstructure:",squash"`
	} `mapstructure:"keystore"`
	SMTP struct {
		Relay string `mapstructure:"relay"`
		From  string `mapstructure:"from"`
	} `mapstructure:"smtp"`
	// Branding is the sender domains' look (branding.go).
	Branding struct {
		Default BrandConfig   `mapstructure:"default"`
		Domains []BrandConfig `mapstructure:"domains"`
	} `mapstructure:"branding"`
	// Metrics is the Prometheus listener (metrics.go).
	Metrics struct {
		Listen string `mapstructure:"listen"`
	} `mapstructure:"metrics"`

	// lists holds the policy lists with their files read (lists.go).
	lists policyLists
	Admin struct {
		// Socket is the control socket of the admin commands;
		// empty means data_dir/admin.sock.
		Socket string `mapstructure:"socket"`
	} `mapstructure:"admin"`
}

// defaults is the embedded default: everything on loopback, data in a
// folder next to where the command runs.
var defaults = map[string]any{
	"data_dir":                      "securemail-data",
	"log.level":                     "info",
	"milter.enabled":                true,
	"milter.listen":                 "inet:127.0.0.1:8894",
	"milter.socket_mode":            "0660",
	"portal.enabled":                true,
	"portal.listen":                 "127.0.0.1:8080",
	"portal.url":                    "http://127.0.0.1:8080",
	"portal.spool_ttl":              "24h",
	"portal.spool_dir":              "",
	"portal.spool_max":              "2GiB",
	"portal.replies_per_hour":       20,
	"portal.code_requests_per_hour": 20,
	"portal.reply_all":              false,
	"portal.link_fallback":          false,
	"portal.link_retention":         "720h",
	"portal.read_notice":            false,
	"portal.min_password_length":    12,
	"portal.trusted_proxies":        []string{"127.0.0.0/8", "::1/128"},
	"portal.argon2.time":            3,
	"portal.argon2.memory":          "64MiB",
	"portal.argon2.threads":         4,
	"portal.argon2.concurrency":     2,
	"policy.internal_domains":       []string{},
	"policy.trusted_networks":       []string{"127.0.0.0/8", "::1/128"},
	"policy.tls_exempt_networks":    []string{"127.0.0.0/8", "::1/128"},
	"policy.require_tls":            true,
	"policy.max_message_size":       "20MiB",
	"policy.subject_tag":            "[encrypt]",
	"policy.trigger_header":         "X-Secure-Send",
	"policy.internal_domains_files": []string{},
	"policy.senders":                []string{},
	"policy.senders_files":          []string{},
	"keystore.master_key_file":      "",
	"keystore.key_lifetime":         "2160h",
	"smtp.relay":                    "127.0.0.1:25",
	"smtp.from":                     "",
	"admin.socket":                  "",
}

// loadConfig reads path (none: the embedded default), applies the
// environment and checks the result.
func loadConfig(path string) (*Config, error) {
	v, err := newConfigViper(path)
	if err != nil {
		return nil, err
	}
	r := &checkReport{}
	cfg := validateConfig(v, orDefault(path), r)
	if errs := r.errors(); len(errs) > 0 {
		return nil, &configErrors{name: orDefault(path), problems: errs}
	}
	return cfg, nil
}

// newConfigViper holds the defaults, the environment and the file at path
// (none: the embedded default). loadConfig and check-config share it.
func newConfigViper(path string) (*viper.Viper, error) {
	v := viper.New()
	for k, val := range defaults {
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix("SECUREMAIL")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AllowEmptyEnv(true)
	v.AutomaticEnv()
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	return v, nil
}

// fillDerived sets the values whose defaults depend on other keys.
// roles names what this host runs: "milter+portal", "milter" or "portal".
func (c *Config) roles() string {
	switch {
	case c.Milter.Enabled && c.Portal.Enabled:
		return "milter+portal"
	case c.Milter.Enabled:
		return "milter"
	case c.Portal.Enabled:
		return "portal"
	}
	return "none"
}

// roleSentence says in words which role runs, for check-config.
func (c *Config) roleSentence() string {
	switch c.roles() {
	case "milter":
		return "roles: this host runs only the milter (portal.enabled: false): it seals mail and serves no web page"
	case "portal":
		return "roles: this host runs only the portal (milter.enabled: false): it serves recipients and seals no mail"
	}
	return "roles: this host runs the milter and the portal"
}

func (c *Config) fillDerived() {
	if c.Keystore.MasterKeyFile == "" {
		c.Keystore.MasterKeyFile = filepath.Join(c.DataDir, "master.key")
	}
	if c.Admin.Socket == "" {
		c.Admin.Socket = filepath.Join(c.DataDir, "admin.sock")
	}
}

// portalFrom is the sender of the portal's own mail: smtp.from, or
// securemail@ the portal's host name (localhost when that is an address).
func (c *Config) portalFrom() string {
	if f := strings.TrimSpace(c.SMTP.From); f != "" {
		return f
	}
	host := "localhost"
	if u, err := url.Parse(c.Portal.URL); err == nil && u.Hostname() != "" {
		if _, err := netip.ParseAddr(u.Hostname()); err != nil {
			host = u.Hostname()
		}
	}
	return "securemail@" + host
}

func orDefault(path string) string {
	if path == "" {
		return "(embedded default)"
	}
	return path
}

// policy converts the policy section for the milter; the validator has run.
func (c *Config) policy() milter.Policy {
	return milter.Policy{
		InternalDomains:   c.lists.internalDomains,
		RestrictSenders:   c.lists.restrictSenders,
		Brands:            c.lists.brands,
		Senders:           c.lists.senders,
		TrustedNetworks:   c.Policy.TrustedNetworks,
		TLSExemptNetworks: c.Policy.TLSExemptNetworks,
		RequireTLS:        c.Policy.RequireTLS,
		MaxMessageSize:    int64(c.Policy.MaxMessageSize),
		SubjectTag:        c.Policy.SubjectTag,
		TriggerHeader:     c.Policy.TriggerHeader,
	}
}

// parsePrefix reads one network of a CIDR list: a CIDR network, or a bare
// address meaning just that host.
func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// parseListen reads a milter socket spec: inet:HOST:PORT, inet:PORT@HOST
// (Sendmail's form), unix:/path or local:/path.
func parseListen(spec string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(spec, ":")
	switch {
	case ok && (kind == "unix" || kind == "local") && strings.HasPrefix(rest, "/"):
		return "unix", rest, nil
	case ok && (kind == "inet" || kind == "inet6"):
		if port, host, at := strings.Cut(rest, "@"); at {
			rest = strings.TrimPrefix(strings.TrimSuffix(host, "]"), "[")
			if strings.Contains(rest, ":") {
				rest = "[" + rest + "]"
			}
			rest += ":" + port
		}
		if _, _, err := splitHostPort(rest); err == nil {
			return "tcp", rest, nil
		}
	}
	return "", "", fmt.Errorf("milter.listen %q must look like inet:127.0.0.1:8894 or unix:/run/securemail/milter.sock", spec)
}

func splitHostPort(hp string) (string, int, error) {
	i := strings.LastIndexByte(hp, ':')
	if i < 0 {
		return "", 0, errors.New("no port")
	}
	port, err := strconv.Atoi(hp[i+1:])
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, errors.New("bad port")
	}
	return hp[:i], port, nil
}

// MilterListen is milter.listen decoded once: the operator's words (Spec,
// what the MTA checks compare with main.cf or sendmail.cf) and what serve
// listens on.
type MilterListen struct {
	Spec    string // as written, e.g. unix:/run/securemail/milter.sock
	Network string // "tcp" or "unix"
	Address string // host:port or the socket's path
}

func (m MilterListen) String() string { return m.Spec }

// ByteSize is a size in bytes, written as a number or with a unit:
// 20MiB, 512KiB, 20MB (decimal), 1048576.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

func parseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	orig, mult := s, int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size such as 20MiB or 1048576", orig)
	}
	return ByteSize(n * mult), nil
}

var byteSizeHook mapstructure.DecodeHookFuncType = func(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(ByteSize(0)) || from.Kind() != reflect.String {
		return data, nil
	}
	return parseByteSize(data.(string))
}

// The typed keys' decode hooks. Each turns the operator's text into the
// value the service uses, once, at load; a value that does not parse is a
// valueErrors in the validator's words, so nothing later re-parses a
// string or ignores an error.
var (
	prefixListType   = reflect.TypeOf([]netip.Prefix(nil))
	logLevelType     = reflect.TypeOf(slog.Level(0))
	milterListenType = reflect.TypeOf(MilterListen{})
	fileModeType     = reflect.TypeOf(os.FileMode(0))
)

// prefixListHook decodes a CIDR list (YAML list, or a comma-separated
// environment variable), reporting every entry that is neither an address
// nor a network.
var prefixListHook mapstructure.DecodeHookFuncType = func(from, to reflect.Type, data any) (any, error) {
	if to != prefixListType {
		return data, nil
	}
	var entries []any
	switch v := data.(type) {
	case string:
		for _, s := range strings.Split(v, ",") {
			entries = append(entries, s)
		}
	case []string:
		for _, s := range v {
			entries = append(entries, s)
		}
	case []any:
		entries = v
	default:
		return data, nil // not a list: the generic "is not a list" error
	}
	out := []netip.Prefix{}
	var bad valueErrors
	for _, e := range entries {
		s, isString := e.(string)
		s = strings.TrimSpace(s)
		if isString && s == "" {
			continue
		}
		if p, ok := parsePrefix(s); ok && isString {
			out = append(out, p)
			continue
		}
		if !isString {
			s = fmt.Sprint(e)
		}
		bad = append(bad, &valueError{format: "%s: %q is neither an address nor a CIDR network", value: s,
			fix: "write an address such as 192.0.2.7 or a CIDR network such as 192.0.2.0/24"})
	}
	if len(bad) > 0 {
		return nil, bad
	}
	return out, nil
}

var logLevelHook mapstructure.DecodeHookFuncType = func(from, to reflect.Type, data any) (any, error) {
	if to != logLevelType {
		return data, nil
	}
	var l slog.Level
	s, ok := data.(string)
	if !ok || l.UnmarshalText([]byte(strings.TrimSpace(s))) != nil {
		return nil, valueErrors{{format: "%s %q is not a log level", value: fmt.Sprint(data), fix: "use debug, info, warn or error"}}
	}
	return l, nil
}

var milterListenHook mapstructure.DecodeHookFuncType = func(from, to reflect.Type, data any) (any, error) {
	if to != milterListenType {
		return data, nil
	}
	s, ok := data.(string)
	if ok {
		s = strings.TrimSpace(s)
		if network, address, err := parseListen(s); err == nil {
			return MilterListen{Spec: s, Network: network, Address: address}, nil
		}
	}
	return nil, valueErrors{{format: "%s %q is not a milter socket address", value: fmt.Sprint(data),
		fix: "write inet:127.0.0.1:8894 (or Sendmail's form inet:8894@127.0.0.1) or unix:/run/securemail/milter.sock"}}
}

// socketModeHook reads an octal mode written as a string. A YAML number
// is refused: unquoted, 0660 reaches us as 432 and 660 as six hundred
// sixty, and neither is safe to guess.
var socketModeHook mapstructure.DecodeHookFuncType = func(from, to reflect.Type, data any) (any, error) {
	if to != fileModeType {
		return data, nil
	}
	if s, ok := data.(string); ok {
		if m, err := strconv.ParseUint(strings.TrimSpace(s), 8, 32); err == nil && m <= 0o777 {
			return os.FileMode(m), nil
		}
	}
	return nil, valueErrors{{format: "%s %q is not an octal file mode", value: fmt.Sprint(data), fix: `write an octal mode in quotes, such as "0660"`}}
}
