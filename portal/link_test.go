package portal

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/milter"
)

// withCopies serves the phone links from the env's store.
func withCopies(o *Options) { o.Copies = o.Keys.(keystore.CopyStore) }

// linkFilter makes e's milter keep server copies for retention, as
// portal.link_fallback does.
func (e *testEnv) linkFilter(retention time.Duration) {
	e.t.Helper()
	f, err := milter.NewFilter(milter.Config{
		Policy:        milter.Policy{InternalDomains: []string{"example.com"}, SubjectTag: "[encrypt]", MaxMessageSize: 20 << 20},
		PortalURL:     e.srv.URL,
		KeyLifetime:   90 * 24 * time.Hour,
		SpoolDir:      e.dir,
		Store:         e.store,
		MasterKey:     e.mk,
		Now:           e.clock.Now,
		LinkFallback:  true,
		LinkRetention: retention,
		Copies:        e.store,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.filter = f
}

// noticeLink returns the path of the phone link in a sealed message's
// notice, after checking the text and HTML parts agree on it.
func noticeLink(t *testing.T, e *testEnv, s sealed) string {
	t.Helper()
	ent, err := message.Read(bytes.NewReader(append([]byte("Content-Type: multipart/mixed; boundary=\""+boundaryOf(t, s.out)+"\"\r\n\r\n"), s.out...)))
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]string{}
	err = ent.Walk(func(_ []int, p *message.Entity, err error) error {
		if err != nil {
			return err
		}
		if disp, _, _ := p.Header.ContentDisposition(); disp == "attachment" || p.MultipartReader() != nil {
			return nil
		}
		ct, _, _ := p.Header.ContentType()
		b, err := io.ReadAll(p.Body)
		parts[ct] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(regexp.QuoteMeta(e.srv.URL) + `(/l/[A-Za-z0-9_-]{22})\b`)
	text := re.FindStringSubmatch(parts["text/plain"])
	html := re.FindStringSubmatch(parts["text/html"])
	if text == nil || html == nil || text[1] != html[1] {
		t.Fatalf("the notice's parts do not carry one link:\n%s\n%s", parts["text/plain"], parts["text/html"])
	}
	return text[1]
}

var boundaryRe = regexp.MustCompile(`(?m)^--(securemail-[0-9a-f]+)\r?$`)

func boundaryOf(t *testing.T, body []byte) string {
	t.Helper()
	m := boundaryRe.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no boundary in the sealed body")
	}
	return string(m[1])
}

// TestLinkLeadsIntoTheReadingFlow: the link puts the server copy in the
// spool under the token the attachment's upload gets, and from there the
// recipient signs up and reads as from the attachment.
func TestLinkLeadsIntoTheReadingFlow(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withCopies)
	e.linkFilter(720 * time.Hour)
	s := e.seal(alice, []string{bob}, plainMessage)
	link := noticeLink(t, e, s)
	if strings.Contains(link, s.form.KeyID.String()) {
		t.Fatalf("the link %s carries the key id", link)
	}

	b := e.browser()
	r := b.get(link)
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/m/") {
		t.Fatalf("GET %s: %d %s", link, r.status, r.header.Get("Location"))
	}
	token := strings.TrimPrefix(r.header.Get("Location"), "/m/")
	if viaAttachment := strings.TrimPrefix(e.browser().open(s).header.Get("Location"), "/m/"); viaAttachment != token {
		t.Fatalf("the link leads to /m/%s, the attachment to /m/%s: two ways, one flow expected", token, viaAttachment)
	}
	b.token = token
	page := b.follow(r)
	if !strings.Contains(page.body, `action="/email"`) {
		t.Fatalf("no email form after the link:\n%s", page.body)
	}
	b.follow(b.email(bob))
	page = b.follow(b.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	if !strings.Contains(page.body, "Create your account") {
		t.Fatalf("code not accepted:\n%s", page.body)
	}
	page = b.follow(b.post("/register/password", registrationForm(testPassword)))
	if page.status != http.StatusOK || !strings.Contains(page.body, "Quarterly numbers") || !strings.Contains(page.body, "Revenue is up") {
		t.Fatalf("the link did not lead to the message: %d\n%s", page.status, page.body)
	}
	if !strings.Contains(e.logs.String(), "envelope opened from the link") || strings.Contains(e.logs.String(), strings.TrimPrefix(link, "/l/")) {
		t.Fatalf("the log should say the link was used and never hold its token:\n%s", e.logs.String())
	}
}

// TestLinkPagesSayWhy: every link that no longer opens a message says why,
// in words, and the attachment's way in still works when only the link has
// ended.
func TestLinkPagesSayWhy(t *testing.T) {
	t.Parallel()
	t.Run("unknown", func(t *testing.T) {
		e := newTestEnv(t, withCopies)
		for _, path := range []string{"/l/AAAAAAAAAAAAAAAAAAAAAA", "/l/" + strings.Repeat("x", 200)} {
			r := e.browser().get(path)
			if r.status != http.StatusNotFound || !strings.Contains(r.body, "This link does not work") || !strings.Contains(r.body, "SecureMessageATT.html") {
				t.Fatalf("GET %.40s: %d\n%s", path, r.status, r.body)
			}
		}
		if logs := e.logs.String(); !strings.Contains(logs, `path="GET /l/{link}"`) || strings.Contains(logs, "AAAAAAAAAAAAAAAAAAAAAA") {
			t.Fatalf("the log should name the route and never a link's token:\n%s", logs)
		}
	})
	t.Run("no link fallback on this portal", func(t *testing.T) {
		e := newTestEnv(t)
		e.linkFilter(720 * time.Hour)
		link := noticeLink(t, e, e.seal(alice, []string{bob}, plainMessage))
		if r := e.browser().get(link); r.status != http.StatusNotFound {
			t.Fatalf("a portal without copies answered the link with %d", r.status)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		e := newTestEnv(t, withCopies)
		e.linkFilter(720 * time.Hour)
		s := e.seal(alice, []string{bob}, plainMessage)
		link := noticeLink(t, e, s)
		id := keystore.KeyID(s.form.KeyID)
		if err := e.store.ShredKey(context.Background(), id, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		r := e.browser().get(link)
		if r.status != http.StatusGone || !strings.Contains(r.body, "withdrew") || !strings.Contains(r.body, "copy that this link opened has been deleted") {
			t.Fatalf("revoked: %d\n%s", r.status, r.body)
		}
		if c, err := e.store.CopyOf(context.Background(), id); err != nil || c.Deleted.IsZero() {
			t.Fatalf("the revocation left the copy: %+v %v", c, err)
		}
	})
	t.Run("key expired", func(t *testing.T) {
		e := newTestEnv(t, withCopies)
		e.linkFilter(200 * 24 * time.Hour) // longer than the key: ends with it
		link := noticeLink(t, e, e.seal(alice, []string{bob}, plainMessage))
		e.clock.Advance(91 * 24 * time.Hour)
		r := e.browser().get(link)
		if r.status != http.StatusGone || !strings.Contains(r.body, "has expired") || !strings.Contains(r.body, "deleted") {
			t.Fatalf("expired: %d\n%s", r.status, r.body)
		}
	})
	t.Run("link ended, attachment still works", func(t *testing.T) {
		e := newTestEnv(t, withCopies)
		e.linkFilter(time.Hour)
		s := e.seal(alice, []string{bob}, plainMessage)
		link := noticeLink(t, e, s)
		e.clock.Advance(2 * time.Hour)
		want := e.clock.Now().Add(-time.Hour).UTC().Format(linkDateLayout)
		r := e.browser().get(link)
		if r.status != http.StatusGone || !strings.Contains(r.body, "This link has ended") || !strings.Contains(r.body, want) ||
			!strings.Contains(r.body, "can still be read") {
			t.Fatalf("ended link: %d (want the end %s)\n%s", r.status, want, r.body)
		}
		// The sweep deletes it; the page says the same.
		if n, err := e.store.SweepCopies(context.Background(), e.clock.Now()); err != nil || n != 1 {
			t.Fatalf("sweep: %d %v", n, err)
		}
		if r := e.browser().get(link); r.status != http.StatusGone || !strings.Contains(r.body, "This link has ended") {
			t.Fatalf("swept link: %d\n%s", r.status, r.body)
		}
		if r := e.browser().open(s); r.status != http.StatusSeeOther {
			t.Fatalf("the attachment no longer opens after the link ended: %d\n%s", r.status, r.body)
		}
	})
}

// TestLinkSpendsTheUploadBudget: a link visit counts against the same
// per-client budget as an upload, checked before the link is looked up.
func TestLinkSpendsTheUploadBudget(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withCopies, func(o *Options) { o.Limits.UploadsPerClient = Rate{N: 2, Per: time.Hour} })
	e.linkFilter(720 * time.Hour)
	link := noticeLink(t, e, e.seal(alice, []string{bob}, plainMessage))
	b := e.browser()
	for i := range 2 {
		if r := b.get(link); r.status != http.StatusSeeOther {
			t.Fatalf("visit %d: %d", i+1, r.status)
		}
	}
	r := b.get("/l/AAAAAAAAAAAAAAAAAAAAAA")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("third visit: %d, want 429 with Retry-After", r.status)
	}
}
