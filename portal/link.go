package portal

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/securemail/securemail/keystore"
)

// maxLinkToken bounds what GET /l/{link} reads as a token; the milter
// writes 22 characters.
const maxLinkToken = 64

// GET /l/{link}: the phone link of the notice. It puts the server copy of
// the envelope into the spool, as POST /open puts an uploaded one, and
// answers 303 to the same /m/{token}: from there on both ways in are one
// reading flow. Like /open it grants nothing: the token only shows a
// sign-in page. It spends the client's upload budget (Limits.
// UploadsPerClient) before it looks the link up.
func (h *handler) link(w http.ResponseWriter, r *http.Request) {
	if !h.ready(w, r) {
		return
	}
	if h.opts.Copies == nil {
		h.unknownLink(w, r)
		return
	}
	ctx := r.Context()
	if res, err := h.hit(ctx, "open-client:"+h.clientIP(r), h.opts.Limits.UploadsPerClient); err != nil {
		h.storeFailed(w, r, "throttle", err)
		return
	} else if !res.Allowed {
		h.log.Info("portal: link refused: too many from this client", "remote", h.clientIP(r))
		w.Header().Set("Retry-After", strconv.Itoa(int(res.RetryAfter.Seconds())+1))
		h.errorPage(w, r, http.StatusTooManyRequests, "Too many messages opened",
			"Your browser has opened a great many messages on this server in a short time. Please wait "+humanDuration(res.RetryAfter)+" and follow the link again.")
		return
	}
	token := r.PathValue("link")
	if len(token) > maxLinkToken {
		h.unknownLink(w, r)
		return
	}
	c, err := h.opts.Copies.GetCopy(ctx, keystore.LinkDigest(token))
	if errors.Is(err, keystore.ErrNotFound) {
		h.unknownLink(w, r)
		return
	}
	if err != nil {
		h.storeFailed(w, r, "server copy", err)
		return
	}
	// The key decides first: a withdrawn or expired message says so, in
	// the words the attachment's way in uses.
	rec, err := h.opts.Keys.Key(ctx, c.KeyID)
	if err == nil {
		err = rec.Usable(h.now())
	}
	if err != nil {
		h.linkKeyProblem(w, r, err)
		return
	}
	if !c.Kept(h.now()) {
		h.linkEnded(w, r, c)
		return
	}
	env, err := h.opts.Copies.OpenCopy(ctx, c.KeyID)
	if errors.Is(err, keystore.ErrNotFound) {
		h.linkEnded(w, r, c)
		return
	}
	if err != nil {
		h.storeFailed(w, r, "server copy", err)
		return
	}
	defer env.Close()
	spoolToken, err := h.spool.put(ctx, base64Of(env), h.now())
	if err != nil {
		h.linkSpoolFailed(w, r, c, err)
		return
	}
	keep := false
	defer func() {
		if !keep {
			h.spool.drop(ctx, spoolToken)
		}
	}()
	if _, err := h.checkEnvelope(ctx, spoolToken, c.KeyID.String()); err != nil {
		h.envelopeProblem(w, r, err)
		return
	}
	keep = true
	h.log.Info("portal: envelope opened from the link", "key_id", c.KeyID.String(), "remote", h.clientIP(r))
	http.Redirect(w, r, "/m/"+spoolToken, http.StatusSeeOther)
}

// base64Of streams r as the base64 text the spool takes from a form.
func base64Of(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		enc := base64.NewEncoder(base64.StdEncoding, pw)
		_, err := io.Copy(enc, r)
		if err == nil {
			err = enc.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

func (h *handler) linkSpoolFailed(w http.ResponseWriter, r *http.Request, c keystore.ServerCopy, err error) {
	switch {
	case errors.Is(err, errSpoolFull):
		h.spoolFull(w, r)
	case errors.Is(err, keystore.ErrNotFound):
		// Deleted while it was being read.
		h.linkEnded(w, r, c)
	default:
		h.storeFailed(w, r, "spool the server copy", err)
	}
}

// linkKeyProblem explains a link whose message can no longer be read by
// any way: its copy went with the key.
func (h *handler) linkKeyProblem(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, keystore.ErrRevoked):
		h.log.Info("portal: link refused", "reason", "revoked key", "remote", h.clientIP(r))
		h.errorPage(w, r, http.StatusGone, "The sender withdrew this secure message",
			"This message can no longer be opened, because it was withdrawn. The copy that this link opened has been deleted from this site, and the attachment in the email cannot be opened either.",
			"If you still need the message, please ask the sender.")
	case errors.Is(err, keystore.ErrExpired), errors.Is(err, keystore.ErrNotFound):
		h.log.Info("portal: link refused", "reason", "expired or unknown key", "remote", h.clientIP(r))
		h.errorPage(w, r, http.StatusGone, "This secure message has expired",
			"Secure messages can be read for a limited time, and this one can no longer be opened. The copy that this link opened has been deleted from this site, and nobody can read the message now, here or anywhere else.",
			"If you still need it, please ask the sender to send it again.")
	default:
		h.envelopeProblem(w, r, err)
	}
}

func (h *handler) unknownLink(w http.ResponseWriter, r *http.Request) {
	h.log.Info("portal: link refused: unknown", "remote", h.clientIP(r))
	h.errorPage(w, r, http.StatusNotFound, "This link does not work",
		"This site knows no message under this link. Check that you opened the whole link from the email; some apps cut long links.",
		"You can also read the message from the email's attachment: open SecureMessageATT.html and choose \"Click to read message\".")
}

// linkEnded explains a link whose copy is gone while the message itself
// can still be read from the attachment.
func (h *handler) linkEnded(w http.ResponseWriter, r *http.Request, c keystore.ServerCopy) {
	h.log.Info("portal: link refused: server copy deleted", "key_id", c.KeyID.String(), "remote", h.clientIP(r))
	when := "for a limited time"
	if c.Deleted.IsZero() || !c.Deleted.Before(c.Until) {
		when = "until " + c.Until.UTC().Format(linkDateLayout)
	}
	h.errorPage(w, r, http.StatusGone, "This link has ended",
		"The link opened a copy of your message that this site kept "+when+" for reading on a phone. That copy has been deleted.",
		"Your message can still be read: open the attachment SecureMessageATT.html in the email, on a computer if your phone cannot open it, and choose \"Click to read message\".")
}

// linkDateLayout is how pages about the link say when it ended.
const linkDateLayout = "2 January 2006 at 15:04 UTC"
