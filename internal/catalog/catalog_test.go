package catalog

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	texttemplate "text/template"
	"time"
)

// problems lists what a language's entries lack against the reference:
// keys missing or extra, {Name} fields that differ, unbalanced marks, and
// marks or tags where they have no place.
func problems(l Lang, have map[string]string) []string {
	var out []string
	for _, key := range Keys() {
		got, ok := have[key]
		if !ok || strings.TrimSpace(got) == "" {
			out = append(out, fmt.Sprintf("%s: no entry %q", l, key))
			continue
		}
		want := slices.Sorted(slices.Values(Fields(english[key])))
		if fields := slices.Sorted(slices.Values(Fields(got))); !slices.Equal(fields, want) {
			out = append(out, fmt.Sprintf("%s %s: fields %v, English has %v", l, key, fields, want))
		}
		bold, code := strings.Count(got, "**"), strings.Count(got, "`")
		if strings.HasPrefix(key, "text.") && bold+code > 0 {
			out = append(out, fmt.Sprintf("%s %s: a plain-text entry with ** or `", l, key))
		}
		if bold%2 != 0 || code%2 != 0 {
			out = append(out, fmt.Sprintf("%s %s: unbalanced ** or `", l, key))
		}
		if strings.ContainsAny(got, "<>") && !strings.HasPrefix(key, "text.") {
			out = append(out, fmt.Sprintf("%s %s: < or > in an HTML entry; use ** or ` for marks", l, key))
		}
	}
	for key := range have {
		if _, ok := english[key]; !ok {
			out = append(out, fmt.Sprintf("%s: entry %q that English does not have", l, key))
		}
	}
	return out
}

// TestEveryLanguageHasEveryEntry: a shipped language has exactly the
// reference's keys, each with the same {Name} fields, and its marks are
// balanced; plain-text entries use no marks.
func TestEveryLanguageHasEveryEntry(t *testing.T) {
	t.Parallel()
	for _, l := range Languages {
		for _, p := range problems(l, entries[l]) {
			t.Error(p)
		}
	}
}

// TestProblemsFindsFaults: problems reports a missing entry, a lost
// field, an extra entry, a stray mark and a tag, each once.
func TestProblemsFindsFaults(t *testing.T) {
	t.Parallel()
	broken := maps.Clone(german)
	delete(broken, "page.button")
	broken["page.sent"] = "Gesendet"
	broken["page.extra"] = "x"
	broken["page.from"] = "**Von:"
	broken["page.title"] = "<b>Sichere</b> Nachricht"
	got := problems(German, broken)
	for _, want := range []string{`no entry "page.button"`, "page.sent: fields [], English has [Date]",
		`entry "page.extra" that English does not have`, "page.from: unbalanced", "page.title: < or >"} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("problems did not report %q: %q", want, got)
		}
	}
	if len(got) != 5 {
		t.Errorf("problems reported %d, want 5: %q", len(got), got)
	}
}

func TestSourceHTML(t *testing.T) {
	t.Parallel()
	for entry, want := range map[string]string{
		"plain":                        "plain",
		"**bold** and `code`":          "<strong>bold</strong> and <code>code</code>",
		"from {Org}, at {PortalURL}/":  "from {{.Org}}, at {{.PortalURL}}/",
		"a < b & c":                    "a &lt; b &amp; c",
		"{not a field} {1x} {} {{.X}}": `{{"{"}}not a field{{"}"}} {{"{"}}1x{{"}"}} {{"{"}}{{"}"}} {{"{"}}{{"{"}}.X{{"}"}}{{"}"}}`,
		"**{From}** sent":              "<strong>{{.From}}</strong> sent",
		"one * star and {A1}":          "one * star and {{.A1}}",
	} {
		if got := source(entry, true); got != want {
			t.Errorf("source(%q) = %q, want %q", entry, got, want)
		}
	}
	// Plain text drops the marks as Text does, and escapes nothing.
	if got := source("**x** `y` <z> & {A}", false); got != "x y <z> & {{.A}}" {
		t.Errorf("plain-text source: %q", got)
	}
}

// TestHTMLEntriesEscapeValues: a value with markup is shown as text, in
// every HTML entry of every language.
func TestHTMLEntriesEscapeValues(t *testing.T) {
	t.Parallel()
	evil := `<script>alert(1)</script> & "x"`
	data := map[string]string{}
	for _, key := range Keys() {
		for _, f := range Fields(english[key]) {
			data[f] = evil
		}
	}
	for _, l := range Languages {
		root := htmltemplate.New("root")
		if err := AddHTML(root, l, ""); err != nil {
			t.Fatal(err)
		}
		for _, key := range Keys() {
			if strings.HasPrefix(key, "text.") {
				continue
			}
			var b bytes.Buffer
			if err := root.ExecuteTemplate(&b, key, data); err != nil {
				t.Fatalf("%s %s: %v", l, key, err)
			}
			if strings.Contains(b.String(), "<script>") {
				t.Errorf("%s %s: a value's markup reached the page: %s", l, key, b.String())
			}
		}
	}
}

// TestTextEntriesRender: every plain-text entry renders with its fields
// in place and nothing of the template syntax left.
func TestTextEntriesRender(t *testing.T) {
	t.Parallel()
	for _, l := range Languages {
		root := texttemplate.New("root")
		if err := AddText(root, l, ""); err != nil {
			t.Fatal(err)
		}
		for _, key := range Keys() {
			if !strings.HasPrefix(key, "text.") {
				continue
			}
			data := map[string]string{}
			for _, f := range Fields(english[key]) {
				data[f] = "<" + f + ">"
			}
			var b bytes.Buffer
			if err := root.ExecuteTemplate(&b, key, data); err != nil {
				t.Fatalf("%s %s: %v", l, key, err)
			}
			for f := range data {
				if !strings.Contains(b.String(), "<"+f+">") {
					t.Errorf("%s %s: %s not in %q", l, key, f, b.String())
				}
			}
			if regexp.MustCompile(`\{[A-Za-z]`).MatchString(b.String()) {
				t.Errorf("%s %s: a field mark was left: %q", l, key, b.String())
			}
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Lang{"": English, " ": English, "en": English, "EN": English, "en-GB": English,
		"de": German, "de-CH": German, "de_AT": German, "DE": German} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"fr", "german", "xx-YY", "de;q=1", "123"} {
		if got, err := Parse(in); err == nil || !strings.Contains(err.Error(), "use one of en, de") {
			t.Errorf("Parse(%q) = %q, %v; want an error naming en, de", in, got, err)
		}
	}
}

func TestNegotiate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Lang{
		"":                         English,
		"de-DE,de;q=0.9,en;q=0.8":  German,
		"de-CH":                    German,
		"en-US,en;q=0.9":           English,
		"fr-FR,de;q=0.5":           German,
		"fr-FR,fr;q=0.9":           English,
		"en;q=0.5,de;q=0.9":        German,
		"*":                        English,
		"garbage;;;q=x":            English,
		strings.Repeat("de,", 300): English, // too long to read
		"gsw-CH":                   German,  // Swiss German reads German
	} {
		if got := Negotiate(in); got != want {
			t.Errorf("Negotiate(%.40q) = %q, want %q", in, got, want)
		}
	}
}

// TestDate: vectors for every weekday and month in both languages.
func TestDate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at     time.Time
		en, de string
	}{
		{time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC), "Saturday, 14 March 2026 at 15:09 UTC", "Samstag, 14. März 2026 um 15:09 UTC"},
		{time.Date(2026, 1, 4, 0, 0, 0, 0, time.UTC), "Sunday, 4 January 2026 at 00:00 UTC", "Sonntag, 4. Januar 2026 um 00:00 UTC"},
		{time.Date(2026, 2, 2, 9, 5, 0, 0, time.UTC), "Monday, 2 February 2026 at 09:05 UTC", "Montag, 2. Februar 2026 um 09:05 UTC"},
		{time.Date(2026, 4, 7, 23, 59, 59, 0, time.UTC), "Tuesday, 7 April 2026 at 23:59 UTC", "Dienstag, 7. April 2026 um 23:59 UTC"},
		{time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC), "Wednesday, 6 May 2026 at 12:00 UTC", "Mittwoch, 6. Mai 2026 um 12:00 UTC"},
		{time.Date(2026, 6, 4, 12, 0, 0, 0, time.UTC), "Thursday, 4 June 2026 at 12:00 UTC", "Donnerstag, 4. Juni 2026 um 12:00 UTC"},
		{time.Date(2026, 7, 3, 12, 0, 0, 0, time.UTC), "Friday, 3 July 2026 at 12:00 UTC", "Freitag, 3. Juli 2026 um 12:00 UTC"},
		{time.Date(2026, 8, 31, 12, 0, 0, 0, time.UTC), "Monday, 31 August 2026 at 12:00 UTC", "Montag, 31. August 2026 um 12:00 UTC"},
		{time.Date(2026, 9, 30, 12, 0, 0, 0, time.UTC), "Wednesday, 30 September 2026 at 12:00 UTC", "Mittwoch, 30. September 2026 um 12:00 UTC"},
		{time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC), "Thursday, 1 October 2026 at 12:00 UTC", "Donnerstag, 1. Oktober 2026 um 12:00 UTC"},
		{time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC), "Friday, 20 November 2026 at 12:00 UTC", "Freitag, 20. November 2026 um 12:00 UTC"},
		// A time in another zone is written in UTC.
		{time.Date(2026, 12, 31, 23, 30, 0, 0, time.FixedZone("x", -3600)), "Friday, 1 January 2027 at 00:30 UTC", "Freitag, 1. Januar 2027 um 00:30 UTC"},
		{time.Date(2026, 12, 24, 18, 0, 0, 0, time.UTC), "Thursday, 24 December 2026 at 18:00 UTC", "Donnerstag, 24. Dezember 2026 um 18:00 UTC"},
	} {
		if got := Date(English, tc.at); got != tc.en {
			t.Errorf("Date(en, %v) = %q, want %q", tc.at, got, tc.en)
		}
		if got := Date(German, tc.at); got != tc.de {
			t.Errorf("Date(de, %v) = %q, want %q", tc.at, got, tc.de)
		}
	}
}

// TestFormatEveryEntry: HTML escapes every value and keeps only the
// marks' tags, in every entry of every language; Text puts every value in
// and leaves no mark or field behind.
func TestFormatEveryEntry(t *testing.T) {
	t.Parallel()
	for _, l := range Languages {
		for _, key := range Keys() {
			var evil, plain []any
			for _, f := range Fields(english[key]) {
				evil = append(evil, f, `<script>alert(1)</script> & "x"`)
				plain = append(plain, f, "<"+f+">")
			}
			h := string(HTML(l, key, evil...))
			if strings.Contains(h, "<script>") {
				t.Errorf("%s %s: a value's markup reached the page: %s", l, key, h)
			}
			if rest := regexp.MustCompile(`</?(strong|code)>`).ReplaceAllString(h, ""); strings.ContainsAny(rest, "<>") {
				t.Errorf("%s %s: HTML holds a tag that is not a mark's: %s", l, key, h)
			}
			txt := Text(l, key, plain...)
			for i := 0; i < len(plain); i += 2 {
				if !strings.Contains(txt, plain[i+1].(string)) {
					t.Errorf("%s %s: %s not in %q", l, key, plain[i], txt)
				}
			}
			if strings.Contains(txt, "**") || strings.Contains(txt, "`") || regexp.MustCompile(`\{[A-Za-z]`).MatchString(txt) {
				t.Errorf("%s %s: a mark or field was left: %q", l, key, txt)
			}
		}
	}
}

// TestFormatMissingValueShows: a field given no value stays visible as
// {Name}, and an unknown key renders as itself, so a slip is seen.
func TestFormatMissingValueShows(t *testing.T) {
	t.Parallel()
	if got := Text(English, "page.sent"); got != "Sent: {Date}" {
		t.Errorf("Text without a value = %q", got)
	}
	if got := Text(English, "page.sent", "Date", "today"); got != "Sent: today" {
		t.Errorf("Text = %q", got)
	}
	if got := string(HTML(German, "page.check", "PortalURL", "https://a&b", "PortalHost", "a")); !strings.Contains(got, "<strong>So prüfen") || !strings.Contains(got, "<code>https://a&amp;b/</code>") {
		t.Errorf("HTML = %q", got)
	}
	if got := Text(German, "no.such.key"); got != "no.such.key" {
		t.Errorf("unknown key = %q", got)
	}
}

// TestAddRefusesDuplicates: a key added by two parts is a panic.
func TestAddRefusesDuplicates(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("a duplicate key was accepted")
		}
	}()
	entries := map[Lang]map[string]string{English: {"a": "x"}}
	addTo(entries, English, map[string]string{"a": "y"})
}
