package milter

import "time"

// Events is told what the filter does, for metrics. Its methods run on
// the path of every message: they must be cheap and safe for concurrent
// use. Every string they get is one of the constants below, never an
// address, a subject or a key id.
type Events interface {
	// MessageDone counts a message's end: verdict is a Verdict*
	// constant; reason, for VerdictRefused only, a Reason* constant.
	MessageDone(verdict, reason string)
	// Sealed reports a sealed message: from the start of sealing to the
	// last byte of the new body, and the original body size.
	Sealed(took time.Duration, bodyBytes int64)
	// KeyCommitted reports how long a key commit took, failed or not.
	KeyCommitted(took time.Duration)
	// SessionOpened and SessionClosed bracket one MTA connection.
	SessionOpened()
	SessionClosed()
}

// The verdicts MessageDone reports.
const (
	VerdictSealed   = "sealed"   // triggered, some recipient external: sealed
	VerdictInternal = "internal" // triggered, all recipients internal: tag stripped
	VerdictPlain    = "plain"    // a submission that did not ask for encryption
	VerdictInbound  = "inbound"  // not a submission: mail from the internet
	VerdictRefused  = "refused"  // refused; see the reason
)

// The reasons of VerdictRefused.
const (
	ReasonTLSRequired  = "tls_required"  // 530 5.7.0
	ReasonTooBig       = "too_big"       // 552 5.3.4
	ReasonNotEntitled  = "not_entitled"  // 550 5.7.1
	ReasonTempFail     = "tempfail"      // 451 4.3.0: an internal error
	ReasonShuttingDown = "shutting_down" // 451 4.3.2
)

// event is the verdict's name for Events.
func (v verdict) event() string {
	switch v {
	case verdictSeal:
		return VerdictSealed
	case verdictStrip:
		return VerdictInternal
	case verdictPass:
		return VerdictPlain
	}
	return VerdictRefused
}

type noEvents struct{}

func (noEvents) MessageDone(string, string)  {}
func (noEvents) Sealed(time.Duration, int64) {}
func (noEvents) KeyCommitted(time.Duration)  {}
func (noEvents) SessionOpened()              {}
func (noEvents) SessionClosed()              {}
