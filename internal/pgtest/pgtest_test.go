package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartServesUnixAndTCP(t *testing.T) {
	s := Start(t, Options{TCP: true})
	db := s.NewDatabase(t)
	ctx := context.Background()
	for _, dsn := range []string{s.DSN(db), s.TCPDSN(db)} {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		var name string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil || name != db {
			t.Fatalf("%s: database %q %v", dsn, name, err)
		}
		conn.Close(ctx)
	}
}

func TestServerCPU(t *testing.T) {
	s := Start(t, Options{})
	before, err := s.CPU()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// About a second of the server's processor time.
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM generate_series(1, 5000000) a, generate_series(1, 2) b"); err != nil {
		t.Fatal(err)
	}
	after, err := s.CPU()
	if err != nil {
		t.Fatal(err)
	}
	if used := after - before; used < 100*time.Millisecond {
		t.Fatalf("server CPU went from %v to %v after a query that keeps a backend busy", before, after)
	}
}

// TestPin: after Pin, a backend that was running before and one started
// after are both allowed only the processor given.
func TestPin(t *testing.T) {
	s := Start(t, Options{})
	ctx := context.Background()
	backend := func() (*pgx.Conn, int) {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		var pid int
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return conn, pid
	}
	allowed := func(pid int) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("no Cpus_allowed_list for %d", pid)
		return ""
	}
	_, before := backend()
	if err := s.Pin("0"); err != nil {
		t.Fatal(err)
	}
	_, after := backend()
	for _, pid := range []int{before, after} {
		if got := allowed(pid); got != "0" {
			t.Errorf("backend %d may run on %q after Pin(\"0\")", pid, got)
		}
	}
}
