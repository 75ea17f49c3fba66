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
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/securemail/securemail/cmd/securemail/internal/browsertest"
	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/internal/catalog"
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
	shots := &pbShots{t: t, axe: pbAxeSource(t), prefix: "journey-en"}
	jyEnglishLines = map[string][]string{}
	// snap is shots.take that keeps the screen's lines for the German test.
	snap := func(tab *browsertest.Tab, screen string) {
		t.Helper()
		shots.take(tab, screen)
		jyEnglishLines[screen] = jyLines(tab)
	}
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
	snap(tab, "first-email")
	j.fill("#email", pbRecipient)
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/signin", "Sign in to read your message", "Have a password?", "First time here, or forgot your password?", "Code from the email")
	snap(tab, "first-signin")
	j.fill("#code", waitCode(before, "Your code to read a secure message"))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/register/password", "Create your account", "Two security questions")
	snap(tab, "first-create-account")
	j.fill("#password", jyPassword)
	j.fill("#confirm", jyPassword)
	j.choose("#q1", "0")
	j.fill("#a1", "Fluffy")
	j.choose("#q2", "3")
	j.fill("#a2", "Hill Street Primary")
	pbClick(tab, `form[action="/register/password"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/", "Your secure message", jySubject, jyMarker)
	snap(tab, "first-read")
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
	snap(tab, "returning-signin")
	j.fill("#password", jyPassword)
	pbClick(tab, `form[action="/signin"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/", "Your secure message", jyMarker)
	snap(tab, "returning-read")
	if screens, fields := j.end(); screens != 3 {
		t.Errorf("returning in a new browser: %d screens and %d fields to the message, want 3 screens", screens, fields)
	}

	// The same device later (signed out; the address stays remembered):
	// the sign-in page straight from the message link, and no mail.
	pbClick(tab, `form[action="/signout"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/signout", "You are signed out")
	snap(tab, "signed-out")
	if err := pf.WaitQueueEmpty(t, pbWait); err != nil {
		t.Error(err)
	}
	before = len(pbNotices(sink))
	j = jyStart(t, tab, "remembered address", portalURL, page)
	tab.WaitText(pbWait, portalURL+"/m/", "Sign in to read your message", "Signing in as", pbRecipient, "Email me a code")
	snap(tab, "remembered-signin")
	j.fill("#password", jyPassword)
	pbClick(tab, `form[action="/signin"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/", "Your secure message", jyMarker)
	snap(tab, "remembered-read")
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
	snap(tab, "reset-signin")
	j.fill("#code", waitCode(before, "Your code for secure messages"))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/reset/answers", "Answer your security questions")
	snap(tab, "reset-answers")
	j.fill("#a1", "fluffy")
	j.fill("#a2", "hill street primary")
	pbClick(tab, `form[action="/reset/answers"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/reset/password", "Choose a new password")
	snap(tab, "reset-new-password")
	j.fill("#password", jyPassword+" two")
	j.fill("#confirm", jyPassword+" two")
	pbClick(tab, `form[action="/reset/password"] button[type=submit]`)
	tab.WaitText(pbWait, portalURL+"/m/", "Your secure message", jyMarker)
	snap(tab, "reset-read")
	if screens, fields := j.end(); screens > 5 {
		t.Errorf("password reset: %d screens and %d fields to the message, want at most 5 screens", screens, fields)
	}

	t.Logf("journey browser: screenshots: %s", strings.Join(shots.names, ", "))
	t.Logf("journey browser: total %v", time.Since(began).Round(time.Millisecond))
}

// jyBerta reads in German: her browser asks for it (Accept-Language), so
// every page she sees must be German.
const jyBerta = "berta@external.test"

// jyAcceptGerman makes the tab's browser send "Accept-Language:
// de-DE,de" with every request, as a browser set to German does
// (Emulation.setUserAgentOverride keeps the user agent and changes only
// the languages, for the whole tab).
func jyAcceptGerman(tab *browsertest.Tab) {
	tab.Run(chromedp.ActionFunc(func(ctx context.Context) error {
		_, _, _, ua, _, err := cdpbrowser.GetVersion().Do(ctx)
		if err != nil {
			return err
		}
		return emulation.SetUserAgentOverride(ua).WithAcceptLanguage("de-DE,de").Do(ctx)
	}))
}

// jyEnglishSentences are the English catalogue's portal, error and
// message-page entries cut into the runs between their {Field}s, marks
// removed, white space collapsed; runs under 20 characters, and runs
// the German entry of the same key also holds, are left out.
func jyEnglishSentences() map[string]string {
	field := regexp.MustCompile(`\{[A-Za-z][A-Za-z0-9]*\}`)
	runs := map[string]string{}
	for _, key := range catalog.Keys() {
		if !strings.HasPrefix(key, "portal.") && !strings.HasPrefix(key, "error.") && !strings.HasPrefix(key, "read.") {
			continue
		}
		de := jyNorm(catalog.Entry(catalog.German, key))
		for _, run := range field.Split(catalog.Entry(catalog.English, key), -1) {
			run = jyNorm(run)
			if len(run) >= 20 && !strings.Contains(de, run) {
				runs[run] = key
			}
		}
	}
	return runs
}

// jyNorm drops the catalogue's bold and code marks and collapses white
// space, as a page's innerText shows an entry.
func jyNorm(s string) string {
	s = strings.NewReplacer("**", "", "`", "").Replace(s)
	return strings.Join(strings.Fields(s), " ")
}

// jyGermanPage checks the tab's page is German: <html lang="de">, a
// switch to English at its foot, and no English catalogue sentence in
// its text.
func jyGermanPage(t *testing.T, tab *browsertest.Tab, screen string, english map[string]string) {
	t.Helper()
	var lang, text string
	tab.Run(chromedp.Evaluate(`document.documentElement.lang`, &lang),
		chromedp.Evaluate(`document.body.innerText`, &text))
	if lang != "de" {
		t.Errorf("German %s (%s): <html lang=%q>, want de", screen, tab.Location(), lang)
	}
	if !tab.HasNode(`footer.langs a[href^="/lang/en?back="]`) {
		t.Errorf("German %s (%s): no switch to English at the foot of the page", screen, tab.Location())
	}
	// Lines the English journey showed on the same screen (when it ran
	// first in this process): they catch English a page has outside the
	// catalogue.
	german := map[string]bool{}
	for _, l := range jyLines(tab) {
		german[l] = true
	}
	for _, l := range jyEnglishLines[screen] {
		if len(l) >= 20 && german[l] {
			t.Errorf("German %s (%s) holds the English page's line %q", screen, tab.Location(), l)
		}
	}
	text = jyNorm(text)
	for run, key := range english {
		if strings.Contains(text, run) {
			t.Errorf("German %s (%s) holds English sentence %q (%s)", screen, tab.Location(), run, key)
		}
	}
}

// jyEnglishLines are the lines of text the English journey's screens
// showed, by screen (jyLines).
var jyEnglishLines map[string][]string

// jyLines are the lines of the portal's own text on the tab's page: main
// and the header, without the message's text, its header values and the
// time zone list (the sender's words and names, the same in every
// language).
func jyLines(tab *browsertest.Tab) []string {
	var text string
	tab.Run(chromedp.Evaluate(`(() => {
		const c = document.body.cloneNode(true);
		for (const el of c.querySelectorAll('.text-body, .html-body, dl.headers dd, select')) el.remove();
		document.body.appendChild(c); c.style.position = 'absolute';
		const t = c.innerText; c.remove(); return t;
	})()`, &text))
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = jyNorm(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// jyWaitPage waits until the tab shows a page at urlPrefix* with an
// element matching selector and every one of want in its text.
func jyWaitPage(t *testing.T, tab *browsertest.Tab, urlPrefix, selector string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(pbWait)
	for {
		var loc, text string
		var has bool
		err := tab.RunErr(2*time.Second, chromedp.Location(&loc),
			chromedp.Evaluate(`document.body ? document.body.innerText : ""`, &text),
			chromedp.Evaluate(`document.querySelector(`+strconv.Quote(selector)+`) !== null`, &has))
		if err == nil && has && strings.HasPrefix(loc, urlPrefix) && jyContainsAll(text, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the page is %s (error %v), want %s* with %s showing %q; it shows:\n%s", pbWait, loc, err, urlPrefix, selector, want, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jyContainsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// TestRecipientJourneyInBrowserGerman is TestRecipientJourneyInBrowser for
// a reader whose browser asks for German: the same journeys in the same
// screens and fields, every page German (jyGermanPage), checked with
// axe-core and at 360 px, photographed as journey-de-*; then the switch
// at the foot of the pages, clicked in the browser.
func TestRecipientJourneyInBrowserGerman(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix, the securemail binary and Chromium")
	}
	english := jyEnglishSentences()
	if len(english) < 20 {
		t.Fatalf("the English catalogue has %d portal sentences of 20+ characters: too few to check German pages against", len(english))
	}
	began := time.Now()
	st := newE2EBrowserStack(t, "German recipient journey browser test")
	sink, pf := st.sink, st.pf
	portalAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	portalURL := "http://" + portalAddr
	e2eStartServe(t, st.bin, st.config(t, portalAddr, "", ""), st.milterAddr)
	pf.Start(t)
	pbWaitHealthy(t, portalURL)
	msgID := fmt.Sprintf("<jy-de.%d@%s>", time.Now().UnixNano(), pbInternal)
	msg := strings.Replace(pbTextMessage(msgID, jySubject+" "+e2eTag, jyMarker), "To: <"+pbRecipient+">", "To: <"+jyBerta+">", 1)
	page := e2eSubmitSealed(t, pf, sink, pbSender, []string{jyBerta}, msg, jySubject, jyMarker)
	shots := &pbShots{t: t, axe: pbAxeSource(t), prefix: "journey-de"}
	// screen photographs and checks the page (pbShots) and checks it is
	// German.
	screen := func(tab *browsertest.Tab, name string) {
		t.Helper()
		shots.take(tab, name)
		jyGermanPage(t, tab, name, english)
		// The switch at the foot is a tap target too, in German as well.
		tab.SetViewport(pbPhoneWidth, pbPhoneHeight, true)
		for i, b := range tab.BorderBoxes("footer.langs a") {
			if b.Height < pbMinTapHeight || b.X < 0 || b.X+b.Width > pbPhoneWidth {
				t.Errorf("German %s at %d px: language link %d is %.0fx%.0f at x %.0f, want at least %d px high, inside the screen",
					name, pbPhoneWidth, i+1, b.Width, b.Height, b.X, pbMinTapHeight)
			}
		}
		tab.SetViewport(1280, 900, false)
	}
	codeRE := regexp.MustCompile(`\b\d{8}\b`)
	toBerta := func() []mtatest.Message {
		var out []mtatest.Message
		for _, m := range sink.Messages() {
			if strings.EqualFold(m.From, pbPortalFrom) && len(m.Rcpts) == 1 && strings.EqualFold(m.Rcpts[0], jyBerta) {
				out = append(out, m)
			}
		}
		return out
	}
	// waitCode waits for a code mail to Berta after the first `after`;
	// it must not carry the English subject.
	waitCode := func(after int) string {
		t.Helper()
		_, err := sink.WaitFor(func(mtatest.Message) bool { return len(toBerta()) > after }, pbWait)
		if err != nil {
			t.Fatalf("no code mail to %s: %v", jyBerta, err)
		}
		mails := toBerta()
		last := mails[len(mails)-1]
		subject := pbSubjectOf(last)
		if strings.HasPrefix(subject, "Your code") {
			t.Errorf("the code mail to a German reader has the English subject %q", subject)
		}
		code := codeRE.FindString(pbTextBody(t, last.Data))
		if code == "" {
			t.Fatalf("the newest mail to %s is %q without a code:\n%s", jyBerta, subject, e2eHead(last.Data))
		}
		t.Logf("code mail: %q", subject)
		return code
	}
	newTab := func() *browsertest.Tab {
		b := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900, Timeout: pbWait})
		tab := b.NewTab(t)
		tab.DisableScripts()
		jyAcceptGerman(tab)
		return tab
	}

	// The browser really asks for German.
	tab := newTab()
	heard := make(chan string, 1)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case heard <- r.Header.Get("Accept-Language"):
		default:
		}
		fmt.Fprint(w, "ok")
	}))
	defer echo.Close()
	tab.Navigate(echo.URL + "/")
	if al := <-heard; !strings.HasPrefix(al, "de") {
		t.Fatalf("the browser sent Accept-Language %q, want German first", al)
	}
	pbAxeSelfTest(t, tab, shots.axe)

	// A first visit.
	before := len(toBerta())
	j := jyStart(t, tab, "first visit (de)", portalURL, page)
	jyWaitPage(t, tab, portalURL+"/m/", `form[action="/email"] #email`)
	screen(tab, "first-email")
	j.fill("#email", jyBerta)
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/signin", `form[action="/code"] #code`)
	screen(tab, "first-signin")
	j.fill("#code", waitCode(before))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/register/password", `form[action="/register/password"] #q2`)
	screen(tab, "first-create-account")
	j.fill("#password", jyPassword)
	j.fill("#confirm", jyPassword)
	j.choose("#q1", "0")
	j.fill("#a1", "Fluffy")
	j.choose("#q2", "3")
	j.fill("#a2", "Hill Street Primary")
	pbClick(tab, `form[action="/register/password"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/m/", "pre.text-body", jyMarker)
	screen(tab, "first-read")
	if screens, fields := j.end(); screens != 4 || fields > 8 {
		t.Errorf("first visit (de): %d screens and %d fields, want 4 screens and at most 8 fields", screens, fields)
	}

	// Returning, in a new browser, ticking "remember".
	tab = newTab()
	j = jyStart(t, tab, "returning (de)", portalURL, page)
	jyWaitPage(t, tab, portalURL+"/m/", `form[action="/email"] #email`)
	j.fill("#email", jyBerta)
	pbClick(tab, `input[name="remember"]`)
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/signin", `form[action="/signin"] #password`, jyBerta)
	screen(tab, "returning-signin")
	j.fill("#password", jyPassword)
	pbClick(tab, `form[action="/signin"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/m/", "pre.text-body", jyMarker)
	screen(tab, "returning-read")
	if screens, fields := j.end(); screens != 3 {
		t.Errorf("returning (de): %d screens and %d fields, want 3 screens", screens, fields)
	}

	// The same device later, the address remembered.
	pbClick(tab, `form[action="/signout"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/signout", "main")
	screen(tab, "signed-out")
	j = jyStart(t, tab, "remembered (de)", portalURL, page)
	jyWaitPage(t, tab, portalURL+"/m/", `form[action="/signin"] #password`, jyBerta)
	screen(tab, "remembered-signin")
	j.fill("#password", jyPassword)
	pbClick(tab, `form[action="/signin"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/m/", "pre.text-body", jyMarker)
	screen(tab, "remembered-read")
	if screens, fields := j.end(); screens != 2 {
		t.Errorf("remembered (de): %d screens and %d fields, want 2 screens", screens, fields)
	}

	// A password reset in a new browser.
	tab = newTab()
	if err := pf.WaitQueueEmpty(t, pbWait); err != nil {
		t.Error(err)
	}
	before = len(toBerta())
	j = jyStart(t, tab, "password reset (de)", portalURL, page)
	jyWaitPage(t, tab, portalURL+"/m/", `form[action="/email"] #email`)
	j.fill("#email", jyBerta)
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/signin", `form[action="/code"] #code`)
	screen(tab, "reset-signin")
	j.fill("#code", waitCode(before))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/reset/answers", `form[action="/reset/answers"] #a2`)
	screen(tab, "reset-answers")
	j.fill("#a1", "fluffy")
	j.fill("#a2", "hill street primary")
	pbClick(tab, `form[action="/reset/answers"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/reset/password", `form[action="/reset/password"] #confirm`)
	screen(tab, "reset-new-password")
	j.fill("#password", jyPassword+" two")
	j.fill("#confirm", jyPassword+" two")
	pbClick(tab, `form[action="/reset/password"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/m/", "pre.text-body", jyMarker)
	screen(tab, "reset-read")
	if screens, fields := j.end(); screens > 5 {
		t.Errorf("password reset (de): %d screens and %d fields, want at most 5 screens", screens, fields)
	}

	// The switch, in a new German browser: "English" on the email page
	// shows the same step in English, and the next page stays English
	// although the browser asks for German; "Deutsch" on the sign-in page
	// comes back to sign-in in German, and the message follows.
	tab = newTab()
	htmlLang := func() string {
		var l string
		tab.Run(chromedp.Evaluate(`document.documentElement.lang`, &l))
		return l
	}
	tab.Navigate(brPageURL(t, page))
	pbClick(tab, brButton)
	jyWaitPage(t, tab, portalURL+"/m/", `form[action="/email"] #email`)
	pbClick(tab, `footer.langs a[hreflang="en"]`)
	jyWaitPage(t, tab, portalURL+"/m/", `html[lang="en"] form[action="/email"] #email`, "Your email address")
	screen2 := &pbShots{t: t, axe: shots.axe, prefix: "journey-switch"}
	screen2.take(tab, "email-en")
	tab.Run(chromedp.SendKeys("#email", jyBerta, chromedp.ByQuery))
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/signin", `html[lang="en"] form[action="/signin"] #password`, "Sign in to read your message")
	pbClick(tab, `footer.langs a[hreflang="de"]`)
	jyWaitPage(t, tab, portalURL+"/", `html[lang="de"] form[action="/signin"] #password`, jyBerta)
	screen(tab, "switch-signin-de")
	tab.Run(chromedp.SendKeys("#password", jyPassword+" two", chromedp.ByQuery))
	pbClick(tab, `form[action="/signin"] button[type=submit]`)
	jyWaitPage(t, tab, portalURL+"/m/", `html[lang="de"] pre.text-body`, jyMarker)
	if l := htmlLang(); l != "de" {
		t.Errorf("after switching back to Deutsch the message page is in %q", l)
	}

	t.Logf("German journey browser: %d English sentences looked for; screenshots: %s", len(english), strings.Join(append(shots.names, screen2.names...), ", "))
	t.Logf("German journey browser: total %v", time.Since(began).Round(time.Millisecond))
}
