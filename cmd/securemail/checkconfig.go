package main

// securemail check-config: reads the configuration the way serve does and
// explains every problem it finds in words, one line each, together with the
// MTA configuration that has to match it (Postfix through postconf, Sendmail
// through its sendmail.cf).
//
// Output, on stdout, one finding per line:
//
//	error: <what is wrong> — <what to change>
//	warning: <what is wrong> — <what to change>
//	info: <what was checked or skipped>
//	ok: <what was checked>                    (last line, only when there is no error or warning)
//
// Exit status: 0 clean (info lines only), 1 warnings only, 2 at least one
// error (a command line it cannot understand counts as an error too).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/cmd/securemail/internal/mtaconf"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/milter"
)

// checkConfigExit ends the process with check-config's exit status; tests
// replace it to run the command in-process.
var checkConfigExit = os.Exit

// lookPostconf finds Postfix's postconf; tests replace it to play a host
// without Postfix.
var lookPostconf = func() (string, error) { return lookSbin("postconf") }

// defaultSendmailCF is checked when --sendmail-cf is not given and the file
// exists.
var defaultSendmailCF = "/etc/mail/sendmail.cf"

// skipCheck is the flag value that turns an MTA check off.
const skipCheck = "none"

// neededMailMacros are the macros securemail reads at MAIL FROM, with what
// goes wrong without each: the milter's own list, less those it only logs.
var neededMailMacros = func() []struct{ name, without string } {
	var out []struct{ name, without string }
	for _, m := range milter.MailMacros {
		if m.Without != "" {
			out = append(out, struct{ name, without string }{m.Name, m.Without})
		}
	}
	return out
}()

type severity int

const (
	sevInfo severity = iota
	sevWarning
	sevError
)

func (s severity) String() string {
	switch s {
	case sevError:
		return "error"
	case sevWarning:
		return "warning"
	}
	return "info"
}

type finding struct {
	sev       severity
	key       string // configuration key the finding is about, if any
	what, fix string
}

func (f finding) String() string {
	s := f.sev.String() + ": " + f.what
	if f.fix != "" {
		s += " — " + f.fix
	}
	return s
}

type checkReport struct {
	findings []finding
	checked  []string // for the ok line
	keys     map[string]bool
}

func (r *checkReport) add(sev severity, key, what, fix string) {
	r.findings = append(r.findings, finding{sev: sev, key: key, what: what, fix: fix})
	if key != "" {
		if r.keys == nil {
			r.keys = map[string]bool{}
		}
		r.keys[key] = true
	}
}

// errors returns the error findings.
func (r *checkReport) errors() []finding {
	var out []finding
	for _, f := range r.findings {
		if f.sev == sevError {
			out = append(out, f)
		}
	}
	return out
}

func (r *checkReport) errorf(key, fix, format string, args ...any) {
	r.add(sevError, key, fmt.Sprintf(format, args...), fix)
}

func (r *checkReport) warnf(key, fix, format string, args ...any) {
	r.add(sevWarning, key, fmt.Sprintf(format, args...), fix)
}

func (r *checkReport) infof(format string, args ...any) {
	r.add(sevInfo, "", fmt.Sprintf(format, args...), "")
}

func (r *checkReport) worst() severity {
	w := sevInfo
	for _, f := range r.findings {
		w = max(w, f.sev)
	}
	return w
}

// exitCode is 0 (clean), 1 (warnings only) or 2 (errors).
func (r *checkReport) exitCode() int { return int(r.worst()) }

func (r *checkReport) write(w io.Writer) {
	for _, f := range r.findings {
		fmt.Fprintln(w, f.String())
	}
	if r.worst() == sevInfo {
		fmt.Fprintf(w, "ok: no problems found (checked: %s)\n", strings.Join(r.checked, "; "))
	}
}

type checkConfigOptions struct {
	config      string // "" = embedded default
	postfixDir  string // "" = the system's, if postconf exists; skipCheck = off
	postfixSet  bool
	sendmailCF  string // "" = defaultSendmailCF, if it exists; skipCheck = off
	sendmailSet bool   // --sendmail-cf given
}

func newCheckConfigCommand() *cobra.Command {
	var opts checkConfigOptions
	cmd := &cobra.Command{
		Use:                   "check-config [--config FILE] [--postfix-config DIR] [--sendmail-cf FILE]",
		Short:                 "Check the configuration and the MTA's milter settings; explain every problem",
		DisableFlagsInUseLine: true,
		Long: `check-config reads the configuration exactly as serve does and checks it,
the master key file and data_dir, and the MTA settings that must match it:
Postfix through postconf (--postfix-config DIR, default the system's when
postconf is installed) and Sendmail through its sendmail.cf (--sendmail-cf,
default /etc/mail/sendmail.cf when it exists). "none" skips an MTA.

One line per finding on stdout: "error: ... — <what to change>",
"warning: ...", "info: ..."; a final "ok: ..." line when there is nothing
to change. Exit status 0 when clean, 1 when there are only warnings, 2 when
there are errors.

File permission checks show what the user running check-config may do:
run it as the user securemail serve runs as.`,
		// Arguments and flags are checked here and in the flag error
		// function, so that a command line it cannot understand ends with
		// status 2 like any other error, never with 1 (warnings).
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if len(args) > 0 {
				fmt.Fprintf(out, "error: unexpected argument %q — check-config takes only flags (see securemail check-config --help)\n", args[0])
				checkConfigExit(2)
				return nil
			}
			opts.config, _ = cmd.Flags().GetString("config")
			opts.postfixSet = cmd.Flags().Changed("postfix-config")
			opts.sendmailSet = cmd.Flags().Changed("sendmail-cf")
			r := runCheckConfig(opts)
			r.write(out)
			if code := r.exitCode(); code != 0 {
				checkConfigExit(code)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.postfixDir, "postfix-config", "", `Postfix configuration directory, as for "postconf -c" (default: the system's, if postconf is installed; "none" skips Postfix)`)
	cmd.Flags().StringVar(&opts.sendmailCF, "sendmail-cf", "", `Sendmail's sendmail.cf (default: `+defaultSendmailCF+` if it exists; "none" skips Sendmail)`)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.OutOrStdout(), "error: %v — see securemail check-config --help\n", err)
		checkConfigExit(2)
		return err
	})
	return cmd
}

// runCheckConfig runs every check and returns the findings.
func runCheckConfig(opts checkConfigOptions) *checkReport {
	r := &checkReport{}
	cfg := checkConfigFile(r, opts.config)
	if cfg == nil {
		r.infof("the other checks need a configuration that loads; they were skipped")
		return r
	}
	if os.Geteuid() == 0 {
		r.infof("running as root: the file checks show what root may do, not what the user securemail serve runs as may do")
	}
	if opts.config == "" && fileExists(systemConfigPath) {
		r.warnf("", "pass --config "+systemConfigPath+" (securemail serve as installed reads it)",
			"no --config given, so this checked the embedded default, but %s exists", systemConfigPath)
	}
	checkMasterKeyFile(r, cfg)
	checkDataDir(r, cfg)
	checkMilterSocketDir(r, cfg)
	checkMasterKeyRecords(r, cfg)
	checkPostfix(r, cfg, opts)
	checkSendmail(r, cfg, opts)
	return r
}

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
	if _, err := parseLevel(c.Log.Level); err != nil {
		r.errorf("log.level", "use debug, info, warn or error", "log.level %q is not a log level", c.Log.Level)
	}
	if _, _, err := parseListen(c.Milter.Listen); err != nil {
		r.errorf("milter.listen", "write inet:127.0.0.1:8894 (or Sendmail's form inet:8894@127.0.0.1) or unix:/run/securemail/milter.sock",
			"milter.listen %q is not a milter socket address", c.Milter.Listen)
	}
	if _, err := parseSocketMode(c.Milter.SocketMode); err != nil {
		r.errorf("milter.socket_mode", `write an octal mode in quotes, such as "0660"`, "milter.socket_mode %q is not an octal file mode", c.Milter.SocketMode)
	}
	checkPortalURL(r, c.Portal.URL)
	for _, n := range []struct {
		key  string
		list []string
	}{{"policy.trusted_networks", c.Policy.TrustedNetworks}, {"policy.tls_exempt_networks", c.Policy.TLSExemptNetworks}} {
		if !ok(n.key) {
			continue
		}
		for _, s := range n.list {
			if _, err := parsePrefixes(n.key, []string{s}); err != nil {
				r.errorf(n.key, "write an address such as 192.0.2.7 or a CIDR network such as 192.0.2.0/24",
					"%s: %q is neither an address nor a CIDR network", n.key, strings.TrimSpace(s))
			}
		}
	}
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
	if ok("portal.trusted_proxies") {
		for _, p := range c.Portal.TrustedProxies {
			if _, err := parsePrefixes("portal.trusted_proxies", []string{p}); err != nil {
				r.errorf("portal.trusted_proxies", "write an address such as 127.0.0.1 or a CIDR network such as 10.0.0.0/8",
					"portal.trusted_proxies: %q is neither an address nor a CIDR network", strings.TrimSpace(p))
			}
		}
	}
	if ok("portal.spool_ttl") && c.Portal.SpoolTTL <= 0 {
		r.errorf("portal.spool_ttl", "set a Go duration such as 24h", "portal.spool_ttl is %v, not a positive duration", c.Portal.SpoolTTL)
	}
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

// --- files ---------------------------------------------------------------

func checkMasterKeyFile(r *checkReport, c *Config) {
	path := c.Keystore.MasterKeyFile
	if path == "" {
		return
	}
	r.checked = append(r.checked, "master key "+path)
	st, err := os.Stat(path)
	switch {
	case missing(err):
		db := keystorePath(c)
		if _, err := os.Stat(db); err == nil {
			r.errorf("keystore.master_key_file", "restore "+path+" from your backup before securemail serve starts",
				"master key file %s is missing but the key database %s exists: serve would create a new master key, and no message sealed so far could ever be opened", path, db)
			return
		}
		if dir, err := creatableBelow(filepath.Dir(path)); err != nil {
			r.errorf("keystore.master_key_file", "make "+filepath.Dir(path)+" a folder the user securemail runs as may write, or choose another keystore.master_key_file",
				"master key file %s does not exist and cannot be created in %s: %v", path, dir, err)
			return
		}
		r.warnf("keystore.master_key_file", "back it up right after the first start, apart from data_dir: without it no sealed message can be opened",
			"master key file %s does not exist: securemail serve will create it on its first start", path)
		return
	case err != nil:
		r.errorf("keystore.master_key_file", "make the folders on its path searchable by the user securemail runs as", "master key file %s cannot be checked: %v", path, err)
		return
	case st.IsDir():
		r.errorf("keystore.master_key_file", "point keystore.master_key_file at the key file itself", "master key file %s is a folder", path)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		r.errorf("keystore.master_key_file", "make the user securemail runs as its owner (chown), mode 0600",
			"master key file %s cannot be read: %v", path, errors.Unwrap(err))
		return
	}
	f.Close()
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		r.errorf("keystore.master_key_file", "chmod 600 "+path,
			"master key file %s has mode %04o: group or others may read it, and securemail refuses to start", path, perm)
		return
	}
	if st.Size() != keystore.MasterKeySize {
		r.errorf("keystore.master_key_file", "restore the original key file from your backup (it is not a passphrase: securemail writes it itself)",
			"master key file %s holds %d bytes, not %d", path, st.Size(), keystore.MasterKeySize)
		return
	}
	if _, err := keystore.LoadMasterKey(path); err != nil {
		r.errorf("keystore.master_key_file", "restore the original key file from your backup", "master key file %s does not load: %v", path, err)
	}
}

func checkDataDir(r *checkReport, c *Config) {
	dir := c.DataDir
	if dir == "" {
		return // reported by checkConfigValues
	}
	r.checked = append(r.checked, "data_dir "+dir)
	if !filepath.IsAbs(dir) {
		wd, _ := os.Getwd()
		r.infof("data_dir %s is relative: securemail resolves it against the folder it starts in (here %s)", dir, wd)
	}
	fix := "make the user securemail serve runs as its owner (chown), mode 0700"
	st, err := os.Stat(dir)
	switch {
	case missing(err):
		if below, err := creatableBelow(dir); err != nil {
			r.errorf("data_dir", "make "+dir+" a folder the user securemail serve runs as owns (mkdir, chown, chmod 700)",
				"data_dir %s does not exist and cannot be created in %s: %v", dir, below, err)
		}
		return
	case err != nil:
		r.errorf("data_dir", fix, "data_dir %s cannot be checked: %v", dir, err)
		return
	case !st.IsDir():
		r.errorf("data_dir", "point data_dir at a folder", "data_dir %s is not a folder", dir)
		return
	}
	if err := writableDir(dir); err != nil {
		r.errorf("data_dir", fix, "data_dir %s is not writable: %v", dir, err)
		return
	}
	spool := spoolPath(c)
	if st, err := os.Stat(spool); err == nil && st.IsDir() {
		if err := writableDir(spool); err != nil {
			r.errorf("data_dir", fix, "the spool folder %s is not writable: %v", spool, err)
		}
	}
	if db := keystorePath(c); fileExists(db) {
		if f, err := os.OpenFile(db, os.O_RDWR, 0); err != nil {
			r.errorf("data_dir", fix, "the key database %s is not writable: %v", db, errors.Unwrap(err))
		} else {
			f.Close()
		}
	}
}

// missing is true for a path that does not exist, also because a part of
// it is a file.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// writableDir tells whether files can be created in dir, by creating one
// (and removing it): the only test that also covers ACLs and read-only
// mounts.
func writableDir(dir string) error {
	f, err := os.CreateTemp(dir, ".securemail-check-config-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// creatableBelow finds the nearest existing folder above path (path itself
// if it exists) and tells whether folders can be created in it. It returns
// that folder.
func creatableBelow(path string) (string, error) {
	p := filepath.Clean(path)
	for {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				return p, errors.New("it is a file, not a folder")
			}
			return p, writableDir(p)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p, err
		}
		p = parent
	}
}

// --- milter addresses ------------------------------------------------------

// milterEndpoint is milter.listen, parsed.
type milterEndpoint struct {
	network string // "tcp" or "unix"
	host    string // tcp: without brackets
	port    string
	path    string // unix
}

func parseEndpoint(spec string) (milterEndpoint, bool) {
	network, addr, err := parseListen(strings.TrimSpace(spec))
	if err != nil {
		return milterEndpoint{}, false
	}
	if network == "unix" {
		return milterEndpoint{network: "unix", path: filepath.Clean(addr)}, true
	}
	i := strings.LastIndexByte(addr, ':')
	host := strings.TrimSuffix(strings.TrimPrefix(addr[:i], "["), "]")
	return milterEndpoint{network: "tcp", host: host, port: addr[i+1:]}, true
}

func unspecifiedHost(h string) bool {
	if h == "" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsUnspecified()
}

// connectHost is where an MTA on this host reaches a listener on e.host.
func (e milterEndpoint) connectHost() string {
	if unspecifiedHost(e.host) {
		return "127.0.0.1"
	}
	return e.host
}

// postfix is the address in Postfix syntax. Below queue_directory a unix
// socket is written relative to it, which works for chrooted and
// unchrooted services alike.
func (e milterEndpoint) postfix(queueDir string) string {
	if e.network == "unix" {
		if rel, ok := below(queueDir, e.path); ok {
			return "unix:" + rel
		}
		return "unix:" + e.path
	}
	h := e.connectHost()
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return "inet:" + h + ":" + e.port
}

// sendmail is the address in Sendmail syntax.
func (e milterEndpoint) sendmail() string {
	if e.network == "unix" {
		return "local:" + e.path
	}
	h := e.connectHost()
	if strings.Contains(h, ":") {
		return "inet6:" + e.port + "@" + h
	}
	return "inet:" + e.port + "@" + h
}

func below(dir, path string) (string, bool) {
	if dir == "" {
		return "", false
	}
	rel, err := filepath.Rel(filepath.Clean(dir), path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", false
	}
	return rel, true
}

func sameHost(a, b string) bool {
	norm := func(h string) string {
		h = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
		if h == "localhost" {
			return "loopback"
		}
		if ad, err := netip.ParseAddr(h); err == nil {
			if ad.Unmap().IsLoopback() {
				return "loopback"
			}
			return ad.Unmap().String()
		}
		return h
	}
	return unspecifiedHost(a) || unspecifiedHost(b) || norm(a) == norm(b)
}

// matchesTCP tells whether an MTA that connects to other reaches e.
func (e milterEndpoint) matchesTCP(other milterEndpoint) bool {
	return e.network == "tcp" && other.network == "tcp" && e.port == other.port && sameHost(e.host, other.host)
}

// --- Postfix -------------------------------------------------------------

type postfixConf struct {
	bin       string
	base      []string // "-c", DIR, or nothing
	dir       string   // config_directory
	params    map[string]string
	overrides map[string]map[string]string // "submission/inet" -> parameter -> value
	services  []postfixService             // in master.cf order
	warnings  []string                     // postconf's own warnings
}

type postfixService struct {
	name, typ string
	fields    map[string]string // chroot, command, ...
}

func (s postfixService) id() string { return s.name + "/" + s.typ }

func (s postfixService) isSMTPD() bool {
	cmd := strings.Fields(s.fields["command"])
	return s.typ == "inet" && len(cmd) > 0 && cmd[0] == "smtpd"
}

// submissionPort is 587 or 465 for a submission service, "" otherwise.
func (s postfixService) submissionPort() string {
	if !s.isSMTPD() {
		return ""
	}
	name := s.name
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	switch name {
	case "submission", "587":
		return "587"
	case "submissions", "smtps", "465":
		return "465"
	}
	return ""
}

// param is the value of parameter p for service s: its -o override, else
// main.cf's.
func (pc *postfixConf) param(s postfixService, p string) (value string, overridden bool) {
	if v, ok := pc.overrides[s.id()][p]; ok {
		return v, true
	}
	return pc.params[p], false
}

func (pc *postfixConf) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, pc.bin, append(append([]string{}, pc.base...), args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var fatal string
	for _, line := range strings.Split(stderr.String(), "\n") {
		// "/usr/sbin/postconf: fatal: open /x/master.cf: No such file ..."
		line = strings.TrimSpace(line)
		if _, msg, ok := strings.Cut(line, " fatal: "); ok && fatal == "" {
			fatal = msg
		} else if _, msg, ok := strings.Cut(line, " warning: "); ok &&
			!strings.Contains(msg, "unknown parameter") && !strings.Contains(msg, "unmatched request") &&
			!containsString(pc.warnings, msg) {
			pc.warnings = append(pc.warnings, msg)
		}
	}
	if err != nil {
		if fatal == "" {
			fatal = err.Error()
		}
		return "", errors.New(fatal)
	}
	return stdout.String(), nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// postfixParams are read from main.cf, with $name references expanded.
var postfixParams = []string{
	"config_directory", "queue_directory", "mail_version",
	"smtpd_milters", "non_smtpd_milters", "milter_default_action", "milter_mail_macros", "receive_override_options",
	"smtpd_tls_security_level", "smtpd_enforce_tls", "smtpd_tls_wrappermode",
	"smtpd_tls_cert_file", "smtpd_tls_chain_files", "smtpd_tls_eccert_file", "smtpd_tls_dcert_file",
}

func loadPostfix(bin string, dir string) (*postfixConf, error) {
	pc := &postfixConf{bin: bin, params: map[string]string{}, overrides: map[string]map[string]string{}}
	if dir != "" {
		pc.base = []string{"-c", dir}
	}
	out, err := pc.run(append([]string{"-x"}, postfixParams...)...)
	if err != nil {
		return pc, err
	}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			pc.params[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	pc.dir = pc.params["config_directory"]
	if out, err = pc.run("-P", "-x"); err != nil {
		return pc, err
	}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		svc, p := splitLast(strings.TrimSpace(k))
		if pc.overrides[svc] == nil {
			pc.overrides[svc] = map[string]string{}
		}
		pc.overrides[svc][p] = strings.TrimSpace(v)
	}
	if out, err = pc.run("-F"); err != nil {
		return pc, err
	}
	index := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		id, field := splitLast(strings.TrimSpace(k))
		name, typ := splitLast(id)
		i, seen := index[id]
		if !seen {
			i = len(pc.services)
			index[id] = i
			pc.services = append(pc.services, postfixService{name: name, typ: typ, fields: map[string]string{}})
		}
		pc.services[i].fields[field] = strings.TrimSpace(v)
	}
	return pc, nil
}

func splitLast(s string) (string, string) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// postfixResolve is the socket path a Postfix service opens for the milter
// address unix:p. Postfix services work in queue_directory, and a chrooted
// one has it as its root.
func postfixResolve(p, queueDir string, chrooted bool) string {
	if !filepath.IsAbs(p) || chrooted {
		return filepath.Join(queueDir, p)
	}
	return filepath.Clean(p)
}

// postfixReaches tells whether Postfix, connecting to the milter address
// addr, reaches ours: for a unix socket, from a chrooted or an unchrooted
// service (checkPostfixChroot tells the two apart).
func postfixReaches(ours milterEndpoint, addr, queueDir string) bool {
	kind, rest, ok := strings.Cut(addr, ":")
	if !ok {
		return false
	}
	switch kind {
	case "unix", "local":
		return ours.network == "unix" && rest != "" &&
			(postfixResolve(rest, queueDir, false) == ours.path || postfixResolve(rest, queueDir, true) == ours.path)
	case "inet":
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return false
		}
		host := strings.TrimSuffix(strings.TrimPrefix(rest[:i], "["), "]")
		return ours.matchesTCP(milterEndpoint{network: "tcp", host: host, port: rest[i+1:]})
	}
	return false
}

// ourMilter returns the entry of list that reaches securemail.
func ourMilter(ours milterEndpoint, list, queueDir string) (mtaconf.PostfixMilter, bool) {
	for _, m := range mtaconf.ParsePostfixMilters(list) {
		if postfixReaches(ours, m.Addr, queueDir) {
			return m, true
		}
	}
	return mtaconf.PostfixMilter{}, false
}

func lookSbin(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		cand := filepath.Join(dir, name)
		if st, serr := os.Stat(cand); serr == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", err
}

func checkPostfix(r *checkReport, c *Config, opts checkConfigOptions) {
	if opts.postfixDir == skipCheck {
		r.infof("Postfix not checked (--postfix-config none)")
		return
	}
	explicit := opts.postfixSet && opts.postfixDir != ""
	bin, err := lookPostconf()
	if err != nil {
		if explicit {
			r.errorf("", "install Postfix (postconf) on this host, or leave out --postfix-config",
				"--postfix-config %s was given but postconf is not installed", opts.postfixDir)
		} else {
			r.infof("postconf not found: Postfix not checked (on a Postfix host, give --postfix-config DIR)")
		}
		return
	}
	dir := opts.postfixDir
	if !explicit {
		// The system's configuration; a host with Postfix installed but
		// never configured has no main.cf, and nothing to check.
		pc := &postfixConf{bin: bin}
		out, err := pc.run("-d", "-h", "config_directory")
		sysDir := strings.TrimSpace(out)
		if err != nil || !fileExists(filepath.Join(sysDir, "main.cf")) {
			r.infof("Postfix is installed but has no main.cf in %s: Postfix not checked", orUnknown(sysDir))
			return
		}
	}
	pc, err := loadPostfix(bin, dir)
	for _, w := range pc.warnings {
		if err == nil || w != err.Error() {
			r.infof("postconf warns: %s", w)
		}
	}
	if err != nil {
		where := "the system's Postfix configuration"
		if dir != "" {
			where = dir
		}
		r.errorf("", "correct main.cf and master.cf until postconf (and postfix check) run without errors",
			"postconf cannot read %s: %v", where, err)
		return
	}
	r.checked = append(r.checked, "Postfix "+pc.dir)
	mainCF := filepath.Join(pc.dir, "main.cf")
	masterCF := filepath.Join(pc.dir, "master.cf")
	queueDir := pc.params["queue_directory"]

	var subs []postfixService
	for _, s := range pc.services {
		if s.submissionPort() != "" {
			subs = append(subs, s)
		}
	}
	if len(subs) == 0 {
		r.infof("%s defines no submission service (submission/inet on 587, submissions/inet on 465): if your users submit on port 25 with SMTP AUTH that works too; otherwise add contrib/postfix/master.cf.snippet", masterCF)
	}

	ours, ok := parseEndpoint(c.Milter.Listen)
	if !ok {
		r.infof("the milter address checks for Postfix were skipped: milter.listen is not valid")
	} else {
		checkPostfixMilters(r, pc, ours, subs, mainCF, masterCF, queueDir)
	}
	checkPostfixDefaultActions(r, pc, ours, ok, mainCF, masterCF, queueDir)
	checkPostfixMacros(r, pc, ours, ok, mainCF, masterCF, queueDir)
	checkPostfixSubmissionTLS(r, pc, subs, c, mainCF, masterCF)
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

func checkPostfixMilters(r *checkReport, pc *postfixConf, ours milterEndpoint, subs []postfixService, mainCF, masterCF, queueDir string) {
	want := ours.postfix(queueDir)
	_, global := ourMilter(ours, pc.params["smtpd_milters"], queueDir)
	var viaMaster []string
	for _, s := range subs {
		v, over := pc.param(s, "smtpd_milters")
		if !over {
			continue
		}
		if _, ok := ourMilter(ours, v, queueDir); ok {
			viaMaster = append(viaMaster, s.id())
		} else {
			r.errorf("", "add "+want+" to that -o smtpd_milters= line in "+masterCF+", or remove the line",
				"%s: service %s sets smtpd_milters = %q, which does not name securemail's %s (milter.listen): submissions there bypass encryption and [encrypt] messages leave in plaintext",
				masterCF, s.id(), v, want)
		}
	}
	switch {
	case global:
	case len(viaMaster) > 0:
		r.warnf("", "add "+want+" to smtpd_milters in "+mainCF,
			"%s: smtpd_milters = %q does not name securemail's %s (milter.listen); only %s do, in master.cf: mail that clients in policy.trusted_networks send on port 25 bypasses encryption",
			mainCF, pc.params["smtpd_milters"], want, strings.Join(viaMaster, ", "))
	default:
		r.errorf("", "add "+want+" to smtpd_milters in "+mainCF+" (as contrib/postfix/main.cf.snippet does)",
			"%s: smtpd_milters = %q does not name securemail's %s (milter.listen): mail sent over SMTP bypasses encryption and [encrypt] messages leave in plaintext",
			mainCF, pc.params["smtpd_milters"], want)
	}
	if _, ok := ourMilter(ours, pc.params["non_smtpd_milters"], queueDir); !ok {
		r.errorf("", "set non_smtpd_milters = $smtpd_milters in "+mainCF,
			"%s: non_smtpd_milters = %q does not name securemail's %s: mail submitted with the sendmail command (webmail, scripts) bypasses encryption and [encrypt] messages leave in plaintext",
			mainCF, pc.params["non_smtpd_milters"], want)
	}
	if noMilters(pc.params["receive_override_options"]) {
		r.errorf("", "remove no_milters from receive_override_options in "+mainCF,
			"%s: receive_override_options = %s turns every milter off: [encrypt] messages leave in plaintext", mainCF, pc.params["receive_override_options"])
	}
	for _, s := range subs {
		if v, over := pc.param(s, "receive_override_options"); over && noMilters(v) {
			r.errorf("", "remove no_milters from that -o receive_override_options= line in "+masterCF,
				"%s: service %s sets receive_override_options = %s, which turns milters off there: submissions bypass encryption", masterCF, s.id(), v)
		}
	}

	if ours.network == "unix" {
		checkPostfixChroot(r, pc, ours, mainCF, masterCF, queueDir)
	}
}

// checkPostfixChroot checks that every service that names securemail's
// unix socket opens that socket, chrooted or not.
func checkPostfixChroot(r *checkReport, pc *postfixConf, ours milterEndpoint, mainCF, masterCF, queueDir string) {
	var wrong []string
	anyChrooted := false
	for _, s := range pc.services {
		var list string
		switch {
		case s.isSMTPD():
			list, _ = pc.param(s, "smtpd_milters")
		case s.name == "cleanup" && s.typ == "unix":
			list, _ = pc.param(s, "non_smtpd_milters")
		default:
			continue
		}
		m, ok := ourMilter(ours, list, queueDir)
		if !ok {
			continue // reported above, or a service without securemail
		}
		chrooted := s.fields["chroot"] == "y"
		_, p, _ := strings.Cut(m.Addr, ":")
		if got := postfixResolve(p, queueDir, chrooted); got != ours.path {
			how := "unchrooted"
			if chrooted {
				how = "chrooted in " + queueDir
				anyChrooted = true
			}
			wrong = append(wrong, fmt.Sprintf("%s (%s) opens %s", s.id(), how, got))
		}
	}
	if len(wrong) == 0 {
		return
	}
	fix := "write it relative to queue_directory in " + mainCF + ": " + ours.postfix(queueDir) + " (that works chrooted and unchrooted)"
	if _, inside := below(queueDir, ours.path); !inside && anyChrooted {
		fix = "put the socket below " + queueDir + " (e.g. milter.listen: unix:" + filepath.Join(queueDir, "securemail", "milter.sock") +
			" and smtpd_milters = unix:securemail/milter.sock), or set the chroot column of those services to n in " + masterCF
	}
	r.errorf("milter.listen", fix, "Postfix services do not reach securemail's socket %s: %s", ours.path, strings.Join(wrong, "; "))
}

func noMilters(opts string) bool {
	for _, w := range strings.FieldsFunc(opts, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if w == "no_milters" {
			return true
		}
	}
	return false
}

func checkPostfixDefaultActions(r *checkReport, pc *postfixConf, ours milterEndpoint, oursOK bool, mainCF, masterCF, queueDir string) {
	checkDefaultAction(r, mainCF+": milter_default_action = "+pc.params["milter_default_action"], pc.params["milter_default_action"],
		"set milter_default_action = tempfail in "+mainCF)
	ids := make([]string, 0, len(pc.overrides))
	for id := range pc.overrides {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if v, ok := pc.overrides[id]["milter_default_action"]; ok && pc.runsOurs(id, ours, oursOK, queueDir) {
			checkDefaultAction(r, fmt.Sprintf("%s: service %s sets milter_default_action = %s", masterCF, id, v), v,
				"remove that -o milter_default_action= line from "+masterCF+" or make it tempfail")
		}
	}
	if !oursOK {
		return
	}
	// Per-milter settings: { inet:..., default_action=accept }.
	type list struct{ where, value string }
	lists := []list{{mainCF + ": smtpd_milters", pc.params["smtpd_milters"]}, {mainCF + ": non_smtpd_milters", pc.params["non_smtpd_milters"]}}
	for _, id := range ids {
		if v, ok := pc.overrides[id]["smtpd_milters"]; ok {
			lists = append(lists, list{fmt.Sprintf("%s: service %s's smtpd_milters", masterCF, id), v})
		}
	}
	seen := map[string]bool{}
	for _, l := range lists {
		m, ok := ourMilter(ours, l.value, queueDir)
		act, set := m.Settings["default_action"]
		if !ok || !set {
			continue
		}
		key := m.Addr + "|" + act
		if seen[key] {
			continue
		}
		seen[key] = true
		checkDefaultAction(r, fmt.Sprintf("%s gives securemail's entry default_action=%s", l.where, act), act,
			"remove default_action="+act+" from that entry, or make it default_action=tempfail")
	}
}

func checkDefaultAction(r *checkReport, where, action, fix string) {
	switch strings.ToLower(strings.TrimSpace(action)) {
	case "tempfail":
	case "accept":
		r.errorf("", fix, "%s: while securemail is down or unreachable Postfix passes mail through unfiltered, so [encrypt] messages leave in plaintext (fail-open)", where)
	case "quarantine":
		r.errorf("", fix, "%s: while securemail is down Postfix accepts mail unfiltered into the hold queue, and once released it leaves in plaintext", where)
	case "reject":
		r.warnf("", fix, "%s: this fails closed, but while securemail is down every sender gets a permanent error and must send again (tempfail lets mail programs retry)", where)
	default:
		r.warnf("", fix, "%s: Postfix knows no such action (accept, reject, tempfail, quarantine)", where)
	}
}

// runsOurs tells whether the master.cf service id runs securemail: an
// smtpd with securemail in its smtpd_milters, or cleanup with it in
// non_smtpd_milters. Without a valid milter.listen every service counts.
func (pc *postfixConf) runsOurs(id string, ours milterEndpoint, oursOK bool, queueDir string) bool {
	if !oursOK {
		return true
	}
	for _, s := range pc.services {
		if s.id() != id {
			continue
		}
		var list string
		switch cmd := strings.Fields(s.fields["command"]); {
		case len(cmd) == 0:
			return false
		case cmd[0] == "smtpd" || cmd[0] == "qmqpd":
			list, _ = pc.param(s, "smtpd_milters")
		case cmd[0] == "cleanup":
			list, _ = pc.param(s, "non_smtpd_milters")
		default:
			return false
		}
		_, ok := ourMilter(ours, list, queueDir)
		return ok
	}
	return false
}

func checkPostfixMacros(r *checkReport, pc *postfixConf, ours milterEndpoint, oursOK bool, mainCF, masterCF, queueDir string) {
	check := func(where, value, fix string) {
		have := map[string]bool{}
		for _, w := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			have[w] = true
		}
		var lacking, why []string
		for _, m := range neededMailMacros {
			if !have[m.name] {
				lacking = append(lacking, m.name)
				why = append(why, "without "+m.name+", "+m.without)
			}
		}
		if len(lacking) == 0 {
			return
		}
		r.warnf("", fix,
			"%s lacks %s: securemail also asks Postfix for them in the milter handshake, which Postfix honours, but should that ever fail: %s",
			where, strings.Join(lacking, " "), strings.Join(why, "; "))
	}
	check(mainCF+": milter_mail_macros", pc.params["milter_mail_macros"],
		"add them to milter_mail_macros in "+mainCF+" as contrib/postfix/main.cf.snippet does")
	ids := make([]string, 0, len(pc.overrides))
	for id := range pc.overrides {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if v, ok := pc.overrides[id]["milter_mail_macros"]; ok && pc.runsOurs(id, ours, oursOK, queueDir) {
			check(fmt.Sprintf("%s: service %s's milter_mail_macros", masterCF, id), v,
				"add them to that -o milter_mail_macros= line in "+masterCF+", or remove the line")
		}
	}
}

func checkPostfixSubmissionTLS(r *checkReport, pc *postfixConf, subs []postfixService, c *Config, mainCF, masterCF string) {
	backup := "securemail refuses plaintext submissions itself (policy.require_tls), but Postfix should refuse them first"
	if !c.Policy.RequireTLS {
		backup = "and policy.require_tls is false, so messages may arrive in plaintext"
	}
	for _, s := range subs {
		level, _ := pc.param(s, "smtpd_tls_security_level")
		enforce, _ := pc.param(s, "smtpd_enforce_tls")
		wrapper, _ := pc.param(s, "smtpd_tls_wrappermode")
		wrapped := strings.EqualFold(wrapper, "yes")
		required := wrapped || level == "encrypt" || (level == "" && strings.EqualFold(enforce, "yes"))
		if s.submissionPort() == "465" && !wrapped {
			r.warnf("", "add -o smtpd_tls_wrappermode=yes to service "+s.id()+" in "+masterCF,
				"%s: service %s is on port 465 (implicit TLS) without smtpd_tls_wrappermode=yes: mail programs set to SSL/TLS cannot talk to it", masterCF, s.id())
		}
		if !required {
			r.warnf("", "add -o smtpd_tls_security_level=encrypt to service "+s.id()+" in "+masterCF+" (as contrib/postfix/master.cf.snippet does)",
				"%s: service %s does not require TLS (smtpd_tls_security_level = %s): %s", masterCF, s.id(), orNone(level), backup)
			continue
		}
		var cert string
		for _, p := range []string{"smtpd_tls_chain_files", "smtpd_tls_cert_file", "smtpd_tls_eccert_file", "smtpd_tls_dcert_file"} {
			if v, _ := pc.param(s, p); v != "" && v != "none" {
				cert = v
				break
			}
		}
		if cert == "" {
			r.errorf("", "name your certificate and key in "+mainCF+" (smtpd_tls_cert_file and smtpd_tls_key_file, or smtpd_tls_chain_files)",
				"%s: service %s requires TLS but Postfix has no server certificate: it cannot offer TLS, so every submission there fails", masterCF, s.id())
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(empty)"
	}
	return s
}

// --- Sendmail ------------------------------------------------------------

func checkSendmail(r *checkReport, c *Config, opts checkConfigOptions) {
	path := opts.sendmailCF
	if path == skipCheck {
		r.infof("Sendmail not checked (--sendmail-cf none)")
		return
	}
	explicit := opts.sendmailSet && path != ""
	if !explicit {
		path = defaultSendmailCF
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			r.infof("no %s: Sendmail not checked (on a Sendmail host, give --sendmail-cf FILE)", path)
			return
		}
		r.errorf("", "give the sendmail.cf that Sendmail runs with (--sendmail-cf FILE)", "cannot read Sendmail's %s: %v", path, errors.Unwrap(err))
		return
	}
	r.checked = append(r.checked, "Sendmail "+path)
	cf := mtaconf.ParseSendmailCF(data)
	ours, ok := parseEndpoint(c.Milter.Listen)
	if !ok {
		r.infof("the milter checks for Sendmail were skipped: milter.listen is not valid")
		return
	}
	want := ours.sendmail()
	mcLine := "INPUT_MAIL_FILTER(`securemail', `S=" + want + ", F=T, T=C:5s;S:10s;R:10s;E:30s')"
	if len(cf.Filters) == 0 {
		r.errorf("", "add "+mcLine+" to sendmail.mc (contrib/sendmail/securemail.mc) and rebuild sendmail.cf",
			"%s defines no milter (no X line): Sendmail never calls securemail and [encrypt] messages leave in plaintext", path)
		return
	}
	var f *mtaconf.SendmailFilter
	var others []string
	for i := range cf.Filters {
		other, ok := parseEndpoint(cf.Filters[i].Fields["S"])
		if ok && (ours.matchesTCP(other) || (ours.network == "unix" && other.network == "unix" && ours.path == other.path)) {
			f = &cf.Filters[i]
			break
		}
		others = append(others, "X"+cf.Filters[i].Name+" (S="+cf.Filters[i].Fields["S"]+")")
	}
	if f == nil {
		r.errorf("", "make S= of securemail's INPUT_MAIL_FILTER line in sendmail.mc "+want+" (or correct milter.listen) and rebuild sendmail.cf",
			"%s has no milter that connects to securemail's %s (milter.listen); it defines %s", path, want, strings.Join(others, ", "))
		return
	}
	if !containsString(cf.InputFilters, f.Name) {
		r.errorf("", "define it with INPUT_MAIL_FILTER, not MAIL_FILTER, in sendmail.mc and rebuild sendmail.cf",
			"%s: milter X%s is defined but not in O InputMailFilters (%s): Sendmail never calls it and [encrypt] messages leave in plaintext",
			path, f.Name, orNone(strings.Join(cf.InputFilters, ", ")))
	}
	flags := f.Fields["F"]
	switch {
	case strings.ContainsAny(flags, "T4"):
	case strings.Contains(flags, "R"):
		r.warnf("", "use F=T in securemail's INPUT_MAIL_FILTER line in sendmail.mc and rebuild sendmail.cf",
			"%s: milter X%s has F=R: this fails closed, but while securemail is down every sender gets a permanent error and must send again (F=T lets mail programs retry)", path, f.Name)
	default:
		r.errorf("", "add F=T to securemail's INPUT_MAIL_FILTER line in sendmail.mc and rebuild sendmail.cf",
			"%s: milter X%s has no F=T: while securemail is down Sendmail passes mail through unfiltered, so [encrypt] messages leave in plaintext (fail-open)", path, f.Name)
	}
	have := map[string]bool{}
	for _, m := range cf.Envfrom {
		have[m] = true
	}
	var lacking, why []string
	for _, m := range neededMailMacros {
		if !have[m.name] {
			lacking = append(lacking, m.name)
			why = append(why, "without "+m.name+", "+m.without)
		}
	}
	if len(lacking) > 0 {
		current := "is not set"
		if cf.EnvfromSet {
			current = "lacks " + strings.Join(lacking, " ")
		}
		// A warning, as for Postfix: Sendmail 8.14 and later also honour the
		// macro list securemail asks for in the milter handshake
		// (TestSendmailE2E passed with this define removed).
		r.warnf("", "add "+strings.Join(lacking, ", ")+" to confMILTER_MACROS_ENVFROM in sendmail.mc as contrib/sendmail/securemail.mc does, and rebuild sendmail.cf",
			"%s: O Milter.macros.envfrom %s: securemail also asks Sendmail for them in the milter handshake, which Sendmail honours, but should that ever fail: %s",
			path, current, strings.Join(why, "; "))
	}
}
