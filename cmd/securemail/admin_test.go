package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/syncbuf"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/storetest"
)

// adminFixture is a store with sealed messages, a read and accounts, and a
// control socket serving it as serve does.
type adminFixture struct {
	env    *rtEnv
	sealed [][]byte // the sealed messages, in order
	ids    []string
	srv    *adminServer
	log    *syncbuf.Buffer
}

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	env := newRTEnv(t)
	ctx := context.Background()
	f := &adminFixture{env: env, log: new(syncbuf.Buffer)}
	for i := range 3 {
		msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: t%d\r\nMessage-ID: <adm-%d@example.test>\r\n\r\nADMIN-MARKER-%d\r\n", rtFrom, rtRcpt, i, i, i)
		var sealed bytes.Buffer
		if err := env.filter.SealMessage(strings.NewReader(msg), &sealed, rtFrom, []string{rtRcpt}); err != nil {
			t.Fatal(err)
		}
		f.sealed = append(f.sealed, sealed.Bytes())
	}
	err := env.store.EachKey(ctx, keystore.KeyFilter{MessageID: "<adm-0@example.test>"}, func(r keystore.KeyRecord) error {
		return env.store.RecordRead(ctx, keystore.ReadEvent{KeyID: r.ID, Reader: rtRcpt, At: r.Created.Add(time.Minute), Remote: "192.0.2.7"})
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		err := env.store.EachKey(ctx, keystore.KeyFilter{MessageID: fmt.Sprintf("<adm-%d@example.test>", i)}, func(r keystore.KeyRecord) error {
			f.ids = append(f.ids, r.ID.String())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range []string{"reader@external.test", "other@external.test"} {
		if err := env.store.CreateAccount(ctx, storetest.Account(e)); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(f.log, nil))
	f.srv = f.start(t, log)
	return f
}

func (f *adminFixture) start(t *testing.T, log *slog.Logger) *adminServer {
	ln, err := listenAdmin(adminSocketPath(f.env.cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv := startAdminServer(ln, adminEnv{cfg: f.env.cfg, store: f.env.store, mk: f.env.master, filter: f.env.filter, log: log, live: true, rotateMu: &sync.Mutex{}})
	t.Cleanup(srv.Close)
	return srv
}

func (f *adminFixture) logText() string {
	return f.log.String()
}

// run runs op as the command would, and returns its output.
func (f *adminFixture) run(t *testing.T, op string, args any, in []byte) (string, error) {
	t.Helper()
	var out bytes.Buffer
	var rd *bytes.Reader
	if in != nil {
		rd = bytes.NewReader(in)
	}
	var err error
	if rd != nil {
		err = runAdmin(context.Background(), f.env.cfg, op, args, rd, &out, nil)
	} else {
		err = runAdmin(context.Background(), f.env.cfg, op, args, nil, &out, nil)
	}
	return out.String(), err
}

// TestAdminSameOutputLiveAndOffline: every read-only command prints the
// same through the socket and on the store directly.
func TestAdminSameOutputLiveAndOffline(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	cases := []struct {
		op   string
		args any
		in   []byte
		want []string
	}{
		{"keys.list", listArgs{}, nil, []string{f.ids[0], f.ids[1], f.ids[2], "<adm-1@example.test>", "live"}},
		{"keys.list", listArgs{JSON: true, Select: keySelection{Sender: strings.ToUpper(rtFrom)}}, nil, []string{`"id":"` + f.ids[2]}},
		{"keys.show", showArgs{ID: f.ids[0]}, nil, []string{"reads       1", rtRcpt + "  from 192.0.2.7", "wrapped by master key " + f.env.master.ID()}},
		{"keys.show", showArgs{MessageID: "<adm-0@example.test>", JSON: true}, nil, []string{`"remote":"192.0.2.7"`}},
		{"accounts.list", accountArgs{}, nil, []string{"other@external.test", "reader@external.test"}},
		{"accounts.list", accountArgs{JSON: true}, nil, []string{`"email":"reader@external.test"`}},
		{"accounts.show", accountArgs{Email: "Reader@External.test"}, nil, []string{"account       reader@external.test"}},
		{"open", nil, f.sealed[1], []string{"ADMIN-MARKER-1"}},
	}
	live := make([]string, len(cases))
	for i, c := range cases {
		out, err := f.run(t, c.op, c.args, c.in)
		if err != nil {
			t.Fatalf("%s live: %v", c.op, err)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s %+v: output lacks %q:\n%s", c.op, c.args, w, out)
			}
		}
		live[i] = out
	}
	if c := strings.Count(f.logText(), `msg="admin: command" who="uid `); c != len(cases) {
		t.Errorf("admin actions were not logged with the peer uid:\n%s", f.logText())
	}
	if strings.Contains(f.logText(), "ADMIN-MARKER") {
		t.Errorf("plaintext in the log:\n%s", f.logText())
	}

	f.srv.Close()
	if err := f.env.store.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		out, err := f.run(t, c.op, c.args, c.in)
		if err != nil {
			t.Fatalf("%s offline: %v", c.op, err)
		}
		if out != live[i] {
			t.Errorf("%s %+v: offline output differs from live:\nlive:\n%s\noffline:\n%s", c.op, c.args, live[i], out)
		}
	}
}

// TestAdminRevokeRace: revocations of one key and listings released
// together all succeed; the key is shredded once and opens no more, the
// others still open.
func TestAdminRevokeRace(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	const n = 12
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var out bytes.Buffer
			if i%2 == 0 {
				errs[i] = runAdmin(context.Background(), f.env.cfg, "keys.revoke", revokeArgs{Select: keySelection{IDs: []string{f.ids[1]}}}, nil, &out, nil)
			} else {
				var res countResult
				errs[i] = runAdmin(context.Background(), f.env.cfg, "keys.list", listArgs{}, nil, &out, &res)
				if errs[i] == nil && res.Count != 3 {
					errs[i] = fmt.Errorf("listed %d keys", res.Count)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if _, err := f.run(t, "open", nil, f.sealed[1]); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("open of a revoked message: %v", err)
	}
	for _, i := range []int{0, 2} {
		if out, err := f.run(t, "open", nil, f.sealed[i]); err != nil || !strings.Contains(out, fmt.Sprintf("ADMIN-MARKER-%d", i)) {
			t.Fatalf("message %d no longer opens: %v", i, err)
		}
	}
	out, err := f.run(t, "keys.show", showArgs{ID: f.ids[1]}, nil)
	if err != nil || !strings.Contains(out, "state       revoked at") || !strings.Contains(out, "data key    deleted") {
		t.Fatalf("keys show after revoke: %v\n%s", err, out)
	}
	if c := strings.Count(f.logText(), "admin: key revoked"); c != n/2 {
		t.Errorf("%d revocations logged, want %d", c, n/2)
	}
}

func TestAdminAccountsCommands(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	ctx := context.Background()
	now := time.Now()
	for range 3 {
		if _, err := f.env.store.AddFailure(ctx, "acct:reader@external.test", now, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.env.store.PutSession(ctx, keystore.Session{Digest: storetest.Digest("s"), Email: "reader@external.test", Created: now, LastSeen: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op, email, want string
	}{
		{"accounts.show", "reader@external.test", "failures      3"},
		{"accounts.unlock", "reader@external.test", "unlocked reader@external.test"},
		{"accounts.show", "reader@external.test", "failures      0"},
		{"accounts.reset", "reader@external.test", "1 session(s) ended"},
		{"accounts.show", "reader@external.test", "reset needed  true"},
		{"accounts.delete", "READER@external.test", "deleted reader@external.test"},
	}
	for _, s := range steps {
		out, err := f.run(t, s.op, accountArgs{Email: s.email}, nil)
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("%s %s: %v\n%s", s.op, s.email, err, out)
		}
	}
	if _, err := f.run(t, "accounts.show", accountArgs{Email: "reader@external.test"}, nil); err == nil || !strings.Contains(err.Error(), "no account for reader@external.test") {
		t.Fatalf("show after delete: %v", err)
	}
	if !strings.Contains(f.logText(), `msg="admin: account deleted" who="uid `) {
		t.Errorf("the delete was not logged with its peer uid:\n%s", f.logText())
	}
}

func TestAdminBackupRestoreAndOfflineOnly(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	dir := t.TempDir()
	backup := filepath.Join(dir, "keys.backup")
	cmdOut := func(args ...string) (string, error) {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--config", filepath.Join(filepath.Dir(f.env.cfg.DataDir), "securemail.yaml")))
		err := root.Execute()
		return out.String(), err
	}
	out, err := cmdOut("backup", "--to", backup)
	if err != nil || !strings.Contains(out, "3 key(s)") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", st, err)
	}
	if _, err := cmdOut("restore", "--from", backup); err == nil || !strings.Contains(err.Error(), "serve is running") {
		t.Fatalf("restore while serving: %v", err)
	}
	f.srv.Close()
	if err := f.env.store.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmdOut("restore", "--from", backup); err == nil || !strings.Contains(err.Error(), "pass --force") {
		t.Fatalf("restore over an existing database: %v", err)
	}
	// A backup that opens under another master key is refused before
	// anything is replaced.
	other := newRTEnv(t)
	var sealed bytes.Buffer
	if err := other.filter.SealMessage(strings.NewReader("Subject: x\r\n\r\nx\r\n"), &sealed, rtFrom, []string{rtRcpt}); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign.backup")
	fh, err := os.Create(foreign)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.store.Backup(context.Background(), fh); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	before, _ := os.ReadFile(keystorePath(f.env.cfg))
	if _, err := cmdOut("restore", "--from", foreign, "--force"); err == nil || !strings.Contains(err.Error(), "is wrapped under the master key") {
		t.Fatalf("restore of a foreign backup: %v", err)
	}
	if after, _ := os.ReadFile(keystorePath(f.env.cfg)); !bytes.Equal(before, after) {
		t.Fatal("a refused restore changed the key database")
	}
	out, err = cmdOut("restore", "--from", backup, "--force")
	if err != nil || !strings.Contains(out, "restored") {
		t.Fatalf("restore --force: %v\n%s", err, out)
	}
	plain, err := f.run(t, "open", nil, f.sealed[2])
	if err != nil || !strings.Contains(plain, "ADMIN-MARKER-2") {
		t.Fatalf("open after restore: %v", err)
	}
}

// TestServeRefusesForeignMasterKey: a master key that wraps none of the
// records stops serve with both ids named, unless overridden.
func TestServeRefusesForeignMasterKey(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	f.srv.Close()
	cfg := f.env.cfg
	if err := f.env.store.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cfg.Keystore.MasterKeyFile, cfg.Keystore.MasterKeyFile+".real"); err != nil {
		t.Fatal(err)
	}
	foreign, err := keystore.CreateMasterKey(cfg.Keystore.MasterKeyFile, strings.NewReader(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	err = serve(cfg, log, &reloader{cur: cfg, log: log}, serveOptions{})
	if !errors.Is(err, errMasterKeyMismatch) || !strings.Contains(err.Error(), foreign.ID()) || !strings.Contains(err.Error(), f.env.master.ID()) ||
		!strings.Contains(err.Error(), "--allow-master-key-mismatch") {
		t.Fatalf("serve with a foreign master key: %v", err)
	}
}
