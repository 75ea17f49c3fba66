package main

import (
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/securemail/securemail/cmd/securemail/internal/mtaconf"
)

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
	ours, ok := parseEndpoint(c.Milter.Listen.Spec)
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
	if lacking, why := lackingMailMacros(cf.Envfrom); len(lacking) > 0 {
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
