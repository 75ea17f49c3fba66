package pgtest

import (
	"context"
	"testing"

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
