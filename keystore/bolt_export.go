package keystore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

var _ Exporter = (*Bolt)(nil)

// Export lists every record of the file in one read transaction, so the
// dump is one consistent view; `securemail migrate` reads it into another
// backend. fn runs inside the transaction: writers wait for no one, but
// a commit that must grow the map waits for the export to end.
func (b *Bolt) Export(ctx context.Context, fn func(Item) error) error {
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
					if len(k) != len(KeyID{}) {
						return nil
					}
					rec, err := decodeKeyRecord(KeyID(k), v)
					if err != nil {
						return err
					}
					return fn(Item{Key: &rec})
				})
			},
			func() error {
				return each(accountsBucket, func(k, v []byte) error {
					a, err := decodeAccount(string(k), v)
					if err != nil {
						return err
					}
					return fn(Item{Account: &a})
				})
			},
			func() error {
				return each(codesBucket, func(k, v []byte) error {
					var c boltCode
					if err := json.Unmarshal(v, &c); err != nil {
						return fmt.Errorf("code %q is damaged: %w", k, err)
					}
					return fn(Item{Code: &Code{Purpose: CodePurpose(c.Purpose), Email: strings.ToLower(c.Email),
						Digest: c.Digest, Expires: c.Expires, TriesLeft: c.TriesLeft}})
				})
			},
			func() error {
				return each(sessionsBucket, func(k, v []byte) error {
					s, err := decodeSession(k, v)
					if err != nil {
						return err
					}
					return fn(Item{Session: &s})
				})
			},
			func() error {
				return each(throttleBucket, func(k, v []byte) error {
					t, err := decodeThrottle(string(k), v)
					if err != nil {
						return err
					}
					return fn(Item{Throttle: &t})
				})
			},
			func() error {
				return each(limitsBucket, func(k, v []byte) error {
					var l boltLimit
					if err := json.Unmarshal(v, &l); err != nil {
						return fmt.Errorf("limit %q is damaged: %w", k, err)
					}
					return fn(Item{Limit: &Limit{Key: string(k), Start: l.Start, End: l.End, Count: l.Count}})
				})
			},
			func() error {
				reads := tx.Bucket(readsBucket)
				if reads == nil {
					return nil
				}
				return reads.ForEachBucket(func(id []byte) error {
					if len(id) != len(KeyID{}) {
						return nil
					}
					return reads.Bucket(id).ForEach(func(k, v []byte) error {
						var r boltRead
						if err := json.Unmarshal(v, &r); err != nil {
							return fmt.Errorf("read event %x/%x is damaged: %w", id, k, err)
						}
						return fn(Item{Read: &ReadEvent{KeyID: KeyID(id), Reader: r.Reader, At: r.At, Remote: r.Remote}})
					})
				})
			},
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
}
