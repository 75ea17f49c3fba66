package portal

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/securemail/securemail/keystore"
)

// pageError is a request the portal answers with a page in words instead
// of what was asked for. title and words are what the recipient reads and
// never carry internal detail; cause is for the log only. Every error page
// is one, and h.fail is the one place that turns it into a page and a log
// line (as milter.Reply is for SMTP replies).
type pageError struct {
	status int
	title  string
	words  []string // the page's paragraphs
	cause  error
	level  slog.Level // of the log line; the zero value is Info
	// retryAfter, when positive, is sent as Retry-After in seconds.
	retryAfter int
	// closeConn asks the client to drop the connection (an upload that
	// was cut off mid-body).
	closeConn bool
}

func (e *pageError) Error() string {
	s := "portal: " + strconv.Itoa(e.status) + " " + e.title
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *pageError) Unwrap() error { return e.cause }

// fail answers r with err's page and logs its cause once. An error that is
// not a *pageError is internal: the recipient gets the generic 500 page.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *pageError
	if !errors.As(err, &pe) {
		pe = pageInternal(err)
	}
	// The route pattern, not the path: a path holds the message token.
	attrs := []any{"status", pe.status, "path", h.routePattern(r), "remote", h.clientIP(r)}
	if pe.cause != nil {
		attrs = append(attrs, "cause", pe.cause.Error())
	}
	h.log.Log(r.Context(), pe.level, "portal: error page", attrs...)
	if pe.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(pe.retryAfter))
	}
	if pe.closeConn {
		w.Header().Set("Connection", "close")
	}
	h.render(w, r, pe.status, "plain", view{Title: pe.title, Paragraphs: pe.words})
}

// routePattern names r's route ("POST /m/{token}/reply") for the log; ""
// when none matches.
func (h *handler) routePattern(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	// Refused before routing (the cross-origin check).
	_, p := h.mux.Handler(r)
	return p
}

// retrySeconds is Retry-After for a budget that frees up after d.
func retrySeconds(d time.Duration) int { return int(d.Seconds()) + 1 }

// The catalogue of error pages. Causes given here for pages without an
// underlying error say in the log why the page was shown.

func pageFormUnreadable(err error) *pageError {
	return &pageError{status: http.StatusBadRequest, title: "This form could not be read", cause: err,
		words: []string{"The form was too large or damaged on its way. Go back and try again."}}
}

func pageStartOver() *pageError {
	return &pageError{status: http.StatusUnauthorized, title: "Please open your message again",
		cause: errors.New("no session at the stage this page needs"),
		words: []string{
			"Your visit ended, or this page was reached out of order. Open the SecureMessageATT.html attachment in your email again and choose \"Click to read message\".",
			"This site needs a cookie to remember each step. If your browser blocks cookies, allow them for this site and try again.",
		}}
}

func pageAccountExists(email string) *pageError {
	return &pageError{status: http.StatusConflict, title: "You already have an account",
		cause: errors.New("registration for an address that has an account"),
		words: []string{"An account for " + email + " exists. Open the message again and sign in with your password."}}
}

func pageTooManyAnswers() *pageError {
	return &pageError{status: http.StatusUnauthorized, title: "Too many wrong answers",
		cause: errors.New("security answers budget spent; reset ended"),
		words: []string{"The answers were wrong too many times, so this reset has ended. Open your message again and ask for a new code to start over."}}
}

// pageBusy answers a request that found the password checks or the mail
// queue full: at once, in words, instead of after a long wait.
func pageBusy(cause error) *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: "This server is busy", cause: cause,
		level: slog.LevelWarn, retryAfter: 60,
		words: []string{"Too many people are using this site right now. Nothing was lost. Please try again in a minute."}}
}

func pageTooManyUploads() *pageError {
	return &pageError{status: http.StatusTooManyRequests, title: "Too many uploads at once",
		cause: errors.New("too many uploads in progress from this client"), retryAfter: 60,
		words: []string{"Your browser is already sending several messages to this server. Wait until they have finished, then try again."}}
}

func pageUploadTooSlow(cause error) *pageError {
	return &pageError{status: http.StatusRequestTimeout, title: "The upload was too slow", cause: cause, closeConn: true,
		words: []string{"Your browser sent the message too slowly, so this server stopped waiting. Check your connection and try again."}}
}

func pageSpoolFull(cause error) *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: "This server is busy", cause: cause,
		level: slog.LevelWarn, retryAfter: 300,
		words: []string{"Too many messages are being read right now, so this server cannot take yours at the moment. Nothing was lost. Please open the attachment again in a few minutes."}}
}

func pageTooManyOpened(retry time.Duration) *pageError {
	return &pageError{status: http.StatusTooManyRequests, title: "Too many messages opened",
		cause: errors.New("upload budget of this client spent"), retryAfter: retrySeconds(retry),
		words: []string{"Your browser has sent this server a great many messages in a short time. Please wait " + humanDuration(retry) + " and open the attachment again."}}
}

// pageTooManyLinks is pageTooManyOpened for a phone link: one budget.
func pageTooManyLinks(retry time.Duration) *pageError {
	return &pageError{status: http.StatusTooManyRequests, title: "Too many messages opened",
		cause: errors.New("upload budget of this client spent (phone link)"), retryAfter: retrySeconds(retry),
		words: []string{"Your browser has opened a great many messages on this server in a short time. Please wait " + humanDuration(retry) + " and follow the link again."}}
}

func pageUnknownLink(cause error) *pageError {
	return &pageError{status: http.StatusNotFound, title: "This link does not work", cause: cause,
		words: []string{
			"This site knows no message under this link. Check that you opened the whole link from the email; some apps cut long links.",
			"You can also read the message from the email's attachment: open SecureMessageATT.html and choose \"Click to read message\".",
		}}
}

// pageLinkEnded explains a link whose copy is gone while the message can
// still be read from the attachment.
func pageLinkEnded(c keystore.ServerCopy, cause error) *pageError {
	when := "for a limited time"
	if c.Deleted.IsZero() || !c.Deleted.Before(c.Until) {
		when = "until " + c.Until.UTC().Format(linkDateLayout)
	}
	return &pageError{status: http.StatusGone, title: "This link has ended", cause: cause,
		words: []string{
			"The link opened a copy of your message that this site kept " + when + " for reading on a phone. That copy has been deleted.",
			"Your message can still be read: open the attachment SecureMessageATT.html in the email, on a computer if your phone cannot open it, and choose \"Click to read message\".",
		}}
}

// pageLinkRevoked and pageLinkExpired are pageRevoked and pageExpired for
// a link: its copy went with the key.
func pageLinkRevoked(cause error) *pageError {
	return &pageError{status: http.StatusGone, title: "The sender withdrew this secure message", cause: cause,
		words: []string{
			"This message can no longer be opened, because it was withdrawn. The copy that this link opened has been deleted from this site, and the attachment in the email cannot be opened either.",
			"If you still need the message, please ask the sender.",
		}}
}

func pageLinkExpired(cause error) *pageError {
	return &pageError{status: http.StatusGone, title: "This secure message has expired", cause: cause,
		words: []string{
			"Secure messages can be read for a limited time, and this one can no longer be opened. The copy that this link opened has been deleted from this site, and nobody can read the message now, here or anywhere else.",
			"If you still need it, please ask the sender to send it again.",
		}}
}

func pageMessageTooLarge(cause error) *pageError {
	return &pageError{status: http.StatusRequestEntityTooLarge, title: "This message is too large", cause: cause,
		words: []string{"What your browser sent is larger than any secure message this server sends, so it is not one of ours. Please ask the sender to send the message again."}}
}

func pageDamaged(cause error) *pageError {
	return &pageError{status: http.StatusBadRequest, title: "This secure message is damaged", cause: cause,
		words: []string{
			"The attachment did not arrive complete or was changed on its way, so it cannot be opened. Nothing in it was shown to anyone.",
			"Please ask the sender to send the message again. If you opened SecureMessageATT.html in an app other than a web browser, save it and open it in a browser.",
		}}
}

func pageEnvelopeGone(cause error) *pageError {
	return &pageError{status: http.StatusNotFound, title: "Please open your message again", cause: cause,
		words: []string{"This page was open for a long time, so the copy of your message on this site was removed. Open the SecureMessageATT.html attachment again and choose \"Click to read message\"."}}
}

func pageExpired(cause error) *pageError {
	return &pageError{status: http.StatusGone, title: "This secure message has expired", cause: cause,
		words: []string{
			"Secure messages can be read for a limited time, and this one can no longer be opened. Nobody can read it now, here or anywhere else.",
			"If you still need it, please ask the sender to send it again.",
		}}
}

func pageRevoked(cause error) *pageError {
	return &pageError{status: http.StatusGone, title: "The sender withdrew this secure message", cause: cause,
		words: []string{"This message can no longer be opened, because it was withdrawn. If you still need it, please ask the sender."}}
}

// unrouted answers, instead of the mux's plain text, a request no route
// takes: the page of an address that leads nowhere, or of a method the
// address does not take (with Allow). nil when a route takes r.
func (h *handler) unrouted(w http.ResponseWriter, r *http.Request) error {
	if _, pattern := h.mux.Handler(r); pattern != "" {
		return nil
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		other := r.Clone(r.Context())
		other.Method = m
		if _, pattern := h.mux.Handler(other); pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		return pageNoSuchPage()
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	return pageWrongMethod(r.Method)
}

func pageNoSuchPage() *pageError {
	return &pageError{status: http.StatusNotFound, title: "There is no such page here",
		cause: errors.New("no route for this path"),
		words: []string{"The address you followed does not lead to a page of this site.",
			"To read a secure message, open the SecureMessageATT.html attachment of its email again and choose \"Click to read message\"."}}
}

func pageWrongMethod(method string) *pageError {
	return &pageError{status: http.StatusMethodNotAllowed, title: "This page cannot be used that way",
		cause: fmt.Errorf("method %.16q not allowed here", method),
		words: []string{"Your browser asked for this page in a way the page does not answer. Go back and try again, or open the attachment of the email again."}}
}

func pageCannotShow(cause error) *pageError {
	return &pageError{status: http.StatusUnprocessableEntity, title: "This message cannot be shown", cause: cause,
		level: slog.LevelWarn,
		words: []string{"The message was decrypted, but its content is not in a form this page can show. Please ask the sender to send it again, perhaps without special formatting."}}
}

func pageNoSuchAttachment(cause error) *pageError {
	return &pageError{status: http.StatusNotFound, title: "No such attachment", cause: cause,
		words: []string{"This message has no such attachment."}}
}

func pageAttachmentUnreadable(cause error) *pageError {
	return &pageError{status: http.StatusUnprocessableEntity, title: "This attachment cannot be opened", cause: cause,
		level: slog.LevelWarn,
		words: []string{"The attachment is not in a form this page can send. Please ask the sender to send it again."}}
}

func pageReplyUnreadable(cause error) *pageError {
	return &pageError{status: http.StatusBadRequest, title: "Your reply could not be read", cause: cause,
		words: []string{"The form was damaged on its way. Go back and try again."}}
}

func pageReplyEmpty() *pageError {
	return &pageError{status: http.StatusBadRequest, title: "Your reply is empty",
		cause: errors.New("reply without text or files"),
		words: []string{"Go back, write your reply and send it again."}}
}

func pageNobodyToReply() *pageError {
	return &pageError{status: http.StatusUnprocessableEntity, title: "There is nobody to reply to",
		cause: errors.New("the message names no sender to reply to"),
		words: []string{"This message does not say who sent it, so a reply cannot be addressed. Contact the sender another way."}}
}

func pageTooManyReplies(limit int, retry time.Duration) *pageError {
	return &pageError{status: http.StatusTooManyRequests, title: "You have sent many replies",
		cause: errors.New("reply budget of this account spent"), retryAfter: retrySeconds(retry),
		words: []string{"Your reply was not sent: this account has sent " + strconv.Itoa(limit) + " replies recently, which is as many as we allow in a while. Please wait " + humanDuration(retry) + " and send it again."}}
}

func pageReplyTooLarge(limit int64, cause error) *pageError {
	return &pageError{status: http.StatusRequestEntityTooLarge, title: "Your reply is too large", cause: cause,
		words: []string{"Your reply was not sent: with its attachments it is larger than " + humanSize(limit) + ". Go back and attach fewer or smaller files."}}
}

func pageReplyNotSent(cause error) *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: "Your reply was not sent", cause: cause,
		level: slog.LevelError,
		words: []string{"This server could not send your reply just now. Nothing was sent. Go back and try again in a few minutes."}}
}

func pageCrossOrigin() *pageError {
	return &pageError{status: http.StatusForbidden, title: "This form came from another site",
		cause: errors.New("cross-origin request refused"),
		words: []string{"For your safety this page only accepts forms sent from this site. Go back, reload the page and try again."}}
}

func pageNotEnabled() *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: "Reading is not enabled on this server",
		cause: errors.New("reading is not configured (keys, store, master key, spool or mailer missing)"),
		words: []string{"This server encrypts outgoing mail, but reading secure messages here is not set up. Your message is safe and still encrypted; please ask the sender to contact you another way."}}
}

// pageStoreFailed answers a request whose store call failed for a reason
// that is not the user's.
func pageStoreFailed(op string, err error) *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: "Please try again in a minute",
		cause: fmt.Errorf("%s: %w", op, err), level: slog.LevelError,
		words: []string{"This server could not finish your request just now. Nothing was lost. Please try again in a minute."}}
}

// pageInternal is the page of a bug: a panic, a template that failed, an
// error nobody turned into a page.
func pageInternal(cause error) *pageError {
	return &pageError{status: http.StatusInternalServerError, title: "Something went wrong", cause: cause,
		level: slog.LevelError,
		words: []string{"This page could not be shown because of a problem on this server. Please try again in a few minutes."}}
}

// pageHashFailed answers a request whose argon2 work could not run: busy
// when the checks are full, else a failure that is not the user's.
func pageHashFailed(op string, err error) *pageError {
	if errors.Is(err, ErrBusy) {
		return pageBusy(fmt.Errorf("%s: %w", op, err))
	}
	return pageStoreFailed(op, err)
}
