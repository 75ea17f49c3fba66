package catalog

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	texttemplate "text/template"
)

// FuzzNegotiate: any header gives a shipped language, and never panics.
func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{"", "de-DE,de;q=0.9,en;q=0.8", "fr", "*", "en;q=0", "de;q=abc", "gsw-CH", "zh-Hant-TW,zh;q=0.8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		if l := Negotiate(header); !slices.Contains(Languages, l) {
			t.Fatalf("Negotiate(%q) = %q, not a shipped language", header, l)
		}
	})
}

// FuzzSource: any entry becomes a template that parses, and as plain text
// renders to the entry with each {Name} replaced by its value.
func FuzzSource(f *testing.F) {
	for _, s := range []string{"plain", "{From} sent {Link}", "{{.X}} {{", "}}{", "{ A }", "{A1}{B2}", "**b** `c` <d>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		if _, err := texttemplate.New("x").Parse(source(entry, true)); err != nil {
			t.Fatalf("HTML source of %q does not parse: %v", entry, err)
		}
		tmpl, err := texttemplate.New("x").Parse(source(entry, false))
		if err != nil {
			t.Fatalf("text source of %q does not parse: %v", entry, err)
		}
		data := map[string]string{}
		want := entry
		for _, name := range Fields(entry) {
			data[name] = "v"
		}
		for name := range data {
			want = strings.ReplaceAll(want, "{"+name+"}", "v")
		}
		var b bytes.Buffer
		if err := tmpl.Execute(&b, data); err != nil {
			t.Fatalf("text source of %q: %v", entry, err)
		}
		if b.String() != want {
			t.Fatalf("entry %q renders %q, want %q", entry, b.String(), want)
		}
	})
}
