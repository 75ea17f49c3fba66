package keystore

import (
	"context"
	"errors"
	"time"
)

// The portal's state: recipient accounts, one-time codes, sessions, login
// throttling and the read audit trail. The contract, for every backend:
//
//   - Emails are stored and compared lowercased.
//   - Secrets never reach the store in clear: passwords and security
//     answers arrive as argon2id PHC strings, codes and session ids as
//     SHA-256 digests computed by the caller. The store compares digests in
//     constant time.
//   - ConsumeCode is atomic: of two concurrent calls with the right code,
//     exactly one succeeds; every wrong guess spends one try, and when the
//     tries are gone the code is dead even for the right value.
//   - Every write is durable on return.
//   - Hit is the one way a limit is enforced: it checks and counts in one
//     atomic step, before the expensive work it guards, so a burst of
//     requests released together gets exactly as many "allowed" answers as
//     the same requests sent one after another.
//   - SweepPortal deletes codes and sessions past their end, throttle
//     entries idle for longer than the throttle window and limit entries
//     whose window has ended; nothing else deletes by itself.

// Errors of the portal store, for errors.Is.
var (
	ErrAccountExists   = errors.New("keystore: an account exists for this address")
	ErrCodeMismatch    = errors.New("keystore: wrong code")
	ErrTooManyAttempts = errors.New("keystore: no tries left for this code")
)

// Account is a recipient who proved an address and chose a password.
type Account struct {
	Email        string // lowercased by the store
	PasswordHash string // argon2id PHC string
	Questions    []SecurityAnswer
	Created      time.Time
	VerifiedAt   time.Time // when the emailed code proved the address
	PasswordSet  time.Time // last time the password was set or reset
}

// SecurityAnswer is one chosen question (an index into the portal's fixed
// list) and the argon2id PHC string of its normalised answer.
type SecurityAnswer struct {
	Question   int
	AnswerHash string
}

// CodePurpose says what a one-time code may be used for.
type CodePurpose string

const (
	CodeRegister CodePurpose = "register"
	CodeReset    CodePurpose = "reset"
)

// Code is a one-time code mailed to an address. Only its digest is kept.
type Code struct {
	Purpose   CodePurpose
	Email     string
	Digest    []byte // SHA-256 computed by the caller
	Expires   time.Time
	TriesLeft int
}

// Session is a browser's server-side state, found by the digest of the
// cookie value. A session exists before login (it carries the steps of
// registration or reset in Stage) and is replaced by a new one at login.
type Session struct {
	Digest   []byte // SHA-256 of the cookie value
	Email    string // the address the browser claims or proved; may be empty
	Stage    string // portal-defined step, e.g. "authenticated"
	Token    string // the envelope spool token the browser came with, if any
	Created  time.Time
	LastSeen time.Time
	Expires  time.Time // absolute end
}

// Throttle counts failures for one key (the portal uses "acct:<email>" and
// "ip:<addr>").
type Throttle struct {
	Key         string
	Consecutive int       // failures since the last success
	LastFailure time.Time // zero if none
	WindowStart time.Time // start of the current long window
	InWindow    int       // failures since WindowStart
}

// HitResult is the answer of PortalStore.Hit.
type HitResult struct {
	// Allowed says whether the attempt may go ahead; it was counted.
	Allowed bool
	// Count is the number of attempts counted in the current window,
	// this one included when it was allowed.
	Count int
	// RetryAfter is, when not allowed, how long until the window ends
	// and attempts are allowed again.
	RetryAfter time.Duration
}

// ReadEvent is one read of a sealed message, for the sender's audit trail.
type ReadEvent struct {
	KeyID  KeyID
	Reader string // lowercased account email
	At     time.Time
	Remote string // client address as the portal saw it
}

// PortalStore keeps the portal's state. See the contract above.
type PortalStore interface {
	// CreateAccount stores a new account, or fails with ErrAccountExists.
	CreateAccount(ctx context.Context, a Account) error
	// Account returns the account for email, or ErrNotFound.
	Account(ctx context.Context, email string) (Account, error)
	// SetPassword replaces the password hash and sets PasswordSet to at.
	// ErrNotFound if there is no such account.
	SetPassword(ctx context.Context, email, passwordHash string, at time.Time) error

	// PutCode stores c, replacing any earlier code for the same purpose
	// and email.
	PutCode(ctx context.Context, c Code) error
	// ConsumeCode checks digest against the stored code for purpose and
	// email at now, in this order. No code: ErrNotFound. now at or past
	// Expires: ErrExpired, and the code is deleted. No tries left:
	// ErrTooManyAttempts whatever the digest; the dead code stays, so
	// later calls say the same, until it expires or is swept. Right: the
	// code is deleted and nil returned. Wrong: one try is spent and
	// ErrCodeMismatch returned, also for the guess that spends the last
	// try.
	ConsumeCode(ctx context.Context, purpose CodePurpose, email string, digest []byte, now time.Time) error

	// PutSession creates or replaces the session with s.Digest.
	PutSession(ctx context.Context, s Session) error
	// Session returns the session with digest, or ErrNotFound. It returns
	// sessions past their end too; the caller checks.
	Session(ctx context.Context, digest []byte) (Session, error)
	// DeleteSession removes one session; removing a missing one is not an
	// error.
	DeleteSession(ctx context.Context, digest []byte) error
	// DeleteSessionsFor removes every session whose Email is email except
	// the one with digest except (nil: all), and returns how many it
	// removed.
	DeleteSessionsFor(ctx context.Context, email string, except []byte) (int, error)

	// AddFailure records one failure for key at now and returns the new
	// state. A window longer than window ago starts afresh.
	AddFailure(ctx context.Context, key string, now time.Time, window time.Duration) (Throttle, error)
	// Throttle returns the state for key (zero state with Key set if none).
	Throttle(ctx context.Context, key string) (Throttle, error)
	// ClearFailures resets Consecutive for key; the long-window count stays.
	ClearFailures(ctx context.Context, key string) error

	// Hit checks and counts one attempt for key at now, atomically: of
	// any number of concurrent calls for one key, at most limit are
	// allowed per window. A window starts at the first allowed attempt
	// for key when there is none, or when the previous one has ended
	// (now at or after its start plus window), and lasts window; the
	// window's start and length are fixed when it starts. A refused
	// attempt is not counted and does not move the window. limit < 1
	// refuses everything. Keys are opaque strings chosen by the caller
	// (the portal uses "signin-acct:<email>", "signin-client:<addr>",
	// ...).
	//
	// A SQL backend implements it as one statement, e.g. an INSERT ... ON
	// CONFLICT (key) DO UPDATE that restarts an ended window or adds one
	// when count < limit, RETURNING the row.
	Hit(ctx context.Context, key string, now time.Time, window time.Duration, limit int) (HitResult, error)
	// ResetHits forgets the count for key (a right password ends the
	// count of tries); resetting a missing key is not an error.
	ResetHits(ctx context.Context, key string) error

	// RecordRead appends ev to its key's audit trail. A backend that is
	// also the KeyStore deletes the trail when SweepKeys deletes the key.
	RecordRead(ctx context.Context, ev ReadEvent) error
	// Reads returns the audit trail of id, oldest first (by At; events
	// with equal At in the order recorded), and an empty slice if there
	// is none.
	Reads(ctx context.Context, id KeyID) ([]ReadEvent, error)

	// SweepPortal deletes codes and sessions that ended before now and
	// throttle entries whose last failure is older than window.
	SweepPortal(ctx context.Context, now time.Time, window time.Duration) (int, error)
}
