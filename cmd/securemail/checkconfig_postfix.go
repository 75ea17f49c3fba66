package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtaconf"
)

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

// overrideIDs returns the services with -o overrides in master.cf, sorted,
// so that reports list them in the same order every time.
func (pc *postfixConf) overrideIDs() []string {
	ids := make([]string, 0, len(pc.overrides))
	for id := range pc.overrides {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
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

	ours, ok := parseEndpoint(c.Milter.Listen.Spec)
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
	ids := pc.overrideIDs()
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
		lacking, why := lackingMailMacros(strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }))
		if len(lacking) == 0 {
			return
		}
		r.warnf("", fix,
			"%s lacks %s: securemail also asks Postfix for them in the milter handshake, which Postfix honours, but should that ever fail: %s",
			where, strings.Join(lacking, " "), strings.Join(why, "; "))
	}
	check(mainCF+": milter_mail_macros", pc.params["milter_mail_macros"],
		"add them to milter_mail_macros in "+mainCF+" as contrib/postfix/main.cf.snippet does")
	for _, id := range pc.overrideIDs() {
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
