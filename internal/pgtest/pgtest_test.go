package pgtest

import (
	"context"
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
