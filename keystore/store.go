package keystore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// Store is everything one backend provides: the key records the milter
// writes, the portal's state and the admin operations. cmd/securemail holds
// a Store, whichever backend the configuration chose.
type Store interface {
	KeyStore
	PortalStore
	AdminStore
	CopyStore
}

// NotFoundError names what a lookup did not find; errors.Is(err,
// ErrNotFound) holds for it. Backends return it instead of the bare
// ErrNotFound so a log line says whether a key, an account or a session was
// missing.
type NotFoundError struct {
	What string // "key record 3f2a...", "account a@example.org", "session 1c9e04aa", ...
}

func (e *NotFoundError) Error() string { return "keystore: " + e.What + " not found" }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// NotFound returns a NotFoundError for what. What never holds a secret: a
// code, a token or a session's cookie or digest is named by Fingerprint or
// not at all.
func NotFound(what string) error { return &NotFoundError{What: what} }

// The not-found errors every backend returns, so the same miss reads the
// same on bbolt, PostgreSQL and memory.

// KeyNotFound names a missing key record by its id.
func KeyNotFound(id KeyID) error { return NotFound("key record " + id.String()) }

// AccountNotFound names a missing account by its address.
func AccountNotFound(email string) error { return NotFound("account " + strings.ToLower(email)) }

// CodeNotFound names a missing one-time code by purpose and address, never
// by the code.
func CodeNotFound(purpose CodePurpose, email string) error {
	return NotFound(string(purpose) + " code for " + strings.ToLower(email))
}

// SessionNotFound names a missing session by the Fingerprint of its digest.
func SessionNotFound(digest []byte) error { return NotFound("session " + Fingerprint(digest)) }

// SpooledNotFound names a missing spooled envelope by the Fingerprint of
// its token.
func SpooledNotFound(token string) error {
	return NotFound("spooled envelope " + Fingerprint([]byte(token)))
}

// Fingerprint names a secret (a session digest, a spool token) in an error
// or a log line without revealing it: the first 8 hex digits of its
// SHA-256, enough to tell two apart in one log, of no use to get in.
func Fingerprint(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:4])
}

// Validate reports what makes rec unfit to store, for backends outside this
// package.
func (r KeyRecord) Validate() error { return r.validate() }

// Normalized returns rec as every store keeps it: recipients lowercased,
// times in UTC without monotonic readings.
func (r KeyRecord) Normalized() KeyRecord { return r.normalized() }

// Equal reports whether two normalized records are the same record; a
// create of an existing id succeeds only when they are.
func (r KeyRecord) Equal(o KeyRecord) bool { return r.equal(o) }

// UTC returns t in UTC without its monotonic reading, as stores keep times.
func UTC(t time.Time) time.Time { return t.UTC().Round(0) }

// ErrUnavailable marks an error from a store that could not be reached
// (network, failover, pool exhausted). Callers on the mail path treat every
// store error as temporary; this one lets them say why in the log.
var ErrUnavailable = errors.New("keystore: store unavailable")
