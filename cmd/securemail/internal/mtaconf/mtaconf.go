// Package mtaconf reads the parts of an MTA's configuration that
// check-config compares with securemail's: Postfix's milter lists
// (smtpd_milters, non_smtpd_milters, as postconf prints them) and
// Sendmail's sendmail.cf (X lines, O InputMailFilters, O
// Milter.macros.envfrom).
//
// The parsers are lenient: they never fail, they read what they
// recognise and skip the rest, because their input is a live host's file
// that check-config must report on, not refuse. Each has a fuzz target.
package mtaconf

import (
	"regexp"
	"strings"
)

// PostfixMilter is one entry of a Postfix milter list: an address, or
// "{ address, name=value, ... }" with per-milter settings.
type PostfixMilter struct {
	Addr     string
	Settings map[string]string // lowercased names; nil for a bare address
}

var spacedEquals = regexp.MustCompile(`\s*=\s*`)

func isListSep(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// ParsePostfixMilters splits a milter list as Postfix does: entries
// separated by commas or white space, braces grouping an address with its
// settings. An unclosed brace runs to the end.
func ParsePostfixMilters(v string) []PostfixMilter {
	var out []PostfixMilter
	for len(v) > 0 {
		v = strings.TrimLeftFunc(v, isListSep)
		if v == "" {
			break
		}
		if v[0] == '{' {
			end := strings.IndexByte(v, '}')
			if end < 0 {
				end = len(v)
			}
			words := strings.FieldsFunc(spacedEquals.ReplaceAllString(v[1:end], "="), isListSep)
			v = v[min(end+1, len(v)):]
			if len(words) == 0 {
				continue
			}
			m := PostfixMilter{Addr: words[0], Settings: map[string]string{}}
			for _, w := range words[1:] {
				if k, val, ok := strings.Cut(w, "="); ok {
					m.Settings[strings.ToLower(k)] = val
				}
			}
			out = append(out, m)
			continue
		}
		end := strings.IndexFunc(v, isListSep)
		if end < 0 {
			end = len(v)
		}
		out = append(out, PostfixMilter{Addr: v[:end]})
		v = v[end:]
	}
	return out
}

// SendmailFilter is an X line of sendmail.cf.
type SendmailFilter struct {
	Name   string
	Fields map[string]string // S, F, T, ... (upper-cased)
	Line   string
}

// SendmailCF is what check-config reads from a sendmail.cf.
type SendmailCF struct {
	Filters      []SendmailFilter
	InputFilters []string
	Envfrom      []string // O Milter.macros.envfrom
	EnvfromSet   bool
}

// ParseSendmailCF reads the X lines, O InputMailFilters and O
// Milter.macros.envfrom. A line that starts with white space continues the
// one before.
func ParseSendmailCF(data []byte) SendmailCF {
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n") {
		if (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && len(lines) > 0 && strings.TrimSpace(l) != "" {
			lines[len(lines)-1] += " " + strings.TrimSpace(l)
			continue
		}
		lines = append(lines, l)
	}
	splitList := func(v string) []string {
		return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	}
	var cf SendmailCF
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "X"):
			name, rest, _ := strings.Cut(l[1:], ",")
			f := SendmailFilter{Name: strings.TrimSpace(name), Fields: map[string]string{}, Line: strings.TrimSpace(l)}
			for _, part := range strings.Split(rest, ",") {
				if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok {
					f.Fields[strings.ToUpper(strings.TrimSpace(k))] = strings.TrimSpace(v)
				}
			}
			cf.Filters = append(cf.Filters, f)
		case strings.HasPrefix(l, "O "):
			k, v, ok := strings.Cut(strings.TrimSpace(l[2:]), "=")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "InputMailFilters":
				cf.InputFilters = splitList(v)
			case "Milter.macros.envfrom":
				cf.Envfrom, cf.EnvfromSet = splitList(v), true
			}
		}
	}
	return cf
}
