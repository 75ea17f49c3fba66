package portal

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/catalog"
)

// Brands tells the portal how a sender's organisation looks, so that every
// page about a message shows who is writing (the look of its envelope
// page). The portal's CSP allows only its own images and style sheets, so
// a brand's logo and accent colour are served from /static/brand/{id}/.
type Brands interface {
	// ForSender returns the brand for a message from sender, and an id
	// that names it in URLs (letters, digits, dots and dashes); ok is
	// false for the neutral look.
	ForSender(sender string) (id string, b envelope.Brand, ok bool)
	// ByID returns the brand an id names.
	ByID(id string) (envelope.Brand, bool)
	// Language is the language configured for sender's domain (the one
	// its notices are in), for the mail the portal sends the sender;
	// "" is English.
	Language(sender string) catalog.Lang
}

// senderLang is the language of the mail the portal sends to sender:
// the one configured for its domain, else English.
func (h *handler) senderLang(sender string) catalog.Lang {
	if h.opts.Brands == nil {
		return catalog.English
	}
	if l := h.opts.Brands.Language(sender); l != "" {
		return l
	}
	return catalog.English
}

// brandView is the brand part of a page.
type brandView struct {
	ID, Org, Support string
	Logo             bool
}

// pageBrand is the brand of the message a page is about (v.Token), or
// none. It reads the envelope's key record; a message that cannot be
// looked up gets the neutral look, and its own page says why.
func (h *handler) pageBrand(v view) brandView {
	if h.opts.Brands == nil || v.Token == "" {
		return brandView{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rec, err := h.tokenRecord(ctx, v.Token)
	if err != nil && rec.Sender == "" {
		return brandView{}
	}
	id, b, ok := h.opts.Brands.ForSender(rec.Sender)
	if !ok || !validBrandID(id) {
		return brandView{}
	}
	return brandView{ID: id, Org: b.Organisation, Support: b.Support, Logo: b.Logo != ""}
}

func validBrandID(id string) bool {
	if id == "" || len(id) > 253 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// GET /static/brand/{id}/logo and /static/brand/{id}/style.css.
func (h *handler) brandAsset(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if h.opts.Brands == nil || !validBrandID(id) {
		http.NotFound(w, r)
		return
	}
	b, ok := h.opts.Brands.ByID(id)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	switch r.PathValue("file") {
	case "style.css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		if b.Accent != "" {
			// Brand.Check made it #rrggbb with 4.5:1 against white.
			a := strings.ToLower(b.Accent)
			w.Write([]byte(".bar{background:" + a + "}\nbutton{background:" + a + "}\nbutton.secondary{color:" + a + "}\n"))
		}
		w.Write([]byte(".bar .brand{display:flex;align-items:center;gap:.6rem}\n.bar .brand img{max-height:2rem;max-width:8rem;background:#fff;border-radius:4px;padding:2px}\n.support{color:#4a5264;font-size:.95rem}\n"))
	case "logo":
		mime, data, ok := strings.Cut(strings.TrimPrefix(b.Logo, "data:"), ";base64,")
		raw, err := base64.StdEncoding.DecodeString(data)
		if !ok || err != nil || (mime != "image/png" && mime != "image/svg+xml") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", mime)
		// An SVG opened on its own must not run anything.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
		w.Write(raw)
	default:
		http.NotFound(w, r)
	}
}
