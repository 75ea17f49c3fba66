// Package portal is the recipient-facing web handler. In this version it
// serves the service's front page and answers the attachment's "Click to
// read message" form with a page that says reading is not enabled on this
// server yet; the reading flow (accounts, login, reading, replies) is
// planned next. It never echoes what it is sent and grants nothing.
//
// Every page carries a strict Content-Security-Policy (no script at all),
// frame-ancestors 'none', nosniff and no-referrer.
package portal

import (
	"html/template"
	"io"
	"net/http"
)

// Options configure the handler.
type Options struct {
	// PortalURL is the public base URL written into envelopes.
	PortalURL string
}

type handler struct {
	opts Options
	mux  *http.ServeMux
}

// New returns the portal's handler.
func New(opts Options) http.Handler {
	h := &handler{opts: opts, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.home)
	h.mux.HandleFunc("POST /open", h.open)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	if r.TLS != nil {
		hdr.Set("Strict-Transport-Security", "max-age=31536000")
	}
	h.mux.ServeHTTP(w, r)
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1d2330}</style>
</head><body><main><h1>{{.Title}}</h1>{{range .Paragraphs}}<p>{{.}}</p>{{end}}</main></body></html>
`))

type page struct {
	Title      string
	Paragraphs []string
}

func (h *handler) render(w http.ResponseWriter, status int, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	pageTemplate.Execute(w, p)
}

func (h *handler) home(w http.ResponseWriter, r *http.Request) {
	h.render(w, http.StatusOK, page{
		Title: "Secure messages",
		Paragraphs: []string{
			"This is the secure message service of this mail server. People who use it send encrypted email: you receive a notice with an attachment named SecureMessageATT.html, and you read the message here.",
			"A genuine message sends you to an address that starts with " + h.opts.PortalURL + "/ and nowhere else. If a page asks for your password at any other address, close it.",
		},
	})
}

func (h *handler) open(w http.ResponseWriter, r *http.Request) {
	// Do not read the upload: nothing here would use it.
	h.render(w, http.StatusServiceUnavailable, page{
		Title: "Reading is not enabled yet",
		Paragraphs: []string{
			"This server encrypts outgoing mail, but reading secure messages on this site is not enabled yet.",
			"Your message is safe and still encrypted. Please ask the sender to contact you another way or to send it again later.",
		},
	})
}
