package milter

import (
	"errors"
	"fmt"

	gomilter "github.com/emersion/go-milter"
)

// Reply is an SMTP reply the milter gives instead of accepting a message.
// Text is what the sender's mail program shows; it never carries internal
// details. Cause, if any, is for the log only.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
	Cause    error
	// Reason names the refusal for metrics: a fixed word, never data.
	Reason string
}

func (r *Reply) Error() string {
	s := fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
	if r.Cause != nil {
		s += ": " + r.Cause.Error()
	}
	return s
}

func (r *Reply) Unwrap() error { return r.Cause }

func (r *Reply) withCause(err error) *Reply {
	c := *r
	c.Cause = err
	return &c
}

// The replies of the policy table (package doc).
var (
	replyNeedTLS = &Reply{Code: 530, Enhanced: "5.7.0", Reason: ReasonTLSRequired,
		Text: "Encryption required: turn on TLS (STARTTLS or SSL/TLS) for outgoing mail in your mail program's account settings, then send again"}
	replyTempFail = &Reply{Code: 451, Enhanced: "4.3.0", Reason: ReasonTempFail,
		Text: "Temporary problem while securing this message; it was not sent, please try again later"}
	replyShuttingDown = &Reply{Code: 451, Enhanced: "4.3.2", Reason: ReasonShuttingDown,
		Text: "Mail filter is restarting; please try again in a moment"}
)

// replyNotEntitled refuses a triggered message from a sender who does not
// have the encryption feature. The sentence is for the user, who sees it in
// the mail program's bounce or error box.
func replyNotEntitled(tag string) *Reply {
	how := "remove " + tag + " from the subject"
	if tag == "" {
		how = "turn off secure sending"
	}
	return &Reply{Code: 550, Enhanced: "5.7.1", Reason: ReasonNotEntitled,
		Text: "Encrypted email is not enabled for your account; " + how + " to send it unencrypted, or ask your provider"}
}

func replyTooBig(limit int64) *Reply {
	return &Reply{Code: 552, Enhanced: "5.3.4", Reason: ReasonTooBig,
		Text: fmt.Sprintf("Message too large: this server encrypts messages of up to %s", humanSize(limit))}
}

// asReply maps any error to the reply the MTA gets. Every error that is not
// already a Reply is internal and becomes the generic temporary failure:
// a triggered message is sealed or refused, never passed on in plaintext.
func asReply(err error) *Reply {
	var r *Reply
	if errors.As(err, &r) {
		return r
	}
	return replyTempFail.withCause(err)
}

// response turns a reply into the custom SMFIR_REPLYCODE response.
func (r *Reply) response() gomilter.Response {
	return gomilter.NewResponseStr('y', fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text))
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
