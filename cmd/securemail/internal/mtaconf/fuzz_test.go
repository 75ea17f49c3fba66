package mtaconf

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// renderPostfix writes milters back as a Postfix list.
func renderPostfix(ms []PostfixMilter) string {
	var parts []string
	for _, m := range ms {
		if m.Settings == nil {
			parts = append(parts, m.Addr)
			continue
		}
		words := []string{m.Addr}
		for _, k := range slices.Sorted(maps.Keys(m.Settings)) {
			words = append(words, k+"="+m.Settings[k])
		}
		parts = append(parts, "{ "+strings.Join(words, ", ")+" }")
	}
	return strings.Join(parts, ", ")
}

// FuzzParsePostfixMilters: any input parses; no address is empty or holds
// a separator; what it read, written back, reads the same.
func FuzzParsePostfixMilters(f *testing.F) {
	for _, s := range []string{
		"inet:127.0.0.1:8894",
		"inet:127.0.0.1:8894, inet:127.0.0.1:8891",
		"{ inet:127.0.0.1:8894, connect_timeout = 10s, default_action=accept } unix:securemail/milter.sock",
		"$smtpd_milters",
		"{ unix:/x.sock",
		"{}, ,\t\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ms := ParsePostfixMilters(v)
		for _, m := range ms {
			if m.Addr == "" || strings.ContainsAny(m.Addr, ", \t\r\n") {
				t.Fatalf("address %q from %q", m.Addr, v)
			}
			for k, val := range m.Settings {
				if strings.ContainsAny(k+val, ",\t\r\n}") || strings.ContainsRune(k, '=') || k == "" {
					t.Skip("a setting the round trip cannot write back")
				}
			}
			if m.Settings != nil && strings.ContainsAny(m.Addr, "{}=") {
				t.Skip("an address the round trip cannot write back")
			}
			if m.Settings == nil && strings.HasPrefix(m.Addr, "{") {
				t.Skip("a bare address that starts a group when written back")
			}
		}
		again := ParsePostfixMilters(renderPostfix(ms))
		if len(again) != len(ms) {
			t.Fatalf("%q: %d milters, written back %d", v, len(ms), len(again))
		}
		for i := range ms {
			if again[i].Addr != ms[i].Addr || !maps.Equal(again[i].Settings, ms[i].Settings) {
				t.Fatalf("%q: milter %d %+v, written back %+v", v, i, ms[i], again[i])
			}
		}
	})
}

// FuzzParseSendmailCF: any input parses; every filter name is trimmed and
// holds no comma; every field name is upper case.
func FuzzParseSendmailCF(f *testing.F) {
	for _, s := range []string{
		"Xsecuremail, S=inet:8894@127.0.0.1, F=T, T=C:5s;S:10s;R:10s;E:30s\nO InputMailFilters=securemail\nO Milter.macros.envfrom=i, {auth_authen}, {tls_version}\n",
		"Xsecuremail, S=local:/run/securemail/milter.sock,\n\tF=T\r\nO InputMailFilters=opendkim, securemail\n",
		"O Milter.macros.envfrom=\nO InputMailFilters\nX\n",
		"\tcontinued first\nX,,,=,S=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cf := ParseSendmailCF(data)
		for _, x := range cf.Filters {
			if strings.ContainsRune(x.Name, ',') || x.Name != strings.TrimSpace(x.Name) {
				t.Fatalf("filter name %q", x.Name)
			}
			for k := range x.Fields {
				if k != strings.ToUpper(k) {
					t.Fatalf("field %q not upper case", k)
				}
			}
			if !strings.HasPrefix(x.Line, "X") {
				t.Fatalf("filter line %q", x.Line)
			}
		}
		for _, m := range append(slices.Clone(cf.InputFilters), cf.Envfrom...) {
			if m == "" || strings.ContainsAny(m, ", \t") {
				t.Fatalf("list entry %q", m)
			}
		}
		if len(cf.Envfrom) > 0 && !cf.EnvfromSet {
			t.Fatal("macros without the option")
		}
	})
}
