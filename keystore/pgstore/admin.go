package pgstore

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/securemail/securemail/keystore"
)

// EachAccount reads the accounts in address order, listChunk per query.
func (s *Store) EachAccount(ctx context.Context, fn func(keystore.Account) error) error {
	after := ""
	for {
		if err := begin(ctx, "list accounts"); err != nil {
			return err
		}
		rows, err := s.pool.Query(ctx, "SELECT "+accountColumns+" FROM accounts WHERE email > $1 ORDER BY email LIMIT $2", after, listChunk)
		if err != nil {
			return wrap("list accounts", err)
		}
		chunk, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.Account, error) { return scanAccount(row) })
		if err != nil {
			return wrap("list accounts", err)
		}
		for _, a := range chunk {
			if err := fn(a); err != nil {
				return err
			}
		}
		if len(chunk) < listChunk {
			return nil
		}
		after = chunk[len(chunk)-1].Email
	}
}

// DeleteAccount deletes the account row first: of concurrent erasures of
// one address, the one whose DELETE removes the row goes on, and the
// others, having waited for its lock, find nothing.
func (s *Store) DeleteAccount(ctx context.Context, email string) (int, error) {
	email = strings.ToLower(email)
	if err := begin(ctx, "delete account"); err != nil {
		return 0, err
	}
	ended := 0
	errNone := errors.New("no account")
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM accounts WHERE email = $1", email)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errNone
		}
		tag, err = tx.Exec(ctx, "DELETE FROM sessions WHERE email = $1", email)
		if err != nil {
			return err
		}
		ended = int(tag.RowsAffected())
		if _, err := tx.Exec(ctx, "DELETE FROM codes WHERE email = $1", email); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM throttles WHERE key = $1", "acct:"+email)
		return err
	})
	if errors.Is(err, errNone) {
		return 0, keystore.AccountNotFound(email)
	}
	if err != nil {
		return 0, wrap("delete account", err)
	}
	return ended, nil
}

func (s *Store) RequirePasswordReset(ctx context.Context, email string) (int, error) {
	email = strings.ToLower(email)
	if err := begin(ctx, "require password reset"); err != nil {
		return 0, err
	}
	ended := 0
	errNone := errors.New("no account")
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE accounts SET password_hash = '' WHERE email = $1", email)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errNone
		}
		tag, err = tx.Exec(ctx, "DELETE FROM sessions WHERE email = $1", email)
		ended = int(tag.RowsAffected())
		return err
	})
	if errors.Is(err, errNone) {
		return 0, keystore.AccountNotFound(email)
	}
	if err != nil {
		return 0, wrap("require password reset", err)
	}
	return ended, nil
}

// Backup writes a dump of the whole database as of one transaction (see
// Export). It is what `securemail backup` writes for this backend; a
// database's disaster recovery is pg_dump or a base backup with WAL.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	return keystore.WriteDump(ctx, w, s)
}
