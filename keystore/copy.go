package keystore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"
)

// The server copy: with portal.link_fallback on, the milter keeps the
// sealed message's envelope (ciphertext only, the bytes the attachment
// carries) in the store for a while, so a recipient whose phone cannot
// post the attachment's form can read from a link in the notice instead.
// The contract, for every backend:
//
//   - A copy is found by the SHA-256 digest of its link token, never by
//     the token: the store does not hold what a reader needs to follow a
//     link.
//   - PutCopy and CreateKeyWithCopy are durable on return. The milter
//     uses CreateKeyWithCopy, so a key record whose CopyUntil is set
//     always has its copy stored with it. Putting a copy under a key id
//     that has one replaces it.
//   - The envelope is kept in chunks of at most CopyChunk bytes and read
//     back one chunk at a time: neither side holds a whole envelope.
//   - The envelope is deleted (its description stays, with Deleted set,
//     so the portal can say why a link no longer works) by DeleteCopy, by
//     RevokeKey and ShredKey in the same transaction as the revocation,
//     and by SweepCopies once Until has passed or the key is no longer
//     usable. SweepKeys deletes the copies, descriptions and all, of the
//     keys it deletes.
//   - A copy without a key record (PutCopy alone, or a dump imported
//     part way) is deleted whole by SweepCopies once it is older than
//     CopyOrphanGrace.

// CopyChunk is the largest piece of an envelope a store keeps or returns
// at once.
const CopyChunk = 256 << 10

// CopyOrphanGrace is how long a copy may wait for its key record.
const CopyOrphanGrace = time.Hour

// ErrCopyDeleted is OpenCopy's answer for a copy whose envelope was
// deleted; errors.Is(err, ErrNotFound) holds for it too.
var ErrCopyDeleted = &NotFoundError{What: "server copy (deleted)"}

// ServerCopy describes the server copy of one sealed message.
type ServerCopy struct {
	KeyID KeyID
	// LinkDigest is LinkDigest(token) of the link in the notice.
	LinkDigest []byte
	Created    time.Time
	// Until is when the copy is deleted; never later than the key's
	// expiry.
	Until time.Time
	// Size is the envelope's length in bytes.
	Size int64
	// Deleted is when the envelope was deleted; zero while it is kept.
	Deleted time.Time
}

// Kept reports whether the envelope is still there to read at now.
func (c ServerCopy) Kept(now time.Time) bool {
	return c.Deleted.IsZero() && now.Before(c.Until)
}

// Validate reports what makes c unfit to store.
func (c ServerCopy) Validate() error {
	switch {
	case c.KeyID == KeyID{}:
		return errors.New("keystore: server copy has no key id")
	case len(c.LinkDigest) != sha256.Size:
		return errors.New("keystore: server copy has no link digest")
	case c.Created.IsZero() || c.Until.IsZero():
		return errors.New("keystore: server copy has no lifetime")
	case c.Size < 0:
		return errors.New("keystore: server copy has a negative size")
	}
	return nil
}

// Normalized returns c as every store keeps it: times in UTC without
// monotonic readings.
func (c ServerCopy) Normalized() ServerCopy {
	c.LinkDigest = bytes.Clone(c.LinkDigest)
	c.Created, c.Until, c.Deleted = UTC(c.Created), UTC(c.Until), UTC(c.Deleted)
	return c
}

// CopyNotFound names a missing server copy by its key id.
func CopyNotFound(id KeyID) error { return NotFound("server copy of key record " + id.String()) }

// LinkNotFound names a link that finds no server copy by the Fingerprint
// of its digest, never by the token or the digest.
func LinkNotFound(linkDigest []byte) error {
	return NotFound("server copy for link " + Fingerprint(linkDigest))
}

// LinkDigest is what the store keeps of a link token.
func LinkDigest(token string) []byte {
	d := sha256.Sum256([]byte("securemail link\x00" + token))
	return d[:]
}

// CopyStore keeps server copies. See the contract above.
type CopyStore interface {
	// PutCopy stores c with the c.Size bytes read from env; a reader
	// that gives more or fewer is an error and nothing is stored.
	PutCopy(ctx context.Context, c ServerCopy, env io.Reader) error
	// CreateKeyWithCopy stores c, with the c.Size bytes read from env,
	// and creates rec in one transaction: both or neither, one durable
	// commit for the two. rec.ID must be c.KeyID and rec.CopyUntil must
	// be set. Creating the same record again succeeds, as CreateKey
	// does, and replaces the copy; another record under the id is
	// ErrKeyExists and stores nothing.
	CreateKeyWithCopy(ctx context.Context, rec KeyRecord, c ServerCopy, env io.Reader) error
	// GetCopy returns the description of the copy whose link digest is
	// digest, a deleted one too, or ErrNotFound.
	GetCopy(ctx context.Context, linkDigest []byte) (ServerCopy, error)
	// CopyOf returns the description of id's copy, or ErrNotFound.
	CopyOf(ctx context.Context, id KeyID) (ServerCopy, error)
	// OpenCopy streams id's envelope, reading one chunk at a time:
	// ErrNotFound when there is no copy, ErrCopyDeleted when it was
	// deleted. A copy deleted while it is read ends the stream with an
	// error.
	OpenCopy(ctx context.Context, id KeyID) (io.ReadCloser, error)
	// DeleteCopy deletes id's envelope at at, keeping its description,
	// and reports whether there was one to delete.
	DeleteCopy(ctx context.Context, id KeyID, at time.Time) (bool, error)
	// SweepCopies deletes at now the envelopes whose Until has passed
	// or whose key record is revoked or expired, and whole copies older
	// than CopyOrphanGrace without a key record. It returns how many
	// envelopes it deleted.
	SweepCopies(ctx context.Context, now time.Time) (int, error)
}

// ValidateKeyWithCopy checks what CreateKeyWithCopy is given.
func ValidateKeyWithCopy(rec KeyRecord, c ServerCopy) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if rec.ID != c.KeyID {
		return errors.New("keystore: server copy: the copy is of another key than the record")
	}
	if rec.CopyUntil.IsZero() {
		return errors.New("keystore: server copy: the key record does not say a copy is kept (CopyUntil)")
	}
	return nil
}

// ErrCopySize is PutCopy's answer when the reader's length is not Size.
var ErrCopySize = errors.New("keystore: server copy: envelope length differs from its size")

// EachCopyChunk reads exactly size bytes from env and hands them to fn in
// pieces of CopyChunk bytes (the last one shorter; none for size 0),
// numbered from 0. fn must not keep the slice. A reader that ends early
// or has more to give is ErrCopySize.
func EachCopyChunk(env io.Reader, size int64, fn func(seq int, chunk []byte) error) error {
	buf := make([]byte, min(size, CopyChunk))
	for seq, left := 0, size; left > 0; seq++ {
		n := min(left, CopyChunk)
		if _, err := io.ReadFull(env, buf[:n]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return ErrCopySize
			}
			return fmt.Errorf("keystore: server copy: read envelope: %w", err)
		}
		if err := fn(seq, buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	var one [1]byte
	if n, _ := io.ReadFull(env, one[:]); n > 0 {
		return ErrCopySize
	}
	return nil
}

// ChunkReader streams a copy from a function that returns chunk seq, or
// io.EOF past the last one; backends use it for OpenCopy.
type ChunkReader struct {
	Next  func(seq int) ([]byte, error)
	Done  func() error // called once by Close; may be nil
	seq   int
	cur   []byte
	err   error
	close bool
}

func (r *ChunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.cur, r.err = r.Next(r.seq)
		r.seq++
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *ChunkReader) Close() error {
	if r.close {
		return nil
	}
	r.close = true
	if r.Done != nil {
		return r.Done()
	}
	return nil
}
