package catalog

import (
	"bytes"
	"slices"
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

// FuzzSource: any entry becomes a template that parses, in both forms,
// and renders as Text and HTML render the entry from Go with the same
// values: the two ways a page gets its words never disagree.
func FuzzSource(f *testing.F) {
	for _, s := range []string{"plain", "{From} sent {Link}", "{{.X}} {{", "}}{", "{ A }", "{A1}{B2}", "**b** `c` <d>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		if entry == "" {
			return // an empty entry renders as its key from Go; no template has one
		}
		data := map[string]string{}
		var values []any
		for _, name := range Fields(entry) {
			if _, seen := data[name]; !seen {
				values = append(values, name, "v")
			}
			data[name] = "v"
		}
		for _, html := range []bool{false, true} {
			tmpl, err := texttemplate.New("x").Parse(source(entry, html))
			if err != nil {
				t.Fatalf("source of %q (html %v) does not parse: %v", entry, html, err)
			}
			var b bytes.Buffer
			if err := tmpl.Execute(&b, data); err != nil {
				t.Fatalf("source of %q (html %v): %v", entry, html, err)
			}
			if want := format(entry, entry, html, values); b.String() != want {
				t.Fatalf("entry %q (html %v) renders %q from its source, %q from Go", entry, html, b.String(), want)
			}
		}
	})
}
