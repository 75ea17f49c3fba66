package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/securemail/securemail/keystore"
)

var _ keystore.AdminStore = (*Store)(nil)

// listChunk bounds the records one read transaction of EachKey visits, so
// a listing holds no transaction open while its caller writes output.
const listChunk = 1024

// EachKey reads listChunk records per transaction and calls fn outside the
// transaction.
func (b *Store) EachKey(ctx context.Context, f keystore.KeyFilter, fn func(keystore.KeyRecord) error) error {
	var after []byte
	for {
		var chunk []keystore.KeyRecord
		var last []byte
		err := b.view(ctx, "list keys", func(tx *bolt.Tx) error {
			chunk, last = chunk[:0], nil
			keys := tx.Bucket(keysBucket)
			if keys == nil {
				return nil // a read-only view of a store that never held a key
			}
			c := keys.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for n := 0; k != nil && n < listChunk; k, v = c.Next() {
				n++
				last = bytes.Clone(k)
				if len(k) != len(keystore.KeyID{}) {
					continue
				}
				rec, err := decodeKeyRecord(keystore.KeyID(k), v)
				if err != nil {
					return err
				}
				if f.Match(rec) {
					chunk = append(chunk, rec)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, rec := range chunk {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if last == nil {
			return nil
		}
		after = last
	}
}

// modifyKey rewrites one record in its own transaction; change reports
// whether it changed rec.
func (b *Store) modifyKey(ctx context.Context, op string, id keystore.KeyID, change func(rec *keystore.KeyRecord) bool) (bool, error) {
	return b.modifyKeyThen(ctx, op, id, change, nil)
}

// modifyKeyThen is modifyKey that also runs then, when set, in the same
// transaction once the record exists.
func (b *Store) modifyKeyThen(ctx context.Context, op string, id keystore.KeyID, change func(rec *keystore.KeyRecord) bool, then func(tx *bolt.Tx) error) (bool, error) {
	changed := false
	err := b.update(ctx, op, func(tx *bolt.Tx) error {
		keys := tx.Bucket(keysBucket)
		v := keys.Get(id[:])
		if v == nil {
			return keystore.KeyNotFound(id)
		}
		rec, err := decodeKeyRecord(id, v)
		if err != nil {
			return err
		}
		if then != nil {
			if err := then(tx); err != nil {
				return err
			}
		}
		if changed = change(&rec); !changed {
			return nil
		}
		val, err := encodeKeyRecord(rec)
		if err != nil {
			return err
		}
		return keys.Put(id[:], val)
	})
	return changed, err
}

func (b *Store) ShredKey(ctx context.Context, id keystore.KeyID, at time.Time) error {
	_, err := b.modifyKeyThen(ctx, "shred key", id, func(rec *keystore.KeyRecord) bool {
		if rec.Revoked.IsZero() {
			rec.Revoked = utc(at)
		}
		rec.WrappedDEK = nil
		return true
	}, func(tx *bolt.Tx) error {
		_, err := deleteCopyEnvelopeTx(tx, id[:], at)
		return err
	})
	return err
}

func (b *Store) ExpireKey(ctx context.Context, id keystore.KeyID, at time.Time) (bool, error) {
	return b.modifyKey(ctx, "expire key", id, func(rec *keystore.KeyRecord) bool {
		if !rec.Expires.IsZero() && !rec.Expires.After(at) {
			return false
		}
		rec.Expires = utc(at)
		return true
	})
}

// MasterKeyUse decodes only the two fields it needs.
func (b *Store) MasterKeyUse(ctx context.Context) (map[string]int, error) {
	use := map[string]int{}
	err := b.view(ctx, "count master key use", func(tx *bolt.Tx) error {
		clear(use)
		keys := tx.Bucket(keysBucket)
		if keys == nil {
			return nil
		}
		return keys.ForEach(func(k, v []byte) error {
			var s struct {
				WrappedDEK  []byte `json:"wrapped_dek"`
				MasterKeyID string `json:"master_key_id"`
			}
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("key record %x is damaged: %w", k, err)
			}
			if len(s.WrappedDEK) > 0 {
				use[s.MasterKeyID]++
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return use, nil
}

// RewrapKeys walks the whole bucket once per call. Each batch is found in
// a read transaction and written in a write transaction that re-reads
// every record, so a record revoked or rewritten meanwhile is left as it
// now is.
func (b *Store) RewrapKeys(ctx context.Context, mk *keystore.MasterKey, batch int, rand io.Reader) (keystore.RewrapProgress, error) {
	if batch <= 0 {
		batch = 500
	}
	var p keystore.RewrapProgress
	current := mk.ID()
	var todo []keystore.KeyID
	flush := func() error {
		if len(todo) == 0 {
			return nil
		}
		n := 0
		err := b.update(ctx, "rewrap keys", func(tx *bolt.Tx) error {
			n = 0
			keys := tx.Bucket(keysBucket)
			for _, id := range todo {
				v := keys.Get(id[:])
				if v == nil {
					continue // swept meanwhile
				}
				rec, err := decodeKeyRecord(id, v)
				if err != nil {
					return err
				}
				if len(rec.WrappedDEK) == 0 || rec.MasterKeyID == current {
					continue // shredded or rewrapped meanwhile
				}
				dek, err := mk.Unwrap(rec)
				if err != nil {
					return fmt.Errorf("key record %s: %w", id, err)
				}
				rec.WrappedDEK, rec.MasterKeyID, err = mk.WrapKey(id, dek, rand)
				clear(dek)
				if err != nil {
					return err
				}
				val, err := encodeKeyRecord(rec)
				if err != nil {
					return err
				}
				if err := keys.Put(id[:], val); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		p.Rewrapped += n
		todo = todo[:0]
		return nil
	}
	err := b.EachKey(ctx, keystore.KeyFilter{}, func(rec keystore.KeyRecord) error {
		if len(rec.WrappedDEK) == 0 || rec.MasterKeyID == current {
			return nil
		}
		if _, err := mk.Unwrap(rec); errors.Is(err, keystore.ErrWrongMasterKey) {
			p.Unreadable++
			return nil
		}
		todo = append(todo, rec.ID)
		if len(todo) >= batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	use, uerr := b.MasterKeyUse(context.WithoutCancel(ctx))
	if uerr != nil {
		return p, errors.Join(err, uerr)
	}
	for id, n := range use {
		if id != current {
			p.Remaining += n
		}
	}
	return p, err
}

func (b *Store) EachAccount(ctx context.Context, fn func(keystore.Account) error) error {
	var accts []keystore.Account
	err := b.view(ctx, "list accounts", func(tx *bolt.Tx) error {
		accts = accts[:0]
		bk := tx.Bucket(accountsBucket)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			a, err := decodeAccount(string(k), v)
			if err != nil {
				return err
			}
			accts = append(accts, a)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, a := range accts {
		if err := fn(a); err != nil {
			return err
		}
	}
	return nil
}

// deleteSessionsOf deletes, inside tx, every session of email.
func deleteSessionsOf(tx *bolt.Tx, email string) (int, error) {
	return deleteSessionsExcept(tx, email, nil)
}

// deleteSessionsExcept deletes, inside tx, every session of email but the
// one whose key is except (nil: none is spared).
func deleteSessionsExcept(tx *bolt.Tx, email string, except []byte) (int, error) {
	return deleteMatching(tx.Bucket(sessionsBucket), func(k, v []byte) (bool, error) {
		if except != nil && bytes.Equal(k, except) {
			return false, nil
		}
		var s struct {
			Email string `json:"email"`
		}
		if err := json.Unmarshal(v, &s); err != nil {
			return false, fmt.Errorf("session %x is damaged: %w", k, err)
		}
		return s.Email == email, nil
	})
}

func (b *Store) DeleteAccount(ctx context.Context, email string) (int, error) {
	email = strings.ToLower(email)
	ended := 0
	err := b.update(ctx, "delete account", func(tx *bolt.Tx) error {
		accts := tx.Bucket(accountsBucket)
		if accts.Get([]byte(email)) == nil {
			return keystore.AccountNotFound(email)
		}
		if err := accts.Delete([]byte(email)); err != nil {
			return err
		}
		var err error
		if ended, err = deleteSessionsOf(tx, email); err != nil {
			return err
		}
		for _, p := range []keystore.CodePurpose{keystore.CodeRegister, keystore.CodeReset} {
			k, err := codeKey(p, email)
			if err != nil {
				return err
			}
			if err := tx.Bucket(codesBucket).Delete(k); err != nil {
				return err
			}
		}
		return tx.Bucket(throttleBucket).Delete([]byte("acct:" + email))
	})
	return ended, err
}

func (b *Store) RequirePasswordReset(ctx context.Context, email string) (int, error) {
	email = strings.ToLower(email)
	ended := 0
	err := b.update(ctx, "require password reset", func(tx *bolt.Tx) error {
		accts := tx.Bucket(accountsBucket)
		v := accts.Get([]byte(email))
		if v == nil {
			return keystore.AccountNotFound(email)
		}
		a, err := decodeAccount(email, v)
		if err != nil {
			return err
		}
		a.PasswordHash = ""
		val, err := json.Marshal(encodeAccount(a))
		if err != nil {
			return err
		}
		if err := accts.Put([]byte(email), val); err != nil {
			return err
		}
		ended, err = deleteSessionsOf(tx, email)
		return err
	})
	return ended, err
}

func (b *Store) DeleteThrottle(ctx context.Context, key string) error {
	return b.update(ctx, "delete throttle", func(tx *bolt.Tx) error {
		return tx.Bucket(throttleBucket).Delete([]byte(key))
	})
}

// Backup copies the file as of one read transaction (bbolt's Tx.WriteTo).
// Commits go on meanwhile; with the map reserved at open (see Open)
// they do not wait for the copy.
func (b *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	err := b.view(ctx, "backup", func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// BackupSize is the size in bytes a Backup taken now would write.
func (b *Store) BackupSize(ctx context.Context) (int64, error) {
	var n int64
	err := b.view(ctx, "backup size", func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n, err
}
