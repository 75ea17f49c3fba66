package portal

import (
	"encoding/base64"
	"net/http"
	"net/mail"
	"strings"
	"time"
)

// addressCookie remembers, on a reader's device and only when the reader
// ticks "Remember my email address on this device", the address they read
// with: the next "Click to read message" on that device lands on the
// sign-in page for it, without the email page. It holds the address and
// nothing else (base64url, since an address may hold characters a cookie
// value may not); it proves nothing and opens nothing by itself.
const addressCookie = "securemail_address"

// addressCookieAge is how long a remembered address is kept on the device.
const addressCookieAge = 365 * 24 * time.Hour

func (h *handler) addressCookieName() string {
	if h.secure {
		return "__Host-" + addressCookie
	}
	return addressCookie
}

// remembered is the address this device remembers; "" for none or one
// that does not parse as a bare address.
func (h *handler) remembered(r *http.Request) string {
	c, err := r.Cookie(h.addressCookieName())
	if err != nil || c.Value == "" || len(c.Value) > 400 {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return ""
	}
	addr, ok := bareAddress(string(raw))
	if !ok {
		return ""
	}
	return addr
}

// rememberAddress keeps addr on this device.
func (h *handler) rememberAddress(w http.ResponseWriter, addr string) {
	http.SetCookie(w, &http.Cookie{Name: h.addressCookieName(), Value: base64.RawURLEncoding.EncodeToString([]byte(strings.ToLower(addr))),
		Path: "/", MaxAge: int(addressCookieAge / time.Second), Secure: h.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// forgetAddress removes a remembered address from this device, if r
// carries one.
func (h *handler) forgetAddress(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(h.addressCookieName()); err != nil {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: h.addressCookieName(), Value: "", Path: "/", MaxAge: -1,
		Secure: h.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// bareAddress parses raw as a bare address (name@example.com, no display
// name), as the email page takes it.
func bareAddress(raw string) (string, bool) {
	addr, err := mail.ParseAddress(strings.TrimSpace(raw))
	if err != nil || addr.Name != "" || !strings.Contains(addr.Address, "@") || len(addr.Address) > 254 {
		return "", false
	}
	return addr.Address, true
}
