package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/securemail/securemail/keystore"
)

var _ keystore.Exporter = (*Store)(nil)

// Export lists every record of the file in one read transaction, so the
// dump is one consistent view; `securemail migrate` reads it into another
// backend. fn runs inside the transaction: writers wait for no one, but
// a commit that must grow the map waits for the export to end.
func (b *Store) Export(ctx context.Context, fn func(keystore.Item) error) error {
	return b.view(ctx, "export", func(tx *bolt.Tx) error {
		each := func(bucket []byte, f func(k, v []byte) error) error {
			bk := tx.Bucket(bucket)
			if bk == nil {
				return nil
			}
			return bk.ForEach(func(k, v []byte) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				return f(k, v)
			})
		}
		steps := []func() error{
			func() error {
				return each(keysBucket, func(k, v []byte) error {
					if len(k) != len(keystore.KeyID{}) {
						return nil
					}
					rec, err := decodeKeyRecord(keystore.KeyID(k), v)
					if err != nil {
						return err
					}
					return fn(keystore.Item{Key: &rec})
				})
			},
			func() error {
				return each(accountsBucket, func(k, v []byte) error {
					a, err := decodeAccount(string(k), v)
					if err != nil {
						return err
					}
					return fn(keystore.Item{Account: &a})
				})
			},
			func() error {
				return each(codesBucket, func(k, v []byte) error {
					var c boltCode
					if err := json.Unmarshal(v, &c); err != nil {
						return fmt.Errorf("code %q is damaged: %w", k, err)
					}
					return fn(keystore.Item{Code: &keystore.Code{Purpose: keystore.CodePurpose(c.Purpose), Email: strings.ToLower(c.Email),
						Digest: c.Digest, Expires: c.Expires, TriesLeft: c.TriesLeft}})
				})
			},
			func() error {
				return each(sessionsBucket, func(k, v []byte) error {
					s, err := decodeSession(k, v)
					if err != nil {
						return err
					}
					return fn(keystore.Item{Session: &s})
				})
			},
			func() error {
				return each(throttleBucket, func(k, v []byte) error {
					t, err := decodeThrottle(string(k), v)
					if err != nil {
						return err
					}
					return fn(keystore.Item{Throttle: &t})
				})
			},
			func() error {
				return each(limitsBucket, func(k, v []byte) error {
					var l boltLimit
					if err := json.Unmarshal(v, &l); err != nil {
						return fmt.Errorf("limit %q is damaged: %w", k, err)
					}
					return fn(keystore.Item{Limit: &keystore.Limit{Key: string(k), Start: l.Start, End: l.End, Count: l.Count}})
				})
			},
			func() error {
				reads := tx.Bucket(readsBucket)
				if reads == nil {
					return nil
				}
				return reads.ForEachBucket(func(id []byte) error {
					if len(id) != len(keystore.KeyID{}) {
						return nil
					}
					return reads.Bucket(id).ForEach(func(k, v []byte) error {
						var r boltRead
						if err := json.Unmarshal(v, &r); err != nil {
							return fmt.Errorf("read event %x/%x is damaged: %w", id, k, err)
						}
						return fn(keystore.Item{Read: &keystore.ReadEvent{KeyID: keystore.KeyID(id), Reader: r.Reader, At: r.At, Remote: r.Remote}})
					})
				})
			},
		}
		steps = append(steps, func() error {
			return each(copiesBucket, func(k, v []byte) error {
				c, err := decodeCopy(k, v)
				if err != nil {
					return err
				}
				it := keystore.CopyItem{ServerCopy: c}
				if c.Deleted.IsZero() {
					if it.Envelope, err = copyEnvelopeTx(tx, c); err != nil {
						return err
					}
				}
				return fn(keystore.Item{Copy: &it})
			})
		})
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
}

var _ keystore.Importer = (*Store)(nil)

// Import writes items in one transaction (one fsync), skipping every
// record whose key exists, so it can run again after an interruption.
// It is how a dump is restored into a bbolt file, and how tests fill one
// quickly.
func (b *Store) Import(ctx context.Context, items []keystore.Item) error {
	return b.update(ctx, "import", func(tx *bolt.Tx) error {
		putNew := func(bucket, k []byte, v any) error {
			bk, err := tx.CreateBucketIfNotExists(bucket)
			if err != nil || bk.Get(k) != nil {
				return err
			}
			val, err := json.Marshal(v)
			if err != nil {
				return err
			}
			return bk.Put(k, val)
		}
		for _, it := range items {
			var err error
			switch {
			case it.Key != nil:
				// No validate: a shredded record has no wrapped key.
				rec := it.Key.Normalized()
				if rec.ID == (keystore.KeyID{}) {
					err = errors.New("key record has no id")
				} else if tx.Bucket(keysBucket).Get(rec.ID[:]) == nil {
					var val []byte
					if val, err = encodeKeyRecord(rec); err == nil {
						err = tx.Bucket(keysBucket).Put(rec.ID[:], val)
					}
				}
			case it.Account != nil:
				a := encodeAccount(*it.Account)
				err = putNew(accountsBucket, []byte(a.Email), a)
			case it.Code != nil:
				c := it.Code
				var k []byte
				if k, err = codeKey(c.Purpose, c.Email); err == nil {
					err = putNew(codesBucket, k, boltCode{Purpose: string(c.Purpose), Email: strings.ToLower(c.Email),
						Digest: c.Digest, Expires: utc(c.Expires), TriesLeft: c.TriesLeft})
				}
			case it.Session != nil:
				s := it.Session
				err = putNew(sessionsBucket, s.Digest, boltSession{Email: strings.ToLower(s.Email), Stage: s.Stage, Token: s.Token,
					Created: utc(s.Created), LastSeen: utc(s.LastSeen), Expires: utc(s.Expires)})
			case it.Throttle != nil:
				t := it.Throttle
				err = putNew(throttleBucket, []byte(t.Key), boltThrottle{Consecutive: t.Consecutive, LastFailure: utc(t.LastFailure),
					WindowStart: utc(t.WindowStart), InWindow: t.InWindow})
			case it.Limit != nil:
				l := it.Limit
				err = putNew(limitsBucket, []byte(l.Key), boltLimit{Start: utc(l.Start), End: utc(l.End), Count: l.Count})
			case it.Read != nil:
				err = importRead(tx, *it.Read)
			case it.Copy != nil:
				err = importCopy(tx, *it.Copy)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// importRead appends ev to its trail unless an equal event is there.
func importRead(tx *bolt.Tx, ev keystore.ReadEvent) error {
	trail, err := tx.Bucket(readsBucket).CreateBucketIfNotExists(ev.KeyID[:])
	if err != nil {
		return err
	}
	want := boltRead{Reader: strings.ToLower(ev.Reader), At: utc(ev.At), Remote: ev.Remote}
	found := errors.New("found")
	err = trail.ForEach(func(_, v []byte) error {
		var r boltRead
		if json.Unmarshal(v, &r) == nil && r.Reader == want.Reader && r.At.Equal(want.At) && r.Remote == want.Remote {
			return found
		}
		return nil
	})
	if errors.Is(err, found) {
		return nil
	}
	if err != nil {
		return err
	}
	seq, err := trail.NextSequence()
	if err != nil {
		return err
	}
	val, err := json.Marshal(want)
	if err != nil {
		return err
	}
	return trail.Put(binary.BigEndian.AppendUint64(nil, seq), val)
}
