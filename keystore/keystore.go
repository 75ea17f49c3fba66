// Package keystore holds securemail's durable state behind small interfaces:
// the key records that make sealed messages readable, and the master key
// that wraps their data keys.
//
// # Contract
//
//   - A key record holds a message's data key wrapped under the master key
//     (AES-256-GCM, the record id as additional data), the id of that master
//     key, and metadata: sender, envelope recipients (lowercased), created,
//     expires, revoked, message-id and size, and until when the server
//     keeps a copy of the envelope (CopyStore), if it does. Never a
//     subject, never plaintext.
//   - CreateKey is durable on return (committed and fsynced) and idempotent:
//     creating the same record twice succeeds, creating a different record
//     under an existing id fails with ErrKeyExists.
//   - Expiry is a field readers check (Usable) plus SweepKeys, which deletes
//     what has expired; nothing disappears by itself.
//   - A store that cannot be reached returns an error; callers on the mail
//     path turn any error into a temporary failure.
//   - No type of a backend appears in these signatures, and this package
//     imports none: the backends are keystore/boltstore (bbolt, one host),
//     keystore/pgstore (PostgreSQL, several hosts) and keystore/memstore
//     (memory, tests). Every backend passes the suites in keystore/storetest.
//
// The master key lives in a file of exactly 32 bytes that only its owner may
// read; it is never stored in the database.
package keystore

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"
)

// Errors with the package prefix, for errors.Is.
var (
	ErrNotFound  = errors.New("keystore: not found")
	ErrKeyExists = errors.New("keystore: a different key record exists under this id")
	ErrExpired   = errors.New("keystore: key expired")
	ErrRevoked   = errors.New("keystore: key revoked")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("keystore: store is closed")
)

// KeyID names a key record: 128 random bits.
type KeyID [16]byte

func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// KeyRecord is what the store keeps for one sealed message.
type KeyRecord struct {
	ID          KeyID
	WrappedDEK  []byte
	MasterKeyID string
	Sender      string
	Recipients  []string
	Created     time.Time
	Expires     time.Time
	Revoked     time.Time // zero while the key is live
	MessageID   string
	Size        int64
	// CopyUntil, when set, says the server keeps a copy of the envelope
	// for the link in the notice until then (CopyStore); the copy may
	// have been deleted earlier, at revocation.
	CopyUntil time.Time
}

// Usable reports whether the record may open its message at now.
func (r KeyRecord) Usable(now time.Time) error {
	switch {
	case !r.Revoked.IsZero():
		return ErrRevoked
	case !r.Expires.IsZero() && !now.Before(r.Expires):
		return ErrExpired
	}
	return nil
}

// IsRecipient reports whether addr is one of the record's envelope
// recipients, ignoring case.
func (r KeyRecord) IsRecipient(addr string) bool {
	return slices.Contains(r.Recipients, strings.ToLower(addr))
}

func (r KeyRecord) validate() error {
	switch {
	case r.ID == KeyID{}:
		return errors.New("keystore: key record has no id")
	case len(r.WrappedDEK) == 0 || r.MasterKeyID == "":
		return errors.New("keystore: key record has no wrapped key")
	case len(r.Recipients) == 0:
		return errors.New("keystore: key record has no recipients")
	case r.Created.IsZero():
		return errors.New("keystore: key record has no creation time")
	}
	return nil
}

// normalized returns the record as stores keep it: recipients lowercased,
// times in UTC without monotonic readings.
func (r KeyRecord) normalized() KeyRecord {
	rcpts := make([]string, len(r.Recipients))
	for i, a := range r.Recipients {
		rcpts[i] = strings.ToLower(a)
	}
	r.Recipients = rcpts
	r.Created = r.Created.UTC().Round(0)
	r.Expires = r.Expires.UTC().Round(0)
	r.Revoked = r.Revoked.UTC().Round(0)
	r.CopyUntil = r.CopyUntil.UTC().Round(0)
	return r
}

func (r KeyRecord) equal(o KeyRecord) bool {
	return r.ID == o.ID && string(r.WrappedDEK) == string(o.WrappedDEK) &&
		r.MasterKeyID == o.MasterKeyID && r.Sender == o.Sender &&
		slices.Equal(r.Recipients, o.Recipients) && r.Created.Equal(o.Created) &&
		r.Expires.Equal(o.Expires) && r.Revoked.Equal(o.Revoked) &&
		r.MessageID == o.MessageID && r.Size == o.Size && r.CopyUntil.Equal(o.CopyUntil)
}

// KeyStore keeps key records.
type KeyStore interface {
	// CreateKey stores rec durably. See the package doc for idempotence.
	CreateKey(ctx context.Context, rec KeyRecord) error
	// Key returns the record with id, or ErrNotFound. It returns expired
	// and revoked records too; callers check Usable.
	Key(ctx context.Context, id KeyID) (KeyRecord, error)
	// RevokeKey marks the record revoked at at; revoking twice keeps the
	// first time.
	RevokeKey(ctx context.Context, id KeyID, at time.Time) error
	// SweepKeys deletes every record that expired before before and
	// returns how many it deleted.
	SweepKeys(ctx context.Context, before time.Time) (int, error)
	Close() error
}
