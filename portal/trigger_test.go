package portal

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/internal/smtptest"
	"github.com/securemail/securemail/milter"
)

// milterResult is what the milter did to one message.
type milterResult struct {
	action   *gomilter.Action
	replaced []byte // the new body, if the milter replaced it
	headers  []gomilter.ModifyAction
}

// runMilter passes m through a real milter.Filter over the milter
// protocol, as Postfix would for a message the portal submitted over
// loopback.
func runMilter(t *testing.T, f *milter.Filter, m smtptest.Message) milterResult {
	t.Helper()
	dir, err := os.MkdirTemp("", "smp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "m.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go f.Serve(f.Server(), ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.Shutdown(ctx)
	})
	c := gomilter.NewClientWithOptions("unix", sock, gomilter.ClientOptions{
		ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeBody | gomilter.OptChangeHeader,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(act *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if act.Code != gomilter.ActContinue {
			t.Fatalf("milter stopped the message early: %+v", act)
		}
	}
	must(s.Conn("localhost", gomilter.FamilyInet, 40000, "127.0.0.1"))
	must(s.Helo("localhost"))
	if err := s.Macros(gomilter.CodeMail, "{client_addr}", "127.0.0.1", "i", "PORTAL1"); err != nil {
		t.Fatal(err)
	}
	must(s.Mail(m.From, nil))
	for _, r := range m.Rcpts {
		must(s.Rcpt(r, nil))
	}
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(m.Data)))
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			must(s.HeaderField(k, v))
		}
	}
	must(s.HeaderEnd())
	body, _ := io.ReadAll(tp.R)
	must(s.BodyChunk(body))
	if err := s.Macros(gomilter.CodeEOB, "i", "PORTAL1"); err != nil {
		t.Fatal(err)
	}
	mods, act, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	res := milterResult{action: act}
	for _, mod := range mods {
		switch mod.Code {
		case gomilter.ActReplBody:
			res.replaced = append(res.replaced, mod.Body...)
		case gomilter.ActChangeHeader, gomilter.ActAddHeader, gomilter.ActInsertHeader:
			res.headers = append(res.headers, mod)
		}
	}
	return res
}

// Finding 12: with subject_tag "" the portal still marks every reply,
// with the trigger header, and the milter alone decides: a reply that
// leaves the host's domains goes out sealed; one that stays inside is
// delivered as written.
func TestReplySealedByTheMilter(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) {
		o.SubjectTag = ""
		o.TriggerHeader = "X-Secure-Send"
		o.ReplyAll = true
	})
	f, err := milter.NewFilter(milter.Config{
		Policy: milter.Policy{
			// A subdomain entry and a trailing dot: forms the portal's old
			// copy of the domain logic did not know.
			InternalDomains:   []string{"example.com.", ".corp.example.com"},
			TrustedNetworks:   []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			TLSExemptNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			RequireTLS:        true,
			MaxMessageSize:    20 << 20,
			TriggerHeader:     "X-Secure-Send",
		},
		PortalURL: e.srv.URL, KeyLifetime: 24 * time.Hour, SpoolDir: t.TempDir(),
		Store: e.store, MasterKey: e.mk, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := e.seal(alice, []string{bob, carol}, plainMessage)
	b := e.browser()
	b.register(s, bob)
	token := strings.TrimPrefix(b.open(s).header.Get("Location"), "/m/")

	r := b.postMultipart("/m/"+token+"/reply", [][2]string{{"all", "1"}, {"body", "REPLY-PLAINTEXT to everyone"}})
	if r.status != 200 || !strings.Contains(r.body, "sent encrypted if it leaves example.com") {
		t.Fatalf("reply to everyone: %d\n%s", r.status, r.body)
	}
	out := e.sink.last(t, carol)
	if got := parseMail(t, out).Header.Get("X-Secure-Send"); got != "yes" {
		t.Fatalf("the reply is not marked with the trigger header: %q\n%s", got, out.Data)
	}
	res := runMilter(t, f, out)
	if res.action.Code != gomilter.ActAccept && res.action.Code != gomilter.ActContinue {
		t.Fatalf("milter action %+v", res.action)
	}
	if res.replaced == nil || bytes.Contains(res.replaced, []byte("REPLY-PLAINTEXT")) || !bytes.Contains(res.replaced, []byte("SecureMessageATT.html")) {
		t.Fatalf("a reply leaving example.com was not sealed by the milter; body now:\n%.2000s", res.replaced)
	}

	// To the sender alone the reply stays inside: delivered as written.
	r = b.postMultipart("/m/"+token+"/reply", [][2]string{{"body", "REPLY-PLAINTEXT to alice"}})
	if r.status != 200 {
		t.Fatalf("reply to the sender: %d\n%s", r.status, r.body)
	}
	res = runMilter(t, f, e.sink.last(t, alice))
	if res.replaced != nil {
		t.Errorf("a reply that stays inside was sealed")
	}
}
