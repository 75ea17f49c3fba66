// Package boltstore is the embedded bbolt keystore backend, the default for
// a site with one host: everything lives in one file (keys.db) that one
// process opens read-write at a time. It implements keystore.Store and
// passes every suite in keystore/storetest.
//
// # Contract beyond keystore's
//
//   - Open takes the file lock and fails with ErrLocked after
//     Options.LockTimeout when another process holds it; a read-only open
//     shares the lock with other readers.
//   - CreateKey calls arriving together share one commit and one fsync;
//     every other write is its own fsynced transaction.
//   - EachKey reads in chunks of short read transactions; Export reads in
//     one, so a dump is one consistent view.
//   - Backup is bbolt's consistent copy of the file from one read
//     transaction; the copy opens with Open like the original.
package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/securemail/securemail/keystore"
)

var (
	keysBucket = []byte("keys")
	metaBucket = []byte("meta")
	schemaKey  = []byte("schema")
)

const boltSchema = "1"

// reservedMap is the address space the read-write store maps at open: the
// file itself still grows only as data is written.
const reservedMap = 1 << 30

// Options tunes the bbolt backend. The zero value is usable.
type Options struct {
	// LockTimeout bounds the wait for the file lock, so a second process
	// fails fast instead of hanging. Default 1 s.
	LockTimeout time.Duration
	// MaxBatchSize is how many concurrent CreateKey calls may share one
	// commit (one fsync). Default 256.
	MaxBatchSize int
	// ReadOnly opens the file with a shared lock, for offline tools.
	ReadOnly bool
}

// Store is the embedded bbolt backend.
//
// Key records (and server copies, PutCopy) are committed by one goroutine
// in groups: a CreateKey that finds the committer idle is committed at
// once, and every CreateKey that arrives while a commit (and its fsync)
// runs shares the next one. A lone
// writer waits for one fsync, never for a timer, and under load the number
// of fsyncs stays near the number a single writer would need. (bbolt's own
// Batch waits a fixed delay for company, which costs a lone writer that
// delay on every message.)
type Store struct {
	db       *bolt.DB
	maxBatch int
	creates  chan createRequest // unbuffered: a send succeeds only while the committer runs
	stop     chan struct{}
	stopped  chan struct{}
	once     sync.Once
}

type createRequest struct {
	rec  keystore.KeyRecord
	val  []byte
	done chan error // buffered, one result
	// write, when set, is another write that shares the group commit
	// (a server copy); its error fails the group. With a record as well
	// (val set), it is written only when the record is.
	write func(tx *bolt.Tx) error
}

var _ keystore.KeyStore = (*Store)(nil)

// ErrLocked means another process holds the database.
var ErrLocked = errors.New("keystore: database is in use by another process (is securemail serve running?)")

// Open opens or creates the database file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.MaxBatchSize <= 0 {
		opts.MaxBatchSize = 256
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, wrapf("open", err)
		}
	}
	bopts := &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly}
	if !opts.ReadOnly {
		// A commit that must grow the map waits for every open read
		// transaction; reserving address space up front keeps a long
		// listing or an online backup from stalling the mail path.
		bopts.InitialMmapSize = reservedMap
	}
	db, err := bolt.Open(path, 0o600, bopts)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, ErrLocked
	}
	if err != nil {
		return nil, wrapf("open", err)
	}
	b := &Store{db: db, maxBatch: opts.MaxBatchSize, stop: make(chan struct{}), stopped: make(chan struct{})}
	if opts.ReadOnly {
		close(b.stopped)
		return b, nil
	}
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
		for _, name := range [][]byte{keysBucket, accountsBucket, codesBucket, sessionsBucket, throttleBucket, readsBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, wrapf("initialise", err)
	}
	b.creates = make(chan createRequest)
	go b.commitLoop()
	return b, nil
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
	// Absent unless set, so records without a server copy keep the
	// layout they always had.
	CopyUntil time.Time `json:"copy_until,omitzero"`
}

func encodeKeyRecord(r keystore.KeyRecord) ([]byte, error) {
	return json.Marshal(boltKeyRecord{
		WrappedDEK: r.WrappedDEK, MasterKeyID: r.MasterKeyID, Sender: r.Sender,
		Recipients: r.Recipients, Created: r.Created, Expires: r.Expires,
		Revoked: r.Revoked, MessageID: r.MessageID, Size: r.Size, CopyUntil: r.CopyUntil,
	})
}

func decodeKeyRecord(id keystore.KeyID, b []byte) (keystore.KeyRecord, error) {
	return decodeKeyRecordIn(id, b, nil)
}

// decodeKeyRecordIn is decodeKeyRecord with the record's strings and
// slices in a (nil: allocated one by one).
func decodeKeyRecordIn(id keystore.KeyID, b []byte, a *recordArena) (keystore.KeyRecord, error) {
	s, ok := decodeBoltKeyRecordFast(b, a)
	if !ok {
		// Its own variable: &s would move s to the heap on every call.
		var slow boltKeyRecord
		if err := json.Unmarshal(b, &slow); err != nil {
			return keystore.KeyRecord{}, fmt.Errorf("key record %s is damaged: %w", id, err)
		}
		s = slow
	}
	return keystore.KeyRecord{
		ID: id, WrappedDEK: s.WrappedDEK, MasterKeyID: s.MasterKeyID, Sender: s.Sender,
		Recipients: s.Recipients, Created: s.Created, Expires: s.Expires,
		Revoked: s.Revoked, MessageID: s.MessageID, Size: s.Size, CopyUntil: s.CopyUntil,
	}, nil
}

// CreateKey commits rec, in a group with concurrent callers; it returns
// once the group is committed and fsynced. If ctx ends first it returns
// ctx's error, and the record may still be committed.
func (b *Store) CreateKey(ctx context.Context, rec keystore.KeyRecord) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return wrapf("create key", err)
	}
	if b.creates == nil {
		return wrapf("create key", bolterrors.ErrDatabaseReadOnly)
	}
	rec = rec.Normalized()
	val, err := encodeKeyRecord(rec)
	if err != nil {
		return wrapf("create key", err)
	}
	err = b.commit(ctx, createRequest{rec: rec, val: val})
	if errors.Is(err, keystore.ErrKeyExists) || errors.Is(err, keystore.ErrClosed) {
		return err
	}
	return wrapf("create key", err)
}

// commit hands req to the committer and waits for its group's commit.
func (b *Store) commit(ctx context.Context, req createRequest) error {
	req.done = make(chan error, 1)
	select {
	case b.creates <- req:
	case <-b.stop:
		return keystore.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitLoop commits whatever CreateKey calls are waiting, in one
// transaction, until Close.
func (b *Store) commitLoop() {
	defer close(b.stopped)
	for {
		var batch []createRequest
		select {
		case req := <-b.creates:
			batch = append(batch, req)
		case <-b.stop:
			return
		}
	gather:
		for len(batch) < b.maxBatch {
			select {
			case req := <-b.creates:
				batch = append(batch, req)
			default:
				break gather
			}
		}
		b.commitBatch(batch)
	}
}

func (b *Store) commitBatch(batch []createRequest) {
	results := make([]error, len(batch))
	err := b.db.Update(func(tx *bolt.Tx) error {
		keys := tx.Bucket(keysBucket)
		for i, req := range batch {
			results[i] = nil
			var old []byte
			if req.val != nil {
				old = keys.Get(req.rec.ID[:])
			}
			if old != nil {
				// Creating the same record again succeeds; another
				// record under the same id fails alone, not the whole
				// group, and writes nothing.
				prev, err := decodeKeyRecord(req.rec.ID, old)
				switch {
				case err != nil:
					results[i] = err
					continue
				case !prev.Equal(req.rec):
					results[i] = keystore.ErrKeyExists
					continue
				}
			}
			if req.write != nil {
				if err := req.write(tx); err != nil {
					return err
				}
			}
			if req.val != nil && old == nil {
				if err := keys.Put(req.rec.ID[:], req.val); err != nil {
					return err
				}
			}
		}
		return nil
	})
	for i, req := range batch {
		if err != nil {
			req.done <- err
		} else {
			req.done <- results[i]
		}
	}
}

func (b *Store) Key(ctx context.Context, id keystore.KeyID) (keystore.KeyRecord, error) {
	if err := ctx.Err(); err != nil {
		return keystore.KeyRecord{}, wrapf("read key", err)
	}
	var rec keystore.KeyRecord
	err := b.db.View(func(tx *bolt.Tx) error {
		keys := tx.Bucket(keysBucket)
		if keys == nil {
			return keystore.KeyNotFound(id)
		}
		v := keys.Get(id[:])
		if v == nil {
			return keystore.KeyNotFound(id)
		}
		var err error
		rec, err = decodeKeyRecord(id, v)
		return err
	})
	if errors.Is(err, keystore.ErrNotFound) {
		return keystore.KeyRecord{}, err
	}
	return rec, wrapf("read key", err)
}

func (b *Store) RevokeKey(ctx context.Context, id keystore.KeyID, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return wrapf("revoke key", err)
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		keys := tx.Bucket(keysBucket)
		v := keys.Get(id[:])
		if v == nil {
			return keystore.KeyNotFound(id)
		}
		rec, err := decodeKeyRecord(id, v)
		if err != nil {
			return err
		}
		// A revoked key's server copy goes with the revocation.
		if _, err := deleteCopyEnvelopeTx(tx, id[:], at); err != nil {
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
	if errors.Is(err, keystore.ErrNotFound) {
		return err
	}
	return wrapf("revoke key", err)
}

func (b *Store) SweepKeys(ctx context.Context, before time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, wrapf("sweep keys", err)
	}
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
		if err := sweepCopiesOfTx(tx, expired); err != nil {
			return err
		}
		// A key's read audit trail lives as long as the key.
		return sweepReads(tx)
	})
	if err != nil {
		return 0, wrapf("sweep keys", err)
	}
	return deleted, nil
}

// Close stops the committer, after the group it is committing, and closes
// the file. CreateKey calls after Close fail with ErrClosed.
func (b *Store) Close() error {
	var err error
	b.once.Do(func() {
		close(b.stop)
		<-b.stopped
		err = wrapf("close", b.db.Close())
	})
	return err
}

func wrapf(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("keystore: %s: %w", op, err)
}
