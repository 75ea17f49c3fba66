// Package portal is the recipient-facing web handler: a recipient's browser
// posts the envelope from SecureMessageATT.html to /open, proves an address
// the message was sent to (an emailed code at first, a password after that),
// reads the message and may reply to its sender.
//
// # Contract
//
//   - POST /open streams the upload to a ciphertext spool (never whole in
//     memory, capped, swept after SpoolTTL), checks the envelope against its
//     key record and answers 303 to GET /m/{token}. It is the only endpoint a
//     foreign origin may post to, and it grants nothing: a token only shows
//     a sign-in page. The same envelope posted again reuses its spool file;
//     the spool holds at most SpoolMax bytes (503 past it); slow and
//     parallel uploads are cut off (UploadGuard).
//   - GET /l/{link}, the notice's phone link, does what /open does from the
//     server copy of the envelope (Options.Copies) and leads to the same
//     /m/{token}. The link is a random 128-bit token, not the key id; a
//     withdrawn, expired or ended link is a page that says which.
//   - Every limit (Limits) is one keystore Hit, a check-and-count in one
//     atomic step before the work it guards, so a burst of requests gets
//     no more than the same requests one after another. Password checks
//     run one at a time per client and wait in a bounded queue; past it
//     the answer is 503 "busy" at once. docs/security.md lists every limit.
//   - A reader gives an address (POST /email), and lands on one sign-in
//     page that serves everyone the same way: a password form, and a code
//     form for a first visit or a forgotten password. The address step
//     mails a code if the message was sent to that address (the code
//     budgets allowing); a right code (POST /code) leads to account
//     creation for an address without an account, to the security
//     questions and a new password for one with an account.
//   - Answers do not depend on whether an address has an account: a code
//     request answers at once and its mail goes out from a queue, the
//     sign-in page is the same for every address, and every failed code
//     gets the same page, with a count of tries left that is kept per
//     address the same way for every address.
//   - Only an account whose address is one of the key record's envelope
//     recipients can read, and only an address proved by a code mailed to it
//     can get an account. No page says whether an account exists or who the
//     recipients are.
//   - Passwords and security answers are kept as argon2id hashes, codes and
//     session ids as SHA-256 digests; none of them is ever logged.
//   - Sessions live in the store; the cookie is __Host- prefixed, Secure,
//     HttpOnly, SameSite=Lax, a browser-session cookie (no Max-Age); the
//     store ends a session idle 30 minutes or 8 hours old. It gets a new id
//     whenever the browser proves something. Two other cookies, both
//     __Host- prefixed over https, HttpOnly, Lax, kept for a year and set
//     only by the reader's choice: securemail_tz holds only a time-zone
//     name the reader chose on the message page (without it times are in
//     the zone of an unambiguous Accept-Language region, else in UTC,
//     said); securemail_address holds only the email address, when the
//     reader ticks "Remember my email address on this device", so that
//     the message link lands on the sign-in page for it. It proves
//     nothing; "Not you? Use another address" removes it.
//   - The portal does not decide whether mail is encrypted: every reply and
//     read notice carries the milter's trigger and the milter decides.
//   - With Options.ReadNotice, the first read of a message by each
//     recipient mails its sender a short notice (who, when, the key id and
//     the subject; never content): one Hit with limit 1 per key and reader,
//     so simultaneous reads on any number of hosts send one.
//   - Every state-changing request is a POST checked by
//     http.CrossOriginProtection, except /open.
//   - Every page carries a Content-Security-Policy without any script source,
//     frame-ancestors 'none', nosniff and no-referrer; HSTS when served over
//     TLS. The portal needs no JavaScript.
//   - Errors are pages in words with a status code, never a stack trace;
//     what went wrong inside goes to the log, never to the page.
package portal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/securemail/securemail/keystore"
)

// Options configure the handler. Keys, Store, MasterKey, SpoolDir and Mailer
// are required for anything but the front page.
type Options struct {
	// PortalURL is the public base URL written into envelopes. Its scheme
	// decides the cookie: https gets a Secure __Host- cookie; plain http
	// (loopback testing only) a cookie without either.
	PortalURL string

	Keys      keystore.KeyStore
	Store     keystore.PortalStore
	MasterKey *keystore.MasterKey

	// SpoolDir holds uploaded envelopes (ciphertext only) for SpoolTTL
	// (default 24 h).
	SpoolDir string
	// SharedSpool, when set, holds the uploaded envelopes in a store
	// every portal host reaches (PostgreSQL), so a browser's next step
	// may land on any portal host; SpoolDir then holds this host's copies
	// of them.
	SharedSpool keystore.SpoolStore
	SpoolTTL    time.Duration
	// Copies, when set, serves the notice's phone links (GET /l/{link})
	// from the envelope copies the milter keeps (portal.link_fallback).
	Copies keystore.CopyStore
	// ReadNotice mails a message's sender, through Mailer, the first
	// time each recipient reads it (portal.read_notice).
	ReadNotice bool
	// SpoolMax bounds the spool's size, uploads in progress included
	// (default 2 GiB); past it /open answers 503 with a page in words.
	SpoolMax int64
	// MaxMessageSize is the largest original message the milter seals
	// (default 20 MiB); the upload cap is derived from it.
	MaxMessageSize int64

	// Mailer sends codes, notices and replies; From is the address codes
	// and notices come from.
	Mailer Mailer
	From   string

	// TriggerHeader and SubjectTag are the milter's triggers
	// (policy.trigger_header, policy.subject_tag). Every reply carries
	// one of them, the header when it is set, else the tag, and the
	// milter alone decides whether the reply is sealed (it is when it
	// leaves the host's domains); the portal keeps no copy of the domain
	// list. SubjectTag is also taken off the subject shown and replied to.
	TriggerHeader string
	SubjectTag    string
	// ReplyAll offers "reply to everyone" next to "reply to the sender".
	ReplyAll bool

	// Hasher hashes passwords and answers (default: DefaultArgon2, two at
	// a time). MinPassword (default 12) and MaxPassword (default 128)
	// bound password length in characters.
	Hasher      *Hasher
	MinPassword int
	MaxPassword int

	Render RenderLimits

	// Limits are the abuse budgets (zero fields: DefaultLimits).
	Limits Limits
	// Uploads is how /open and the reply form guard against slow and
	// parallel uploads (zero fields: DefaultUploadGuard).
	Uploads UploadGuard

	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client, for throttling and logs. Empty: the peer is the client.
	TrustedProxies []netip.Prefix

	// Brands, if set, gives the pages about a message the look of its
	// sender's organisation (brand.go).
	Brands Brands

	Logger *slog.Logger
	Now    func() time.Time
}

const (
	sessionIdle     = 30 * time.Minute
	sessionAbsolute = 8 * time.Hour
	// codeLifetime follows ASVS 2.7.2 (at most 10 minutes).
	codeLifetime = 10 * time.Minute
	codeTries    = 5
	// throttleWindow is NIST 800-63B's long window: at most
	// maxFailuresInWindow checked failed sign-ins per account in it.
	throttleWindow      = 30 * 24 * time.Hour
	maxFailuresInWindow = 100
	// mailQueueSize bounds the code mails waiting to go out.
	mailQueueSize = 256
)

type handler struct {
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	csrf    *http.CrossOriginProtection
	routed  http.Handler // mux behind csrf
	secure  bool
	cookie  string
	spool   envelopeSpool // nil: no spool configured
	uploads sync.WaitGroup
	mail    *mailQueue

	// uploading counts uploads in progress per client address, for
	// UploadGuard.PerClient. It is per host on purpose: it bounds this
	// host's connections, not a budget over time.
	uploadMu  sync.Mutex
	uploading map[string]int

	// checking counts password and answer checks in progress per client
	// address (see checkSlot).
	checkMu  sync.Mutex
	checking map[string]int
}

// Handler is the portal. Close stops its sweeper.
type Handler struct {
	http.Handler
	h    *handler
	stop context.CancelFunc
	done chan struct{}
}

// New returns the portal's handler. It starts a goroutine that sweeps the
// spool and the store's expired codes and sessions; Close stops it.
func New(opts Options) (*Handler, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SpoolTTL <= 0 {
		opts.SpoolTTL = 24 * time.Hour
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 20 << 20
	}
	if opts.MinPassword <= 0 {
		opts.MinPassword = 12
	}
	if opts.MaxPassword <= 0 {
		opts.MaxPassword = 128
	}
	if opts.MaxPassword < 64 {
		return nil, fmt.Errorf("portal: the maximum password length must be at least 64, not %d", opts.MaxPassword)
	}
	if opts.Hasher == nil {
		opts.Hasher = NewHasher(DefaultArgon2, 2)
	}
	if opts.Hasher.err != nil {
		// Refused here, not at the first registration.
		return nil, opts.Hasher.err
	}
	opts.Limits = opts.Limits.withDefaults()
	opts.Uploads = opts.Uploads.withDefaults()
	if opts.SpoolMax <= 0 {
		opts.SpoolMax = 2 << 30
	}
	if opts.Render.MaxInlineText <= 0 {
		opts.Render.MaxInlineText = 1 << 20
	}
	if opts.Render.MaxInlineHTML <= 0 {
		opts.Render.MaxInlineHTML = 1 << 20
	}
	u, err := url.Parse(opts.PortalURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("portal: the portal URL %q is not an http(s) URL", opts.PortalURL)
	}
	h := &handler{
		opts:   opts,
		log:    opts.Logger,
		mux:    http.NewServeMux(),
		csrf:   http.NewCrossOriginProtection(),
		secure: u.Scheme == "https",
		mail:   newMailQueue(mailQueueSize),

		uploading: map[string]int{},
		checking:  map[string]int{},
	}
	h.cookie = "securemail_session"
	if h.secure {
		h.cookie = "__Host-securemail_session"
	}
	switch {
	case opts.SharedSpool != nil:
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		shared, err := newSharedSpool(ctx, opts.SharedSpool, opts.SpoolDir, opts.SpoolTTL, maxUpload(opts.MaxMessageSize), opts.SpoolMax)
		cancel()
		if err != nil {
			h.mail.close()
			return nil, err
		}
		shared.log = h.log
		h.spool = shared
	case opts.SpoolDir != "":
		local, err := newSpool(opts.SpoolDir, opts.SpoolTTL, maxUpload(opts.MaxMessageSize), opts.SpoolMax)
		if err != nil {
			h.mail.close()
			return nil, err
		}
		h.spool = local
	}
	// /open is posted from a file:// page (Origin: null): the one
	// cross-origin endpoint. It creates only a spool entry.
	h.csrf.AddInsecureBypassPattern("POST /open")
	h.csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, pageCrossOrigin())
	}))
	h.routes()
	h.routed = h.csrf.Handler(h.mux)

	ctx, cancel := context.WithCancel(context.Background())
	ph := &Handler{Handler: h, h: h, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(ph.done)
		h.sweepLoop(ctx)
	}()
	return ph, nil
}

// Close stops the sweeper, waits for uploads in progress and sends the
// code mails still queued.
func (p *Handler) Close() error {
	p.stop()
	<-p.done
	p.h.uploads.Wait()
	if shared, ok := p.h.spool.(*sharedSpool); ok {
		// Envelopes this host received are stored before the store
		// closes, so another host can still serve them.
		shared.wait()
	}
	p.h.mail.close()
	return nil
}

// Sweep removes expired spool files, codes and sessions once.
func (p *Handler) Sweep(ctx context.Context) { p.h.sweep(ctx) }

func (h *handler) routes() {
	m := h.mux
	m.HandleFunc("GET /{$}", h.home)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	m.HandleFunc("GET /static/portal.css", serveCSS)
	m.HandleFunc("GET /static/brand/{id}/{file}", h.brandAsset)
	m.HandleFunc("POST /open", h.open)
	m.HandleFunc("GET /l/{link}", h.link)
	m.HandleFunc("GET /m/{token}", h.message)
	m.HandleFunc("GET /lang/{lang}", h.chooseLang)
	m.HandleFunc("GET /m/{token}/part/{index}", h.part)
	m.HandleFunc("GET /m/{token}/cid/{cid}", h.part)
	m.HandleFunc("POST /m/{token}/reply", h.reply)
	m.HandleFunc("POST /m/{token}/timezone", h.chooseZone)

	m.HandleFunc("POST /email", h.email)
	m.HandleFunc("GET /signin", h.signinPage)
	m.HandleFunc("POST /signin", h.signin)
	m.HandleFunc("POST /code", h.code)
	m.HandleFunc("GET /register/password", h.registerPasswordPage)
	m.HandleFunc("POST /register/password", h.registerPassword)
	m.HandleFunc("GET /reset/answers", h.resetAnswersPage)
	m.HandleFunc("POST /reset/answers", h.resetAnswers)
	m.HandleFunc("GET /reset/password", h.resetPasswordPage)
	m.HandleFunc("POST /reset/password", h.resetPassword)
	m.HandleFunc("GET /account/password", h.changePasswordPage)
	m.HandleFunc("POST /account/password", h.changePassword)
	m.HandleFunc("POST /signout", h.signout)
}

// contentSecurityPolicy allows no script at all; images only from this
// origin (a message's cid: images); styles only from /static.
const contentSecurityPolicy = "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.TLS != nil {
		hdr.Set("Strict-Transport-Security", "max-age=31536000")
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.fail(w, r, pageInternal(fmt.Errorf("panic: %v", v)))
		}
	}()
	if err := h.unrouted(w, r); err != nil {
		h.fail(w, r, err)
		return
	}
	h.routed.ServeHTTP(w, r)
}

func (h *handler) now() time.Time { return h.opts.Now() }

// clientIP is the address throttling counts against and logs name: the
// connection's peer, or, when that peer is a trusted reverse proxy, the
// right-most address in X-Forwarded-For that is not a trusted proxy
// itself (the left part of that header is whatever the client wrote).
func (h *handler) clientIP(r *http.Request) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr := peer.Addr().Unmap()
	if !h.trustedProxy(addr) {
		return addr.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if hop = hop.Unmap(); !h.trustedProxy(hop) {
			return hop.String()
		}
	}
	return addr.String()
}

func (h *handler) trustedProxy(a netip.Addr) bool {
	for _, p := range h.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (h *handler) ready(w http.ResponseWriter, r *http.Request) bool {
	if h.opts.Keys == nil || h.opts.Store == nil || h.opts.MasterKey == nil || h.spool == nil || h.opts.Mailer == nil {
		h.fail(w, r, pageNotEnabled())
		return false
	}
	return true
}

func (h *handler) sweepLoop(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	h.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.sweep(ctx)
		}
	}
}

func (h *handler) sweep(ctx context.Context) {
	if h.spool != nil {
		if n, err := h.spool.sweepOld(ctx, h.now()); err != nil {
			h.log.Warn("portal: spool sweep failed", "err", err)
		} else if n > 0 {
			h.log.Info("portal: spool swept", "removed", n)
		}
	}
	if h.opts.Store != nil {
		if n, err := h.opts.Store.SweepPortal(ctx, h.now(), throttleWindow); err != nil && !errors.Is(err, context.Canceled) {
			h.log.Warn("portal: store sweep failed", "err", err)
		} else if n > 0 {
			h.log.Info("portal: codes, sessions and throttle entries swept", "removed", n)
		}
	}
}
