package portal

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
)

// Mailer submits one message. write produces the message (header and
// body); if it fails, the transaction is abandoned and nothing is sent.
type Mailer interface {
	Send(ctx context.Context, from string, to []string, write func(io.Writer) error) error
}

// SMTPMailer submits over SMTP to the host's own MTA. To a loopback relay
// it speaks plain SMTP (the MTA trusts loopback); to any other host it
// insists on STARTTLS with a verified certificate.
type SMTPMailer struct {
	Addr      string // host:port
	HelloName string // name given in EHLO; default "localhost"
	Timeout   time.Duration
}

// Send implements Mailer.
func (m *SMTPMailer) Send(ctx context.Context, from string, to []string, write func(io.Writer) error) error {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(m.Addr)
	if err != nil {
		return fmt.Errorf("smtp relay %q: %w", m.Addr, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		return fmt.Errorf("smtp relay: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp relay: %w", err)
	}
	defer c.Close()
	hello := m.HelloName
	if hello == "" {
		hello = "localhost"
	}
	if err := c.Hello(hello); err != nil {
		return fmt.Errorf("smtp relay: EHLO: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("smtp relay: the relay does not offer STARTTLS and is not on loopback")
		}
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("smtp relay: STARTTLS: %w", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("smtp relay: MAIL FROM: %w", err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt); err != nil {
			return fmt.Errorf("smtp relay: RCPT TO: %w", err)
		}
	}
	wc, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp relay: DATA: %w", err)
	}
	if err := write(wc); err != nil {
		// Closing the connection without the final dot makes the MTA
		// discard what it got.
		return err
	}
	if err := wc.Close(); err != nil {
		return fmt.Errorf("smtp relay: end of DATA: %w", err)
	}
	return c.Quit()
}

// newHeader starts the header of a message the portal writes.
func newHeader(from string, to []string, subject string, now time.Time) (mail.Header, error) {
	var h mail.Header
	h.SetDate(now)
	h.SetAddressList("From", []*mail.Address{{Address: from}})
	rcpts := make([]*mail.Address, len(to))
	for i, a := range to {
		rcpts[i] = &mail.Address{Address: a}
	}
	h.SetAddressList("To", rcpts)
	h.SetSubject(subject)
	// The id's right side is the sender's domain, not this machine's
	// name, which may be an internal one.
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return h, err
	}
	domain := "localhost"
	if at := strings.LastIndexByte(from, '@'); at >= 0 && at < len(from)-1 {
		domain = from[at+1:]
	}
	h.SetMessageID(hex.EncodeToString(id[:]) + "@" + domain)
	h.Set("MIME-Version", "1.0")
	return h, nil
}

// writeTextMessage writes a single-part UTF-8 text message.
func writeTextMessage(w io.Writer, h mail.Header, text string) error {
	h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	tw, err := mail.CreateSingleInlineWriter(w, h)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(tw, strings.ReplaceAll(text, "\n", "\r\n")); err != nil {
		return err
	}
	return tw.Close()
}

// sendNotice mails a short text from the portal's own address.
func (h *handler) sendNotice(ctx context.Context, to, subject, text string) error {
	hdr, err := newHeader(h.opts.From, []string{to}, subject, h.now())
	if err != nil {
		return err
	}
	hdr.Set("Auto-Submitted", "auto-generated")
	return h.opts.Mailer.Send(ctx, h.opts.From, []string{to}, func(w io.Writer) error {
		return writeTextMessage(w, hdr, text)
	})
}
