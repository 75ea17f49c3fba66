package main

// One configuration model, one validator. serve (loadConfig) and
// check-config read the file through decodeConfig and check the values
// with checkConfigValues, into the same checkReport: serve refuses to
// start and lists every error, check-config prints every finding. Unknown
// keys come from the Config struct's mapstructure tags, and each key is
// decoded on its own with the same decode hooks, so a bad value is reported
// under its key without reading any library's error text.

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// configField is one leaf key of Config and its place in the struct.
type configField struct {
	key   string
	index []int
	typ   reflect.Type
}

// leafTypes are decoded as values, not descended into.
var leafTypes = map[reflect.Type]bool{
	reflect.TypeOf(time.Duration(0)): true,
	reflect.TypeOf(ByteSize(0)):      true,
	milterListenType:                 true,
}

// valueError is a value that a typed key's decode hook refused, in the
// validator's words: format takes the key and the value.
type valueError struct {
	format string
	value  string
	fix    string
}

// valueErrors are a key's refused values (a CIDR list reports each bad
// entry), one finding each.
type valueErrors []*valueError

func (e valueErrors) Error() string {
	var s []string
	for _, v := range e {
		s = append(s, fmt.Sprintf(v.format, "value", v.value))
	}
	return strings.Join(s, "; ")
}

// entryFixes overrides a typed hook's fix where the key wants its own
// example.
var entryFixes = map[string]string{
	"portal.trusted_proxies": "write an address such as 127.0.0.1 or a CIDR network such as 10.0.0.0/8",
}

// configFields lists the leaf keys of Config from its mapstructure tags.
func configFields() []configField {
	var out []configField
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if tag == "" && opts == "squash" && f.Type.Kind() == reflect.Struct {
				// An embedded section part (keystore's StoreConfig): its
				// keys belong to the enclosing section.
				walk(f.Type, prefix, append(append([]int(nil), index...), i))
				continue
			}
			if tag == "" || tag == "-" {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct && !leafTypes[f.Type] {
				walk(f.Type, key, idx)
				continue
			}
			out = append(out, configField{key: key, index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeOf(Config{}), "", nil)
	return out
}

// configSections are the keys that name a section, not a value.
func configSections(fields []configField) map[string]bool {
	s := map[string]bool{}
	for _, f := range fields {
		parts := strings.Split(f.key, ".")
		for i := 1; i < len(parts); i++ {
			s[strings.Join(parts[:i], ".")] = true
		}
	}
	return s
}

// decodeFixes says how to write a value that did not decode, by key.
var decodeFixes = map[string]string{
	"policy.max_message_size":    "write a size such as 20MiB, 512KiB, 20MB or 1048576",
	"portal.argon2.memory":       "write a size such as 64MiB",
	"keystore.key_lifetime":      "write a Go duration such as 2160h (90 days); d is not a unit",
	"portal.spool_ttl":           "write a Go duration such as 24h",
	"policy.require_tls":         "write true or false",
	"portal.reply_all":           "write true or false",
	"portal.link_fallback":       "write true or false",
	"portal.read_notice":         "write true or false",
	"portal.link_retention":      "write a Go duration such as 720h (30 days); d is not a unit",
	"milter.enabled":             "write true or false",
	"portal.enabled":             "write true or false",
	"policy.internal_domains":    "write a list such as [example.com, .example.org]",
	"policy.trusted_networks":    "write a list such as [127.0.0.0/8, ::1/128]",
	"policy.tls_exempt_networks": "write a list such as [127.0.0.0/8, ::1/128]",
	"portal.trusted_proxies":     "write a list such as [127.0.0.1/32]",
}

// decodeValue decodes raw into dst (a pointer to the field) with the
// configuration's hooks; sizes and durations get their own parsers, so
// their errors are ours.
func decodeValue(raw any, dst reflect.Value) error {
	switch dst.Elem().Type() {
	case reflect.TypeOf(ByteSize(0)):
		switch v := raw.(type) {
		case string:
			n, err := parseByteSize(v)
			if err != nil {
				return err
			}
			dst.Elem().SetInt(int64(n))
			return nil
		}
	case reflect.TypeOf(time.Duration(0)):
		if s, ok := raw.(string); ok {
			d, err := time.ParseDuration(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("%q is not a Go duration such as 24h or 2160h", s)
			}
			dst.Elem().SetInt(int64(d))
			return nil
		}
	}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           dst.Interface(),
		WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			prefixListHook,
			logLevelHook,
			milterListenHook,
			socketModeHook,
			byteSizeHook,
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
	})
	if err != nil {
		return err
	}
	if err := dec.Decode(raw); err != nil {
		var refused valueErrors
		if errors.As(err, &refused) {
			return refused
		}
		return fmt.Errorf("%v is not a %s", raw, describeType(dst.Elem().Type()))
	}
	return nil
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Slice:
		return "list"
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint8, reflect.Uint32:
		return "whole number"
	}
	return t.Kind().String()
}

// decodeConfig reads every key of v into a Config. Unknown keys and values
// that do not decode are errors in r; it returns the keys that did not
// decode, so the value checks do not report them a second time.
func decodeConfig(v *viper.Viper, name string, r *checkReport) (*Config, map[string]bool) {
	fields := configFields()
	known := map[string]bool{}
	for _, f := range fields {
		known[f.key] = true
	}
	sections := configSections(fields)
	// An unknown key is named by its first part that is neither a key nor
	// a section: a misspelt section is one finding, not one per key in it.
	seen := map[string]bool{}
	var unknown []string
	for _, k := range v.AllKeys() {
		if known[k] {
			continue
		}
		parts := strings.Split(k, ".")
		name := k
		for i := 1; i <= len(parts); i++ {
			if p := strings.Join(parts[:i], "."); !sections[p] {
				name = p
				break
			}
		}
		if !seen[name] {
			seen[name] = true
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		if sections[k] {
			r.errorf(k, "write it as a section of keys (contrib/securemail.example.yaml shows it)", "%s in %s is a section, not a value", k, name)
			continue
		}
		fix := "remove it; contrib/securemail.example.yaml lists every key"
		if s := closestKey(k); s != "" {
			fix = "did you mean " + s + "? contrib/securemail.example.yaml lists every key"
		}
		r.errorf(k, fix, "unknown key %s in %s", k, name)
	}
	var cfg Config
	bad := map[string]bool{}
	root := reflect.ValueOf(&cfg).Elem()
	for _, f := range fields {
		raw := v.Get(f.key)
		if raw == nil {
			continue
		}
		if m, isMap := raw.(map[string]any); isMap && len(m) > 0 {
			bad[f.key] = true
			r.errorf(f.key, "write a value, not a section", "%s in %s is a section, not a value", f.key, name)
			continue
		}
		dst := root.FieldByIndex(f.index).Addr()
		if err := decodeValue(raw, dst); err != nil {
			bad[f.key] = true
			var refused valueErrors
			if errors.As(err, &refused) {
				for _, e := range refused {
					fix := e.fix
					if own, ok := entryFixes[f.key]; ok {
						fix = own
					}
					r.errorf(f.key, fix, e.format, f.key, e.value)
				}
				continue
			}
			fix, ok := decodeFixes[f.key]
			if !ok {
				fix = "contrib/securemail.example.yaml shows the expected form"
			}
			r.errorf(f.key, fix, "%s = %v: %v", f.key, raw, err)
		}
	}
	cfg.fillDerived()
	return &cfg, bad
}

// configErrors is what loadConfig refuses with: every error finding of the
// validator, one per line, in check-config's words.
type configErrors struct {
	name     string
	problems []finding
}

func (e *configErrors) Error() string {
	var b strings.Builder
	if len(e.problems) == 1 {
		fmt.Fprintf(&b, "config %s: %s", e.name, e.problems[0].sentence())
		return b.String()
	}
	fmt.Fprintf(&b, "config %s: %d problems (securemail check-config explains them):", e.name, len(e.problems))
	for _, p := range e.problems {
		b.WriteString("\n  " + p.sentence())
	}
	return b.String()
}

// sentence is a finding without its severity.
func (f finding) sentence() string {
	if f.fix == "" {
		return f.what
	}
	return f.what + " — " + f.fix
}

// validateConfig decodes v and runs every value check into r.
func validateConfig(v *viper.Viper, name string, r *checkReport) *Config {
	cfg, bad := decodeConfig(v, name, r)
	checkConfigValues(r, cfg, bad)
	if len(r.errors()) == 0 {
		// The list files (and logo files) are part of the configuration:
		// serve and check-config refuse a bad one alike.
		lists, err := cfg.readPolicyLists()
		if err != nil {
			key, _, _ := strings.Cut(err.Error(), ":")
			r.errorf(key, "correct the entry or the file named; serve refuses the whole configuration (and a reload keeps the old one) until then", "%v", err)
		}
		cfg.lists = lists
	}
	return cfg
}
