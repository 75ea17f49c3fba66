package main

// The phone fallback and the read notice, in a real browser against real
// parts (as TestPortalInBrowser): with portal.link_fallback and
// portal.read_notice on, a tagged message goes through Postfix, and its
// notice's link is followed in headless Chromium on a 360 px phone with
// JavaScript off, through registration to the message text, without a
// page that scrolls sideways. The sender gets one read notice through
// Postfix. The attachment's way in still works, in a desktop browser, and
// leads to the same reading page; reading again sends no second notice.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-message"

	"github.com/securemail/securemail/cmd/securemail/internal/browsertest"
	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

const (
	lbSubject = "Phone figures"
	lbMarker  = "LB-PHONE-MARKER"
)

func TestPhoneLinkInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix, the securemail binary and Chromium")
	}
	if browsertest.ChromiumPath() == "" {
		mtatest.SkipUnlessCI(t, "phone link browser test: no Chromium (Debian: apt-get install --no-install-recommends chromium)")
	}
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	began := time.Now()
	step := func(what string) {
		t.Logf("phone link: %-28s at %v", what, time.Since(began).Round(time.Millisecond))
	}

	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	pf := e2eNewPostfix(t, sink, "")
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)
	portalAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	portalURL := "http://" + portalAddr
	cfg := e2eWriteConfigWith(t, milterAddr, pf.SMTPAddr(), e2eConfig{
		logLevel: "info", networks: "[127.0.0.0/8]", maxSize: fmt.Sprint(20 << 20),
		internal: pbInternal, portalListen: portalAddr,
		portalExtra: "  argon2:\n    time: 1\n    memory: 8MiB\n    threads: 1\n" +
			"  link_fallback: true\n  link_retention: 720h\n  read_notice: true\n",
	})
	e2eStartServe(t, bin, cfg, milterAddr)
	pf.Start(t)
	pbWaitHealthy(t, portalURL)
	step("serve and postfix up")

	msgID := fmt.Sprintf("<lb-1.%d@%s>", time.Now().UnixNano(), pbInternal)
	page := pbSubmitSealed(t, pf, sink, pbTextMessage(msgID, lbSubject+" "+e2eTag, lbMarker), lbSubject, lbMarker)
	sealed, err := sink.WaitFor(func(m mtatest.Message) bool {
		return strings.EqualFold(m.From, pbSender) && pbSubjectOf(m) == lbSubject
	}, pbWait)
	if err != nil {
		t.Fatal(err)
	}
	text := lbNoticeText(t, sealed.Data)
	link := regexp.MustCompile(regexp.QuoteMeta(portalURL) + `/l/[A-Za-z0-9_-]{22}\b`).FindString(text)
	if link == "" {
		t.Fatalf("no phone link to %s/l/ in the notice:\n%s", portalURL, text)
	}
	for _, words := range []string{"two ways", "On a computer", "On a phone or tablet", "SecureMessageATT.html"} {
		if !strings.Contains(text, words) {
			t.Errorf("the notice does not say %q:\n%s", words, text)
		}
	}
	step("sealed, link in the notice")

	// The phone: 360 px, touch, no JavaScript, the link tapped in a mail
	// app.
	phone := browsertest.New(t, browsertest.Options{Width: pbPhoneWidth, Height: pbPhoneHeight, Timeout: pbWait})
	tab := phone.NewTab(t)
	tab.DisableScripts()
	tab.SetViewport(pbPhoneWidth, pbPhoneHeight, true)
	fits := func(screen string) {
		t.Helper()
		tab.Screenshot(fmt.Sprintf("phone-link-%s-%dx%d", screen, pbPhoneWidth, pbPhoneHeight))
		var scrollWidth float64
		tab.Run(chromedp.Evaluate(`document.documentElement.scrollWidth`, &scrollWidth))
		l := tab.Layout()
		if l.ViewportWidth != pbPhoneWidth || l.ContentWidth > pbPhoneWidth || scrollWidth > pbPhoneWidth {
			t.Errorf("%s (%s) at %d px: viewport %.0f, page %.0f CSS px wide, scrollWidth %.0f: it scrolls sideways",
				screen, tab.Location(), pbPhoneWidth, l.ViewportWidth, l.ContentWidth, scrollWidth)
		}
		for i, b := range tab.BorderBoxes("main button") {
			if b.Height < pbMinTapHeight || b.X < 0 || b.X+b.Width > pbPhoneWidth {
				t.Errorf("%s at %d px: button %d of main is %.0fx%.0f at x %.0f: not a tap target on the screen", screen, pbPhoneWidth, i+1, b.Width, b.Height, b.X)
			}
		}
	}
	tab.Navigate(link)
	tab.WaitText(pbWait, portalURL+"/m/", "Read your secure message", "Your email address")
	pbCheckStatus(t, tab, http.StatusOK)
	token := strings.TrimPrefix(tab.Location(), portalURL+"/m/")
	fits("email")
	tab.Run(chromedp.SendKeys("#email", pbRecipient, chromedp.ByQuery))
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/signin", "Sign in to read your message", pbRecipient, "Code from the email")
	fits("signin")
	codeMail, err := sink.WaitFor(func(m mtatest.Message) bool {
		return pbIsNotice(m) && pbSubjectOf(m) == "Your code to read a secure message"
	}, pbWait)
	if err != nil {
		t.Fatalf("no code mail: %v", err)
	}
	code := regexp.MustCompile(`\b\d{8}\b`).FindString(pbTextBody(t, codeMail.Data))
	tab.Run(chromedp.SendKeys("#code", code, chromedp.ByQuery))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/register/password", "Create your account")
	fits("create-account")
	pbFillAccount(tab, pbPassword)
	pbClick(tab, `form[action="/register/password"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/"+token, "Your secure message", lbSubject, lbMarker)
	fits("read")
	step("read on the phone from the link")

	// The sender hears of it, once, through Postfix.
	isReadNotice := func(m mtatest.Message) bool {
		return strings.EqualFold(m.From, pbPortalFrom) && len(m.Rcpts) == 1 && strings.EqualFold(m.Rcpts[0], pbSender) &&
			strings.HasPrefix(pbSubjectOf(m), "Read: "+lbSubject)
	}
	notice, err := sink.WaitFor(isReadNotice, pbWait)
	if err != nil {
		t.Fatalf("no read notice to %s: %v", pbSender, err)
	}
	body := pbTextBody(t, notice.Data)
	if !strings.Contains(body, pbRecipient+" read the secure message") || strings.Contains(body, lbMarker) || bytes.Contains(notice.Data, []byte("SecureMessageATT.html")) {
		t.Errorf("the read notice should name the reader, hold no content and arrive in clear to the internal sender:\n%s", body)
	}
	if subj := pbSubjectOf(notice); subj != "Read: "+lbSubject {
		t.Errorf("read notice subject %q: the milter should have taken its tag off", subj)
	}
	step("read notice delivered")

	// The attachment's way in, on a desktop with no cookies: the same
	// reading page.
	desk := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900, Timeout: pbWait})
	tab2 := desk.NewTab(t)
	tab2.DisableScripts()
	tab2.Navigate(brPageURL(t, page))
	pbClick(tab2, brButton)
	tab2.WaitText(pbWait, portalURL+"/m/"+token, "Read your secure message", "Your email address")
	tab2.Run(chromedp.SendKeys("#email", pbRecipient, chromedp.ByQuery))
	pbClick(tab2, `form[action="/email"] button[type=submit]`)
	tab2.WaitText(pbWait, portalURL+"/signin", "Sign in to read your message")
	tab2.Run(chromedp.SendKeys("#password", pbPassword, chromedp.ByQuery))
	pbClick(tab2, `form[action="/signin"] button[type=submit]`)
	tab2.WaitText(pbWait, portalURL+"/m/"+token, "Your secure message", lbSubject, lbMarker)
	tab2.Screenshot("phone-link-attachment-read-1280x900")
	step("read again from the attachment")

	// A link nobody sent: a page in words, fit for the phone.
	tab.Navigate(portalURL + "/l/AAAAAAAAAAAAAAAAAAAAAA")
	tab.WaitText(pbWait, portalURL+"/l/", "This link does not work", "SecureMessageATT.html")
	pbCheckStatus(t, tab, http.StatusNotFound)
	fits("unknown-link")
	pbAxe(t, tab, pbAxeSource(t), "unknown-link")

	if err := pf.WaitQueueEmpty(t, pbWait); err != nil {
		t.Error(err)
	}
	var notices int
	for _, m := range sink.Messages() {
		if isReadNotice(m) {
			notices++
		}
	}
	if notices != 1 {
		t.Errorf("%d read notices after two reads by %s, want 1", notices, pbRecipient)
	}
	t.Logf("phone link: total %v", time.Since(began).Round(time.Millisecond))
}

// lbNoticeText is the decoded text part of a sealed message's notice.
func lbNoticeText(t *testing.T, data []byte) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the sealed message does not parse: %v", err)
	}
	var text string
	err = e.Walk(func(_ []int, p *message.Entity, err error) error {
		if err != nil {
			return err
		}
		if ct, _, _ := p.Header.ContentType(); ct == "text/plain" && text == "" {
			b, err := readAllString(p)
			text = b
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the sealed message's MIME: %v", err)
	}
	return text
}

func readAllString(p *message.Entity) (string, error) {
	b, err := io.ReadAll(p.Body)
	return string(b), err
}
