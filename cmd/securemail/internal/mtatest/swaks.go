package mtatest

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Exit codes of swaks 20201014 that tests match on.
const (
	SwaksOK             = 0
	SwaksFailedMail     = 23 // failure at MAIL FROM
	SwaksFailedRcpt     = 24 // failure at RCPT TO (all recipients)
	SwaksFailedData     = 25 // failure at DATA
	SwaksFailedDataBody = 26 // failure after the message body was sent (end of DATA)
	SwaksFailedAuth     = 28 // AUTH failed
	SwaksFailedTLS      = 29 // STARTTLS failed
)

// SwaksResult is the outcome of one swaks run.
type SwaksResult struct {
	Args     []string
	ExitCode int
	// Transcript is swaks' stdout and stderr, interleaved as written: the
	// SMTP conversation with "->"/"<-" (or "~>"/"<~" inside TLS) prefixes.
	Transcript string
}

// Submission describes one message sent with swaks.
type Submission struct {
	Server  string   // host:port
	From    string   // envelope sender and From: header
	To      []string // envelope recipients and To: header
	Subject string
	// Body is the message body. BodyFile, when set, is used instead (swaks
	// reads it from the file, for bodies too large for a command line).
	Body     string
	BodyFile string
	Headers  []string // extra "Name: value" header lines
	STARTTLS bool     // -tls: STARTTLS, and fail if the server does not offer it
	// Auth is the SASL mechanism ("PLAIN", "LOGIN"); empty means no AUTH.
	Auth     string
	User     string
	Password string
	Extra    []string // more swaks arguments
}

// Args returns the swaks command line for s.
func (s Submission) Args() []string {
	args := []string{
		"--server", s.Server,
		"--helo", "client.example.test",
		"--from", s.From,
		"--to", strings.Join(s.To, ","),
		"--timeout", "30",
		"--suppress-data",
	}
	if s.Subject != "" {
		args = append(args, "--header", "Subject: "+s.Subject)
	}
	for _, h := range s.Headers {
		args = append(args, "--add-header", h)
	}
	switch {
	case s.BodyFile != "":
		args = append(args, "--body", "@"+s.BodyFile)
	case s.Body != "":
		args = append(args, "--body", s.Body)
	}
	if s.STARTTLS {
		args = append(args, "-tls")
	}
	if s.Auth != "" {
		args = append(args, "--auth", s.Auth, "--auth-user", s.User, "--auth-password", s.Password)
	}
	return append(args, s.Extra...)
}

// Send runs swaks for s.
func (s Submission) Send(t testing.TB) SwaksResult {
	t.Helper()
	return Swaks(t, s.Args()...)
}

// Swaks runs swaks with args and returns its exit code and transcript. Only a
// failure to start swaks, or a run over one minute, fails the test; a non-zero
// exit code is the caller's to judge.
func Swaks(t testing.TB, args ...string) SwaksResult {
	t.Helper()
	path, err := LookTool("swaks")
	if err != nil {
		t.Fatalf("mtatest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err = cmd.Run()
	res := SwaksResult{Args: args, Transcript: out.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.ExitCode = ee.ExitCode()
	default:
		t.Fatalf("mtatest: swaks %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return res
}
