package main

import (
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/securemail/securemail/milter"
)

// reloadable are the keys a reload puts in force; every other key needs a
// restart, and a reload that changes one reports it and keeps the old
// value. A key ending in "." stands for every key below it.
var reloadable = []string{"log.level", "policy.", "branding."}

func isReloadable(key string) bool {
	for _, k := range reloadable {
		if key == k || (strings.HasSuffix(k, ".") && strings.HasPrefix(key, k)) {
			return true
		}
	}
	return false
}

// reloader re-reads the configuration file and the list files: SIGHUP
// calls reload, and so can the admin socket. A new configuration is
// refused whole when it does not load; then the one in force stays.
type reloader struct {
	load  func() (*Config, error)
	level *slog.LevelVar

	mu     sync.Mutex // one reload at a time
	cur    *Config    // the configuration in force
	filter *milter.Filter
	log    *slog.Logger
	// onReload, when set, learns about each reload (metrics).
	onReload func(ok bool)
	// hosts, when set, is the portal's host check, told the new names.
	hosts *hostCheck
	// brands, when set, is the portal's branding, told the new one.
	brands *portalBrands
}

// reloadResult is what a reload did.
type reloadResult struct {
	// NeedRestart names the changed keys that were not applied.
	NeedRestart []string
	Policy      milter.PolicyStats
	Took        time.Duration
}

// reload loads the configuration again and puts the reloadable part in
// force. Messages already past MAIL FROM finish under the policy they
// started with (milter.Filter.SetPolicy).
func (r *reloader) reload() (reloadResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	res, err := r.reloadLocked()
	res.Took = time.Since(start)
	if r.onReload != nil {
		r.onReload(err == nil)
	}
	return res, err
}

func (r *reloader) reloadLocked() (reloadResult, error) {
	next, err := r.load()
	if err != nil {
		return reloadResult{}, err
	}
	changed := keepRestartOnly(r.cur, next)
	stats, err := r.filter.SetPolicy(next.policy())
	if err != nil {
		return reloadResult{}, err
	}
	r.level.Set(next.Log.Level)
	r.cur = next
	if r.hosts != nil {
		r.hosts.set(next)
	}
	if r.brands != nil {
		r.brands.set(next)
	}
	return reloadResult{NeedRestart: changed, Policy: stats}, nil
}

// reloadAndLog runs reload and writes what happened to the log.
func (r *reloader) reloadAndLog(trigger string) (reloadResult, error) {
	res, err := r.reload()
	if err != nil {
		r.log.Error("reload refused: the configuration in force is unchanged", "trigger", trigger, "err", err)
		return res, err
	}
	if len(res.NeedRestart) > 0 {
		r.log.Warn("reload: these changes need a restart and were not applied", "trigger", trigger, "keys", strings.Join(res.NeedRestart, ","))
	}
	senders := "everyone"
	if res.Policy.Senders >= 0 {
		senders = fmt.Sprint(res.Policy.Senders)
	}
	r.log.Info("configuration reloaded", "trigger", trigger, "internal_domains", res.Policy.InternalDomains,
		"sender_entries", senders, "log_level", r.cur.Log.Level, "took", res.Took.Round(time.Microsecond))
	return res, nil
}

// keepRestartOnly copies every key of cur that needs a restart into next
// where they differ, and returns the names of those keys.
func keepRestartOnly(cur, next *Config) []string {
	var changed []string
	var walk func(prefix string, a, b reflect.Value)
	walk = func(prefix string, a, b reflect.Value) {
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name := f.Tag.Get("mapstructure")
			if name == "" || !f.IsExported() {
				continue
			}
			if strings.HasPrefix(name, ",") && f.Type.Kind() == reflect.Struct {
				// ",squash": its keys belong to the enclosing section.
				walk(prefix, a.Field(i), b.Field(i))
				continue
			}
			key := prefix + name
			if f.Type.Kind() == reflect.Struct && !leafTypes[f.Type] {
				walk(key+".", a.Field(i), b.Field(i))
				continue
			}
			if isReloadable(key) || reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
				continue
			}
			changed = append(changed, key)
			b.Field(i).Set(a.Field(i))
		}
	}
	walk("", reflect.ValueOf(cur).Elem(), reflect.ValueOf(next).Elem())
	return changed
}
