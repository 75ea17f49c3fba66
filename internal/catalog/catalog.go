// Package catalog holds the sentences a recipient reads, in every language
// the product ships, and makes templates of them.
//
// The contract:
//
//   - An entry is text with three kinds of marks: {Name} stands for the
//     field Name of the data its template is executed with, **text** is
//     bold and `text` is code. Entries whose key starts with "text." are
//     for plain-text mail and use neither bold nor code. Nothing else in
//     an entry is markup: AddHTML escapes & and < in it, so a translation
//     can never add a tag, and the {Name} values are escaped by
//     html/template as any other value.
//   - English is the reference. Every shipped language has exactly its
//     keys with the same {Name} fields (TestEveryLanguageHasEveryEntry),
//     so a template never meets a missing entry at run time.
//   - Entries are kept in parts (one file per language and area, such as
//     portal_en.go); each part adds itself with add, and a key in two
//     parts of one language is a panic at start, never a silent override.
//   - Text and HTML render one entry with values from Go code, for words
//     a page builds outside its template (titles, error pages, mail).
//   - A language is chosen per deployment (the sender's branding) for
//     what travels in the mail, and from Accept-Language (Negotiate) for
//     pages a browser asks for.
package catalog

import (
	"fmt"
	htmltemplate "html/template"
	"sort"
	"strconv"
	"strings"
	"sync"
	texttemplate "text/template"
	"time"

	"golang.org/x/text/language"
)

// Lang is a shipped language, by its ISO 639-1 code.
type Lang string

// The shipped languages.
const (
	English Lang = "en"
	German  Lang = "de"
)

// Languages are the shipped languages, English first.
var Languages = []Lang{English, German}

// entries holds every language's entries by key.
var entries = map[Lang]map[string]string{English: english, German: german}

// Parse returns the shipped language that s names ("de", "de-CH",
// "DE"); "" is English. Anything else is an error that lists what is
// shipped.
func Parse(s string) (Lang, error) {
	if strings.TrimSpace(s) == "" {
		return English, nil
	}
	tag, err := language.Parse(strings.TrimSpace(s))
	if err == nil {
		base, _ := tag.Base()
		if l := Lang(base.String()); entries[l] != nil {
			return l, nil
		}
	}
	return "", fmt.Errorf("language %q is not shipped: use one of %s", s, shipped())
}

func shipped() string {
	names := make([]string, len(Languages))
	for i, l := range Languages {
		names[i] = string(l)
	}
	return strings.Join(names, ", ")
}

// matcher picks among the shipped languages, English first (the fallback).
var matcher = language.NewMatcher([]language.Tag{language.English, language.German})

// Negotiate returns the shipped language that best serves an
// Accept-Language header, else English.
func Negotiate(acceptLanguage string) Lang {
	if acceptLanguage == "" || len(acceptLanguage) > 512 {
		return English
	}
	tags, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil || len(tags) == 0 {
		return English
	}
	_, i, conf := matcher.Match(tags...)
	if conf == language.No {
		return English
	}
	return Languages[i]
}

// add merges a part of l's entries into the catalogue; parts add
// themselves in init, so every entry is there before any other package
// builds a template.
func add(l Lang, part map[string]string) { addTo(entries, l, part) }

func addTo(entries map[Lang]map[string]string, l Lang, part map[string]string) {
	m := entries[l]
	for k, v := range part {
		if _, dup := m[k]; dup {
			panic("catalog: " + string(l) + " entry " + k + " is in two parts")
		}
		m[k] = v
	}
}

// Keys returns the keys of the reference language, sorted.
func Keys() []string {
	keys := make([]string, 0, len(english))
	for k := range english {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Entry returns l's entry for key as written in the catalogue, marks and
// all (English's when l is not shipped); "" when there is none.
func Entry(l Lang, key string) string {
	if entries[l] == nil {
		l = English
	}
	return entries[l][key]
}

// AddHTML adds every entry of l whose key starts with one of prefixes
// and not with "text." as a template of t named by its key, so a page can
// say {{template "page.heading" .}}.
func AddHTML(t *htmltemplate.Template, l Lang, prefixes ...string) error {
	for _, key := range Keys() {
		if strings.HasPrefix(key, "text.") || !hasAnyPrefix(key, prefixes) {
			continue
		}
		if _, err := t.New(key).Parse(source(entries[l][key], true)); err != nil {
			return fmt.Errorf("catalog: %s %s: %w", l, key, err)
		}
	}
	return nil
}

// AddText adds every "text." entry of l whose key starts with one of
// prefixes as a template of t named by its key.
func AddText(t *texttemplate.Template, l Lang, prefixes ...string) error {
	for _, key := range Keys() {
		if !strings.HasPrefix(key, "text.") || !hasAnyPrefix(key, prefixes) {
			continue
		}
		if _, err := t.New(key).Parse(source(entries[l][key], false)); err != nil {
			return fmt.Errorf("catalog: %s %s: %w", l, key, err)
		}
	}
	return nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// Text renders l's entry for key as plain text: each {Name} becomes the
// value that follows "Name" in nameValues (fmt.Sprint of it), and the
// bold and code marks are dropped. A field without a value stays as
// {Name}, so a slip shows on the page instead of a blank; an unknown key
// renders as the key itself.
func Text(l Lang, key string, nameValues ...any) string {
	return format(Entry(l, key), key, false, nameValues)
}

// HTML renders l's entry for key as HTML, as Text does: & and < of the
// entry and every value are escaped, **text** becomes <strong> and `text`
// becomes <code>. The result is safe to put in a page unescaped.
func HTML(l Lang, key string, nameValues ...any) htmltemplate.HTML {
	return htmltemplate.HTML(format(Entry(l, key), key, true, nameValues))
}

func format(entry, key string, html bool, nameValues []any) string {
	if entry == "" {
		entry = key
	}
	parts := compiled(entry, html)
	if len(parts) == 1 && parts[0].field == "" {
		return parts[0].text
	}
	var b strings.Builder
	for _, p := range parts {
		if p.field == "" {
			b.WriteString(p.text)
			continue
		}
		v, found := fieldValue(p.field, nameValues)
		if !found {
			v = "{" + p.field + "}"
		}
		if html {
			v = htmltemplate.HTMLEscapeString(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

func fieldValue(name string, nameValues []any) (string, bool) {
	for i := 0; i+1 < len(nameValues); i += 2 {
		if n, _ := nameValues[i].(string); n == name {
			switch v := nameValues[i+1].(type) {
			case string:
				return v, true
			case int:
				return strconv.Itoa(v), true
			default:
				return fmt.Sprint(v), true
			}
		}
	}
	return "", false
}

// part is a piece of a compiled entry: text ready to write (marks turned
// into tags or dropped, escaped for HTML), or the name of a field.
type part struct{ text, field string }

// compiledEntries caches each entry's parts by its text and form, so a
// page pays for parsing an entry once per process.
var compiledEntries sync.Map // compileKey -> []part

type compileKey struct {
	entry string
	html  bool
}

func compiled(entry string, html bool) []part {
	k := compileKey{entry, html}
	if p, ok := compiledEntries.Load(k); ok {
		return p.([]part)
	}
	var parts []part
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			parts = append(parts, part{text: b.String()})
			b.Reset()
		}
	}
	bold, code := false, false
	for i := 0; i < len(entry); i++ {
		c := entry[i]
		switch {
		case c == '{':
			if name, ok := fieldAt(entry[i:]); ok {
				flush()
				parts = append(parts, part{field: name})
				i += len(name) + 1
				continue
			}
			b.WriteByte(c)
		case c == '*' && strings.HasPrefix(entry[i:], "**"):
			if html {
				b.WriteString(map[bool]string{false: "<strong>", true: "</strong>"}[bold])
			}
			bold = !bold
			i++
		case c == '`':
			if html {
				b.WriteString(map[bool]string{false: "<code>", true: "</code>"}[code])
			}
			code = !code
		case html && c == '&':
			b.WriteString("&amp;")
		case html && c == '<':
			b.WriteString("&lt;")
		case html && c == '>':
			b.WriteString("&gt;")
		default:
			b.WriteByte(c)
		}
	}
	flush()
	if len(parts) == 0 {
		parts = []part{{}}
	}
	compiledEntries.Store(k, parts)
	return parts
}

// Source returns l's entry for key as html/template source, as AddHTML
// parses it: a page may put it in its own source in place of calling
// HTML for an entry without fields, since it never changes.
func Source(l Lang, key string) string {
	e := Entry(l, key)
	if e == "" {
		e = key
	}
	return source(e, true)
}

// source turns an entry into template source from the same parts Text
// and HTML write: {Name} becomes {{.Name}}, braces that are not a field
// stay text, and marks become tags (html) or are dropped (plain text, as
// Text drops them).
func source(entry string, html bool) string {
	var b strings.Builder
	for _, p := range compiled(entry, html) {
		if p.field != "" {
			b.WriteString("{{." + p.field + "}}")
			continue
		}
		for i := 0; i < len(p.text); i++ {
			switch c := p.text[i]; c {
			case '{':
				b.WriteString(`{{"{"}}`)
			case '}':
				b.WriteString(`{{"}"}}`)
			default:
				b.WriteByte(c)
			}
		}
	}
	return b.String()
}

// fieldAt returns Name when s starts with {Name}: a letter, then letters
// and digits.
func fieldAt(s string) (string, bool) {
	end := strings.IndexByte(s, '}')
	if end < 2 {
		return "", false
	}
	name := s[1:end]
	for i, r := range name {
		letter := r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'
		if !letter && (i == 0 || r < '0' || r > '9') {
			return "", false
		}
	}
	return name, true
}

// Fields returns the {Name} fields of an entry, in order.
func Fields(entry string) []string {
	var names []string
	for i := 0; i < len(entry); i++ {
		if entry[i] == '{' {
			if name, ok := fieldAt(entry[i:]); ok {
				names = append(names, name)
				i += len(name) + 1
			}
		}
	}
	return names
}

// Date writes t in UTC as l writes a date and time in a sentence:
// "Saturday, 14 March 2026 at 15:09 UTC", "Samstag, 14. März 2026 um
// 15:09 UTC".
func Date(l Lang, t time.Time) string {
	t = t.UTC()
	if l == German {
		return fmt.Sprintf("%s, %d. %s %d um %02d:%02d UTC", germanWeekdays[t.Weekday()], t.Day(),
			germanMonths[t.Month()-1], t.Year(), t.Hour(), t.Minute())
	}
	return t.Format("Monday, 2 January 2006 at 15:04 UTC")
}

var (
	germanWeekdays = [...]string{"Sonntag", "Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag"}
	germanMonths   = [...]string{"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
		"September", "Oktober", "November", "Dezember"}
)
