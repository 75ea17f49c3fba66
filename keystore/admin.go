package keystore

import (
	"context"
	"io"
	"strings"
	"time"
)

// Administration: what an operator does to the store while mail flows
// (list, show, revoke, expire, sweep keys; list, unlock, reset, delete
// accounts; back up; rewrap under a new master key). The contract, for
// every backend:
//
//   - Listings do not block the mail path: EachKey reads in short
//     transactions of a bounded number of records, so a listing of the
//     whole store is consistent per chunk, not as a whole.
//   - ShredKey is a crypto-shred: the wrapped data key is deleted and the
//     record stays, marked revoked, so the portal can say the sender
//     withdrew the message.
//   - DeleteAccount removes the account, its sessions, codes and throttle
//     entries in one transaction: an erasure request leaves nothing that
//     names the address except the read audit trail of messages sent to
//     it, which belongs to the sender.
//   - Backup writes a consistent copy of the whole store, taken in one read
//     transaction; writers go on meanwhile.
//   - RewrapKeys is resumable: each record names the master key that wraps
//     it, so a rotation interrupted at any point continues where it
//     stopped.

// KeyFilter selects key records. The zero value selects every record.
type KeyFilter struct {
	Sender    string    // envelope sender, ignoring case
	Recipient string    // one of the envelope recipients, ignoring case
	MessageID string    // the Message-ID header, exactly
	Since     time.Time // created at or after
	Before    time.Time // created before
	// ExpiredAt, if set, selects records that are no longer usable at
	// that time: expired or revoked.
	ExpiredAt time.Time
}

// Match reports whether rec is selected by f.
func (f KeyFilter) Match(rec KeyRecord) bool {
	switch {
	case f.Sender != "" && !strings.EqualFold(f.Sender, rec.Sender):
		return false
	case f.Recipient != "" && !rec.IsRecipient(f.Recipient):
		return false
	case f.MessageID != "" && f.MessageID != rec.MessageID:
		return false
	case !f.Since.IsZero() && rec.Created.Before(f.Since):
		return false
	case !f.Before.IsZero() && !rec.Created.Before(f.Before):
		return false
	case !f.ExpiredAt.IsZero() && rec.Usable(f.ExpiredAt) == nil:
		return false
	}
	return true
}

// RewrapProgress reports what one RewrapKeys call did and what is left.
type RewrapProgress struct {
	Rewrapped  int // records rewrapped by this call
	Remaining  int // records still wrapped under another key than the current one
	Unreadable int // records wrapped under a key the MasterKey does not hold
}

// AdminStore is what the admin commands need beyond KeyStore and
// PortalStore. See the contract above.
type AdminStore interface {
	// EachKey calls fn for every record f selects, in id order, until fn
	// returns an error, which EachKey returns.
	EachKey(ctx context.Context, f KeyFilter, fn func(KeyRecord) error) error
	// ShredKey deletes the wrapped data key of id and marks the record
	// revoked at at (keeping an earlier revocation time). ErrNotFound if
	// there is no such record.
	ShredKey(ctx context.Context, id KeyID, at time.Time) error
	// ExpireKey sets the record's expiry to at unless it expires earlier
	// already, and reports whether it changed anything.
	ExpireKey(ctx context.Context, id KeyID, at time.Time) (bool, error)
	// MasterKeyUse counts the records that hold a wrapped data key, by the
	// id of the master key that wraps them.
	MasterKeyUse(ctx context.Context) (map[string]int, error)
	// RewrapKeys rewraps, in transactions of at most batch records, every
	// record that mk can unwrap but that is not wrapped under mk's current
	// key. It stops early when ctx ends, with what it has committed so far.
	RewrapKeys(ctx context.Context, mk *MasterKey, batch int, rand io.Reader) (RewrapProgress, error)

	// EachAccount calls fn for every account, in address order.
	EachAccount(ctx context.Context, fn func(Account) error) error
	// DeleteAccount erases the account for email with its sessions, codes
	// and throttle entry, and returns how many sessions it ended.
	// ErrNotFound if there is no such account.
	DeleteAccount(ctx context.Context, email string) (sessions int, err error)
	// RequirePasswordReset removes the account's password hash, so no
	// password signs in until the owner resets it, and ends its sessions.
	RequirePasswordReset(ctx context.Context, email string) (sessions int, err error)
	// DeleteThrottle removes the throttle entry for key (both its counts).
	DeleteThrottle(ctx context.Context, key string) error

	// Backup writes a consistent copy of the store to w.
	Backup(ctx context.Context, w io.Writer) (int64, error)
}
