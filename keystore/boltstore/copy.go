package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/securemail/securemail/keystore"
)

// The server copies' buckets, made on first use so files written before
// them need no migration. Their keys and the JSON field names of boltCopy
// are the file format.
var (
	copiesBucket    = []byte("copies")     // key id -> boltCopy
	copyLinksBucket = []byte("copy_links") // link digest -> key id
	copyDataBucket  = []byte("copy_data")  // key id -> bucket of big-endian chunk number -> chunk
)

var _ keystore.CopyStore = (*Store)(nil)

// boltCopy is stored under its key id, which is not repeated here.
type boltCopy struct {
	LinkDigest []byte    `json:"link_digest"`
	Created    time.Time `json:"created"`
	Until      time.Time `json:"until"`
	Size       int64     `json:"size"`
	Deleted    time.Time `json:"deleted,omitzero"`
}

func decodeCopy(id []byte, v []byte) (keystore.ServerCopy, error) {
	var c boltCopy
	if err := json.Unmarshal(v, &c); err != nil || len(id) != len(keystore.KeyID{}) {
		return keystore.ServerCopy{}, fmt.Errorf("server copy %x is damaged: %v", id, err)
	}
	return keystore.ServerCopy{KeyID: keystore.KeyID(id), LinkDigest: c.LinkDigest, Created: c.Created, Until: c.Until, Size: c.Size, Deleted: c.Deleted}, nil
}

func putCopyMeta(tx *bolt.Tx, c keystore.ServerCopy) error {
	copies, err := tx.CreateBucketIfNotExists(copiesBucket)
	if err != nil {
		return err
	}
	val, err := json.Marshal(boltCopy{LinkDigest: c.LinkDigest, Created: c.Created, Until: c.Until, Size: c.Size, Deleted: c.Deleted})
	if err != nil {
		return err
	}
	return copies.Put(c.KeyID[:], val)
}

// putNewCopyMeta writes a new copy's record and the index from its link
// to its key id; a deletion later rewrites only the record.
func putNewCopyMeta(tx *bolt.Tx, c keystore.ServerCopy) error {
	if err := putCopyMeta(tx, c); err != nil {
		return err
	}
	links, err := tx.CreateBucketIfNotExists(copyLinksBucket)
	if err != nil {
		return err
	}
	return links.Put(c.LinkDigest, c.KeyID[:])
}

func chunkKey(seq int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(seq)) }

// PutCopy reads the envelope, then writes the description, the link and
// every chunk in the committer's next group (see Store): under load, the
// copies of concurrent messages share fsyncs with each other and with
// their key records.
func (b *Store) PutCopy(ctx context.Context, c keystore.ServerCopy, env io.Reader) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return b.commitCopy(ctx, "put server copy", keystore.KeyRecord{}, c, env)
}

// CreateKeyWithCopy hands the key record and the copy to the committer as
// one request: they share a transaction, and its fsync with the group's.
func (b *Store) CreateKeyWithCopy(ctx context.Context, rec keystore.KeyRecord, c keystore.ServerCopy, env io.Reader) error {
	if err := keystore.ValidateKeyWithCopy(rec, c); err != nil {
		return err
	}
	return b.commitCopy(ctx, "create key with server copy", rec, c, env)
}

// commitCopy reads the envelope, then writes the description, the link,
// every chunk and, when rec has an id, the key record in the committer's
// next group (see Store): under load, the copies of concurrent messages
// share fsyncs with each other and with their key records.
func (b *Store) commitCopy(ctx context.Context, op string, rec keystore.KeyRecord, c keystore.ServerCopy, env io.Reader) error {
	if err := ctx.Err(); err != nil {
		return wrapf(op, err)
	}
	if b.creates == nil {
		return wrapf(op, bolterrors.ErrDatabaseReadOnly)
	}
	c = c.Normalized()
	c.Deleted = time.Time{}
	// bbolt keeps a value until the commit, so each chunk is a copy of
	// the reused read buffer.
	var chunks [][]byte
	if err := keystore.EachCopyChunk(env, c.Size, func(_ int, chunk []byte) error {
		chunks = append(chunks, bytes.Clone(chunk))
		return nil
	}); err != nil {
		return err
	}
	req := createRequest{write: func(tx *bolt.Tx) error { return writeCopyTx(tx, c, chunks) }}
	if rec.ID != (keystore.KeyID{}) {
		rec = rec.Normalized()
		val, err := encodeKeyRecord(rec)
		if err != nil {
			return wrapf(op, err)
		}
		req.rec, req.val = rec, val
	}
	err := b.commit(ctx, req)
	if errors.Is(err, keystore.ErrKeyExists) || errors.Is(err, keystore.ErrClosed) {
		return err
	}
	return wrapf(op, err)
}

// writeCopyTx replaces id's copy with c and its chunks.
func writeCopyTx(tx *bolt.Tx, c keystore.ServerCopy, chunks [][]byte) error {
	if err := deleteCopyTx(tx, c.KeyID[:]); err != nil {
		return err
	}
	if err := putNewCopyMeta(tx, c); err != nil {
		return err
	}
	all, err := tx.CreateBucketIfNotExists(copyDataBucket)
	if err != nil {
		return err
	}
	data, err := all.CreateBucket(c.KeyID[:])
	if err != nil {
		return err
	}
	// Chunks are appended in order; a full fill wastes no page space.
	data.FillPercent = 1
	for seq, chunk := range chunks {
		if err := data.Put(chunkKey(seq), chunk); err != nil {
			return err
		}
	}
	return nil
}

func (b *Store) GetCopy(ctx context.Context, linkDigest []byte) (keystore.ServerCopy, error) {
	var c keystore.ServerCopy
	err := b.view(ctx, "read server copy", func(tx *bolt.Tx) error {
		id := get(tx, copyLinksBucket, linkDigest)
		if id == nil {
			return keystore.LinkNotFound(linkDigest)
		}
		v := get(tx, copiesBucket, id)
		if v == nil {
			return keystore.LinkNotFound(linkDigest)
		}
		var err error
		c, err = decodeCopy(id, v)
		return err
	})
	return c, err
}

func (b *Store) CopyOf(ctx context.Context, id keystore.KeyID) (keystore.ServerCopy, error) {
	var c keystore.ServerCopy
	err := b.view(ctx, "read server copy", func(tx *bolt.Tx) error {
		v := get(tx, copiesBucket, id[:])
		if v == nil {
			return keystore.CopyNotFound(id)
		}
		var err error
		c, err = decodeCopy(id[:], v)
		return err
	})
	return c, err
}

// OpenCopy reads one chunk per read transaction, so a long download holds
// no transaction open between chunks.
func (b *Store) OpenCopy(ctx context.Context, id keystore.KeyID) (io.ReadCloser, error) {
	c, err := b.CopyOf(ctx, id)
	if err != nil {
		return nil, err
	}
	if !c.Deleted.IsZero() {
		return nil, keystore.ErrCopyDeleted
	}
	chunks := int((c.Size + keystore.CopyChunk - 1) / keystore.CopyChunk)
	return &keystore.ChunkReader{Next: func(seq int) ([]byte, error) {
		if seq >= chunks {
			return nil, io.EOF
		}
		var chunk []byte
		err := b.view(ctx, "read server copy", func(tx *bolt.Tx) error {
			all := tx.Bucket(copyDataBucket)
			if all == nil || all.Bucket(id[:]) == nil {
				return keystore.ErrCopyDeleted
			}
			v := all.Bucket(id[:]).Get(chunkKey(seq))
			if v == nil {
				return fmt.Errorf("server copy %s: chunk %d missing", id, seq)
			}
			chunk = bytes.Clone(v)
			return nil
		})
		return chunk, err
	}}, nil
}

func (b *Store) DeleteCopy(ctx context.Context, id keystore.KeyID, at time.Time) (bool, error) {
	deleted := false
	err := b.update(ctx, "delete server copy", func(tx *bolt.Tx) error {
		var err error
		deleted, err = deleteCopyEnvelopeTx(tx, id[:], at)
		return err
	})
	return deleted, err
}

// deleteCopyEnvelopeTx deletes id's chunks and marks its description
// deleted at at; RevokeKey and ShredKey call it in their transaction.
func deleteCopyEnvelopeTx(tx *bolt.Tx, id []byte, at time.Time) (bool, error) {
	v := get(tx, copiesBucket, id)
	if v == nil {
		return false, nil
	}
	c, err := decodeCopy(id, v)
	if err != nil {
		return false, err
	}
	if !c.Deleted.IsZero() {
		return false, nil
	}
	if all := tx.Bucket(copyDataBucket); all != nil && all.Bucket(id) != nil {
		if err := all.DeleteBucket(id); err != nil {
			return false, err
		}
	}
	c.Deleted = utc(at)
	return true, putCopyMeta(tx, c)
}

// deleteCopyTx deletes id's copy whole: chunks, link and description.
func deleteCopyTx(tx *bolt.Tx, id []byte) error {
	v := get(tx, copiesBucket, id)
	if v == nil {
		return nil
	}
	c, err := decodeCopy(id, v)
	if err != nil {
		return err
	}
	if all := tx.Bucket(copyDataBucket); all != nil && all.Bucket(id) != nil {
		if err := all.DeleteBucket(id); err != nil {
			return err
		}
	}
	if links := tx.Bucket(copyLinksBucket); links != nil {
		if err := links.Delete(c.LinkDigest); err != nil {
			return err
		}
	}
	return tx.Bucket(copiesBucket).Delete(id)
}

// sweepCopiesOfTx deletes the copies of the key ids SweepKeys deletes, in
// its transaction.
func sweepCopiesOfTx(tx *bolt.Tx, ids [][]byte) error {
	if tx.Bucket(copiesBucket) == nil {
		return nil
	}
	for _, id := range ids {
		if err := deleteCopyTx(tx, id); err != nil {
			return err
		}
	}
	return nil
}

func (b *Store) SweepCopies(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := b.update(ctx, "sweep server copies", func(tx *bolt.Tx) error {
		n = 0
		copies := tx.Bucket(copiesBucket)
		if copies == nil {
			return nil
		}
		keys := tx.Bucket(keysBucket)
		type todo struct {
			id          []byte
			whole, kept bool
		}
		var found []todo
		err := copies.ForEach(func(k, v []byte) error {
			c, err := decodeCopy(k, v)
			if err != nil {
				return err
			}
			rv := keys.Get(k)
			if rv == nil {
				if c.Created.Before(now.Add(-keystore.CopyOrphanGrace)) {
					found = append(found, todo{bytes.Clone(k), true, c.Deleted.IsZero()})
				}
				return nil
			}
			if !c.Deleted.IsZero() {
				return nil
			}
			rec, err := decodeKeyRecord(keystore.KeyID(k), rv)
			if err != nil {
				return err
			}
			if !now.Before(c.Until) || rec.Usable(now) != nil {
				found = append(found, todo{bytes.Clone(k), false, true})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, f := range found {
			if f.whole {
				if err := deleteCopyTx(tx, f.id); err != nil {
					return err
				}
				if f.kept {
					n++
				}
				continue
			}
			deleted, err := deleteCopyEnvelopeTx(tx, f.id, now)
			if err != nil {
				return err
			}
			if deleted {
				n++
			}
		}
		return nil
	})
	return n, err
}

// copyEnvelopeTx reads c's whole envelope, for Export.
func copyEnvelopeTx(tx *bolt.Tx, c keystore.ServerCopy) ([]byte, error) {
	env := make([]byte, 0, c.Size)
	if all := tx.Bucket(copyDataBucket); all != nil && all.Bucket(c.KeyID[:]) != nil {
		err := all.Bucket(c.KeyID[:]).ForEach(func(_, v []byte) error {
			env = append(env, v...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if int64(len(env)) != c.Size {
		return nil, fmt.Errorf("server copy %s is damaged: %d of %d bytes", c.KeyID, len(env), c.Size)
	}
	return env, nil
}

// importCopy stores a dumped copy unless its key id has one.
func importCopy(tx *bolt.Tx, it keystore.CopyItem) error {
	c := it.Normalized()
	if err := c.Validate(); err != nil {
		return err
	}
	if get(tx, copiesBucket, c.KeyID[:]) != nil {
		return nil
	}
	if err := putNewCopyMeta(tx, c); err != nil {
		return err
	}
	if !c.Deleted.IsZero() {
		return nil
	}
	all, err := tx.CreateBucketIfNotExists(copyDataBucket)
	if err != nil {
		return err
	}
	data, err := all.CreateBucketIfNotExists(c.KeyID[:])
	if err != nil {
		return err
	}
	return keystore.EachCopyChunk(bytes.NewReader(it.Envelope), c.Size, func(seq int, chunk []byte) error {
		return data.Put(chunkKey(seq), bytes.Clone(chunk))
	})
}
