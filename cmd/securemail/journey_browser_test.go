package main

// How long the recipient's way to a message is, measured in a real
// browser with JavaScript off (issue 14): the screens (documents the
// browser loads) from "Click to read message" to the message text, and
// the fields typed or chosen on the way, for a first visit, a returning
// reader in a new browser, a reader whose device remembers the address,
// and a password reset. Every screen is photographed at 1280 and 360 px,
// checked for sideways scroll and tap targets at 360 px, and checked with
// axe-core (pbShots).

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/securemail/securemail/cmd/securemail/internal/browsertest"
	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

const (
	jySubject  = "Journey measured"
	jyMarker   = "JY-TEXT-MARKER"
	jyPassword = "harbour pepper willow candle"
)

// jyJourney counts one journey: screens from the click on "Click to read
// message" and the fields filled.
type jyJourney struct {
	t       *testing.T
	tab     *browsertest.Tab
	name    string
	portal  string
	docs    int // documents the tab had loaded before the click
	fields  []string
	screens []string
}

// jyStart opens the attachment page in tab and clicks "Click to read
// message".
func jyStart(t *testing.T, tab *browsertest.Tab, name, portalURL string, page []byte) *jyJourney {
	t.Helper()
	tab.Navigate(brPageURL(t, page))
	tab.Run(chromedp.WaitVisible(brButton, chromedp.ByQuery))
	j := &jyJourney{t: t, tab: tab, name: name, portal: portalURL, docs: len(tab.Documents())}
	pbClick(tab, brButton)
	return j
}

// fill types value into the field selector names, and counts it.
func (j *jyJourney) fill(selector, value string) {
	j.tab.Run(chromedp.SendKeys(selector, value, chromedp.ByQuery))
	j.fields = append(j.fields, selector)
}

// choose sets a select's value, and counts it as a field.
func (j *jyJourney) choose(selector, value string) {
	j.tab.Run(chromedp.SetValue(selector, value, chromedp.ByQuery))
	j.fields = append(j.fields, selector)
}

// end checks the journey reached the message and returns its screens and
// fields, logged.
func (j *jyJourney) end() (screens, fields int) {
	j.t.Helper()
	for _, d := range j.tab.Documents()[j.docs:] {
		if !strings.HasPrefix(d.URL, j.portal+"/") {
			j.t.Errorf("%s: a document from outside the portal: %s", j.name, d.URL)
		}
		j.screens = append(j.screens, fmt.Sprintf("%s (%d)", strings.TrimPrefix(d.URL, j.portal), d.Status))
	}
	j.t.Logf("journey %-22s %d screens, %d fields: screens %s; fields %s", j.name+":", len(j.screens), len(j.fields),
		strings.Join(j.screens, " -> "), strings.Join(j.fields, " "))
	return len(j.screens), len(j.fields)
}

func TestRecipientJourneyInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix, the securemail binary and Chromium")
	}
	began := time.Now()
	st := newE2EBrowserStack(t, "recipient journey browser test")
	sink, pf := st.sink, st.pf
	portalAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	portalURL := "http://" + portalAddr
	e2eStartServe(t, st.bin, st.config(t, portalAddr, "", ""), st.milterAddr)
	pf.Start(t)
	pbWaitHealthy(t, portalURL)
	msgID := fmt.Sprintf("<jy-1.%d@%s>", time.Now().UnixNano(), pbInternal)
	page := pbSubmitSealed(t, pf, sink, pbTextMessage(msgID, jySubject+" "+e2eTag, jyMarker), jySubject, jyMarker)
	shots := &pbShots{t: t, axe: pbAxeSource(t), prefix: "journey"}
	codeRE := regexp.MustCompile(`\b\d{8}\b`)
	// waitCode waits for the code mail with subject after the first
	// `after` mails from the portal to Bob.
	waitCode := func(after int, subject string) string {
		t.Helper()
		_, err := sink.WaitFor(func(m mtatest.Message) bool {
			return pbIsNotice(m) && pbSubjectOf(m) == subject && len(pbNotices(sink)) > after
		}, pbWait)
		if err != nil {
			t.Fatalf("no mail %q to %s: %v", subject, pbRecipient, err)
		}
		notices := pbNotices(sink)
		last := notices[len(notices)-1]
		code := codeRE.FindString(pbTextBody(t, last.Data))
		if code == "" || pbSubjectOf(last) != subject {
			t.Fatalf("the newest mail to %s is %q without a code:\n%s", pbRecipient, pbSubjectOf(last), e2eHead(last.Data))
		}
		return code
	}
	newTab := func() *browsertest.Tab {
		b := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900, Timeout: pbWait})
		tab := b.NewTab(t)
		tab.DisableScripts()
		return tab
	}

	// A first visit: address; the sign-in page with the code the address
	// step mailed; password and questions together; the message.
	tab := newTab()
	pbAxeSelfTest(t, tab, shots.axe)
	before := len(pbNotices(sink))
	j := jyStart(t, tab, "first visit", portalURL, page)
	tab.WaitText(pbWait, portalURL+"/m/", "Read your secure message", "Your email address", "Remember my email address")
	shots.take(tab, "first-email")
	j.fill("#email", pbRecipient)
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/signin", "Sign in to read your message", "Have a password?", "First time here, or forgot your password?", "Code from the email")
	shots.take(tab, "first-signin")
	j.fill("#code", waitCode(before, "Your code to read a secure message"))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/register/password", "Create your account", "Two security questions")
	shots.take(tab, "first-create-account")
	j.fill("#password", jyPassword)
	j.fill("#confirm", jyPassword)
	j.choose("#q1", "0")
	j.fill("#a1", "Fluffy")
	j.choose("#q2", "3")
	j.fill("#a2", "Hill Street Primary")
	pbClick(tab, `form[action="/register/password"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/", "Your secure message", jySubject, jyMarker)
	shots.take(tab, "first-read")
	if screens, fields := j.end(); screens != 4 || fields > 8 {
		t.Errorf("first visit: %d screens and %d fields to the message, want 4 screens and at most 8 fields", screens, fields)
	}

	// A returning reader in a new browser: address (ticking "remember"),
	// password, message.
	tab = newTab()
	j = jyStart(t, tab, "returning, new browser", portalURL, page)
	tab.WaitText(pbWait, portalURL+"/m/", "Read your secure message", "Your email address")
	j.fill("#email", pbRecipient)
	pbClick(tab, `input[name="remember"]`) // a choice, not a field to fill
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/signin", "Sign in to read your message", pbRecipient)
	shots.take(tab, "returning-signin")
	j.fill("#password", jyPassword)
	pbClick(tab, `form[action="/signin"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/", "Your secure message", jyMarker)
	if screens, fields := j.end(); screens != 3 {
		t.Errorf("returning in a new browser: %d screens and %d fields to the message, want 3 screens", screens, fields)
	}

	// The same device later (signed out; the address stays remembered):
	// the sign-in page straight from the message link, and no mail.
	pbClick(tab, `form[action="/signout"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/signout", "You are signed out")
	if err := pf.WaitQueueEmpty(t, pbWait); err != nil {
		t.Error(err)
	}
	before = len(pbNotices(sink))
	j = jyStart(t, tab, "remembered address", portalURL, page)
	tab.WaitText(pbWait, portalURL+"/m/", "Sign in to read your message", "Signing in as", pbRecipient, "Email me a code")
	shots.take(tab, "remembered-signin")
	j.fill("#password", jyPassword)
	pbClick(tab, `form[action="/signin"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/", "Your secure message", jyMarker)
	if screens, fields := j.end(); screens != 2 {
		t.Errorf("with the remembered address: %d screens and %d fields to the message, want 2 screens", screens, fields)
	}
	if err := pf.WaitQueueEmpty(t, pbWait); err != nil {
		t.Error(err)
	}
	if n := len(pbNotices(sink)) - before; n != 0 {
		t.Errorf("signing in with the remembered address mailed %d message(s) to %s, want none", n, pbRecipient)
	}
	// "Not you? Use another address" forgets it: the message link asks
	// for the address again.
	pbClick(tab, `form[action="/signout"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/signout", "You are signed out")
	tab.Navigate(brPageURL(t, page))
	pbClick(tab, brButton)
	tab.WaitText(pbWait, portalURL+"/m/", "Signing in as", pbRecipient)
	pbClick(tab, `main a.tap`)
	tab.WaitText(pbWait, portalURL+"/m/", "Read your secure message", "Your email address")
	tab.Navigate(brPageURL(t, page))
	pbClick(tab, brButton)
	tab.WaitText(pbWait, portalURL+"/m/", "Read your secure message", "Your email address")

	// A forgotten password, in a new browser: address; the code on the
	// sign-in page; the security questions; a new password; the message.
	tab = newTab()
	before = len(pbNotices(sink))
	j = jyStart(t, tab, "password reset", portalURL, page)
	tab.WaitText(pbWait, portalURL+"/m/", "Read your secure message", "Your email address")
	j.fill("#email", pbRecipient)
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/signin", "Sign in to read your message", "Code from the email")
	j.fill("#code", waitCode(before, "Your code for secure messages"))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/reset/answers", "Answer your security questions")
	shots.take(tab, "reset-answers")
	j.fill("#a1", "fluffy")
	j.fill("#a2", "hill street primary")
	pbClick(tab, `form[action="/reset/answers"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/reset/password", "Choose a new password")
	shots.take(tab, "reset-new-password")
	j.fill("#password", jyPassword+" two")
	j.fill("#confirm", jyPassword+" two")
	pbClick(tab, `form[action="/reset/password"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/", "Your secure message", jyMarker)
	if screens, fields := j.end(); screens > 5 {
		t.Errorf("password reset: %d screens and %d fields to the message, want at most 5 screens", screens, fields)
	}

	t.Logf("journey browser: screenshots: %s", strings.Join(shots.names, ", "))
	t.Logf("journey browser: total %v", time.Since(began).Round(time.Millisecond))
}
