package portal

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/securemail/securemail/internal/catalog"
	"github.com/securemail/securemail/keystore"
)

// pageError is a request the portal answers with a page in words instead
// of what was asked for. title and words are what the recipient reads, in
// the request's language, and never carry internal detail; cause is for
// the log only. Every error page is one, and h.fail is the one place that
// turns it into a page and a log line (as milter.Reply is for SMTP
// replies).
type pageError struct {
	status int
	title  entry
	words  []entry // the page's paragraphs
	cause  error
	level  slog.Level // of the log line; the zero value is Info
	// retryAfter, when positive, is sent as Retry-After in seconds.
	retryAfter int
	// closeConn asks the client to drop the connection (an upload that
	// was cut off mid-body).
	closeConn bool
}

// entry is a catalogue entry with its field values, rendered when the
// page's language is known. A value that is a localized is rendered in
// that language too (a duration, a size, a date).
type entry struct {
	key  string
	args []any // "Name", value, ...
}

// localized is a field value that depends on the language.
type localized func(catalog.Lang) string

func say(key string, nameValues ...any) entry { return entry{key, nameValues} }

func (m entry) in(l catalog.Lang) string {
	args := make([]any, len(m.args))
	for i, a := range m.args {
		if f, ok := a.(localized); ok {
			a = f(l)
		}
		args[i] = a
	}
	return catalog.Text(l, m.key, args...)
}

// page returns e's title and paragraphs in l.
func (e *pageError) page(l catalog.Lang) (string, []string) {
	words := make([]string, len(e.words))
	for i, w := range e.words {
		words[i] = w.in(l)
	}
	return e.title.in(l), words
}

// Error is for the log, so it is in English whatever the reader's
// language.
func (e *pageError) Error() string {
	s := "portal: " + strconv.Itoa(e.status) + " " + e.title.in(catalog.English)
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
	l := h.lang(r)
	title, words := pe.page(l)
	h.render(w, r, pe.status, "plain", view{Title: title, Paragraphs: words, Lang: l})
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

// waitFor is d as a page says "Please wait {Wait}", in the page's
// language.
func waitFor(d time.Duration) localized {
	return func(l catalog.Lang) string { return durationWords(l, d) }
}

// sizeIn is humanSize written as l writes numbers: "1,5 MB" in German.
func sizeIn(n int64) localized {
	return func(l catalog.Lang) string {
		s := humanSize(n)
		if l == catalog.German {
			s = strings.NewReplacer(".", ",", " bytes", " Byte", " byte", " Byte").Replace(s)
		}
		return s
	}
}

// The catalogue of error pages. Causes given here for pages without an
// underlying error say in the log why the page was shown.

func pageFormUnreadable(err error) *pageError {
	return &pageError{status: http.StatusBadRequest, title: say("error.form_unreadable.title"), cause: err,
		words: []entry{say("error.form_unreadable.text")}}
}

func pageStartOver() *pageError {
	return &pageError{status: http.StatusUnauthorized, title: say("error.open_again.title"),
		cause: errors.New("no session at the stage this page needs"),
		words: []entry{say("error.start_over.text"), say("error.start_over.cookies")}}
}

func pageAccountExists(email string) *pageError {
	return &pageError{status: http.StatusConflict, title: say("error.account_exists.title"),
		cause: errors.New("registration for an address that has an account"),
		words: []entry{say("error.account_exists.text", "Email", email)}}
}

func pageTooManyAnswers() *pageError {
	return &pageError{status: http.StatusUnauthorized, title: say("error.too_many_answers.title"),
		cause: errors.New("security answers budget spent; reset ended"),
		words: []entry{say("error.too_many_answers.text")}}
}

// pageBusy answers a request that found the password checks or the mail
// queue full: at once, in words, instead of after a long wait.
func pageBusy(cause error) *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: say("error.busy.title"), cause: cause,
		level: slog.LevelWarn, retryAfter: 60,
		words: []entry{say("error.busy.text")}}
}

func pageTooManyUploads() *pageError {
	return &pageError{status: http.StatusTooManyRequests, title: say("error.too_many_uploads.title"),
		cause: errors.New("too many uploads in progress from this client"), retryAfter: 60,
		words: []entry{say("error.too_many_uploads.text")}}
}

func pageUploadTooSlow(cause error) *pageError {
	return &pageError{status: http.StatusRequestTimeout, title: say("error.upload_too_slow.title"), cause: cause, closeConn: true,
		words: []entry{say("error.upload_too_slow.text")}}
}

func pageSpoolFull(cause error) *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: say("error.busy.title"), cause: cause,
		level: slog.LevelWarn, retryAfter: 300,
		words: []entry{say("error.spool_full.text")}}
}

func pageTooManyOpened(retry time.Duration) *pageError {
	return &pageError{status: http.StatusTooManyRequests, title: say("error.too_many_opened.title"),
		cause: errors.New("upload budget of this client spent"), retryAfter: retrySeconds(retry),
		words: []entry{say("error.too_many_opened.text", "Wait", waitFor(retry))}}
}

// pageTooManyLinks is pageTooManyOpened for a phone link: one budget.
func pageTooManyLinks(retry time.Duration) *pageError {
	return &pageError{status: http.StatusTooManyRequests, title: say("error.too_many_opened.title"),
		cause: errors.New("upload budget of this client spent (phone link)"), retryAfter: retrySeconds(retry),
		words: []entry{say("error.too_many_links.text", "Wait", waitFor(retry))}}
}

func pageUnknownLink(cause error) *pageError {
	return &pageError{status: http.StatusNotFound, title: say("error.unknown_link.title"), cause: cause,
		words: []entry{say("error.unknown_link.text"), say("error.unknown_link.attachment")}}
}

// pageLinkEnded explains a link whose copy is gone while the message can
// still be read from the attachment.
func pageLinkEnded(c keystore.ServerCopy, cause error) *pageError {
	kept := say("error.link_ended.kept_for_time")
	if c.Deleted.IsZero() || !c.Deleted.Before(c.Until) {
		kept = say("error.link_ended.kept_until", "Until", localized(func(l catalog.Lang) string {
			if l == catalog.German {
				return catalog.Date(l, c.Until)
			}
			return c.Until.UTC().Format(linkDateLayout)
		}))
	}
	return &pageError{status: http.StatusGone, title: say("error.link_ended.title"), cause: cause,
		words: []entry{kept, say("error.link_ended.attachment")}}
}

// pageLinkRevoked and pageLinkExpired are pageRevoked and pageExpired for
// a link: its copy went with the key.
func pageLinkRevoked(cause error) *pageError {
	return &pageError{status: http.StatusGone, title: say("error.revoked.title"), cause: cause,
		words: []entry{say("error.link_revoked.text"), say("error.link_revoked.ask")}}
}

func pageLinkExpired(cause error) *pageError {
	return &pageError{status: http.StatusGone, title: say("error.expired.title"), cause: cause,
		words: []entry{say("error.link_expired.text"), say("error.expired.ask")}}
}

func pageMessageTooLarge(cause error) *pageError {
	return &pageError{status: http.StatusRequestEntityTooLarge, title: say("error.message_too_large.title"), cause: cause,
		words: []entry{say("error.message_too_large.text")}}
}

func pageDamaged(cause error) *pageError {
	return &pageError{status: http.StatusBadRequest, title: say("error.damaged.title"), cause: cause,
		words: []entry{say("error.damaged.text"), say("error.damaged.again")}}
}

func pageEnvelopeGone(cause error) *pageError {
	return &pageError{status: http.StatusNotFound, title: say("error.open_again.title"), cause: cause,
		words: []entry{say("error.envelope_gone.text")}}
}

func pageExpired(cause error) *pageError {
	return &pageError{status: http.StatusGone, title: say("error.expired.title"), cause: cause,
		words: []entry{say("error.expired.text"), say("error.expired.ask")}}
}

func pageRevoked(cause error) *pageError {
	return &pageError{status: http.StatusGone, title: say("error.revoked.title"), cause: cause,
		words: []entry{say("error.revoked.text")}}
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
	return &pageError{status: http.StatusNotFound, title: say("error.no_such_page.title"),
		cause: errors.New("no route for this path"),
		words: []entry{say("error.no_such_page.text"), say("error.no_such_page.attachment")}}
}

func pageWrongMethod(method string) *pageError {
	return &pageError{status: http.StatusMethodNotAllowed, title: say("error.wrong_method.title"),
		cause: fmt.Errorf("method %.16q not allowed here", method),
		words: []entry{say("error.wrong_method.text")}}
}

func pageCannotShow(cause error) *pageError {
	return &pageError{status: http.StatusUnprocessableEntity, title: say("error.cannot_show.title"), cause: cause,
		level: slog.LevelWarn,
		words: []entry{say("error.cannot_show.text")}}
}

func pageNoSuchAttachment(cause error) *pageError {
	return &pageError{status: http.StatusNotFound, title: say("error.no_such_attachment.title"), cause: cause,
		words: []entry{say("error.no_such_attachment.text")}}
}

func pageAttachmentUnreadable(cause error) *pageError {
	return &pageError{status: http.StatusUnprocessableEntity, title: say("error.attachment_unreadable.title"), cause: cause,
		level: slog.LevelWarn,
		words: []entry{say("error.attachment_unreadable.text")}}
}

func pageReplyUnreadable(cause error) *pageError {
	return &pageError{status: http.StatusBadRequest, title: say("error.reply_unreadable.title"), cause: cause,
		words: []entry{say("error.reply_unreadable.text")}}
}

func pageReplyEmpty() *pageError {
	return &pageError{status: http.StatusBadRequest, title: say("error.reply_empty.title"),
		cause: errors.New("reply without text or files"),
		words: []entry{say("error.reply_empty.text")}}
}

func pageNobodyToReply() *pageError {
	return &pageError{status: http.StatusUnprocessableEntity, title: say("error.nobody_to_reply.title"),
		cause: errors.New("the message names no sender to reply to"),
		words: []entry{say("error.nobody_to_reply.text")}}
}

func pageTooManyReplies(limit int, retry time.Duration) *pageError {
	return &pageError{status: http.StatusTooManyRequests, title: say("error.too_many_replies.title"),
		cause: errors.New("reply budget of this account spent"), retryAfter: retrySeconds(retry),
		words: []entry{say("error.too_many_replies.text", "Limit", limit, "Wait", waitFor(retry))}}
}

func pageReplyTooLarge(limit int64, cause error) *pageError {
	return &pageError{status: http.StatusRequestEntityTooLarge, title: say("error.reply_too_large.title"), cause: cause,
		words: []entry{say("error.reply_too_large.text", "Size", sizeIn(limit))}}
}

func pageReplyNotSent(cause error) *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: say("error.reply_not_sent.title"), cause: cause,
		level: slog.LevelError,
		words: []entry{say("error.reply_not_sent.text")}}
}

func pageCrossOrigin() *pageError {
	return &pageError{status: http.StatusForbidden, title: say("error.cross_origin.title"),
		cause: errors.New("cross-origin request refused"),
		words: []entry{say("error.cross_origin.text")}}
}

func pageNotEnabled() *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: say("error.not_enabled.title"),
		cause: errors.New("reading is not configured (keys, store, master key, spool or mailer missing)"),
		words: []entry{say("error.not_enabled.text")}}
}

// pageStoreFailed answers a request whose store call failed for a reason
// that is not the user's.
func pageStoreFailed(op string, err error) *pageError {
	return &pageError{status: http.StatusServiceUnavailable, title: say("error.store_failed.title"),
		cause: fmt.Errorf("%s: %w", op, err), level: slog.LevelError,
		words: []entry{say("error.store_failed.text")}}
}

// pageInternal is the page of a bug: a panic, a template that failed, an
// error nobody turned into a page.
func pageInternal(cause error) *pageError {
	return &pageError{status: http.StatusInternalServerError, title: say("error.internal.title"), cause: cause,
		level: slog.LevelError,
		words: []entry{say("error.internal.text")}}
}

// pageHashFailed answers a request whose argon2 work could not run: busy
// when the checks are full, else a failure that is not the user's.
func pageHashFailed(op string, err error) *pageError {
	if errors.Is(err, ErrBusy) {
		return pageBusy(fmt.Errorf("%s: %w", op, err))
	}
	return pageStoreFailed(op, err)
}
