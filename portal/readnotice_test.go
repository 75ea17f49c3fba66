package portal

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/emersion/go-smtp"

	"github.com/securemail/securemail/internal/catalog"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/milter"
)

func withReadNotice(o *Options) { o.ReadNotice = true }

// sentMail is one mail the sink kept. sentMails and refuseMail are the
// only code here that knows the sink's types.
type sentMail struct {
	from string
	to   []string
	data []byte
}

func sentMails(e *testEnv) []sentMail {
	var out []sentMail
	for _, m := range e.sink.messages() {
		out = append(out, sentMail{from: m.From, to: m.Rcpts, data: m.Data})
	}
	return out
}

// refuseMail makes the sink answer the end of DATA with a temporary
// failure (false: accept again).
func refuseMail(e *testEnv, refuse bool) {
	if !refuse {
		e.sink.FailData(nil)
		return
	}
	e.sink.FailData(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"})
}

func (m sentMail) parse(t *testing.T) *mail.Message {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.data))
	if err != nil {
		t.Fatalf("a mail does not parse: %v\n%s", err, m.data)
	}
	return msg
}

// readNotices returns the read notices the sink holds for the message
// with key id, in the order they arrived.
func readNotices(e *testEnv, id string) []sentMail {
	var out []sentMail
	for _, m := range sentMails(e) {
		if bytes.Contains(m.data, []byte("Key id:   "+id)) {
			out = append(out, m)
		}
	}
	return out
}

// TestReadNoticeOncePerRecipient: the sender hears of the first read of
// each recipient, through the SMTP relay, and of nothing else: who, when,
// the key id and the subject without the tag, no content.
func TestReadNoticeOncePerRecipient(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withReadNotice)
	s := e.seal(alice, []string{bob, carol}, strings.Replace(plainMessage, "Subject: Quarterly numbers", "Subject: [encrypt] Quarterly numbers", 1))
	id := s.form.KeyID.String()

	b := e.browser()
	b.register(s, bob)
	got := readNotices(e, id)
	if len(got) != 1 {
		t.Fatalf("%d read notices after bob's first read, want 1", len(got))
	}
	n := got[0]
	if n.from != "securemail@example.com" || len(n.to) != 1 || n.to[0] != alice {
		t.Fatalf("notice from %s to %v, want from the portal to the sender %s", n.from, n.to, alice)
	}
	msg := n.parse(t)
	body, _ := io.ReadAll(msg.Body)
	text := string(body)
	for _, want := range []string{bob + " read the secure message", "Subject:  Quarterly numbers\r\n", "Key id:   " + id, "Read:     " + e.clock.Now().UTC().Format("Monday, 2 January 2006")} {
		if !strings.Contains(text, want) {
			t.Errorf("the notice does not say %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "Revenue") || strings.Contains(text, "12%") {
		t.Errorf("the notice carries content of the message:\n%s", text)
	}
	// The tag is off the subject it quotes, and the milter's trigger is
	// on the notice itself: the milter decides, as for replies.
	if subj := msg.Header.Get("Subject"); subj != "Read: Quarterly numbers [encrypt]" {
		t.Errorf("notice subject %q", subj)
	}
	if msg.Header.Get("Auto-Submitted") != "auto-generated" || msg.Header.Get("In-Reply-To") != "<q3-numbers@example.com>" {
		t.Errorf("notice headers: Auto-Submitted %q In-Reply-To %q", msg.Header.Get("Auto-Submitted"), msg.Header.Get("In-Reply-To"))
	}

	// Reading again, in this browser or another, sends nothing.
	token := b.token
	if r := b.get("/m/" + token); r.status != http.StatusOK {
		t.Fatalf("second read: %d", r.status)
	}
	b2 := e.browser()
	b2.signin(s, bob, testPassword)
	if r := b2.get("/m/" + token); r.status != http.StatusOK {
		t.Fatalf("read from another browser: %d", r.status)
	}
	if n := len(readNotices(e, id)); n != 1 {
		t.Fatalf("%d read notices after bob read three times, want 1", n)
	}
	// Another recipient's first read is news.
	e.browser().register(s, carol)
	got = readNotices(e, id)
	if len(got) != 2 || !bytes.Contains(got[1].data, []byte(carol+" read the secure message")) {
		t.Fatalf("%d read notices after carol's first read, want 2, the second about carol", len(got))
	}
}

// TestReadNoticeBurst: many first reads of one recipient released
// together send one notice.
func TestReadNoticeBurst(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withReadNotice)
	first := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(first, bob)
	s := e.seal(alice, []string{bob}, strings.Replace(plainMessage, "q3-numbers", "q4-numbers", 1))
	const readers = 12
	var browsers []*browser
	for range readers {
		b := e.browser()
		if r := b.signin(s, bob, testPassword); r.status != http.StatusSeeOther {
			t.Fatalf("sign in: %d\n%s", r.status, r.body)
		}
		browsers = append(browsers, b)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	status := make([]int, readers)
	for i, b := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.srv.URL+"/m/"+b.token, nil)
			<-start
			resp, err := b.c.Do(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	for i, st := range status {
		if st != http.StatusOK {
			t.Fatalf("read %d: status %d", i, st)
		}
	}
	reads, err := e.store.Reads(context.Background(), keystore.KeyID(s.form.KeyID))
	if err != nil || len(reads) != readers {
		t.Fatalf("audit trail: %d reads (%v), want %d", len(reads), err, readers)
	}
	if n := len(readNotices(e, s.form.KeyID.String())); n != 1 {
		t.Fatalf("%d read notices after %d simultaneous first reads, want 1", n, readers)
	}
}

func TestReadNoticeOffByDefault(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	if n := e.sink.countTo(alice); n != 0 {
		t.Fatalf("%d mails to the sender with read_notice off", n)
	}
}

// TestReadNoticeRetriedAfterAFailedSend: a notice the relay refused is
// sent at the reader's next read, and then never again.
func TestReadNoticeRetriedAfterAFailedSend(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withReadNotice)
	e.browser().register(e.seal(alice, []string{bob}, plainMessage), bob)
	s := e.seal(alice, []string{bob}, strings.Replace(plainMessage, "q3-numbers", "q5-numbers", 1))
	b := e.browser()
	b.signin(s, bob, testPassword)
	refuseMail(e, true)
	if r := b.get("/m/" + b.token); r.status != http.StatusOK {
		t.Fatalf("read while the relay refuses: %d", r.status)
	}
	id := s.form.KeyID.String()
	if n := len(readNotices(e, id)); n != 0 {
		t.Fatalf("%d notices while the relay refuses", n)
	}
	if !strings.Contains(e.logs.String(), "read notice not sent") {
		t.Fatalf("no log line for the failed notice:\n%s", e.logs.String())
	}
	refuseMail(e, false)
	for range 2 {
		if r := b.get("/m/" + b.token); r.status != http.StatusOK {
			t.Fatalf("read: %d", r.status)
		}
	}
	if n := len(readNotices(e, id)); n != 1 {
		t.Fatalf("%d notices after the relay recovered, want 1", n)
	}
}

// TestReadNoticeDecidedByTheMilter: the notice carries the trigger header
// and goes to the sender, inside the host's domains: the milter delivers
// it as written, header removed.
func TestReadNoticeDecidedByTheMilter(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withReadNotice, func(o *Options) { o.SubjectTag, o.TriggerHeader = "", "X-Secure-Send" })
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	n := e.sink.last(t, alice)
	if got := (sentMail{data: n.Data}).parse(t).Header.Get("X-Secure-Send"); got != "yes" {
		t.Fatalf("the notice is not marked with the trigger header: %q", got)
	}
	f, err := milter.NewFilter(milter.Config{
		Policy: milter.Policy{
			InternalDomains: []string{"example.com"}, TrustedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			TLSExemptNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, RequireTLS: true,
			MaxMessageSize: 20 << 20, TriggerHeader: "X-Secure-Send",
		},
		PortalURL: e.srv.URL, KeyLifetime: time.Hour, SpoolDir: t.TempDir(), Store: e.store, MasterKey: e.mk, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	res := runMilter(t, f, n)
	if res.action.Code != gomilter.ActAccept && res.action.Code != gomilter.ActContinue {
		t.Fatalf("milter action %+v", res.action)
	}
	if res.replaced != nil {
		t.Fatal("the milter sealed a read notice to an internal sender")
	}
}

// TestReadNoticeInSendersLanguage: the notice is in the language
// configured for the sender's domain (Brands.Language), through the SMTP
// relay; a sender of a domain without one gets English.
func TestReadNoticeInSendersLanguage(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withReadNotice, func(o *Options) { o.Brands = testBrands{lang: catalog.German} })
	const zoe = "zoe@example.test"
	german := e.seal(zoe, []string{bob}, strings.Replace(plainMessage, "q3-numbers", "q3-de", 1))
	english := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.register(german, bob)
	if r := b.follow(b.open(english)); r.status != http.StatusOK {
		t.Fatalf("reading the English sender's message: %d\n%s", r.status, r.body)
	}
	notice := func(to string) (subject, text string) {
		t.Helper()
		for _, m := range sentMails(e) {
			if len(m.to) == 1 && m.to[0] == to {
				msg := m.parse(t)
				body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
				if err != nil {
					t.Fatal(err)
				}
				subject, _ = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
				return subject, string(body)
			}
		}
		t.Fatalf("no read notice to %s", to)
		return "", ""
	}
	now := catalog.Date(catalog.German, e.clock.Now())
	subject, text := notice(zoe)
	if !strings.HasPrefix(subject, "Gelesen: Quarterly numbers") {
		t.Errorf("German notice subject %q", subject)
	}
	for _, want := range []string{bob + " hat Ihre sichere Nachricht gelesen.", "Betreff:       Quarterly numbers\r\n",
		"Gelesen von:   " + bob, "Gelesen:       " + now, "Schlüssel-ID:  " + german.form.KeyID.String(),
		"Über ihren Inhalt sagt sie nichts."} {
		if !strings.Contains(text, want) {
			t.Errorf("the German notice does not say %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "read the secure message") || strings.Contains(text, "Revenue") {
		t.Errorf("the German notice has English words or content:\n%s", text)
	}
	subject, text = notice(alice)
	if !strings.HasPrefix(subject, "Read: Quarterly numbers") || !strings.Contains(text, bob+" read the secure message you sent.") ||
		!strings.Contains(text, "Read:     "+catalog.Date(catalog.English, e.clock.Now())) || strings.Contains(text, "Gelesen") {
		t.Errorf("the English notice: subject %q\n%s", subject, text)
	}
}
