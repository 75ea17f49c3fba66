package portal

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/securemail/securemail/keystore"
)

// Session stages. A browser moves through them; only stageAuthenticated
// may read, reply or change its password.
const (
	stageEmail            = "email"             // address given, no code asked for on this visit
	stageCodeSent         = "code-sent"         // a code may be on its way
	stageCodeHeld         = "code-held"         // the code budget was spent: no new code
	stageRegisterVerified = "register-verified" // the code proved the address, which has no account
	stageResetVerified    = "reset-verified"    // the code proved the address, which has an account
	stageResetAnswered    = "reset-answered"    // and the security answers were right
	stageAuthenticated    = "authenticated"
)

// session loads the browser's session, or returns nil when it has none or
// it ended (idle for sessionIdle, or older than its absolute end). A live
// session's LastSeen is refreshed at most once a minute.
func (h *handler) session(r *http.Request) (*keystore.Session, error) {
	c, err := r.Cookie(h.cookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	s, err := h.opts.Store.Session(r.Context(), SessionDigest(c.Value))
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := h.now()
	if !now.Before(s.Expires) || now.Sub(s.LastSeen) >= sessionIdle {
		_ = h.opts.Store.DeleteSession(r.Context(), s.Digest)
		return nil, nil
	}
	if now.Sub(s.LastSeen) >= time.Minute {
		s.LastSeen = now
		if err := h.opts.Store.PutSession(r.Context(), s); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// newSession replaces the browser's session (if any) with a fresh one
// under a new id and sets the cookie. Called whenever the browser proves
// something, so an id seen before that proof is worth nothing after it.
func (h *handler) newSession(w http.ResponseWriter, r *http.Request, old *keystore.Session, email, stage, token string) (*keystore.Session, error) {
	id, err := NewSessionID()
	if err != nil {
		return nil, err
	}
	now := h.now()
	s := keystore.Session{
		Digest:   SessionDigest(id),
		Email:    strings.ToLower(email),
		Stage:    stage,
		Token:    token,
		Created:  now,
		LastSeen: now,
		Expires:  now.Add(sessionAbsolute),
	}
	if old != nil {
		if err := h.opts.Store.DeleteSession(r.Context(), old.Digest); err != nil {
			return nil, err
		}
		if s.Token == "" {
			s.Token = old.Token
		}
	}
	if err := h.opts.Store.PutSession(r.Context(), s); err != nil {
		return nil, err
	}
	http.SetCookie(w, &http.Cookie{
		Name:     h.cookie,
		Value:    id,
		Path:     "/",
		Secure:   h.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		// No Max-Age: a browser-session cookie, gone when the browser
		// closes; the store ends the session after sessionIdle or
		// sessionAbsolute whatever the browser does.
	})
	return &s, nil
}

// updateSession stores a changed stage or address under the same id.
func (h *handler) updateSession(r *http.Request, s *keystore.Session) error {
	s.LastSeen = h.now()
	return h.opts.Store.PutSession(r.Context(), *s)
}

func (h *handler) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: h.cookie, Value: "", Path: "/", Secure: h.secure, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: -1,
	})
}

// sessionAt loads the session and insists on one of stages; otherwise it
// answers with a page that sends the browser back to the start and
// returns nil.
func (h *handler) sessionAt(w http.ResponseWriter, r *http.Request, stages ...string) *keystore.Session {
	if !h.ready(w, r) {
		return nil
	}
	s, err := h.session(r)
	if err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return nil
	}
	return h.atStage(w, r, s, stages...)
}

// atStage returns s when it is at one of stages; otherwise it sends the
// browser back to the start and returns nil.
func (h *handler) atStage(w http.ResponseWriter, r *http.Request, s *keystore.Session, stages ...string) *keystore.Session {
	if s != nil && slices.Contains(stages, s.Stage) {
		return s
	}
	h.startOver(w, r, s)
	return nil
}

// startOver tells a browser whose session ended, or which skipped a step,
// how to get back in.
func (h *handler) startOver(w http.ResponseWriter, r *http.Request, s *keystore.Session) {
	if s != nil && s.Token != "" {
		http.Redirect(w, r, "/m/"+s.Token, http.StatusSeeOther)
		return
	}
	h.fail(w, r, pageStartOver())
}
