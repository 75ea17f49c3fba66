package portal

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"

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
// UploadsPerClient) before it looks the link up. The route pattern, not
// the path, goes into the log, so the link's token never does.
func (h *handler) link(w http.ResponseWriter, r *http.Request) {
	if !h.ready(w, r) {
		return
	}
	if err := h.followLink(w, r); err != nil {
		h.fail(w, r, err)
	}
}

func (h *handler) followLink(w http.ResponseWriter, r *http.Request) error {
	if h.opts.Copies == nil {
		return pageUnknownLink(errors.New("link fallback: no copy store on this portal"))
	}
	ctx := r.Context()
	if res, err := h.hit(ctx, "open-client:"+h.clientIP(r), h.opts.Limits.UploadsPerClient); err != nil {
		return pageStoreFailed("throttle", err)
	} else if !res.Allowed {
		return pageTooManyLinks(res.RetryAfter)
	}
	token := r.PathValue("link")
	if len(token) > maxLinkToken {
		return pageUnknownLink(errors.New("link token too long"))
	}
	c, err := h.opts.Copies.GetCopy(ctx, keystore.LinkDigest(token))
	if errors.Is(err, keystore.ErrNotFound) {
		return pageUnknownLink(err)
	}
	if err != nil {
		return pageStoreFailed("server copy", err)
	}
	// The key decides first: a withdrawn or expired message says so.
	rec, err := h.opts.Keys.Key(ctx, c.KeyID)
	if err == nil {
		err = rec.Usable(h.now())
	}
	switch {
	case errors.Is(err, keystore.ErrRevoked):
		return pageLinkRevoked(fmt.Errorf("key %s: %w", c.KeyID, err))
	case errors.Is(err, keystore.ErrExpired), errors.Is(err, keystore.ErrNotFound):
		return pageLinkExpired(fmt.Errorf("key %s: %w", c.KeyID, err))
	case err != nil:
		return pageStoreFailed("key", err)
	}
	if !c.Kept(h.now()) {
		return pageLinkEnded(c, fmt.Errorf("server copy of key %s ended", c.KeyID))
	}
	env, err := h.opts.Copies.OpenCopy(ctx, c.KeyID)
	if errors.Is(err, keystore.ErrNotFound) {
		return pageLinkEnded(c, fmt.Errorf("server copy of key %s: %w", c.KeyID, err))
	}
	if err != nil {
		return pageStoreFailed("server copy", err)
	}
	defer env.Close()
	spoolToken, err := h.spool.put(ctx, base64Of(env), h.now())
	switch {
	case errors.Is(err, errSpoolFull):
		return pageSpoolFull(err)
	case errors.Is(err, keystore.ErrNotFound):
		// Deleted while it was being read.
		return pageLinkEnded(c, fmt.Errorf("server copy of key %s: %w", c.KeyID, err))
	case err != nil:
		return pageStoreFailed("spool the server copy", err)
	}
	if _, err := h.checkEnvelope(ctx, spoolToken, c.KeyID.String()); err != nil {
		h.spool.drop(ctx, spoolToken)
		return envelopePage(err)
	}
	h.log.Info("portal: envelope opened from the link", "key_id", c.KeyID.String(), "remote", h.clientIP(r))
	http.Redirect(w, r, "/m/"+spoolToken, http.StatusSeeOther)
	return nil
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

// linkDateLayout is how pages about the link say when it ended.
const linkDateLayout = "2 January 2006 at 15:04 UTC"
