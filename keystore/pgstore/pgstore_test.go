package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/pgstore"
	"github.com/securemail/securemail/keystore/storetest"
)

// fastServer is what the contract tests run on: a real server, without
// fsync, since they test what the server answers, not what survives a
// power cut (the benchmarks run with fsync on).
var fastServer = pgtest.Options{Settings: map[string]string{"fsync": "off", "full_page_writes": "off"}}

// openDB opens a store on a fresh database of a server started for t.
func openDB(t *testing.T, srv *pgtest.Server, opts pgstore.Options) *pgstore.Store {
	t.Helper()
	opts.DSN = srv.DSN(srv.NewDatabase(t))
	s, err := pgstore.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openEmptied opens a store on db after emptying every table: the suites'
// subtests run one after another, and emptying takes milliseconds where a
// new database takes a second on a busy machine.
func openEmptied(t *testing.T, srv *pgtest.Server, db string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: srv.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Pool().Exec(context.Background(),
		"TRUNCATE keys, accounts, codes, sessions, throttles, limits, reads, copies, copy_chunks RESTART IDENTITY"); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := pgtest.Start(t, fastServer)
	db, other := srv.NewDatabase(t), srv.NewDatabase(t)
	t.Run("Keys", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) keystore.KeyStore { return openEmptied(t, srv, db) })
	})
	t.Run("Portal", func(t *testing.T) {
		storetest.RunPortal(t, func(t *testing.T) keystore.PortalStore { return openEmptied(t, srv, db) })
	})
	t.Run("Admin", func(t *testing.T) {
		storetest.RunAdmin(t, func(t *testing.T) keystore.Store { return openEmptied(t, srv, db) })
	})
	t.Run("Copies", func(t *testing.T) {
		storetest.RunCopies(t, func(t *testing.T) keystore.Store { return openEmptied(t, srv, db) })
	})
	t.Run("Dump", func(t *testing.T) {
		// RunDump holds two stores at once: a source and a target.
		n := 0
		storetest.RunDump(t, func(t *testing.T) storetest.DumpStore {
			n++
			if n%2 == 0 {
				return openEmptied(t, srv, other)
			}
			return openEmptied(t, srv, db)
		})
	})
}

func TestBehaviour(t *testing.T) {
	srv := pgtest.Start(t, fastServer)
	ctx := context.Background()

	// Hosts starting together against an empty database: the advisory
	// lock lets one migrate while the others wait, then find the schema.
	t.Run("ConcurrentStartsMigrateOnce", func(t *testing.T) {
		dsn := srv.DSN(srv.NewDatabase(t))
		const hosts = 6
		stores := make([]*pgstore.Store, hosts)
		errs := make([]error, hosts)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				stores[i], errs[i] = pgstore.Open(ctx, pgstore.Options{DSN: dsn, MaxConns: 2})
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("host %d: %v", i, err)
			}
			defer stores[i].Close()
		}
		v, err := stores[0].DatabaseSchemaVersion(ctx)
		if err != nil || v != pgstore.SchemaVersion() {
			t.Fatalf("schema version %d %v, want %d", v, err, pgstore.SchemaVersion())
		}
		// Every host sees what another wrote.
		if err := stores[1].CreateKey(ctx, storetest.Record(1)); err != nil {
			t.Fatal(err)
		}
		if _, err := stores[hosts-1].Key(ctx, storetest.Record(1).ID); err != nil {
			t.Fatalf("another host: %v", err)
		}
	})

	t.Run("NewerSchemaRefused", func(t *testing.T) {
		db := srv.NewDatabase(t)
		s, err := pgstore.Open(ctx, pgstore.Options{DSN: srv.DSN(db)})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		srv.Exec(t, db, "INSERT INTO securemail_schema (version, name) VALUES (9999, 'from the future')")
		if _, err := pgstore.Open(ctx, pgstore.Options{DSN: srv.DSN(db)}); err == nil {
			t.Fatal("opened a database with a newer schema")
		}
	})

	// Two hosts sweeping at once: one sweeps, the other finds the lock
	// taken and returns at once; the records are deleted once.
	t.Run("SweepOneHostAtATime", func(t *testing.T) {
		dsn := srv.DSN(srv.NewDatabase(t))
		a, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		const n = 300
		for i := range n {
			rec := storetest.Record(i)
			rec.Expires = rec.Created.Add(time.Minute)
			if err := a.CreateKey(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		// Hold the sweep lock as another host mid-sweep would.
		conn, err := b.Pool().Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(0x5ec0e3a1_00000002)); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if got, err := a.SweepKeys(ctx, storetest.Record(0).Created.Add(time.Hour)); err != nil || got != 0 {
			t.Fatalf("sweep while another host sweeps: %d %v, want 0 at once", got, err)
		}
		if waited := time.Since(began); waited > 2*time.Second {
			t.Fatalf("the sweep waited %v for the other host", waited)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		conn.Release()
		var total int
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, s := range []*pgstore.Store{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got, err := s.SweepKeys(ctx, storetest.Record(0).Created.Add(time.Hour))
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += got
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		if total != n {
			t.Fatalf("concurrent sweeps deleted %d in total, want %d", total, n)
		}
	})

	// A create retried after a failover whose first attempt committed:
	// the same record succeeds, nothing is duplicated.
	t.Run("RetriedCreateIsIdempotent", func(t *testing.T) {
		s := openDB(t, srv, pgstore.Options{})
		rec := storetest.Record(7)
		errs := make([]error, 16)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); <-start; errs[i] = s.CreateKey(ctx, rec) }()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("create %d: %v", i, err)
			}
		}
		var n int
		if err := s.Pool().QueryRow(ctx, "SELECT count(*) FROM keys").Scan(&n); err != nil || n != 1 {
			t.Fatalf("%d rows (%v), want 1", n, err)
		}
	})

	t.Run("BackupIsAConsistentDump", func(t *testing.T) {
		s := openDB(t, srv, pgstore.Options{})
		storetest.Fill(t, s, 5)
		var buf bytes.Buffer
		n, err := s.Backup(ctx, &buf)
		if err != nil || n != int64(buf.Len()) || bytes.Count(buf.Bytes(), []byte("\n")) != 5*8 {
			t.Fatalf("backup: %d bytes, %d lines, %v", n, bytes.Count(buf.Bytes(), []byte("\n")), err)
		}
	})

	// A statement that outlives keystore.postgres.statement_timeout fails
	// as unavailable, so the milter answers 451 instead of hanging.
	t.Run("StatementTimeout", func(t *testing.T) {
		s := openDB(t, srv, pgstore.Options{StatementTimeout: 200 * time.Millisecond})
		conn, err := s.Pool().Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		// Another session holds the row's lock: the insert waits.
		if _, err := tx.Exec(ctx, "LOCK TABLE keys IN EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		err = s.CreateKey(ctx, storetest.Record(1))
		if !errors.Is(err, keystore.ErrUnavailable) || time.Since(began) > 3*time.Second {
			t.Fatalf("blocked create: %v after %v, want ErrUnavailable after about 200ms", err, time.Since(began))
		}
	})
}

// TestUnreachable needs no server: nothing listens at the DSN, so Open
// fails, fast, with an error that says the store is unavailable.
func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	began := time.Now()
	_, err := pgstore.Open(context.Background(), pgstore.Options{
		DSN:            "host=" + dir + " port=1 user=nobody dbname=none sslmode=disable",
		ConnectTimeout: time.Second,
	})
	if !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("open of a database that is not there: %v, want ErrUnavailable", err)
	}
	if time.Since(began) > 5*time.Second {
		t.Fatalf("took %v", time.Since(began))
	}
	if _, err := pgstore.Open(context.Background(), pgstore.Options{DSN: "host='unterminated password=secret"}); err == nil ||
		bytes.Contains([]byte(err.Error()), []byte("secret")) {
		t.Fatalf("bad DSN: %v (must not quote the DSN)", err)
	}
}
