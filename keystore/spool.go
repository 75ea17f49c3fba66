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
// written chunk by chunk, then committed under its token, or abandoned
// with AbortUpload (or swept when its host died half-way).
type SpoolStore interface {
	// SpoolTokenKey returns the token HMAC key shared by every portal
	// host, creating it (from newKey) on first use.
	SpoolTokenKey(ctx context.Context, newKey []byte) ([]byte, error)
	// BeginUpload reserves bytes unless stored envelopes plus every
	// reservation would exceed quota (ErrSpoolFull).
	BeginUpload(ctx context.Context, reserve, quota int64, now time.Time) (upload int64, err error)
	// WriteChunk stores chunk seq (0, 1, ...) of an upload.
	WriteChunk(ctx context.Context, upload int64, seq int, data []byte) error
	// CommitUpload ends the reservation and files the upload under token
	// with age now. When token is already spooled, the upload is dropped,
	// the existing envelope's age restarts and existed is true.
	CommitUpload(ctx context.Context, upload int64, token string, size int64, now time.Time) (existed bool, err error)
	// AbortUpload drops an upload and its reservation.
	AbortUpload(ctx context.Context, upload int64) error
	// OpenSpooled streams the envelope under token, reading one chunk at
	// a time; ErrNotFound when unknown or last touched before notBefore.
	OpenSpooled(ctx context.Context, token string, notBefore time.Time) (io.ReadCloser, error)
	// RemoveSpooled deletes the envelope under token, if any.
	RemoveSpooled(ctx context.Context, token string) error
	// SweepSpool deletes envelopes last touched before notBefore and
	// uploads begun before abandonedBefore, on one host at a time.
	SweepSpool(ctx context.Context, notBefore, abandonedBefore time.Time) (int, error)
}
