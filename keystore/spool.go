package keystore

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrSpoolFull is SpoolStore.BeginUpload's answer when the reservation
// does not fit under the quota.
var ErrSpoolFull = errors.New("keystore: portal spool full")

// SpoolStore keeps the portal's uploaded envelopes (ciphertext only) where
// every portal host reaches them, so an envelope uploaded through one host
// is read through another. The portal derives the tokens; the store keeps
// bytes in chunks and never holds a whole envelope in memory.
//
// An upload is begun with a reservation (checked against the quota
// together with every other host's reservations and stored envelopes),
// then committed under its token with its bytes, or abandoned with
// AbortUpload (or swept when its host died half-way).
//
// The spool is a cache of what recipients posted: a store may acknowledge
// its writes before they are durable, since losing one costs only a
// recipient posting the attachment again.
type SpoolStore interface {
	// SpoolTokenKey returns the token HMAC key shared by every portal
	// host, creating it (from newKey) on first use.
	SpoolTokenKey(ctx context.Context, newKey []byte) ([]byte, error)
	// BeginUpload reserves bytes unless stored envelopes plus every
	// reservation would exceed quota (ErrSpoolFull).
	BeginUpload(ctx context.Context, reserve, quota int64, now time.Time) (upload int64, err error)
	// CommitUpload ends the reservation and files the size bytes read
	// from data under token with age now, all or nothing. When token is
	// already spooled, data is not read, the existing envelope's age
	// restarts and existed is true. ErrNotFound when the reservation is
	// gone (swept).
	CommitUpload(ctx context.Context, upload int64, token string, size int64, now time.Time, data io.Reader) (existed bool, err error)
	// StartCommit is CommitUpload in two steps, so that the bytes may be
	// stored after the upload was answered: it ends the reservation and
	// files the entry, which is seen by no one until the returned
	// SpoolCommit is finished. Until then a second commit of token (on
	// any host) waits for it, as do OpenSpooled and RemoveSpooled of
	// token (for a bounded time). When token is already spooled, its
	// age restarts, the reservation is dropped and Existed is true;
	// the commit is then done and Finish must not be called. The
	// caller calls Finish or Abort exactly once otherwise.
	StartCommit(ctx context.Context, upload int64, token string, size int64, now time.Time) (SpoolCommit, error)
	// AbortUpload drops an upload and its reservation.
	AbortUpload(ctx context.Context, upload int64) error
	// OpenSpooled looks up the envelope under token: ErrNotFound when
	// unknown or last filed before notBefore. An entry being filed
	// (StartCommit) is waited for, for a bounded time. Its bytes are fetched when
	// first read, so a caller that needs only the entry closes the
	// reader unread; a reader that would return fewer bytes than the
	// entry's size (the envelope removed meanwhile) fails instead.
	OpenSpooled(ctx context.Context, token string, notBefore time.Time) (io.ReadCloser, SpoolEntry, error)
	// RemoveSpooled deletes the envelope under token, if any.
	RemoveSpooled(ctx context.Context, token string) error
	// SweepSpool deletes envelopes last touched before notBefore and
	// uploads begun before abandonedBefore, on one host at a time.
	SweepSpool(ctx context.Context, notBefore, abandonedBefore time.Time) (int, error)
}

// SpoolCommit is a filing begun by SpoolStore.StartCommit.
type SpoolCommit interface {
	// Existed reports that the envelope was spooled already: nothing
	// more to store.
	Existed() bool
	// Finish stores the entry's bytes, read from data, and commits the
	// filing, all or nothing; on failure the entry was never seen and
	// the reservation is back, for AbortUpload.
	Finish(ctx context.Context, data io.Reader) error
	// Abort gives the filing up, as a failed Finish.
	Abort()
}

// SpoolEntry describes an envelope in a SpoolStore.
type SpoolEntry struct {
	Size    int64
	Touched time.Time // when it was last filed, on the filing portal's clock
}
