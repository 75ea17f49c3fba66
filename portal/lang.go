package portal

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/securemail/securemail/internal/catalog"
)

// langCookie keeps the language a reader chose with the switch at the
// foot of every page; without it, the portal speaks what the browser's
// Accept-Language asks for (catalog.Negotiate), else English.
const langCookie = "securemail_lang"

const langCookieAge = 365 * 24 * time.Hour

func (h *handler) langCookieName() string {
	if h.secure {
		return "__Host-" + langCookie
	}
	return langCookie
}

// lang is the language of r's page and of the mail r causes to be sent to
// the reader (codes, password notices).
func (h *handler) lang(r *http.Request) catalog.Lang {
	if c, err := r.Cookie(h.langCookieName()); err == nil && c.Value != "" && len(c.Value) <= 16 {
		if l, err := catalog.Parse(c.Value); err == nil {
			return l
		}
	}
	return catalog.Negotiate(r.Header.Get("Accept-Language"))
}

// langLink is one entry of the language switch: a language other than the
// page's, named in itself.
type langLink struct {
	Lang catalog.Lang
	Name string
	URL  string
}

// langNames name each language in itself, as a reader looks for it.
var langNames = map[catalog.Lang]string{catalog.English: "English", catalog.German: "Deutsch"}

// langSwitch is the switch for a page in l answering r: links to
// /lang/{lang} that come back to the page the reader is on. A page that
// answered a form comes back to its message (which leads on to the
// step the visit is at), as a form's address cannot be asked for again.
func langSwitch(r *http.Request, l catalog.Lang, token string) []langLink {
	back := "/"
	switch {
	case r != nil && r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/lang/"):
		back = r.URL.RequestURI()
	case token != "":
		back = messagePath(token)
	}
	var links []langLink
	for _, other := range catalog.Languages {
		if other == l {
			continue
		}
		links = append(links, langLink{Lang: other, Name: langNames[other],
			URL: "/lang/" + string(other) + "?back=" + url.QueryEscape(back)})
	}
	return links
}

// GET /lang/{lang}?back=/path: keep the chosen language on this device
// and go back to the page. A GET, so that the switch is a plain link
// without JavaScript; it changes nothing but the reader's own cookie.
func (h *handler) chooseLang(w http.ResponseWriter, r *http.Request) {
	l, err := catalog.Parse(r.PathValue("lang"))
	if err != nil || string(l) != r.PathValue("lang") {
		h.fail(w, r, pageNoSuchPage())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: h.langCookieName(), Value: string(l), Path: "/",
		MaxAge: int(langCookieAge / time.Second), Secure: h.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, localPath(r.URL.Query().Get("back")), http.StatusSeeOther)
}

// localPath is back when it is a path of this site, else "/": the switch
// must never send a reader to another site.
func localPath(back string) string {
	if !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") || strings.ContainsAny(back, "\\\r\n") || len(back) > 2048 {
		return "/"
	}
	u, err := url.Parse(back)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return back
}
