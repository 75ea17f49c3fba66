package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	keysBucket = []byte("keys")
	metaBucket = []byte("meta")
	schemaKey  = []byte("schema")
)

const boltSchema = "1"

// BoltOptions tunes the bbolt backend. The zero value is usable.
type BoltOptions struct {
	// LockTimeout bounds the wait for the file lock, so a second process
	// fails fast instead of hanging. Default 1 s.
	LockTimeout time.Duration
	// MaxBatchSize is how many concurrent CreateKey calls may share one
	// commit (one fsync). Default 64.
	MaxBatchSize int
	// MaxBatchDelay is how long a commit waits for company. Default 2 ms.
	MaxBatchDelay time.Duration
	// ReadOnly opens the file with a shared lock, for offline tools.
	ReadOnly bool
}

// Bolt is the embedded bbolt backend.
type Bolt struct {
	db *bolt.DB
}

var _ KeyStore = (*Bolt)(nil)

// ErrLocked means another process holds the database.
var ErrLocked = errors.New("keystore: database is in use by another process (is securemail serve running?)")

// OpenBolt opens or creates the database file at path.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = 64
	}
	if opts.MaxBatchDelay <= 0 {
		opts.MaxBatchDelay = 2 * time.Millisecond
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, wrapf("open", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, ErrLocked
	}
	if err != nil {
		return nil, wrapf("open", err)
	}
	db.MaxBatchSize = opts.MaxBatchSize
	db.MaxBatchDelay = opts.MaxBatchDelay
	if !opts.ReadOnly {
		err = db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(metaBucket)
			if err != nil {
				return err
			}
			if v := meta.Get(schemaKey); v != nil && string(v) != boltSchema {
				return fmt.Errorf("database schema %q, this version knows %q", v, boltSchema)
			}
			if err := meta.Put(schemaKey, []byte(boltSchema)); err != nil {
				return err
			}
			_, err = tx.CreateBucketIfNotExists(keysBucket)
			return err
		})
		if err != nil {
			db.Close()
			return nil, wrapf("initialise", err)
		}
	}
	return &Bolt{db: db}, nil
}

// boltKeyRecord is the stored form; its field names are the file format.
type boltKeyRecord struct {
	WrappedDEK  []byte    `json:"wrapped_dek"`
	MasterKeyID string    `json:"master_key_id"`
	Sender      string    `json:"sender"`
	Recipients  []string  `json:"recipients"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
	Revoked     time.Time `json:"revoked"`
	MessageID   string    `json:"message_id"`
	Size        int64     `json:"size"`
}

func encodeKeyRecord(r KeyRecord) ([]byte, error) {
	return json.Marshal(boltKeyRecord{
		WrappedDEK: r.WrappedDEK, MasterKeyID: r.MasterKeyID, Sender: r.Sender,
		Recipients: r.Recipients, Created: r.Created, Expires: r.Expires,
		Revoked: r.Revoked, MessageID: r.MessageID, Size: r.Size,
	})
}

func decodeKeyRecord(id KeyID, b []byte) (KeyRecord, error) {
	var s boltKeyRecord
	if err := json.Unmarshal(b, &s); err != nil {
		return KeyRecord{}, fmt.Errorf("key record %s is damaged: %w", id, err)
	}
	return KeyRecord{
		ID: id, WrappedDEK: s.WrappedDEK, MasterKeyID: s.MasterKeyID, Sender: s.Sender,
		Recipients: s.Recipients, Created: s.Created, Expires: s.Expires,
		Revoked: s.Revoked, MessageID: s.MessageID, Size: s.Size,
	}, nil
}

// CreateKey commits rec in a batch shared with concurrent callers; it
// returns once the batch is fsynced.
func (b *Bolt) CreateKey(ctx context.Context, rec KeyRecord) error {
	if err := rec.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return wrapf("create key", err)
	}
	rec = rec.normalized()
	val, err := encodeKeyRecord(rec)
	if err != nil {
		return wrapf("create key", err)
	}
	// Batch may run this function more than once; it only reads and puts.
	err = b.db.Batch(func(tx *bolt.Tx) error {
		keys := tx.Bucket(keysBucket)
		if old := keys.Get(rec.ID[:]); old != nil {
			prev, err := decodeKeyRecord(rec.ID, old)
			if err != nil {
				return err
			}
			if prev.equal(rec) {
				return nil
			}
			return ErrKeyExists
		}
		return keys.Put(rec.ID[:], val)
	})
	if errors.Is(err, ErrKeyExists) {
		return err
	}
	return wrapf("create key", err)
}

func (b *Bolt) Key(ctx context.Context, id KeyID) (KeyRecord, error) {
	var rec KeyRecord
	err := b.db.View(func(tx *bolt.Tx) error {
		keys := tx.Bucket(keysBucket)
		if keys == nil {
			return ErrNotFound
		}
		v := keys.Get(id[:])
		if v == nil {
			return ErrNotFound
		}
		var err error
		rec, err = decodeKeyRecord(id, v)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return KeyRecord{}, err
	}
	return rec, wrapf("read key", err)
}

func (b *Bolt) RevokeKey(ctx context.Context, id KeyID, at time.Time) error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		keys := tx.Bucket(keysBucket)
		v := keys.Get(id[:])
		if v == nil {
			return ErrNotFound
		}
		rec, err := decodeKeyRecord(id, v)
		if err != nil {
			return err
		}
		if !rec.Revoked.IsZero() {
			return nil
		}
		rec.Revoked = at.UTC().Round(0)
		val, err := encodeKeyRecord(rec)
		if err != nil {
			return err
		}
		return keys.Put(id[:], val)
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	return wrapf("revoke key", err)
}

func (b *Bolt) SweepKeys(ctx context.Context, before time.Time) (int, error) {
	deleted := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		keys := tx.Bucket(keysBucket)
		var expired [][]byte
		err := keys.ForEach(func(k, v []byte) error {
			var s struct {
				Expires time.Time `json:"expires"`
			}
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("key record %x is damaged: %w", k, err)
			}
			if !s.Expires.IsZero() && s.Expires.Before(before) {
				expired = append(expired, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := keys.Delete(k); err != nil {
				return err
			}
		}
		deleted = len(expired)
		return nil
	})
	if err != nil {
		return 0, wrapf("sweep keys", err)
	}
	return deleted, nil
}

func (b *Bolt) Close() error { return wrapf("close", b.db.Close()) }
