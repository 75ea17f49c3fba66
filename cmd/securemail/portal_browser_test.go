package main

// The recipient's whole visit, in a real browser against real parts: the
// securemail binary behind a private Postfix that relays to an in-process
// sink, a tagged message submitted with STARTTLS and AUTH, its
// SecureMessageATT.html saved to a file and opened in headless Chromium
// with JavaScript turned off. The recipient registers with the code the
// portal mails through Postfix, reads, downloads the attachment, replies
// with a file; later, in a browser with no cookies, signs in with the
// password alone, and reads a hostile HTML message that tries to escape its
// box. Every screen is photographed at 1280x900 and 360x780 (to
// $SECUREMAIL_ARTIFACTS when set), must fit a phone, and every portal page
// is checked with axe-core (injected through the DevTools protocol) for
// zero violations; a signed-in page also at 360 px, where its header must
// keep to one line. Along the way: a wrong code counts the tries left, the
// date is in words in UTC and then in the zone the reader chooses, and
// the reply-sent and change-password pages lead back to the message.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"

	"github.com/securemail/securemail/cmd/securemail/internal/browsertest"
	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/envelope"
)

const (
	pbSender     = "alice@example.com"
	pbRecipient  = "bob@external.test"
	pbInternal   = "example.com"
	pbPortalFrom = "securemail@" + pbInternal // smtp.from: codes and notices
	pbPassword   = "violet anchor meadow lantern"
	pbWait       = 15 * time.Second // bound of every wait for a page or a delivery
	pbCookie     = "securemail_session"

	pbAttachName = "figures.bin"
	pbAttachSize = 100_000
	pbReplyName  = "notes.txt"

	// What the two sealed messages say; none of it may leave in clear.
	pbSubject1   = "Quarterly figures"
	pbSubject2   = "Second note"
	pbTextMarker = "PB-TEXT-MARKER"
	pbHTMLMarker = "PB-HTML-MARKER"
	pbMarker2    = "PB-SECOND-MARKER"
	pbSubject3   = "Hostile layout"
	// pbHostileMarker is in every piece of text of the hostile message.
	pbHostileMarker = "PB-HOSTILE"
	pbReplyText     = "Thanks Alice, received. PB-REPLY-MARKER"
)

func TestPortalInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix, the securemail binary and Chromium")
	}
	began := time.Now()
	step := func(what string) {
		t.Logf("portal browser: %-28s at %v", what, time.Since(began).Round(time.Millisecond))
	}
	// Everything the test needs, before anything is built; then the
	// binary, Postfix configured from contrib/ and the sink.
	st := newE2EBrowserStack(t, "portal browser test")
	sink, pf := st.sink, st.pf

	// A stand-in for a remote server that a message's HTML points at: the
	// portal must never make the browser load anything from it.
	var remoteHits atomic.Int32
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remoteHits.Add(1)
		w.Header().Set("Content-Type", "image/gif")
		w.Write([]byte("GIF89a"))
	}))
	t.Cleanup(remote.Close)

	portalAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	portalURL := "http://" + portalAddr
	e2eStartServe(t, st.bin, st.config(t, portalAddr, "", ""), st.milterAddr)
	pf.Start(t)
	pbWaitHealthy(t, portalURL)
	step("serve and postfix up")

	// Alice sends Bob a tagged message: text, HTML with a script and a
	// remote image, and a binary attachment.
	attachment := make([]byte, pbAttachSize)
	rng := rand.NewChaCha8([32]byte{'p', 'b'})
	rng.Read(attachment)
	msgID1 := fmt.Sprintf("<pb-1.%d@%s>", time.Now().UnixNano(), pbInternal)
	page1 := pbSubmitSealed(t, pf, sink, pbMessage(msgID1, pbSubject1+" "+e2eTag, remote.URL, attachment), pbSubject1, pbTextMarker)
	step("first message sealed")

	b := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900, Timeout: pbWait})
	tab := b.NewTab(t)
	tab.DisableScripts()
	tab.AllowDownloads()
	shots := &pbShots{t: t, axe: pbAxeSource(t)}
	pbAxeSelfTest(t, tab, shots.axe)

	// The attachment, opened from a file.
	tab.Navigate(brPageURL(t, page1))
	tab.Run(chromedp.WaitVisible(brButton, chromedp.ByQuery))
	if text := tab.Text("main"); !strings.Contains(text, portalURL+"/") || !strings.Contains(text, pbSender) {
		t.Errorf("the attachment page does not name the sender and %s/:\n%s", portalURL, text)
	}
	shots.take(tab, "attachment")

	// Click to read message: the portal asks who is reading.
	pbClick(tab, brButton)
	tab.WaitText(pbWait, portalURL+"/m/", "Read your secure message", "Your email address")
	token := strings.TrimPrefix(tab.Location(), portalURL+"/m/")
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{16,}$`).MatchString(token) {
		t.Fatalf("the portal sent the browser to %s/m/%s: not a token", portalURL, token)
	}
	pbCheckStatus(t, tab, http.StatusOK)
	shots.take(tab, "email")
	step("envelope opened")

	// Bob's address: the sign-in page, where a first-time reader finds
	// the code the address step mailed.
	noticesBefore := len(pbNotices(sink))
	tab.Run(chromedp.SendKeys("#email", pbRecipient, chromedp.ByQuery))
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/signin", "Sign in to read your message", pbRecipient, "First time here", "Code from the email")
	shots.take(tab, "signin")

	// The code, mailed through Postfix to the sink.
	codeMail, err := sink.WaitFor(func(m mtatest.Message) bool {
		return pbIsNotice(m) && pbSubjectOf(m) == "Your code to read a secure message"
	}, pbWait)
	if err != nil {
		t.Fatalf("no code mail for %s: %v", pbRecipient, err)
	}
	code := regexp.MustCompile(`\b\d{8}\b`).FindString(pbTextBody(t, codeMail.Data))
	if code == "" {
		t.Fatalf("no 8-digit code in the mail %s:\n%s", codeMail.Path, e2eHead(codeMail.Data))
	}
	if n := len(pbNotices(sink)) - noticesBefore; n != 1 {
		t.Errorf("%d mails from %s to %s after the address step, want 1", n, pbPortalFrom, pbRecipient)
	}
	step("code mailed")
	// A mistyped code first: the page says how many tries are left.
	wrongCode := "12345678"
	if code == wrongCode {
		wrongCode = "87654321"
	}
	tab.Run(chromedp.SendKeys("#code", wrongCode, chromedp.ByQuery))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/code", "That code does not work", "You have 4 tries left with this code")
	pbCheckStatus(t, tab, http.StatusUnauthorized)
	shots.take(tab, "code-wrong")
	tab.Run(chromedp.SendKeys("#code", code, chromedp.ByQuery))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/register/password", "Create your account", "Two security questions")
	shots.take(tab, "create-account")

	// Password and three questions; the page has no script, so the
	// selects are set as a keyboard user would leave them. First with a
	// typo in the confirmation: the page must come back with everything
	// but the passwords kept, and say which field to fix.
	pbFillAccount(tab, pbPassword+"x")
	pbClick(tab, `form[action="/register/password"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/register/password", "Create your account", "not the same", "is confirmed")
	pbCheckKept(t, tab, map[string]string{"#q1": "0", "#a1": "Fluffy", "#q2": "3", "#a2": "Hill Street Primary",
		"#password": "", "#confirm": ""})
	if !tab.HasNode(`#confirm[aria-invalid="true"]`) {
		t.Error("the refused registration does not mark the confirmation field to fix")
	}
	shots.take(tab, "create-account-mistake")
	tab.Run(
		chromedp.SendKeys("#password", pbPassword, chromedp.ByQuery),
		chromedp.SendKeys("#confirm", pbPassword, chromedp.ByQuery),
	)
	pbClick(tab, `form[action="/register/password"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/"+token, "Your secure message", pbSubject1)
	if loc := tab.Location(); loc != portalURL+"/m/"+token {
		t.Errorf("after creating the account the browser is at %s, want %s/m/%s", loc, portalURL, token)
	}
	step("account created, reading")
	pbCheckCookie(t, tab, portalURL)

	// What Bob reads: the HTML part, sanitised; the attachment listed.
	text := tab.Text("main")
	for _, want := range []string{pbSender, pbSubject1, pbHTMLMarker, pbAttachName, "File, 100 KB"} {
		if !strings.Contains(text, want) {
			t.Errorf("the message page does not show %q; it shows:\n%s", want, text)
		}
	}
	// The browser's language (en-US) names no single zone: the date is
	// in words, in UTC, and says so.
	pbCheckDate(t, tab, "UTC")
	if strings.Contains(text, "SCRIPT-RAN") || tab.HasNode("#script-ran") {
		t.Error("the message's script ran or its output is on the page")
	}
	for _, sel := range []string{"main script", `main img[src^="http:"]`, `main img[src^="https:"]`, `main img[src*="` + strings.TrimPrefix(remote.URL, "http://") + `"]`, "main iframe", "main object", "main embed"} {
		if tab.HasNode(sel) {
			t.Errorf("the message page has an element %s: the sanitiser let it through", sel)
		}
	}
	shots.take(tab, "read")

	// The attachment, downloaded by the browser, byte for byte.
	d := tab.Download(pbWait, chromedp.Click(`ul.attachments a`, chromedp.ByQuery))
	if d.SuggestedFilename != pbAttachName {
		t.Errorf("the browser would save the attachment as %q, want %q", d.SuggestedFilename, pbAttachName)
	}
	if !strings.HasPrefix(d.URL, portalURL+"/m/"+token+"/part/") {
		t.Errorf("the attachment came from %s, want %s/m/%s/part/...", d.URL, portalURL, token)
	}
	got, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatalf("the downloaded file: %v", err)
	}
	if !bytes.Equal(got, attachment) {
		t.Errorf("the downloaded attachment (%d bytes) differs from the original (%d bytes) at byte %d",
			len(got), len(attachment), firstDiff(got, attachment))
	}
	if n := remoteHits.Load(); n != 0 {
		t.Errorf("the browser loaded %d resource(s) from the remote server the message's HTML names", n)
	}
	step("attachment downloaded")

	// The reader chooses a time zone, without script: a details element
	// and a form. The date is then in Tokyo time, and stays so.
	pbClick(tab, "details.tz summary")
	tab.Run(chromedp.SetValue("#tz", "Asia/Tokyo", chromedp.ByQuery))
	pbClick(tab, `form[action$="/timezone"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/"+token, "Your secure message", "(Tokyo time)")
	pbCheckDate(t, tab, "Tokyo time")
	shots.take(tab, "read-timezone")

	// A reply with a file: it goes to Alice, who is internal, so in clear.
	replyFile := filepath.Join(t.TempDir(), pbReplyName)
	replyBytes := []byte("line one\nline two: PB-REPLY-FILE\n")
	if err := os.WriteFile(replyFile, replyBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	tab.Run(
		chromedp.SendKeys("textarea#body", pbReplyText, chromedp.ByQuery),
		chromedp.SetUploadFiles("input#files", []string{replyFile}, chromedp.ByQuery),
	)
	pbClick(tab, `form[action$="/reply"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/"+token+"/reply", "Your reply was sent", pbSender, pbReplyName)
	// The portal does not decide; it says what the milter will do.
	if text := tab.Text("main"); !strings.Contains(text, "encrypted if it leaves "+pbInternal) {
		t.Errorf("the confirmation does not say the reply is encrypted if it leaves %s:\n%s", pbInternal, text)
	}
	shots.take(tab, "reply-sent")
	pbClick(tab, "p.back a")
	tab.WaitText(pbWait, portalURL+"/m/"+token, "Your secure message", pbSubject1, "(Tokyo time)")
	reply, err := sink.WaitFor(func(m mtatest.Message) bool { return strings.EqualFold(m.From, pbRecipient) }, pbWait)
	if err != nil {
		t.Fatalf("the reply did not arrive: %v", err)
	}
	pbCheckReply(t, reply, msgID1, replyBytes)
	step("reply delivered")

	// A second message, read in a browser that has never been here: the
	// password is enough. The address step mails one code, in words for
	// an account holder (needed only for a forgotten password).
	msgID2 := fmt.Sprintf("<pb-2.%d@%s>", time.Now().UnixNano(), pbInternal)
	page2 := pbSubmitSealed(t, pf, sink, pbTextMessage(msgID2, pbSubject2+" "+e2eTag, pbMarker2), pbSubject2, pbMarker2)
	noticesBefore = len(pbNotices(sink))
	step("second message sealed")

	b2 := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900, Timeout: pbWait})
	tab2 := b2.NewTab(t)
	tab2.DisableScripts()
	tab2.Navigate(brPageURL(t, page2))
	pbClick(tab2, brButton)
	// No cookie: the portal does not know this browser.
	tab2.WaitText(pbWait, portalURL+"/m/", "Read your secure message", "Your email address")
	tab2.Run(chromedp.SendKeys("#email", pbRecipient, chromedp.ByQuery))
	pbClick(tab2, `form[action="/email"] button[type=submit]`)
	tab2.WaitText(pbWait, portalURL+"/signin", "Sign in to read your message", pbRecipient)
	shots.take(tab2, "second-visit-signin")
	tab2.Run(chromedp.SendKeys("#password", pbPassword, chromedp.ByQuery))
	pbClick(tab2, `form[action="/signin"] button[type=submit]`)
	tab2.WaitText(pbWait, portalURL+"/m/", "Your secure message", pbSubject2, pbMarker2)
	if strings.Contains(tab2.Text("main"), pbHTMLMarker) {
		t.Error("the second visit shows the first message")
	}
	shots.take(tab2, "second-visit-read")
	if err := pf.WaitQueueEmpty(t, pbWait); err != nil {
		t.Error(err)
	}
	if notices := pbNotices(sink)[noticesBefore:]; len(notices) != 1 || pbSubjectOf(notices[0]) != "Your code for secure messages" {
		var subjects []string
		for _, m := range notices {
			subjects = append(subjects, pbSubjectOf(m))
		}
		t.Errorf("the address step and the password mailed %s %q from %s, want one code mail for an account holder", pbRecipient, subjects, pbPortalFrom)
	}
	step("second visit read")

	// A hostile HTML message: it closes the portal's box and leaves a
	// link, a font and a details element open. In the browser's DOM,
	// nothing of it may be outside the box, and the Reply form must be
	// nobody's child but the page's.
	msgID3 := fmt.Sprintf("<pb-3.%d@%s>", time.Now().UnixNano(), pbInternal)
	page3 := pbSubmitSealed(t, pf, sink, pbHostileMessage(msgID3, pbSubject3+" "+e2eTag), pbSubject3, pbHostileMarker)
	tab2.Navigate(brPageURL(t, page3))
	pbClick(tab2, brButton)
	tab2.WaitText(pbWait, portalURL+"/m/", "Your secure message", pbSubject3, pbHostileMarker)
	var dom struct {
		Outside   []string `json:"outside"`
		FormInBox bool     `json:"formInBox"`
		FormInA   bool     `json:"formInLink"`
		Boxes     int      `json:"boxes"`
	}
	tab2.Run(chromedp.Evaluate(`(() => {
		const box = document.querySelector('article.html-body');
		const out = [];
		const w = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
		while (w.nextNode()) {
			const n = w.currentNode;
			if (n.data.includes('`+pbHostileMarker+`') && !(box && box.contains(n))) out.push(n.data);
		}
		const form = document.querySelector('form[action$="/reply"]');
		return {outside: out, formInBox: !!(box && form && box.contains(form)), formInLink: !!(form && form.closest('a')),
			boxes: document.querySelectorAll('article.html-body').length};
	})()`, &dom))
	if len(dom.Outside) > 0 || dom.FormInBox || dom.FormInA || dom.Boxes != 1 {
		t.Errorf("the hostile message escaped its box in the browser's DOM: outside %q, reply form in the box %v, in a link %v, %d boxes",
			dom.Outside, dom.FormInBox, dom.FormInA, dom.Boxes)
	}
	shots.take(tab2, "hostile-html")
	step("hostile html contained")

	// The other pages a signed-in recipient reaches, for the phone and
	// axe checks: the front page, "Change password" (and back to the
	// message), and signing out.
	tab2.Navigate(portalURL + "/account/password")
	tab2.WaitText(pbWait, portalURL+"/account/password", "Change your password", "Current password")
	shots.take(tab2, "change-password")
	pbClick(tab2, "p.back a")
	tab2.WaitText(pbWait, portalURL+"/m/", "Your secure message", pbSubject3)
	pbClick(tab2, `form[action="/signout"] button[type=submit]`)
	tab2.WaitText(pbWait, portalURL+"/signout", "You are signed out")
	shots.take(tab2, "signed-out")
	tab2.Navigate(portalURL + "/")
	tab2.WaitText(pbWait, portalURL+"/", "Secure messages", "SecureMessageATT.html")
	shots.take(tab2, "front-page")

	t.Logf("portal browser: screenshots: %s", strings.Join(shots.names, ", "))
	t.Logf("portal browser: total %v", time.Since(began).Round(time.Millisecond))
}

// pbWaitHealthy waits until the portal answers /healthz.
func pbWaitHealthy(t *testing.T, portalURL string) {
	t.Helper()
	deadline := time.Now().Add(pbWait)
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(portalURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the portal at %s does not answer /healthz: %v", portalURL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pbMessage is a tagged message from Alice to Bob: text and HTML
// alternatives, the HTML with a script and an image on remoteURL, and a
// binary attachment.
func pbMessage(msgID, subject, remoteURL string, attachment []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Alice Example <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: %s\r\n", pbSender, pbRecipient, subject, msgID)
	fmt.Fprintf(&b, "Date: %s\r\nMIME-Version: 1.0\r\n", time.Now().Format(time.RFC1123Z))
	b.WriteString("Content-Type: multipart/mixed; boundary=\"pb-mix\"\r\n\r\n")
	b.WriteString("--pb-mix\r\nContent-Type: multipart/alternative; boundary=\"pb-alt\"\r\n\r\n")
	b.WriteString("--pb-alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString("Hello Bob,\r\n\r\nthe figures are attached. " + pbTextMarker + "\r\n\r\nAlice\r\n")
	b.WriteString("--pb-alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n")
	b.WriteString("<html><body><p>Hello Bob,</p><p>the <b>figures</b> are attached. " + pbHTMLMarker + "</p>\r\n")
	b.WriteString("<script>document.write('<p id=\"script-ran\">SCRIPT-RAN</p>')</script>\r\n")
	b.WriteString("<img src=\"" + remoteURL + "/track.gif\" alt=\"\" width=\"1\" height=\"1\">\r\n")
	b.WriteString("<p>Alice</p></body></html>\r\n")
	b.WriteString("--pb-alt--\r\n")
	fmt.Fprintf(&b, "--pb-mix\r\nContent-Type: application/octet-stream; name=%q\r\n", pbAttachName)
	fmt.Fprintf(&b, "Content-Disposition: attachment; filename=%q\r\nContent-Transfer-Encoding: base64\r\n\r\n", pbAttachName)
	b.WriteString(brArmor(attachment))
	b.WriteString("--pb-mix--\r\n")
	return b.String()
}

// pbHostileMessage is an HTML message that closes the portal's box and
// leaves elements open, to wrap the page's Reply form in its own link.
func pbHostileMessage(msgID, subject string) string {
	return fmt.Sprintf("From: Alice Example <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: %s\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"+
		"<p>%s first</p></article></section></main>"+
		"<a href=\"https://evil.example/phish\"><font size=\"7\"><details open><summary>%s summary</summary>%s text"+
		"<table><tr><td>%s cell\r\n", pbSender, pbRecipient, subject, msgID, time.Now().Format(time.RFC1123Z),
		pbHostileMarker, pbHostileMarker, pbHostileMarker, pbHostileMarker)
}

// pbTextMessage is a tagged plain-text message from Alice to Bob.
func pbTextMessage(msgID, subject, marker string) string {
	return fmt.Sprintf("From: Alice Example <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: %s\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\n\r\n%s\r\n\r\nAlice\r\n",
		pbSender, pbRecipient, subject, msgID, time.Now().Format(time.RFC1123Z), marker)
}

// pbSubmitSealed submits msg from Alice to Bob with STARTTLS and AUTH,
// waits for it at the sink, checks that it was sealed and returns its
// SecureMessageATT.html.
func pbSubmitSealed(t *testing.T, mta mtatest.MTA, sink *mtatest.Sink, msg, wantSubject, marker string) []byte {
	t.Helper()
	return e2eSubmitSealed(t, mta, sink, pbSender, []string{pbRecipient}, msg, wantSubject, marker)
}

// e2eSubmitSealed submits msg from sender to rcpts with STARTTLS and AUTH,
// waits for it at the sink, checks that it went to rcpts and was sealed,
// and returns its SecureMessageATT.html.
func e2eSubmitSealed(t *testing.T, mta mtatest.MTA, sink *mtatest.Sink, sender string, rcpts []string, msg, wantSubject, marker string) []byte {
	t.Helper()
	c := mtatest.DialSubmission(t, mta)
	if err := mtatest.SendOne(c, sender, rcpts, msg); err != nil {
		t.Fatalf("submit %q: %v", wantSubject, err)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
	m, err := sink.WaitFor(func(m mtatest.Message) bool {
		return strings.EqualFold(m.From, sender) && pbSubjectOf(m) == wantSubject
	}, pbWait)
	if err != nil {
		t.Fatalf("%q did not arrive: %v", wantSubject, err)
	}
	// Postfix may hand the recipients on in another order.
	if !slices.Equal(slices.Sorted(slices.Values(m.Rcpts)), slices.Sorted(slices.Values(rcpts))) {
		t.Errorf("%q went to %v, want %v", wantSubject, m.Rcpts, rcpts)
	}
	e2eCheckSealed(t, m, marker, wantSubject)
	page, err := envelope.FindPage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("%q: %v", wantSubject, err)
	}
	return page
}

// pbSubjectOf is a delivered message's Subject, decoded and with white
// space collapsed; "" when it does not parse.
func pbSubjectOf(m mtatest.Message) string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	return e2eSubject(msg.Header)
}

// pbIsNotice tells whether m is mail from the portal to Bob.
func pbIsNotice(m mtatest.Message) bool {
	return strings.EqualFold(m.From, pbPortalFrom) && len(m.Rcpts) == 1 && strings.EqualFold(m.Rcpts[0], pbRecipient)
}

func pbNotices(sink *mtatest.Sink) []mtatest.Message {
	var out []mtatest.Message
	for _, m := range sink.Messages() {
		if pbIsNotice(m) {
			out = append(out, m)
		}
	}
	return out
}

// pbTextBody is the decoded text of a single-part message.
func pbTextBody(t *testing.T, data []byte) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("a mail does not parse: %v\n%s", err, e2eHead(data))
	}
	b, err := io.ReadAll(e.Body)
	if err != nil {
		t.Fatalf("a mail's body does not decode: %v\n%s", err, e2eHead(data))
	}
	return string(b)
}

// pbCheckReply checks Bob's reply as Alice's server delivers it: in clear,
// threaded under the original, with the text and the file.
func pbCheckReply(t *testing.T, m mtatest.Message, origID string, file []byte) {
	t.Helper()
	if len(m.Rcpts) != 1 || !strings.EqualFold(m.Rcpts[0], pbSender) {
		t.Errorf("the reply went to %v, want [%s]", m.Rcpts, pbSender)
	}
	if bytes.Contains(m.Data, []byte(envelope.PageFileName)) {
		t.Errorf("the reply to internal %s was sealed:\n%s", pbSender, e2eHead(m.Data))
	}
	r, err := gomail.CreateReader(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("the reply does not parse: %v\n%s", err, e2eHead(m.Data))
	}
	h := r.Header
	if from, err := h.AddressList("From"); err != nil || len(from) != 1 || !strings.EqualFold(from[0].Address, pbRecipient) {
		t.Errorf("reply From %q, want %s", h.Get("From"), pbRecipient)
	}
	if to, err := h.AddressList("To"); err != nil || len(to) != 1 || !strings.EqualFold(to[0].Address, pbSender) {
		t.Errorf("reply To %q, want %s", h.Get("To"), pbSender)
	}
	if subj, _ := h.Subject(); subj != "Re: "+pbSubject1 {
		t.Errorf("reply Subject %q, want %q", subj, "Re: "+pbSubject1)
	}
	if got := strings.TrimSpace(h.Get("In-Reply-To")); got != origID {
		t.Errorf("reply In-Reply-To %q, want %q", got, origID)
	}
	if refs := strings.Fields(h.Get("References")); len(refs) == 0 || refs[len(refs)-1] != origID {
		t.Errorf("reply References %q, want it to end with %q", h.Get("References"), origID)
	}
	var text string
	var files []string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the reply's MIME: %v\n%s", err, e2eHead(m.Data))
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("the reply's MIME: %v", err)
		}
		switch ph := p.Header.(type) {
		case *gomail.InlineHeader:
			text += string(body)
		case *gomail.AttachmentHeader:
			name, _ := ph.Filename()
			files = append(files, name)
			if name == pbReplyName && !bytes.Equal(body, file) {
				t.Errorf("the reply's %s is %q, want %q", name, body, file)
			}
		}
	}
	if !strings.Contains(text, pbReplyText) {
		t.Errorf("the reply's text %q lacks %q", text, pbReplyText)
	}
	if len(files) != 1 || files[0] != pbReplyName {
		t.Errorf("the reply carries files %q, want [%s]", files, pbReplyName)
	}
}

// pbFillAccount fills the create-account form: pbPassword, confirm in the
// second field, and the two security questions with their answers
// (pbCheckKept's values in TestPortalInBrowser).
func pbFillAccount(tab *browsertest.Tab, confirm string) {
	tab.Run(
		chromedp.SendKeys("#password", pbPassword, chromedp.ByQuery),
		chromedp.SendKeys("#confirm", confirm, chromedp.ByQuery),
		chromedp.SetValue("#q1", "0", chromedp.ByQuery),
		chromedp.SendKeys("#a1", "Fluffy", chromedp.ByQuery),
		chromedp.SetValue("#q2", "3", chromedp.ByQuery),
		chromedp.SendKeys("#a2", "Hill Street Primary", chromedp.ByQuery),
	)
}

// pbClick clicks the element, as a mouse does.
func pbClick(tab *browsertest.Tab, selector string) {
	tab.Run(chromedp.Click(selector, chromedp.ByQuery))
}

// pbCheckStatus checks the status of the last document the tab loaded.
func pbCheckStatus(t *testing.T, tab *browsertest.Tab, want int) {
	t.Helper()
	docs := tab.Documents()
	if len(docs) == 0 {
		t.Fatal("the tab loaded no document")
	}
	if last := docs[len(docs)-1]; last.Status != want {
		t.Errorf("%s answered %d, want %d", last.URL, last.Status, want)
	}
}

// pbCheckCookie checks the session cookie of a plain-http loopback portal:
// HttpOnly, SameSite=Lax, not Secure (there is no TLS to need it), no
// __Host- prefix (which requires Secure).
func pbCheckCookie(t *testing.T, tab *browsertest.Tab, portalURL string) {
	t.Helper()
	var cookies []*network.Cookie
	tab.Run(chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().WithURLs([]string{portalURL + "/"}).Do(ctx)
		return err
	}))
	var names []string
	for _, c := range cookies {
		names = append(names, c.Name)
		if c.Name != pbCookie {
			continue
		}
		if !c.HTTPOnly || c.Secure || c.SameSite != network.CookieSameSiteLax || c.Path != "/" {
			t.Errorf("cookie %s: HttpOnly %v, Secure %v, SameSite %q, Path %q; want HttpOnly, not Secure on http, Lax, /",
				c.Name, c.HTTPOnly, c.Secure, c.SameSite, c.Path)
		}
	}
	if len(names) != 1 || names[0] != pbCookie {
		t.Errorf("the portal set cookies %q, want just %s", names, pbCookie)
	}
}

// pbShots photographs screens at desktop and phone size, checks that each
// fits a phone, and runs axe-core on each portal page.
type pbShots struct {
	t     *testing.T
	n     int
	names []string
	axe   string // axe.min.js; "" when not installed outside CI
	// prefix begins the screenshots' names; "" is "portal".
	prefix string
}

const (
	pbPhoneWidth, pbPhoneHeight = 360, 780
	pbMinTapHeight              = 44
)

// take photographs the tab's page at 1280x900 and at 360x780, checks at
// 360 px that the page does not scroll sideways and that every button in
// main is a tap target (at least 44 px high, inside the screen), and
// leaves the tab at 1280x900. The header's "Sign out" is a link-styled
// button outside main and is not held to that.
func (s *pbShots) take(tab *browsertest.Tab, screen string) {
	s.t.Helper()
	s.n++
	for _, size := range []struct {
		w, h   int
		mobile bool
	}{{1280, 900, false}, {pbPhoneWidth, pbPhoneHeight, true}} {
		tab.SetViewport(size.w, size.h, size.mobile)
		prefix := s.prefix
		if prefix == "" {
			prefix = "portal"
		}
		name := fmt.Sprintf("%s-%02d-%s-%dx%d", prefix, s.n, screen, size.w, size.h)
		tab.Screenshot(name)
		s.names = append(s.names, name+".png")
	}
	l := tab.Layout()
	var scrollWidth float64
	tab.Run(chromedp.Evaluate(`document.documentElement.scrollWidth`, &scrollWidth))
	w := float64(pbPhoneWidth)
	if l.ViewportWidth != w {
		s.t.Errorf("%s at %d px: the viewport is %.0f CSS px wide", screen, pbPhoneWidth, l.ViewportWidth)
	}
	if l.ContentWidth > w || scrollWidth > w {
		s.t.Errorf("%s (%s) at %d px: the page is %.0f CSS px wide (scrollWidth %.0f): it scrolls sideways",
			screen, tab.Location(), pbPhoneWidth, l.ContentWidth, scrollWidth)
	}
	// Buttons the flow needs are there (it clicks them); here every
	// button in main must be a tap target.
	for i, b := range tab.BorderBoxes("main button") {
		if b.Height < pbMinTapHeight {
			s.t.Errorf("%s at %d px: button %d of main is %.0f px high, want at least %d", screen, pbPhoneWidth, i+1, b.Height, pbMinTapHeight)
		}
		if b.X < 0 || b.X+b.Width > w {
			s.t.Errorf("%s at %d px: button %d of main spans x %.0f to %.0f, outside the screen", screen, pbPhoneWidth, i+1, b.X, b.X+b.Width)
		}
	}
	// The portal's own links and check boxes in main are tap targets too
	// (a message's own links, in its box, are the sender's).
	for i, b := range tab.BorderBoxes("main a:not(.html-body *), main label.check") {
		if b.Height < pbMinTapHeight {
			s.t.Errorf("%s at %d px: link or check box %d of main is %.0f px high, want at least %d", screen, pbPhoneWidth, i+1, b.Height, pbMinTapHeight)
		}
	}
	// A signed-in page's header is one line: its text sits in one row
	// and the bar is one row of controls high.
	if tab.HasNode(`header form[action="/signout"]`) {
		pbCheckHeaderOneLine(s.t, tab, screen)
		if s.axe != "" {
			pbAxe(s.t, tab, s.axe, screen+" at 360 px")
		}
	}
	// The header's controls are not held to 44 px; list the small ones so
	// that a reader of the log sees them.
	var small []string
	for _, sel := range []string{"header a", "header button"} {
		for _, b := range tab.BorderBoxes(sel) {
			if b.Height < pbMinTapHeight {
				small = append(small, fmt.Sprintf("%s %.0fx%.0f", sel, b.Width, b.Height))
			}
		}
	}
	if len(small) > 0 {
		s.t.Logf("note: %s at %d px: tap targets under %d px: %s", screen, pbPhoneWidth, pbMinTapHeight, strings.Join(small, ", "))
	}
	tab.SetViewport(1280, 900, false)
	if strings.HasPrefix(tab.Location(), "http") {
		pbAxe(s.t, tab, s.axe, screen)
	}
}

// pbCheckHeaderOneLine checks at the current viewport that the header's
// visible text lies on one line (each text in one box, the boxes' middles
// within half a line of each other) and that the header is no taller
// than its tallest control and half a line: a second row would add at
// least a line.
func pbCheckHeaderOneLine(t *testing.T, tab *browsertest.Tab, screen string) {
	t.Helper()
	var got struct {
		LineHeight float64   `json:"lineHeight"`
		Inner      float64   `json:"inner"`
		Tallest    float64   `json:"tallest"`
		Middles    []float64 `json:"middles"`
		Split      []string  `json:"split"`
	}
	tab.Run(chromedp.Evaluate(`(() => {
		const h = document.querySelector('header');
		const cs = getComputedStyle(h);
		const out = {lineHeight: parseFloat(cs.lineHeight) || 1.5 * parseFloat(cs.fontSize),
			inner: h.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom),
			tallest: 0, middles: [], split: []};
		for (const c of h.children) out.tallest = Math.max(out.tallest, c.getBoundingClientRect().height);
		// Text in a visually hidden box (1 px, clipped) is for screen
		// readers only.
		const shown = el => { for (; el && el !== h; el = el.parentElement) if (el.getBoundingClientRect().width <= 1) return false; return true; };
		const w = document.createTreeWalker(h, NodeFilter.SHOW_TEXT);
		while (w.nextNode()) {
			const n = w.currentNode;
			if (!n.data.trim() || !shown(n.parentElement)) continue;
			const r = document.createRange();
			r.selectNodeContents(n);
			const boxes = [...r.getClientRects()].filter(b => b.width > 0);
			if (boxes.length !== 1) out.split.push(n.data.trim());
			for (const b of boxes) out.middles.push(b.top + b.height / 2);
		}
		return out;
	})()`, &got))
	if len(got.Split) > 0 {
		t.Errorf("%s at %d px: header text wraps: %q", screen, pbPhoneWidth, got.Split)
	}
	if len(got.Middles) > 0 {
		lo, hi := got.Middles[0], got.Middles[0]
		for _, m := range got.Middles {
			lo, hi = min(lo, m), max(hi, m)
		}
		if hi-lo > got.LineHeight/2 {
			t.Errorf("%s at %d px: the header's text spans %.0f px from the first line's middle to the last (line height %.0f): more than one line",
				screen, pbPhoneWidth, hi-lo, got.LineHeight)
		}
	}
	if got.Inner > got.Tallest+got.LineHeight/2 {
		t.Errorf("%s at %d px: the header is %.0f px high inside, its tallest item %.0f px (line height %.0f): it wraps",
			screen, pbPhoneWidth, got.Inner, got.Tallest, got.LineHeight)
	}
}

// pbCheckDate checks that the message page's date is in words, in the
// zone named by zone ("UTC", "Tokyo time"): "Friday 4 December 2026,
// 14:05 (UTC)".
func pbCheckDate(t *testing.T, tab *browsertest.Tab, zone string) {
	t.Helper()
	var date string
	tab.Run(chromedp.Evaluate(`(() => { for (const dt of document.querySelectorAll('dl.headers dt')) if (dt.textContent === 'Date') return dt.nextElementSibling.textContent; return ''; })()`, &date))
	re := regexp.MustCompile(`^(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day [1-9]\d? (January|February|March|April|May|June|July|August|September|October|November|December) \d{4}, \d\d:\d\d \(` + regexp.QuoteMeta(zone) + `\)$`)
	if !re.MatchString(date) {
		t.Errorf("the message page's date is %q, want it in words in %s", date, zone)
	}
}

// pbAxeEnv names axe-core's axe.min.js; .ci/run installs it (npm
// axe-core) at pbAxeDefault.
const (
	pbAxeEnv     = "SECUREMAIL_AXE_JS"
	pbAxeDefault = "/opt/securemail-ci/axe/node_modules/axe-core/axe.min.js"
	pbAxeTimeout = 90 * time.Second
)

// pbAxeSource reads axe-core. Without it the accessibility checks are
// skipped with a note, or fail the test when CI is set.
func pbAxeSource(t *testing.T) string {
	t.Helper()
	path := os.Getenv(pbAxeEnv)
	if path == "" {
		path = pbAxeDefault
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("axe-core: %v (install it: npm install --prefix /opt/securemail-ci/axe axe-core, or set %s)", err, pbAxeEnv)
		}
		t.Logf("note: no axe-core at %s (npm install --prefix /opt/securemail-ci/axe axe-core): accessibility not checked", path)
		return ""
	}
	return string(b)
}

// pbAxeViolation is one rule axe-core found broken.
type pbAxeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// pbAxe runs axe-core on the tab's page and fails the test for every
// violation.
func pbAxe(t *testing.T, tab *browsertest.Tab, source, screen string) {
	t.Helper()
	if source == "" {
		return
	}
	for _, v := range pbAxeRun(t, tab, source) {
		t.Errorf("axe on %s (%s): %s (%s): %s\n  %s", screen, tab.Location(), v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "\n  "))
	}
}

// pbAxeSelfTest proves that the check finds a violation where there is
// one, so that zero violations on the portal's pages means something.
func pbAxeSelfTest(t *testing.T, tab *browsertest.Tab, source string) {
	t.Helper()
	if source == "" {
		return
	}
	tab.Navigate(`data:text/html;charset=utf-8,<!DOCTYPE html><title>axe probe</title><main><img src="data:,"></main>`)
	for _, v := range pbAxeRun(t, tab, source) {
		if v.ID == "image-alt" {
			return
		}
	}
	t.Fatal("axe-core did not report an image without alt text on a probe page: the accessibility check does not work")
}

// pbAxeRun injects axe-core into the page through the DevTools protocol
// (the page itself allows no script) and returns its violations.
func pbAxeRun(t *testing.T, tab *browsertest.Tab, source string) []pbAxeViolation {
	t.Helper()
	var found []pbAxeViolation
	// axe.run waits on timers, which do not fire while the page's scripts
	// are off; turn them on for the check only. The portal's pages carry
	// no script of their own, and their CSP would refuse one.
	// axe needs a few seconds of CPU per page; on a loaded machine more
	// than a Run's default bound.
	err := tab.RunErr(pbAxeTimeout,
		emulation.SetScriptExecutionDisabled(false),
		chromedp.Evaluate(source+";true", nil),
		chromedp.Evaluate(`axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({
			id: v.id, impact: v.impact || '', help: v.help,
			nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary)})))`, &found,
			func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
	)
	tab.Run(emulation.SetScriptExecutionDisabled(true))
	if err != nil {
		t.Fatalf("axe on %s: %v", tab.Location(), err)
	}
	return found
}

// pbCheckKept checks the values of form fields after a refused form.
func pbCheckKept(t *testing.T, tab *browsertest.Tab, want map[string]string) {
	t.Helper()
	for sel, w := range want {
		var got string
		tab.Run(chromedp.Value(sel, &got, chromedp.ByQuery))
		if got != w {
			t.Errorf("after the refused registration %s holds %q, want %q", sel, got, w)
		}
	}
}
