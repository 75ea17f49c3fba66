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
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

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

// lackingMailMacros returns the needed macros an MTA's list (have) leaves
// out, and for each what goes wrong without it.
func lackingMailMacros(have []string) (lacking, why []string) {
	for _, m := range neededMailMacros {
		if !containsString(have, m.name) {
			lacking = append(lacking, m.name)
			why = append(why, "without "+m.name+", "+m.without)
		}
	}
	return lacking, why
}

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
	checkStore(r, cfg)
	checkMasterKeyRecords(r, cfg)
	if !cfg.Milter.Enabled {
		r.infof("the milter socket and MTA checks were skipped: milter.enabled is false on this host")
		return r
	}
	checkMilterSocketDir(r, cfg)
	checkPostfix(r, cfg, opts)
	checkSendmail(r, cfg, opts)
	return r
}
