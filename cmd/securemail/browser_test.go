package main

// The attachment page in a real browser: SecureMessageATT.html, cut from a
// message sealed in process, opened from a file in headless Chromium with
// JavaScript turned off, as a recipient opens a saved attachment. Its
// button must post the envelope to the portal so that the portal can open
// it, and the page must fit a phone. Screenshots go to
// $SECUREMAIL_ARTIFACTS when it is set.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/securemail/securemail/cmd/securemail/internal/browsertest"
	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
)

// brFrom is the From field of the test message, and brFromShown what the
// page must show of it.
const (
	brFrom      = "=?UTF-8?Q?Zo=C3=AB_S=C3=B8ren?= <zoe@example.test>"
	brFromShown = "Zoë Søren <zoe@example.test>"
	brButton    = `form button[type="submit"]`
)

func TestAttachmentPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Chromium")
	}
	began := time.Now()
	msg := brMessage(t)
	b := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900})

	t.Run("button posts the envelope", func(t *testing.T) {
		rec := newBrRecorder(t)
		e, page := brSeal(t, rec.srv.URL, msg)
		form, err := envelope.ParsePage(page)
		if err != nil {
			t.Fatal(err)
		}
		tab := b.NewTab(t)
		tab.DisableScripts()
		tab.Navigate(brPageURL(t, page))

		tab.Run(chromedp.WaitVisible(brButton, chromedp.ByQuery))
		text := tab.Text("main")
		u, _ := url.Parse(rec.srv.URL)
		for _, want := range []string{
			"You have received a secure message",
			"From: " + brFromShown,
			"Click to read message",
			rec.srv.URL + "/",
			"(the site " + u.Host + ")",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("the page does not show %q; it shows:\n%s", want, text)
			}
		}
		if armor := base64.StdEncoding.EncodeToString(form.Envelope[:30]); strings.Contains(text, armor) {
			t.Errorf("the page shows the envelope's base64")
		}

		tab.Run(chromedp.Click(brButton, chromedp.ByQuery))
		var post brPost
		select {
		case post = <-rec.posts:
		case <-time.After(10 * time.Second):
			t.Fatalf("no request reached the portal 10 s after the click; the page is %s", tab.Location())
		}
		if post.method != http.MethodPost || post.path != "/open" {
			t.Fatalf("the click sent %s %s, want POST /open", post.method, post.path)
		}
		if !strings.HasPrefix(post.contentType, "multipart/form-data; boundary=") {
			t.Errorf("Content-Type %q, want multipart/form-data", post.contentType)
		}
		if post.err != nil {
			t.Fatalf("the form does not parse: %v", post.err)
		}
		if len(post.files) != 0 || len(post.fields) != 3 {
			t.Errorf("the form sent fields %q and files %q, want just v, id and envelope", brKeys(post.fields), post.files)
		}
		one := func(name string) string {
			if v := post.fields[name]; len(v) == 1 {
				return v[0]
			}
			t.Fatalf("field %s: %q, want one value", name, post.fields[name])
			return ""
		}
		if v := one("v"); v != "1" {
			t.Errorf("v = %q, want 1", v)
		}
		id := one("id")
		if id != form.KeyID.String() || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
			t.Errorf("id = %q, want the page's key id %s", id, form.KeyID)
		}
		armor := one("envelope")
		if want := brArmor(form.Envelope); armor != want {
			t.Errorf("envelope field (%d bytes) is not the envelope in 76-character CRLF lines (%d bytes); first difference at byte %d",
				len(armor), len(want), firstDiff([]byte(armor), []byte(want)))
		}

		// What the portal will do: decode, look up the key, open.
		env, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(armor, "\r\n", ""))
		if err != nil {
			t.Fatalf("envelope field is not base64: %v", err)
		}
		r := bytes.NewReader(env)
		hdr, err := envelope.ReadHeader(r)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.KeyID.String() != id {
			t.Fatalf("envelope key id %s, field id %s", hdr.KeyID, id)
		}
		dek, _, err := e.master.DataKey(context.Background(), e.store, keystore.KeyID(hdr.KeyID), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		payload, err := envelope.Open(r, dek, hdr)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(payload)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(plain, msg) {
			t.Fatalf("the posted envelope opens to %d bytes that differ from the %d-byte original at byte %d",
				len(plain), len(msg), firstDiff(plain, msg))
		}

		tab.WaitText(5*time.Second, rec.srv.URL+"/open", brRecorded)
		if !tab.ScriptsDisabled() {
			t.Error("scripts ran on the portal's answer: they were not disabled during the test")
		}
		select {
		case p := <-rec.posts:
			t.Errorf("a second request reached the portal: %s %s", p.method, p.path)
		default:
		}
	})

	t.Run("layout and screenshots", func(t *testing.T) {
		_, page := brSeal(t, "https://secure.example.test", msg)
		// A long sender address once made the phone page scroll sideways.
		longFrom := "Maximilian Featherstonehaugh <maximilian.featherstonehaugh.worthington@engineering.examplecompany.test>"
		_, longPage := brSeal(t, "https://secure.example.test", bytes.Replace(msg, []byte("From: "+brFrom), []byte("From: "+longFrom), 1))
		if !bytes.Contains(longPage, []byte("featherstonehaugh")) {
			t.Fatal("the long sender did not reach the page")
		}
		tab := b.NewTab(t)
		tab.DisableScripts()
		for _, size := range []struct {
			name          string
			width, height int
			mobile        bool
			page          []byte
		}{
			{"desktop", 1280, 900, false, page},
			{"phone", 360, 780, true, page},
			{"phone long sender", 360, 780, true, longPage},
		} {
			t.Run(size.name, func(t *testing.T) {
				tab.SetViewport(size.width, size.height, size.mobile)
				tab.Navigate(brPageURL(t, size.page))
				tab.Run(chromedp.WaitVisible(brButton, chromedp.ByQuery))
				tab.Screenshot(fmt.Sprintf("attachment-page-%s-%dx%d", strings.ReplaceAll(size.name, " ", "-"), size.width, size.height))

				l := tab.Layout()
				btn := tab.BorderBox(brButton)
				var scrollWidth, innerWidth float64
				tab.Run(chromedp.Evaluate(`document.documentElement.scrollWidth`, &scrollWidth),
					chromedp.Evaluate(`window.innerWidth`, &innerWidth))
				t.Logf("%dx%d: document %.0fx%.0f in a %.0fx%.0f viewport (scrollWidth %.0f, innerWidth %.0f); button at (%.0f,%.0f) %.0fx%.0f",
					size.width, size.height, l.ContentWidth, l.ContentHeight, l.ViewportWidth, l.ViewportHeight,
					scrollWidth, innerWidth, btn.X, btn.Y, btn.Width, btn.Height)

				w := float64(size.width)
				if l.ViewportWidth != w || innerWidth != w {
					t.Errorf("viewport is %.0f CSS px wide (innerWidth %.0f), want %d", l.ViewportWidth, innerWidth, size.width)
				}
				if l.ContentWidth > w || scrollWidth > w {
					t.Errorf("the page is %.0f CSS px wide (scrollWidth %.0f): it scrolls sideways in %d px", l.ContentWidth, scrollWidth, size.width)
				}
				if btn.X < 0 || btn.X+btn.Width > w {
					t.Errorf("the button spans x %.0f to %.0f, outside the %d px viewport", btn.X, btn.X+btn.Width, size.width)
				}
				if btn.Height < 44 {
					t.Errorf("the button is %.0f px high, want at least 44 (tap target)", btn.Height)
				}
				if btn.Y+btn.Height > float64(size.height) {
					t.Logf("note: the button ends at y %.0f, below the first %d px screen", btn.Y+btn.Height, size.height)
				}
			})
		}
	})
	t.Logf("browser test took %v", time.Since(began).Round(time.Millisecond))
}

// brMessage is a realistic message: the corpus's attachments message with
// a second PDF, so that its envelope spans two 64 KiB chunks, and a From
// display name in an RFC 2047 encoded word with non-ASCII letters.
func brMessage(t *testing.T) []byte {
	t.Helper()
	msg, err := os.ReadFile(filepath.Join("testdata", "corpus", "attachments.eml"))
	if err != nil {
		t.Fatal(err)
	}
	msg = bytes.Replace(msg, []byte("From: Zoe Sender <zoe@example.test>\r\n"), []byte("From: "+brFrom+"\r\n"), 1)
	const delim = "--------------mix0123456789\r\n"
	start := bytes.Index(msg, []byte(delim+"Content-Type: application/pdf;"))
	if start < 0 || !bytes.Contains(msg, []byte(brFrom)) {
		t.Fatal("attachments.eml changed: no PDF part or no From field to replace")
	}
	end := start + len(delim) + bytes.Index(msg[start+len(delim):], []byte(delim))
	pdf := bytes.ReplaceAll(msg[start:end], []byte("contract.pdf"), []byte("contract-signed.pdf"))
	msg = append(msg[:end:end], append(pdf, msg[end:]...)...)
	if len(msg) <= envelope.ChunkSize {
		t.Fatalf("test message is %d bytes, want more than one chunk", len(msg))
	}
	return msg
}

// brSeal seals msg with portal.url set to portalURL and returns the
// keystore and the sealed message's page.
func brSeal(t *testing.T, portalURL string, msg []byte) (*rtEnv, []byte) {
	t.Helper()
	dir := t.TempDir()
	path := rtWriteConfig(t, dir)
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const line = "  url: https://secure.example.test\n"
	if !bytes.Contains(cfg, []byte(line)) {
		t.Fatalf("rtWriteConfig changed: no %q", line)
	}
	cfg = bytes.Replace(cfg, []byte(line), []byte("  url: "+portalURL+"\n"), 1)
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newRTEnvFrom(t, path)
	if e.cfg.Portal.URL != portalURL {
		t.Fatalf("portal.url is %q, want %q", e.cfg.Portal.URL, portalURL)
	}
	var sealed bytes.Buffer
	if err := e.filter.SealMessage(bytes.NewReader(msg), &sealed, rtFrom, []string{rtRcpt}); err != nil {
		t.Fatalf("seal: %v", err)
	}
	rtCheckSealed(t, msg, sealed.Bytes(), "CORPUS-attachments")
	page, err := envelope.FindPage(bytes.NewReader(sealed.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return e, page
}

// brPageURL writes the page where a recipient saves an attachment and
// returns its file: URL.
func brPageURL(t *testing.T, page []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), envelope.PageFileName)
	if err := os.WriteFile(path, page, 0o644); err != nil {
		t.Fatal(err)
	}
	return (&url.URL{Scheme: "file", Path: path}).String()
}

// brArmor is env as the browser must send the textarea: base64 in lines of
// 76 characters, each ended by CRLF (HTML's form submission normalises
// textarea line ends to CRLF).
func brArmor(env []byte) string {
	s := base64.StdEncoding.EncodeToString(env)
	var b strings.Builder
	for len(s) > 0 {
		n := min(76, len(s))
		b.WriteString(s[:n] + "\r\n")
		s = s[n:]
	}
	return b.String()
}

// brRecorded is what the recording portal's answer shows.
const brRecorded = "Envelope received by the test portal"

// brRecorder stands in for the portal: it records each request but
// /favicon.ico and answers with a page that shows whether scripts run.
type brRecorder struct {
	srv   *httptest.Server
	posts chan brPost
}

type brPost struct {
	method, path, contentType string
	fields                    map[string][]string
	files                     []string
	err                       error
}

func newBrRecorder(t *testing.T) *brRecorder {
	t.Helper()
	rec := &brRecorder{posts: make(chan brPost, 8)}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			http.NotFound(w, r)
			return
		}
		p := brPost{method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type")}
		if err := r.ParseMultipartForm(64 << 20); err != nil {
			p.err = err
		} else {
			p.fields = r.MultipartForm.Value
			for name := range r.MultipartForm.File {
				p.files = append(p.files, name)
			}
		}
		select {
		case rec.posts <- p:
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Recorded</title></head><body>
<h1>%s</h1>
<noscript><p id="noscript">Scripts are off.</p></noscript>
<script>document.write('<p id="script-ran">Scripts ran.</p>')</script>
</body></html>
`, brRecorded)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func brKeys(m map[string][]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
