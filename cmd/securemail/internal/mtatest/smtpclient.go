package mtatest

import (
	"fmt"
	"net/smtp"
	"testing"
)

// SendOne sends one message on an open, ready net/smtp client (after EHLO,
// STARTTLS, AUTH as the caller wants), leaving the connection open for the
// next message. msg is the message with CRLF line ends.
func SendOne(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("MAIL FROM:<%s>: %w", from, err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("RCPT TO:<%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// DialSubmission opens an SMTP connection to mta's submission listener,
// with STARTTLS and AUTH PLAIN done, ready for SendOne; the connection is
// closed when the test ends.
func DialSubmission(t testing.TB, mta MTA) *smtp.Client {
	t.Helper()
	c, err := OpenSubmission(mta)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// OpenSubmission is DialSubmission for a goroutine other than the test's,
// which may not fail the test: it returns the error, and the caller
// closes the client.
func OpenSubmission(mta MTA) (*smtp.Client, error) {
	c, err := smtp.Dial(mta.SubmissionAddr())
	if err != nil {
		return nil, err
	}
	if err := c.StartTLS(mta.TLS().ClientConfig()); err != nil {
		c.Close()
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	user, pass := mta.Credentials()
	if err := c.Auth(smtp.PlainAuth("", user, pass, "127.0.0.1")); err != nil {
		c.Close()
		return nil, fmt.Errorf("AUTH: %w", err)
	}
	return c, nil
}
