package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
)

var cmdLinkRe = regexp.MustCompile(`https://secure\.example\.test/l/([A-Za-z0-9_-]{22})`)

// TestKeysCommandsSpeakOfTheServerCopy: with portal.link_fallback on,
// keys show says whether the server keeps a copy, and keys revoke, keys
// expire and keys sweep delete it.
func TestKeysCommandsSpeakOfTheServerCopy(t *testing.T) {
	dir := t.TempDir()
	path := rtWriteConfig(t, dir)
	t.Setenv("SECUREMAIL_PORTAL_LINK_FALLBACK", "true")
	t.Setenv("SECUREMAIL_PORTAL_LINK_RETENTION", "1h")
	env := newRTEnvFrom(t, path)
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: c%d\r\nMessage-ID: <copy-%d@example.test>\r\n\r\nCOPY-MARKER-%d\r\n", rtFrom, rtRcpt, i, i, i)
		var sealed bytes.Buffer
		if err := env.filter.SealMessage(strings.NewReader(msg), &sealed, rtFrom, []string{rtRcpt}); err != nil {
			t.Fatal(err)
		}
		link := cmdLinkRe.FindStringSubmatch(sealed.String())
		if link == nil {
			t.Fatalf("no phone link in the notice with portal.link_fallback on:\n%.3000s", sealed.String())
		}
		c, err := env.store.GetCopy(ctx, keystore.LinkDigest(link[1]))
		if err != nil {
			t.Fatalf("the link's copy: %v", err)
		}
		ids = append(ids, c.KeyID.String())
	}
	ln, err := listenAdmin(adminSocketPath(env.cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv := startAdminServer(ln, adminEnv{cfg: env.cfg, store: env.store, mk: env.master, filter: env.filter,
		log: slog.New(slog.DiscardHandler), live: true, rotateMu: &sync.Mutex{}})
	t.Cleanup(srv.Close)
	run := func(op string, args any) string {
		t.Helper()
		var out bytes.Buffer
		if err := runAdmin(ctx, env.cfg, op, args, nil, &out, nil); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		return out.String()
	}
	show := func(id string) string { t.Helper(); return run("keys.show", showArgs{ID: id}) }

	if out := show(ids[0]); !strings.Contains(out, "server copy kept until ") || !strings.Contains(out, "for the link in the notice") {
		t.Fatalf("keys show of a key with a copy:\n%s", out)
	}
	if out := run("keys.show", showArgs{ID: ids[0], JSON: true}); !strings.Contains(out, `"server_copy":{"state":"kept"`) {
		t.Fatalf("keys show --json:\n%s", out)
	}

	// Revoked: the copy goes with the key.
	if out := run("keys.revoke", revokeArgs{Select: keySelection{IDs: []string{ids[1]}}}); !strings.Contains(out, "its server copy is deleted") {
		t.Fatalf("keys revoke:\n%s", out)
	}
	if out := show(ids[1]); !strings.Contains(out, "server copy deleted at ") {
		t.Fatalf("keys show after revoke:\n%s", out)
	}

	// Past the retention: shown as ended until keys sweep deletes it.
	saved := adminNow
	t.Cleanup(func() { adminNow = saved })
	later := time.Now().Add(2 * time.Hour)
	adminNow = func() time.Time { return later }
	if out := show(ids[0]); !strings.Contains(out, "server copy ended ") {
		t.Fatalf("keys show past the retention:\n%s", out)
	}
	if out := run("keys.sweep", sweepArgs{Grace: sweepGrace}); !strings.Contains(out, "deleted 2 server copies whose time or key had ended") {
		t.Fatalf("keys sweep:\n%s", out)
	}
	for _, id := range []string{ids[0], ids[2]} {
		if out := show(id); !strings.Contains(out, "server copy deleted at "+later.UTC().Format(timeFmt)) {
			t.Fatalf("keys show after the sweep:\n%s", out)
		}
	}
}

// TestKeysExpireDeletesTheServerCopy: an expired key's copy goes at once.
func TestKeysExpireDeletesTheServerCopy(t *testing.T) {
	t.Setenv("SECUREMAIL_PORTAL_LINK_FALLBACK", "true")
	env := newRTEnv(t)
	ctx := context.Background()
	var sealed bytes.Buffer
	msg := "From: <" + rtFrom + ">\r\nTo: <" + rtRcpt + ">\r\nSubject: x\r\nMessage-ID: <exp@example.test>\r\n\r\nx\r\n"
	if err := env.filter.SealMessage(strings.NewReader(msg), &sealed, rtFrom, []string{rtRcpt}); err != nil {
		t.Fatal(err)
	}
	ln, err := listenAdmin(adminSocketPath(env.cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv := startAdminServer(ln, adminEnv{cfg: env.cfg, store: env.store, mk: env.master, filter: env.filter,
		log: slog.New(slog.DiscardHandler), live: true, rotateMu: &sync.Mutex{}})
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	if err := runAdmin(ctx, env.cfg, "keys.expire", expireArgs{Before: time.Now().Add(time.Minute)}, nil, &out, nil); err != nil {
		t.Fatal(err)
	}
	var rec keystore.KeyRecord
	if err := env.store.EachKey(ctx, keystore.KeyFilter{MessageID: "<exp@example.test>"}, func(r keystore.KeyRecord) error { rec = r; return nil }); err != nil {
		t.Fatal(err)
	}
	c, err := env.store.CopyOf(ctx, rec.ID)
	if err != nil || c.Deleted.IsZero() {
		t.Fatalf("keys expire left the server copy: %+v %v\n%s", c, err, out.String())
	}
}
