package smtptest

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// send submits one message with net/smtp, the client the portal uses.
func send(t *testing.T, addr string, tlsConf *tls.Config, from string, to []string, data string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if tlsConf != nil {
		if err := c.StartTLS(tlsConf); err != nil {
			return err
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(data)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func TestKeepsMessageWithEnvelopeAndFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := Start(t, Options{Dir: dir})
	// net/smtp turns LF into CRLF and dot-stuffs; the server undoes the
	// stuffing and keeps CRLF.
	body := "Subject: =?utf-8?q?h=C3=A9llo?=\n\n.leading dot\nline\n"
	if err := send(t, s.Addr, nil, "alice@example.test", []string{"bob@external.test", "Carol@External.test"}, body); err != nil {
		t.Fatal(err)
	}
	if err := send(t, s.Addr, nil, "", []string{"postmaster@example.test"}, "Subject: bounce\n\nx\n"); err != nil {
		t.Fatal(err)
	}
	msgs, err := s.Wait(2, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	want := "Subject: =?utf-8?q?h=C3=A9llo?=\r\n\r\n.leading dot\r\nline\r\n"
	if m.Seq != 1 || m.From != "alice@example.test" || len(m.Rcpts) != 2 || string(m.Data) != want || m.TLS {
		t.Fatalf("message 1 = %+v, data %q", m, m.Data)
	}
	if !m.To("carol@external.test") || m.To("alice@example.test") || m.Subject() != "héllo" {
		t.Errorf("To/Subject: %v %v %q", m.To("carol@external.test"), m.To("alice@example.test"), m.Subject())
	}
	if onDisk, err := os.ReadFile(m.Path); err != nil || string(onDisk) != want {
		t.Errorf("file %s: %q, %v", m.Path, onDisk, err)
	}
	if msgs[1].Seq != 2 || msgs[1].From != "" || len(s.FromSender("ALICE@example.test")) != 1 {
		t.Errorf("message 2 = %+v", msgs[1])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("%d files in Dir, want 2 (no temporary files left)", len(entries))
	}
}

func TestWaitTimesOutSayingWhatArrived(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	if err := send(t, s.Addr, nil, "alice@example.test", []string{"bob@external.test"}, "Subject: first\n\nx\n"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Wait(2, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "1 message(s)") || !strings.Contains(err.Error(), `subject "first"`) {
		t.Errorf("Wait error = %v", err)
	}
	_, err = s.WaitFor(func(m Message) bool { return m.From == "nobody@example.test" }, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "from <alice@example.test>") {
		t.Errorf("WaitFor error = %v", err)
	}
}

// A waiter wakes when the message arrives, not at its timeout.
func TestWaitForWakesOnArrival(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	got := make(chan error, 1)
	go func() {
		_, err := s.WaitFor(func(m Message) bool { return m.To("bob@external.test") }, time.Minute)
		got <- err
	}()
	if err := send(t, s.Addr, nil, "alice@example.test", []string{"bob@external.test"}, "Subject: s\n\nx\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

func TestFailDataAndRejectKeepNothing(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{Reject: func(m Message) error {
		if m.To("spam@external.test") {
			return errors.New("no spam")
		}
		return nil
	}})
	s.FailData(&gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"})
	err := send(t, s.Addr, nil, "alice@example.test", []string{"bob@external.test"}, "Subject: s\n\nx\n")
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 451 {
		t.Fatalf("with FailData: %v, want a 451 reply", err)
	}
	err = send(t, s.Addr, nil, "alice@example.test", []string{"spam@external.test"}, "Subject: s\n\nx\n")
	if !errors.As(err, &te) || te.Code != 554 {
		t.Fatalf("rejected: %v, want a 554 reply", err)
	}
	s.FailData(nil)
	if err := send(t, s.Addr, nil, "alice@example.test", []string{"bob@external.test"}, "Subject: s\n\nx\n"); err != nil {
		t.Fatal(err)
	}
	if msgs := s.Messages(); len(msgs) != 1 || msgs[0].Seq != 1 {
		t.Fatalf("kept %+v, want only the accepted message, as #1", msgs)
	}
}

// A client that goes away in the middle of DATA delivers nothing.
func TestDroppedDataKeepsNothing(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := textproto.NewConn(c)
	for _, step := range []struct {
		cmd  string
		code int
	}{{"", 220}, {"EHLO client.test", 250}, {"MAIL FROM:<a@example.test>", 250}, {"RCPT TO:<b@external.test>", 250}, {"DATA", 354}} {
		if step.cmd != "" {
			if err := tc.PrintfLine("%s", step.cmd); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := tc.ReadResponse(step.code); err != nil {
			t.Fatalf("%q: %v", step.cmd, err)
		}
	}
	tc.PrintfLine("Subject: half")
	tc.Close()
	s.Close() // returns once the session has given up
	if n := s.Count(); n != 0 {
		t.Fatalf("kept %d messages from a dropped DATA", n)
	}
}

func TestSTARTTLS(t *testing.T) {
	t.Parallel()
	// httptest's certificate is for 127.0.0.1 and example.com.
	hs := httptest.NewTLSServer(nil)
	defer hs.Close()
	s := Start(t, Options{TLS: hs.TLS})
	client := &tls.Config{ServerName: "127.0.0.1", RootCAs: hs.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	if err := send(t, s.Addr, client, "alice@example.test", []string{"bob@external.test"}, "Subject: s\n\nx\n"); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Wait(1, 10*time.Second); err != nil || !m[0].TLS {
		t.Fatalf("message over STARTTLS: %+v, %v", m, err)
	}
	plain := Start(t, Options{})
	c, err := smtp.Dial(plain.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("a server without Options.TLS offers STARTTLS")
	}
}
