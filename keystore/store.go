package keystore

import (
	"errors"
	"time"
)

// Store is everything one backend provides: the key records the milter
// writes, the portal's state and the admin operations. cmd/securemail holds
// a Store, whichever backend the configuration chose.
type Store interface {
	KeyStore
	PortalStore
	AdminStore
}

// NotFoundError names what a lookup did not find; errors.Is(err,
// ErrNotFound) holds for it. Backends return it instead of the bare
// ErrNotFound so a log line says whether a key, an account or a session was
// missing.
type NotFoundError struct {
	What string // "key record", "account", "session", "code"
}

func (e *NotFoundError) Error() string { return "keystore: " + e.What + " not found" }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// NotFound returns a NotFoundError for what.
func NotFound(what string) error { return &NotFoundError{What: what} }

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
