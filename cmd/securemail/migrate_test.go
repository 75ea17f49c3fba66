package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/pgstore"
	"github.com/securemail/securemail/keystore/storetest"
	"github.com/securemail/securemail/portal"
)

// A bbolt store with 10 000 key records, 10 000 accounts and 10 000
// sessions, and some messages sealed through the real filter, is migrated
// by the command, after a first attempt that stopped part way, and then
// once more: every message opens from PostgreSQL, every account's password
// verifies as at sign-in, every session is found, and nothing is doubled.
// Then the portal runs on the PostgreSQL store, and over HTTP the
// recipient signs in with the account made before the migration and reads
// a message sealed before it.
func TestMigrateToPostgres(t *testing.T) {
	const n = 10000
	ctx := context.Background()
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"fsync": "off"}})
	dsn := srv.DSN(srv.NewDatabase(t))
	cfgPath := rtWriteConfig(t, t.TempDir())
	e := newRTEnvFrom(t, cfgPath)
	bolt := e.store.(*boltstore.Store)

	// Messages sealed by the filter, as the milter seals them.
	type sealedMsg struct{ plain, sealed []byte }
	var msgs []sealedMsg
	for i := range 20 {
		plain := []byte(fmt.Sprintf("From: zoe@example.test\r\nTo: alice@external.test\r\nSubject: [encrypt] %d\r\n\r\nMIGRATE-%d\r\n", i, i))
		var sealed bytes.Buffer
		if err := e.filter.SealMessage(bytes.NewReader(plain), &sealed, rtFrom, []string{rtRcpt}); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, sealedMsg{plain, sealed.Bytes()})
	}

	// Key records wrapped under the real master key, accounts with real
	// argon2id hashes (cheap parameters) and sessions, written in bulk.
	hasher := portal.NewHasher(portal.Argon2Params{Time: 1, MemoryKiB: 8, Threads: 1}, 4)
	password := func(i int) string { return fmt.Sprintf("correct horse %d battery", i) }
	deks := make(map[keystore.KeyID][]byte, n)
	items := make([]keystore.Item, 3*n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				rec := storetest.Record(100 + i)
				rec.Created = time.Now().Add(-time.Hour)
				rec.Expires = rec.Created.Add(90 * 24 * time.Hour)
				dek := make([]byte, 32)
				rand.Read(dek)
				var err error
				if rec.WrappedDEK, rec.MasterKeyID, err = e.master.WrapKey(rec.ID, dek, rand.Reader); err != nil {
					errs <- err
					return
				}
				email := fmt.Sprintf("reader%d@external.test", i)
				phc, err := hasher.Hash(ctx, portal.NormalizePassword(password(i)))
				if err != nil {
					errs <- err
					return
				}
				a := storetest.Account(email)
				a.PasswordHash = phc
				ss := keystore.Session{Digest: storetest.Digest(fmt.Sprint("cookie", i)), Email: email, Stage: "authenticated",
					Created: rec.Created, LastSeen: rec.Created, Expires: rec.Created.Add(8 * time.Hour)}
				items[3*i], items[3*i+1], items[3*i+2] = keystore.Item{Key: &rec}, keystore.Item{Account: &a}, keystore.Item{Session: &ss}
				mu.Lock()
				deks[rec.ID] = dek
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 0; i < len(items); i += 3000 {
		if err := bolt.Import(ctx, items[i:min(i+3000, len(items))]); err != nil {
			t.Fatal(err)
		}
	}
	// The recipient of the sealed messages has an account too, with the
	// argon2id hash the portal wrote at registration.
	recipient := storetest.Account(rtRcpt)
	phc, err := hasher.Hash(ctx, portal.NormalizePassword(migratePassword))
	if err != nil {
		t.Fatal(err)
	}
	recipient.PasswordHash = phc
	if err := bolt.CreateAccount(ctx, recipient); err != nil {
		t.Fatal(err)
	}
	if err := bolt.Close(); err != nil { // serve is stopped before a migration
		t.Fatal(err)
	}

	// A first attempt that stopped after a quarter of the records.
	first, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Import(ctx, items[:len(items)/4]); err != nil {
		t.Fatal(err)
	}
	first.Close()

	for run := range 2 {
		var out bytes.Buffer
		root := newRootCommand()
		root.SetOut(&out)
		root.SetArgs([]string{"--config", cfgPath, "migrate", "--to", "postgres", "--dsn", dsn})
		began := time.Now()
		if err := root.Execute(); err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		t.Logf("migrate run %d took %v: %s", run+1, time.Since(began).Round(time.Millisecond), strings.SplitN(out.String(), "\n", 2)[0])
		want := fmt.Sprintf("%d key records, %d accounts, 0 codes, %d sessions", n+len(msgs), n+1, n)
		if !strings.Contains(out.String(), want) {
			t.Fatalf("run %d said %q, want it to say %q", run+1, out.String(), want)
		}
	}

	pg, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	for table, want := range map[string]int{"keys": n + len(msgs), "accounts": n + 1, "sessions": n} {
		var got int
		if err := pg.Pool().QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&got); err != nil || got != want {
			t.Fatalf("%s: %d rows (%v), want %d", table, got, err, want)
		}
	}
	// Sizing for docs/scaling.md: the keys table with its index, per record.
	var perKey int64
	if err := pg.Pool().QueryRow(ctx, "SELECT pg_total_relation_size('keys') / count(*) FROM keys").Scan(&perKey); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL keys table with indexes: %d bytes per key record", perKey)
	for i, m := range msgs {
		plain, _, err := openSealed(context.Background(), bytes.NewReader(m.sealed), pg, e.master, time.Now())
		if err != nil || !bytes.Equal(plain, m.plain) {
			t.Fatalf("sealed message %d from PostgreSQL: %v", i, err)
		}
	}
	opened := 0
	err = pg.EachKey(ctx, keystore.KeyFilter{}, func(rec keystore.KeyRecord) error {
		want, ok := deks[rec.ID]
		if !ok {
			return nil // one of the sealed messages, checked above
		}
		if err := rec.Usable(time.Now()); err != nil {
			return fmt.Errorf("key %s: %w", rec.ID, err)
		}
		dek, err := e.master.Unwrap(rec)
		if err != nil || !bytes.Equal(dek, want) {
			return fmt.Errorf("key %s does not unwrap to its data key: %v", rec.ID, err)
		}
		opened++
		return nil
	})
	if err != nil || opened != n {
		t.Fatalf("%d of %d keys open from PostgreSQL: %v", opened, n, err)
	}
	signedIn := 0
	err = pg.EachAccount(ctx, func(a keystore.Account) error {
		var i int
		if a.Email == rtRcpt {
			return nil // signs in over HTTP below
		}
		if _, err := fmt.Sscanf(a.Email, "reader%d@external.test", &i); err != nil {
			return err
		}
		ok, err := hasher.Verify(ctx, a.PasswordHash, portal.NormalizePassword(password(i)))
		if err != nil || !ok {
			return fmt.Errorf("%s does not sign in: %v", a.Email, err)
		}
		ss, err := pg.Session(ctx, storetest.Digest(fmt.Sprint("cookie", i)))
		if err != nil || ss.Email != a.Email {
			return fmt.Errorf("%s's session: %+v %v", a.Email, ss, err)
		}
		signedIn++
		return nil
	})
	if err != nil || signedIn != n {
		t.Fatalf("%d of %d accounts sign in from PostgreSQL: %v", signedIn, n, err)
	}
	pg.Close()

	migrateReadOverHTTP(t, filepath.Dir(cfgPath), dsn, msgs[3].sealed, "MIGRATE-3")
}

const migratePassword = "migrated horse battery staple"

// migrateReadOverHTTP starts the portal as serve does on the migrated
// PostgreSQL store (its configuration names backend postgres and the DSN)
// and walks a browser over real HTTP: the sealed message's form posted to
// /open, the address, a wrong password refused, the right one accepted,
// and the read page showing marker.
func migrateReadOverHTTP(t *testing.T, dir, dsn string, sealed []byte, marker string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	defer srv.Close()
	cfgPath := filepath.Join(dir, "securemail-postgres.yaml")
	cfgText := fmt.Sprintf(`data_dir: %[1]s/data
log:
  level: warn
portal:
  url: http://%[2]s
  argon2:
    time: 1
    memory: 1MiB
    threads: 1
policy:
  internal_domains: [example.test]
  max_message_size: 20MiB
  subject_tag: %[3]q
keystore:
  master_key_file: %[1]s/master.key
  backend: postgres
  postgres:
    dsn: %[4]q
`, dir, srv.Listener.Addr(), rtTag, dsn)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	mk, store, err := openKeys(cfg, log, true)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, ok := store.(*pgstore.Store); !ok {
		t.Fatalf("the portal's store is a %T, want PostgreSQL's", store)
	}
	web, err := newPortal(cfg, store, mk, log)
	if err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	srv.Config.Handler = web
	srv.Start()

	sealedPath := filepath.Join(dir, "migrated.sealed.eml")
	if err := os.WriteFile(sealedPath, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	form := prssWriteForm(t, sealedPath, filepath.Join(dir, "migrated.form"), prssMessage{})
	c := newPrssClient(t, srv.URL)
	token := c.open(form)
	if r := c.get("/m/" + token); r.status != http.StatusOK || !strings.Contains(r.body, `action="/email"`) {
		t.Fatalf("GET /m/{token} before sign-in: status %d, want 200 with the address form\n%.2000s", r.status, r.body)
	}
	c.see(c.post("/email", url.Values{"email": {rtRcpt}, "token": {token}}), "POST /email", "/signin")
	if r := c.post("/signin", url.Values{"password": {"not the " + migratePassword}}); r.status != http.StatusUnauthorized {
		t.Fatalf("POST /signin with a wrong password: status %d, want 401\n%.2000s", r.status, r.body)
	}
	c.see(c.post("/signin", url.Values{"password": {migratePassword}}), "POST /signin", "/m/"+token)
	r := c.get("/m/" + token)
	if r.status != http.StatusOK || !strings.Contains(r.body, marker) {
		t.Fatalf("GET /m/{token} signed in: status %d, want 200 with %q\n%.3000s", r.status, marker, r.body)
	}
	t.Logf("over HTTP on PostgreSQL: %s signed in with the account made on bbolt and read a message sealed before the migration", rtRcpt)
}

func TestMigrateRefusesWhileServeHoldsTheFile(t *testing.T) {
	cfgPath := rtWriteConfig(t, t.TempDir())
	newRTEnvFrom(t, cfgPath) // holds keys.db open, as serve does
	root := newRootCommand()
	root.SetArgs([]string{"--config", cfgPath, "migrate", "--to", "postgres", "--dsn", "host=/nonexistent"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("migrate while serve runs: %v", err)
	}
	root = newRootCommand()
	root.SetArgs([]string{"--config", cfgPath, "migrate", "--to", "mysql"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "--to must be postgres") {
		t.Fatalf("migrate --to mysql: %v", err)
	}
}
