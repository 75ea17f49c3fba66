package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/pgstore"
	"github.com/securemail/securemail/keystore/storetest"
)

// A primary with a synchronous standby; 8 writers create key records
// through a two-host DSN with target_session_attrs=read-write; the primary
// is killed with SIGKILL half way and the standby promoted. Every create
// that returned nil is on the new primary; every other one returned an
// error (which the milter turns into 451); writes go on after the
// promotion without any change to the store's configuration.
func TestFailoverKeepsEveryAcknowledgedRecord(t *testing.T) {
	began := time.Now()
	primary := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"wal_level": "replica", "max_wal_senders": "4"}})
	db := primary.NewDatabase(t)
	ctx := context.Background()
	setup, err := pgstore.Open(ctx, pgstore.Options{DSN: primary.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	setup.Close()
	standby := primary.StartStandby(t, "standby1")
	primary.SetSynchronous(t, "standby1")

	dsn := fmt.Sprintf("host=%s,%s port=%d,%d user=postgres dbname=%s sslmode=disable target_session_attrs=read-write",
		primary.Socket, standby.Socket, primary.Port, standby.Port, db)
	s, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn, MaxConns: 8, StatementTimeout: 2 * time.Second, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	setupTook := time.Since(began)
	const writers = 8
	var (
		next     atomic.Int64
		stop     atomic.Bool
		mu       sync.Mutex
		acked    []int
		failed   []int
		other    []error
		afterAck atomic.Int64 // acknowledged after the promotion
		promoted atomic.Bool
		wg       sync.WaitGroup
	)
	start := make(chan struct{})
	for range writers {
		wg.Go(func() {
			<-start
			for !stop.Load() {
				n := int(next.Add(1))
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := s.CreateKey(cctx, storetest.Record(n))
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, n)
					if promoted.Load() {
						afterAck.Add(1)
					}
				case errors.Is(err, keystore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
					failed = append(failed, n)
				default:
					failed = append(failed, n)
					other = append(other, err)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // as an MTA's retry would, only sooner
				}
			}
		})
	}
	close(start)
	time.Sleep(time.Second)
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	primary.Kill(t)
	killed := time.Now()
	time.Sleep(500 * time.Millisecond)
	standby.Promote(t)
	promoted.Store(true)
	promotedAfter := time.Since(killed)
	deadline := time.Now().Add(20 * time.Second)
	for afterAck.Load() < 50 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	// Read back from the new primary alone.
	check, err := pgstore.Open(ctx, pgstore.Options{DSN: standby.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	present := func(ns []int) int {
		t.Helper()
		ids := make([][]byte, len(ns))
		for i, n := range ns {
			id := storetest.Record(n).ID
			ids[i] = id[:]
		}
		var got int
		if err := check.Pool().QueryRow(ctx, "SELECT count(*) FROM keys WHERE id = ANY($1)", ids).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	lost := len(acked) - present(acked)
	committedAnyway := present(failed)
	t.Logf("timeline: setup %v, writers stopped %v after the kill", setupTook.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	t.Logf("failover: %d creates acknowledged (%d before the kill, %d after the promotion), %d failed (%d of them committed all the same), %d lost; standby promoted %v after the kill",
		len(acked), before, afterAck.Load(), len(failed), committedAnyway, lost, promotedAfter.Round(time.Millisecond))
	if lost > 0 {
		t.Errorf("%d acknowledged records are not on the new primary", lost)
	}
	if before == 0 || afterAck.Load() < 50 {
		t.Fatalf("writes did not flow: %d before the kill, %d after the promotion", before, afterAck.Load())
	}
	if len(other) > 0 {
		t.Logf("failures not marked unavailable (still errors, so still 451): %v", errors.Join(other[:min(3, len(other))]...))
	}
}
