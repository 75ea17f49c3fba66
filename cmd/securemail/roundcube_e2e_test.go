package main

// The webmail user's side of "Send Secure", in a real Roundcube: Debian's
// roundcube-core under "php -S" with the plug-in from
// contrib/roundcube/secure_send, a private Dovecot holding the user's
// mailbox, and a private Postfix (configured from contrib/postfix) with the
// securemail binary as its milter, relaying to an in-process sink. Roundcube
// submits the way docs/webmail.md says: SMTP AUTH as the logged-in user on
// the submission port, with STARTTLS, verifying the server's certificate;
// securemail trusts no network here, so every decision rests on that AUTH.
// Headless Chromium logs in and works the compose screen as a user would.
//
//	secure     external, attachment, Send Secure      -> sealed, header gone; open gives text and file
//	plain      the same message, Send                 -> plaintext, no header
//	reply      reply to an INBOX message, Send Secure -> sealed, threaded
//	forward    forward of that message, Send Secure   -> sealed
//	internal   internal recipient, Send Secure        -> delivered as written, not sealed
//	draft      "Send secure" option, Save; reopen the
//	           draft: badge shown; Send               -> sealed
//	always     preference on; new message, Send       -> sealed
//	broken     secure_send_header invalid, Send Secure -> not sent, an error shown
//	list       the account taken off secure_send_senders_file -> no Send Secure
//
// The compose screen is photographed at 1280x900 and 360x780 (to
// $SECUREMAIL_ARTIFACTS when set).

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	gomail "github.com/emersion/go-message/mail"

	"github.com/securemail/securemail/cmd/securemail/internal/browsertest"
	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/cmd/securemail/internal/webmailtest"
	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/syncbuf"
)

const (
	rcUser     = "alice@example.test" // IMAP login, SMTP AUTH identity and From
	rcExternal = "bob@external.test"
	rcInternal = "dave@example.test"
	rcWait     = 20 * time.Second // bound of every wait for a page or a delivery
	rcHeader   = "X-Secure-Send"
	rcAttach   = "figures.bin"
	rcPlugin   = "../../contrib/roundcube/secure_send"
)

func TestRoundcubeSendSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs Postfix, Dovecot, Roundcube, the securemail binary and Chromium")
	}
	if browsertest.ChromiumPath() == "" {
		mtatest.SkipUnlessCI(t, "roundcube e2e: no Chromium (Debian: apt-get install --no-install-recommends chromium)")
	}
	webmailtest.RequireTools(t)
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	began := time.Now()
	step := func(what string) {
		t.Logf("roundcube e2e: %-28s at %v", what, time.Since(began).Round(time.Millisecond))
	}

	password := fmt.Sprintf("rc-%d-password", time.Now().UnixNano())
	// The binary builds while the rest comes up and the user logs in;
	// nothing before the first send needs it.
	build := rcBuildAsync(t)
	sink := mtatest.StartSink(t)
	pf := mtatest.NewPostfix(t, mtatest.PostfixOptions{
		RelayHost:         sink.Addr,
		MainCF:            e2eReadSnippet(t, "main.cf.snippet"),
		MasterCF:          e2eReadSnippet(t, "master.cf.snippet"),
		SubmissionService: "submission/inet",
		User:              rcUser,
		Password:          password,
	})
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)
	cfg := e2eWriteConfigWith(t, milterAddr, pf.SMTPAddr(), e2eConfig{
		logLevel: "info", networks: "[]", maxSize: fmt.Sprint(20 << 20),
	})
	pf.Start(t)

	dc := webmailtest.StartDovecot(t, rcUser, password)
	origID := fmt.Sprintf("<rc-orig.%d@external.test>", time.Now().UnixNano())
	dc.Deliver(t, []byte("From: Carol <carol@external.test>\r\nTo: <"+rcUser+">\r\n"+
		"Subject: Project plan\r\nMessage-ID: "+origID+"\r\nDate: "+time.Now().Format(time.RFC1123Z)+
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nCan you send me the figures?\r\n"))
	// Who has the feature: the plug-in reads the list at every request.
	sendersFile := filepath.Join(t.TempDir(), "senders")
	if err := os.WriteFile(sendersFile, []byte("# accounts with encrypted email\n@example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc := webmailtest.StartRoundcube(t, webmailtest.RoundcubeOptions{
		IMAPAddr:     dc.Addr,
		SMTPAddr:     pf.SubmissionAddr(),
		SMTPCAFile:   pf.TLS().CertFile,
		SMTPPeerName: "mta.example.test",
		Plugins:      map[string]string{"secure_send": rcPlugin},
		ExtraConfig: "$config['secure_send_header'] = " + webmailtest.PHPString(rcHeader) + ";\n" +
			"$config['secure_send_senders_file'] = " + webmailtest.PHPString(sendersFile) + ";\n",
	})
	step("stack up")

	attachment := make([]byte, 30_000)
	rand.NewChaCha8([32]byte{'r', 'c'}).Read(attachment)
	attachPath := filepath.Join(t.TempDir(), rcAttach)
	if err := os.WriteFile(attachPath, attachment, 0o644); err != nil {
		t.Fatal(err)
	}

	b := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900, Timeout: rcWait})
	tab := b.NewTab(t)
	u := &rcUserAgent{t: t, tab: tab, base: rc.URL, rc: rc}
	u.login(password)
	step("logged in")
	bin := build()
	srv := e2eStartServe(t, bin, cfg, milterAddr)
	step("securemail up")

	type sent struct {
		name, subject, marker string
		to                    string
		attach                bool
		want                  string // "sealed" or "plain"
		inReplyTo             string
	}
	var all []sent

	// secure: a new message with an attachment, Send Secure.
	u.openCompose("?_task=mail&_action=compose")
	if !u.visible("#secure-send-button") {
		t.Fatal("the compose screen has no visible Send Secure button at 1280 px")
	}
	if u.visible("#secure-send-badge") {
		t.Error("a new message starts out secure without the user asking")
	}
	s := sent{name: "secure", subject: "Figures secure", marker: "RC-MARKER-SECURE", to: rcExternal, attach: true, want: "sealed"}
	u.fill(s.to, s.subject, "Hello Bob,\n"+s.marker+"\n")
	u.attach(attachPath)
	u.screenshots("compose")
	u.click("#secure-send-button")
	u.waitSent()
	all = append(all, s)
	step("secure sent")

	// plain: the same message, plain Send.
	u.openCompose("?_task=mail&_action=compose")
	s = sent{name: "plain", subject: "Figures plain", marker: "RC-MARKER-PLAIN", to: rcExternal, attach: true, want: "plain"}
	u.fill(s.to, s.subject, "Hello Bob,\n"+s.marker+"\n")
	u.attach(attachPath)
	u.click(".formbuttons button.send")
	u.waitSent()
	all = append(all, s)
	step("plain sent")

	// reply: to the message in the INBOX, Send Secure.
	u.openCompose("?_task=mail&_action=compose&_reply_uid=1&_mbox=INBOX")
	if v := u.value("#_to"); !strings.Contains(v, "carol@external.test") {
		t.Errorf("the reply is addressed to %q, want carol@external.test", v)
	}
	s = sent{name: "reply", subject: "Re: Project plan", marker: "RC-MARKER-REPLY", to: "carol@external.test", want: "sealed", inReplyTo: origID}
	u.typeBody("Here they are.\n" + s.marker + "\n")
	u.click("#secure-send-button")
	u.waitSent()
	all = append(all, s)
	step("reply sent")

	// forward: the INBOX message forwarded, Send Secure.
	u.openCompose("?_task=mail&_action=compose&_forward_uid=1&_mbox=INBOX")
	s = sent{name: "forward", subject: "Fwd: Project plan", marker: "RC-MARKER-FORWARD", to: rcExternal, want: "sealed"}
	u.run("forward recipient",
		chromedp.Click("#compose_to .recipient-input input", chromedp.ByQuery),
		chromedp.SendKeys("#compose_to .recipient-input input", s.to+", ", chromedp.ByQuery),
	)
	u.typeBody(s.marker + "\n")
	u.click("#secure-send-button")
	u.waitSent()
	all = append(all, s)
	step("forward sent")

	// internal: Send Secure to a recipient of the host's own domain.
	u.openCompose("?_task=mail&_action=compose")
	s = sent{name: "internal", subject: "Figures internal", marker: "RC-MARKER-INTERNAL", to: rcInternal, want: "plain"}
	u.fill(s.to, s.subject, "Hello Dave,\n"+s.marker+"\n")
	u.click("#secure-send-button")
	u.waitSent()
	all = append(all, s)
	step("internal sent")

	// draft: chosen with the compose option, saved, reopened, plain Send.
	u.openCompose("?_task=mail&_action=compose")
	s = sent{name: "draft", subject: "Figures from a draft", marker: "RC-MARKER-DRAFT", to: rcExternal, want: "sealed"}
	u.fill(s.to, s.subject, "Hello Bob,\n"+s.marker+"\n")
	u.click("#compose-secure-send")
	if !u.visible("#secure-send-badge") {
		t.Error("the badge does not show after the Send secure option is chosen")
	}
	u.saveDraft()
	u.openCompose("?_task=mail&_action=compose&_draft_uid=1&_mbox=Drafts")
	if !u.visible("#secure-send-badge") || !u.checked("#compose-secure-send") {
		t.Error("the reopened draft does not remember Send Secure: no badge, or the option is off")
	}
	u.screenshots("draft")
	// Changing one's mind and back, before sending.
	u.click("#secure-send-badge .secure-send-undo")
	if u.visible("#secure-send-badge") || u.checked("#compose-secure-send") || u.value("input[name=_secure_send]") != "" {
		t.Error(`after "Send without encryption" the message is still marked secure`)
	}
	u.click("#compose-secure-send")
	if !u.visible("#secure-send-badge") || u.value("input[name=_secure_send]") != "1" {
		t.Error("after choosing Send secure again the message is not marked secure")
	}
	u.click(".formbuttons button.send")
	u.waitSent()
	all = append(all, s)
	step("draft sent")

	// always: the preference on, then a plain Send of a new message.
	u.setAlways(true)
	u.openCompose("?_task=mail&_action=compose")
	if !u.visible("#secure-send-badge") || u.visible("#secure-send-badge .secure-send-undo") {
		t.Error(`with "always send secure" on, a new message shows no badge, or one that offers to send without encryption`)
	}
	var optionDisabled bool
	u.run("option disabled", chromedp.Evaluate(`document.getElementById('compose-secure-send').disabled`, &optionDisabled))
	if !optionDisabled || !u.checked("#compose-secure-send") {
		t.Error(`with "always send secure" on, the Send secure option is not on and fixed`)
	}
	s = sent{name: "always", subject: "Figures always", marker: "RC-MARKER-ALWAYS", to: rcExternal, want: "sealed"}
	u.fill(s.to, s.subject, "Hello Bob,\n"+s.marker+"\n")
	u.click(".formbuttons button.send")
	u.waitSent()
	all = append(all, s)
	step("always sent")

	// broken: with a header name that is not one, Send Secure refuses to
	// send rather than send in plaintext, and says so.
	f, err := os.OpenFile(rc.ConfigFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("$config['secure_send_header'] = 'X Secure Send';\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	delivered := sink.Count()
	u.openCompose("?_task=mail&_action=compose")
	u.fill(rcExternal, "Figures broken", "Hello Bob,\nRC-MARKER-BROKEN\n")
	u.click("#secure-send-button")
	u.run("refused send", chromedp.WaitVisible(`#messagestack .error`, chromedp.ByQuery))
	if msg := u.tab.Text("#messagestack"); !strings.Contains(msg, "not sent") {
		t.Errorf("a Send Secure that cannot be marked says %q, want it to say the message was not sent", msg)
	}
	if !strings.Contains(u.tab.Location(), "_action=compose") {
		t.Errorf("after a refused Send Secure the browser is at %s, want the compose screen", u.tab.Location())
	}
	step("broken refused")
	// Leave the unsent message without Roundcube's "discard changes?"
	// prompt, as a user who answers "leave" would.
	var left bool
	u.run("leave compose", chromedp.Evaluate(`rcmail.compose_skip_unsavedcheck = true, window.onbeforeunload = null, true`, &left))

	// An account the list no longer names sees no Send Secure.
	if err := os.WriteFile(sendersFile, []byte("someone-else@example.test\n.sub.example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u.tab.Navigate(rc.URL + "?_task=mail&_action=compose")
	u.run("compose without the feature",
		chromedp.WaitVisible("#compose-subject", chromedp.ByQuery),
		chromedp.WaitEnabled(".formbuttons button.send", chromedp.ByQuery),
	)
	for _, sel := range []string{"#secure-send-button", "#compose-secure-send", "#secure-send-badge"} {
		if u.tab.HasNode(sel) {
			t.Errorf("an account without the feature has %s on its compose screen", sel)
		}
	}

	// What arrived.
	type sealedMsg struct {
		sent
		path string
	}
	var toOpen []sealedMsg
	for _, s := range all {
		t.Run(s.name, func(t *testing.T) {
			m, err := sink.WaitFor(func(m mtatest.Message) bool { return rcSubjectIs(m, s.subject) }, rcWait)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Rcpts) != 1 || !strings.EqualFold(m.Rcpts[0], s.to) || !strings.EqualFold(m.From, rcUser) {
				t.Errorf("envelope %s -> %v, want %s -> [%s]", m.From, m.Rcpts, rcUser, s.to)
			}
			if rcHasHeader(m.Data, rcHeader) {
				t.Errorf("%s arrived with its %s header:\n%s", s.name, rcHeader, e2eHead(m.Data))
			}
			if s.want == "sealed" {
				e2eCheckSealed(t, m, s.marker, s.subject)
				if s.attach && bytes.Contains(m.Data, []byte(rcAttach)) {
					t.Errorf("the sealed message names its attachment %s in clear", rcAttach)
				}
				toOpen = append(toOpen, sealedMsg{s, m.Path})
				return
			}
			e2eCheckPlain(t, m, s.marker, s.subject)
			if s.attach {
				rcCheckParts(t, m.Data, s.marker, attachment)
			}
		})
	}
	if n := sink.Count(); n != len(all) || n != delivered {
		t.Errorf("the sink has %d messages, want %d", n, len(all))
	}

	// serve is stopped, so the keystore is free for "securemail open".
	if code, err := srv.stop(10 * time.Second); err != nil || code != 0 {
		t.Errorf("serve after SIGTERM: exit %d, %v", code, err)
	}
	for _, sm := range toOpen {
		t.Run("open "+sm.name, func(t *testing.T) {
			out := e2eOpen(t, bin, srv.config, sm.path)
			var want []byte
			if sm.attach {
				want = attachment
			}
			rcCheckParts(t, []byte(out), sm.marker, want)
			if sm.inReplyTo != "" && !strings.Contains(out, "In-Reply-To: "+sm.inReplyTo) {
				t.Errorf("the opened reply is not In-Reply-To %s:\n%s", sm.inReplyTo, e2eHead([]byte(out)))
			}
		})
	}
	step("checked")
}

// rcUserAgent is the user at the browser.
type rcUserAgent struct {
	t    *testing.T
	tab  *browsertest.Tab
	base string
	rc   *webmailtest.Roundcube
	shot int
}

func (u *rcUserAgent) run(what string, actions ...chromedp.Action) {
	u.t.Helper()
	if err := u.tab.RunErr(rcWait, actions...); err != nil {
		u.tab.Screenshot("roundcube-failed-" + strings.ReplaceAll(what, " ", "-"))
		u.t.Fatalf("%s: %v (at %s)\nroundcube logs:\n%s", what, err, u.tab.Location(), u.rc.Logs())
	}
}

func (u *rcUserAgent) login(password string) {
	u.t.Helper()
	u.tab.Navigate(u.base)
	u.run("login",
		chromedp.WaitVisible("#rcmloginuser", chromedp.ByQuery),
		chromedp.SendKeys("#rcmloginuser", rcUser, chromedp.ByQuery),
		chromedp.SendKeys("#rcmloginpwd", password, chromedp.ByQuery),
		chromedp.Click("#rcmloginsubmit", chromedp.ByQuery),
		chromedp.WaitVisible("#messagelist", chromedp.ByQuery),
	)
}

// openCompose loads the compose screen and waits until Roundcube enabled
// its commands (the Send Secure button among them).
func (u *rcUserAgent) openCompose(query string) {
	u.t.Helper()
	u.tab.Navigate(u.base + query)
	u.run("open compose "+query,
		chromedp.WaitVisible("#compose-subject", chromedp.ByQuery),
		chromedp.WaitEnabled("#secure-send-button", chromedp.ByQuery),
	)
}

// fill types the recipient, subject and body.
func (u *rcUserAgent) fill(to, subject, body string) {
	u.t.Helper()
	u.run("fill compose",
		chromedp.Click("#compose_to .recipient-input input", chromedp.ByQuery),
		chromedp.SendKeys("#compose_to .recipient-input input", to+", ", chromedp.ByQuery),
		chromedp.SetValue("#compose-subject", subject, chromedp.ByQuery),
	)
	u.typeBody(body)
}

// typeBody puts text at the top of the message body (above a quoted
// original). The recipient is typed key by key, because Roundcube's
// recipient widget reacts to keys; plain fields are set, which is faster
// and posts the same form.
func (u *rcUserAgent) typeBody(body string) {
	u.t.Helper()
	var ok bool
	u.run("type body", chromedp.Evaluate(fmt.Sprintf(
		`(function(t){ var b = document.getElementById('composebody'); b.value = t + b.value; return true })(%q)`, body), &ok))
}

// attach uploads a file through the compose screen's file input and waits
// until it is listed as attached.
func (u *rcUserAgent) attach(path string) {
	u.t.Helper()
	u.run("attach",
		u.idle(),
		chromedp.SetUploadFiles("#uploadform input[type=file]", []string{path}, chromedp.ByQuery),
		chromedp.WaitVisible(`#attachment-list li:not(.uploading) a.filename`, chromedp.ByQuery),
	)
}

func (u *rcUserAgent) click(selector string) {
	u.t.Helper()
	u.run("click "+selector, u.idle(), chromedp.Click(selector, chromedp.ByQuery))
}

// idle waits until Roundcube is not busy: while it is (an upload, an
// address lookup), it ignores commands, and a click would be lost.
func (u *rcUserAgent) idle() chromedp.Action {
	return chromedp.Poll(`!window.rcmail || !rcmail.busy`, nil, chromedp.WithPollingInterval(50*time.Millisecond))
}

// waitSent waits until Roundcube has left the compose screen after a send.
func (u *rcUserAgent) waitSent() {
	u.t.Helper()
	u.run("wait sent", chromedp.WaitVisible("#messagelist", chromedp.ByQuery))
}

func (u *rcUserAgent) saveDraft() {
	u.t.Helper()
	var ok bool
	u.run("save draft",
		u.idle(),
		chromedp.Evaluate(`rcmail.command('savedraft'), true`, &ok),
		chromedp.WaitVisible(`#messagestack .confirmation`, chromedp.ByQuery),
	)
}

// setAlways turns the "always send secure" preference on or off through
// Settings > Preferences > Composing Messages.
func (u *rcUserAgent) setAlways(on bool) {
	u.t.Helper()
	u.tab.Navigate(u.base + "?_task=settings&_action=edit-prefs&_section=compose&_framed=1")
	u.run("preferences", chromedp.WaitVisible("#rcmfd_secure_send_always", chromedp.ByQuery))
	if u.checked("#rcmfd_secure_send_always") != on {
		u.click("#rcmfd_secure_send_always")
	}
	u.run("save preferences",
		chromedp.Click(".formbuttons button.submit", chromedp.ByQuery),
		chromedp.WaitVisible(`#messagestack .confirmation`, chromedp.ByQuery),
	)
}

func (u *rcUserAgent) visible(selector string) bool {
	u.t.Helper()
	return len(u.tab.BorderBoxes(selector)) > 0
}

func (u *rcUserAgent) checked(selector string) bool {
	u.t.Helper()
	var on bool
	u.run("checked "+selector, chromedp.Evaluate(fmt.Sprintf(`!!document.querySelector(%q).checked`, selector), &on))
	return on
}

func (u *rcUserAgent) value(selector string) string {
	u.t.Helper()
	var v string
	u.run("value "+selector, chromedp.Value(selector, &v, chromedp.ByQuery))
	return v
}

// screenshots photographs the compose screen at 1280x900 and at 360x780
// and checks that Send Secure is on screen at both sizes (on a phone,
// Elastic moves the form's buttons into a toolbar).
func (u *rcUserAgent) screenshots(screen string) {
	u.t.Helper()
	u.shot++
	for _, size := range []struct {
		w, h   int
		mobile bool
		button string
	}{{1280, 900, false, "#secure-send-button"}, {360, 780, true, "#secure-send-button-clone"}} {
		u.tab.SetViewport(size.w, size.h, size.mobile)
		// Elastic re-lays the page out on resize.
		u.run("layout", chromedp.Sleep(150*time.Millisecond))
		u.tab.Screenshot(fmt.Sprintf("roundcube-%02d-%s-%dx%d", u.shot, screen, size.w, size.h))
		boxes := u.tab.BorderBoxes(size.button)
		if len(boxes) == 0 {
			u.t.Errorf("%s at %d px: Send Secure (%s) is not shown", screen, size.w, size.button)
			continue
		}
		if b := boxes[0]; b.X < 0 || b.X+b.Width > float64(size.w) {
			u.t.Errorf("%s at %d px: Send Secure spans x %.0f to %.0f, outside the screen", screen, size.w, b.X, b.X+b.Width)
		}
	}
	u.tab.SetViewport(1280, 900, false)
	u.run("layout", chromedp.Sleep(150*time.Millisecond))
}

// rcSubjectIs tells whether a delivered message has this Subject.
func rcSubjectIs(m mtatest.Message, subject string) bool {
	r, err := gomail.CreateReader(bytes.NewReader(m.Data))
	if err != nil {
		return false
	}
	got, _ := r.Header.Subject()
	return got == subject
}

// rcHasHeader tells whether a message's header section has the field.
func rcHasHeader(data []byte, name string) bool {
	head, _, _ := bytes.Cut(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n\n"))
	for _, line := range strings.Split(string(head), "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return true
		}
	}
	return false
}

// rcCheckParts checks a message as written in Roundcube: its text carries
// marker and, when attachment is not nil, it carries rcAttach with exactly
// those bytes.
func rcCheckParts(t *testing.T, data []byte, marker string, attachment []byte) {
	t.Helper()
	r, err := gomail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, e2eHead(data))
	}
	var text string
	var files []string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("MIME: %v\n%s", err, e2eHead(data))
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("MIME: %v", err)
		}
		switch ph := p.Header.(type) {
		case *gomail.InlineHeader:
			text += string(body)
		case *gomail.AttachmentHeader:
			name, _ := ph.Filename()
			files = append(files, name)
			if name == rcAttach && !bytes.Equal(body, attachment) {
				t.Errorf("%s is %d bytes and differs from the file attached (%d bytes)", name, len(body), len(attachment))
			}
		}
	}
	if !strings.Contains(text, marker) {
		t.Errorf("the text lacks %q:\n%s", marker, e2eHead(data))
	}
	if bytes.Contains(data, []byte(envelope.PageFileName)) {
		t.Errorf("the message carries %s", envelope.PageFileName)
	}
	wantFiles := 0
	if attachment != nil {
		wantFiles = 1
	}
	if len(files) != wantFiles || (wantFiles == 1 && files[0] != rcAttach) {
		t.Errorf("attachments %q, want %d named %s", files, wantFiles, rcAttach)
	}
}

// TestRoundcubePluginLists runs the plug-in's pure functions in PHP: the
// sender list (the format of the milter's policy.senders_files) and the
// header check that makes a reopened draft secure.
func TestRoundcubePluginLists(t *testing.T) {
	t.Parallel()
	php, err := mtatest.LookTool("php")
	if err != nil {
		mtatest.SkipUnlessCI(t, "roundcube plug-in: no php ("+webmailtest.Install+")")
	}
	list := "# customers with the feature\n" +
		"Alice@Example.COM   # one address\n" +
		"@paid.test\n" +
		".corp.test\n" +
		"\n" +
		"   \t\n" +
		"not-an-entry\n" +
		"@trailing.test.\n" +
		"two words@paid.test\n" +
		"@\n.\n@@x.test\n"
	senders := []struct {
		address string
		want    bool
	}{
		{"alice@example.com", true},
		{"ALICE@example.com", true},
		{"bob@example.com", false},
		{"anyone@paid.test", true},
		{"anyone@sub.paid.test", false}, // @domain: that domain only
		{"x@a.corp.test", true},         // .domain: its subdomains
		{"x@a.b.corp.test", true},
		{"x@corp.test", false},
		{"x@notcorp.test", false},
		{"x@trailing.test", true},
		{"not-an-entry", false},
		{"@paid.test", false},
		{"", false},
		{"two words@paid.test", true}, // by "@paid.test"; the line itself is ignored
		{"words@paid.test", true},
		{"x@x.test", false}, // "@@x.test" is no domain
	}
	headers := []struct {
		raw  string
		want bool
	}{
		{"Subject: a\r\nX-Secure-Send: yes\r\n", true},
		{"x-secure-send:   YES  \r\n", true},
		{"X-Secure-Send:\r\n yes\r\n", true}, // folded
		{"X-Secure-Send: no\r\n", false},
		{"X-Secure-Sender: yes\r\n", false},
		{"Subject: X-Secure-Send: yes\r\n", false},
		{"", false},
	}
	var script strings.Builder
	script.WriteString("<?php\nclass rcube_plugin {}\nrequire " + webmailtest.PHPString(filepath.Join(rcPlugin, "secure_send.php")) + ";\n")
	script.WriteString("$e = secure_send::parse_senders(" + webmailtest.PHPString(list) + ");\n")
	for _, s := range senders {
		script.WriteString("echo secure_send::sender_matches($e, " + webmailtest.PHPString(s.address) + ") ? 1 : 0, \"\\n\";\n")
	}
	for _, h := range headers {
		script.WriteString("echo secure_send::header_says_yes(" + webmailtest.PHPString(h.raw) + ", 'X-Secure-Send') ? 1 : 0, \"\\n\";\n")
	}
	path := filepath.Join(t.TempDir(), "lists.php")
	if err := os.WriteFile(path, []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(php, "-d", "display_errors=stderr", path).CombinedOutput()
	if err != nil {
		t.Fatalf("php: %v\n%s", err, out)
	}
	got := strings.Fields(string(out))
	if len(got) != len(senders)+len(headers) {
		t.Fatalf("php printed %q, want %d results", out, len(senders)+len(headers))
	}
	for i, s := range senders {
		if (got[i] == "1") != s.want {
			t.Errorf("sender %q: matches %s, want %v", s.address, got[i], s.want)
		}
	}
	for i, h := range headers {
		if (got[len(senders)+i] == "1") != h.want {
			t.Errorf("header block %q: says yes %s, want %v", h.raw, got[len(senders)+i], h.want)
		}
	}
}

// rcPHPHelper is the PHP side of FuzzRoundcubePluginParsers: for each
// base64 line on stdin, parse it as a sender list and as a header block,
// and answer one JSON line: whether every entry matches an address it names
// ("self"), what header_says_yes says, and any PHP warning.
const rcPHPHelper = `<?php
class rcube_plugin {}
require $argv[1];
$errors = [];
set_error_handler(function ($no, $str) use (&$errors) { $errors[] = $str; return true; });
while (($line = fgets(STDIN)) !== false) {
    $errors = [];
    $text = base64_decode(trim($line), true);
    $e = secure_send::parse_senders($text);
    $self = [];
    foreach (array_keys($e['addresses']) as $a) { $self[] = secure_send::sender_matches($e, (string) $a); }
    foreach (array_keys($e['domains']) as $d) { $self[] = secure_send::sender_matches($e, 'x@' . $d); }
    foreach (array_keys($e['subdomains']) as $d) { $self[] = secure_send::sender_matches($e, 'x@a.' . $d); }
    $header = secure_send::header_says_yes($text, 'X-Secure-Send');
    echo json_encode(['self' => $self, 'header' => $header, 'errors' => $errors], JSON_INVALID_UTF8_SUBSTITUTE), "\n";
}
`

// FuzzRoundcubePluginParsers feeds the plug-in's two parsers (the sender
// list and the header check of a reopened draft) arbitrary text through
// one long-running php process: no PHP warning, every list entry matches
// what it names, and the header check agrees with rcHeaderSaysYes, a Go
// statement of the same rule. Seeds: testdata/fuzz/FuzzRoundcubePluginParsers.
func FuzzRoundcubePluginParsers(f *testing.F) {
	php, err := mtatest.LookTool("php")
	if err != nil {
		mtatest.SkipUnlessCI(f, "roundcube plug-in: no php ("+webmailtest.Install+")")
	}
	helper := filepath.Join(f.TempDir(), "helper.php")
	if err := os.WriteFile(helper, []byte(rcPHPHelper), 0o644); err != nil {
		f.Fatal(err)
	}
	plugin, err := filepath.Abs(filepath.Join(rcPlugin, "secure_send.php"))
	if err != nil {
		f.Fatal(err)
	}
	cmd := exec.Command(php, "-d", "display_errors=stderr", helper, plugin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		f.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		f.Fatal(err)
	}
	stderr := new(syncbuf.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	answers := bufio.NewReader(stdout)
	f.Add("@example.com\n")
	f.Fuzz(func(t *testing.T, text string) {
		if _, err := fmt.Fprintln(stdin, base64.StdEncoding.EncodeToString([]byte(text))); err != nil {
			t.Fatalf("php helper: %v\n%s", err, stderr.String())
		}
		line, err := answers.ReadBytes('\n')
		if err != nil {
			t.Fatalf("php helper: %v\n%s", err, stderr.String())
		}
		var got struct {
			Self   []bool
			Header bool
			Errors []string
		}
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("php helper answered %q: %v", line, err)
		}
		if len(got.Errors) > 0 {
			t.Errorf("PHP warnings on %q: %q", text, got.Errors)
		}
		for i, ok := range got.Self {
			if !ok {
				t.Errorf("list %q: entry %d does not match the address it names", text, i)
			}
		}
		if want := rcHeaderSaysYes(text, "X-Secure-Send"); got.Header != want {
			t.Errorf("header block %q: PHP says %v, want %v", text, got.Header, want)
		}
	})
}

var (
	rcFoldRE = regexp.MustCompile(`\r?\n[ \t]+`)
	rcLineRE = regexp.MustCompile(`\r?\n`)
)

// rcHeaderSaysYes is secure_send::header_says_yes in Go: after unfolding,
// some line is "name: yes", both compared without regard to ASCII case and
// trimmed as PHP's trim does.
func rcHeaderSaysYes(raw, name string) bool {
	for _, line := range rcLineRE.Split(rcFoldRE.ReplaceAllString(raw, " "), -1) {
		k, v, ok := strings.Cut(line, ":")
		if ok && rcASCIIEqualFold(strings.Trim(k, " \t\n\r\x00\x0b"), name) &&
			rcASCIIEqualFold(strings.Trim(v, " \t\n\r\x00\x0b"), "yes") {
			return true
		}
	}
	return false
}

// rcASCIIEqualFold is PHP's strcasecmp(a, b) == 0: ASCII letters only.
func rcASCIIEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	lower := func(c byte) byte {
		if 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// TestRoundcubePluginLocalizations checks that every text of the
// plug-in's English localization is in each other language, and nothing
// else: a missing one would show as "[sendsecure]" on the button.
func TestRoundcubePluginLocalizations(t *testing.T) {
	t.Parallel()
	keyRE := regexp.MustCompile(`(?m)^\$(labels|messages)\['([a-z_]+)'\] = '`)
	keys := func(path string) map[string]bool {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, m := range keyRE.FindAllStringSubmatch(string(b), -1) {
			out[m[1]+"."+m[2]] = true
		}
		return out
	}
	dir := filepath.Join(rcPlugin, "localization")
	english := keys(filepath.Join(dir, "en_US.inc"))
	for _, k := range []string{"labels.sendsecure", "labels.badge", "labels.alwayssendsecure", "labels.sendsecureoption", "messages.notmarked"} {
		if !english[k] {
			t.Errorf("en_US.inc lacks %s, which the plug-in uses", k)
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.inc"))
	if err != nil || len(files) < 2 {
		t.Fatalf("localizations %v (%v): want English and at least one other", files, err)
	}
	for _, f := range files {
		other := keys(f)
		for k := range english {
			if !other[k] {
				t.Errorf("%s lacks %s", filepath.Base(f), k)
			}
		}
		for k := range other {
			if !english[k] {
				t.Errorf("%s has %s, which en_US.inc does not", filepath.Base(f), k)
			}
		}
	}
}

// rcBuildAsync starts building the securemail binary, as e2eBuild does, and
// returns a function that waits for the build and returns the binary's
// path; it fails the test if the build failed.
func rcBuildAsync(t *testing.T) func() string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("e2e: the go command is not on PATH: %v", err)
	}
	out := filepath.Join(t.TempDir(), "securemail")
	cmd := exec.Command(goBin, "build", "-o", out, ".")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatalf("e2e: go build: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return func() string {
		t.Helper()
		select {
		case err = <-done:
		case <-time.After(5 * time.Minute):
			t.Fatal("e2e: go build ./cmd/securemail: not done after 5 minutes")
		}
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("e2e: go build ./cmd/securemail: %v\n%s", err, output.String())
		}
		return out
	}
}
