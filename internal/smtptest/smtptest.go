// Package smtptest is the one SMTP server the tests use: go-smtp's server
// on a free loopback port that accepts every message, keeps it with its
// envelope, and lets a test wait for it. It stands in for an MTA's
// relayhost in the end-to-end tests and for the local MTA in the portal's.
//
// Contract:
//   - A message is visible (Messages, Wait, WaitFor, and its file when
//     Options.Dir is set) only once it is whole, before the 250 reply to
//     the end of its data; a message whose client went away mid-DATA, or
//     that Options.Reject or FailData refused, is never kept.
//   - Data is the message as transmitted (CRLF line ends), dot-unstuffed,
//     without the terminating ".".
//   - Wait and WaitFor return an error that says what did arrive, never
//     block past their timeout, and wake as soon as a message is kept.
//   - Start registers Close with t.Cleanup; Close drops open connections
//     and returns once no message is being stored.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one message the Server kept.
type Message struct {
	Seq   int      // 1, 2, ... in order of arrival
	From  string   // envelope sender, without angle brackets ("" for bounces)
	Rcpts []string // envelope recipients, without angle brackets
	Data  []byte   // as transmitted, dot-unstuffed, without the final "."
	Path  string   // the file holding Data (Options.Dir/NNNN.eml), or ""
	TLS   bool     // whether it arrived after STARTTLS
}

// To reports whether addr (case-insensitive) is among the recipients.
func (m Message) To(addr string) bool {
	for _, r := range m.Rcpts {
		if strings.EqualFold(r, addr) {
			return true
		}
	}
	return false
}

// Subject is the message's decoded Subject header, or "" when the header
// does not parse.
func (m Message) Subject() string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	s, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return msg.Header.Get("Subject")
	}
	return s
}

// Options configures a Server. The zero value is a plain-text server that
// keeps messages in memory only.
type Options struct {
	// Dir, when set, receives each message as NNNN.eml (the sequence
	// number), written under a temporary name and renamed before the 250
	// reply, so a reader of the folder never sees a partial file.
	Dir string
	// TLS, when set, makes the server offer STARTTLS with it.
	TLS *tls.Config
	// Reject, when set, is asked about each whole message before it is
	// kept; a non-nil error refuses it (an *smtp.SMTPError gives the
	// reply's code, any other error 554).
	Reject func(Message) error
	// MaxMessageBytes bounds one message; default 64 MiB.
	MaxMessageBytes int64
}

// Server is a running test SMTP server.
type Server struct {
	Addr string // 127.0.0.1:port
	Dir  string // Options.Dir

	opts  Options
	srv   *smtp.Server
	ln    net.Listener
	t     testing.TB
	serve chan struct{} // closed when srv.Serve has returned
	busy  sync.WaitGroup

	mu       sync.Mutex
	msgs     []Message
	changed  chan struct{} // closed and replaced whenever msgs grows
	failData error
	closed   bool
}

// Start starts a Server on a free loopback port; t.Cleanup closes it.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 64 << 20
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s := &Server{
		Addr:    ln.Addr().String(),
		Dir:     opts.Dir,
		opts:    opts,
		ln:      ln,
		t:       t,
		serve:   make(chan struct{}),
		changed: make(chan struct{}),
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, c: c}, nil
	}))
	s.srv.Domain = "smtptest.test"
	s.srv.TLSConfig = opts.TLS
	s.srv.MaxMessageBytes = opts.MaxMessageBytes
	s.srv.MaxLineLength = 0 // a test may send anything an MTA would relay
	s.srv.EnableSMTPUTF8 = true
	s.srv.ReadTimeout = 5 * time.Minute
	s.srv.ErrorLog = (*testLogger)(s)
	go func() {
		defer close(s.serve)
		s.srv.Serve(ln)
	}()
	t.Cleanup(s.Close)
	return s
}

// Close stops accepting, drops open connections and waits until no
// message is being stored. It may be called more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.srv.Close()
	<-s.serve
	s.busy.Wait()
}

// FailData makes the end of DATA of every following message answer err
// (an *smtp.SMTPError gives the code) and keep nothing; nil accepts again.
func (s *Server) FailData(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failData = err
}

// Messages returns the messages kept so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count is len(s.Messages()).
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// FromSender returns the messages whose envelope sender is from
// (case-insensitive).
func (s *Server) FromSender(from string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		if strings.EqualFold(m.From, from) {
			out = append(out, m)
		}
	}
	return out
}

// Wait waits up to timeout until at least n messages have been kept in
// total and returns them all.
func (s *Server) Wait(n int, timeout time.Duration) ([]Message, error) {
	var out []Message
	err := s.wait(timeout, func(msgs []Message) bool {
		if len(msgs) < n {
			return false
		}
		out = msgs
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("smtptest: %d message(s) after %v, want %d%w", s.Count(), timeout, n, err)
	}
	return out, nil
}

// WaitFor waits up to timeout for a message for which match returns true
// and returns the first such message.
func (s *Server) WaitFor(match func(Message) bool, timeout time.Duration) (Message, error) {
	var out Message
	err := s.wait(timeout, func(msgs []Message) bool {
		for _, m := range msgs {
			if match(m) {
				out = m
				return true
			}
		}
		return false
	})
	if err != nil {
		return Message{}, fmt.Errorf("smtptest: no matching message among %d after %v%w", s.Count(), timeout, err)
	}
	return out, nil
}

// errTimeout carries the list of what arrived into Wait's error.
type errTimeout string

func (e errTimeout) Error() string { return string(e) }

// wait calls done with the messages so far, and again each time one is
// kept, until it returns true; after timeout it returns an error listing
// what arrived.
func (s *Server) wait(timeout time.Duration, done func([]Message) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		msgs, ch := append([]Message(nil), s.msgs...), s.changed
		s.mu.Unlock()
		if done(msgs) {
			return nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return errTimeout(summary(msgs))
		}
	}
}

// summary lists messages one a line, for an error.
func summary(msgs []Message) string {
	if len(msgs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; received:")
	for _, m := range msgs {
		fmt.Fprintf(&b, "\n  #%d from <%s> to %v, %d bytes, subject %q", m.Seq, m.From, m.Rcpts, len(m.Data), m.Subject())
	}
	return b.String()
}

// keep stores one whole message and wakes the waiters.
func (s *Server) keep(m Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failData != nil {
		return s.failData
	}
	m.Seq = len(s.msgs) + 1
	if s.Dir != "" {
		m.Path = filepath.Join(s.Dir, fmt.Sprintf("%04d.eml", m.Seq))
		tmp := m.Path + ".tmp"
		if err := os.WriteFile(tmp, m.Data, 0o644); err != nil {
			return fmt.Errorf("smtptest: store: %w", err)
		}
		if err := os.Rename(tmp, m.Path); err != nil {
			return fmt.Errorf("smtptest: store: %w", err)
		}
	}
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// session is one SMTP connection's transaction state.
type session struct {
	s     *Server
	c     *smtp.Conn
	from  string
	rcpts []string
}

func (ss *session) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.rcpts = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	s := ss.s
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.busy.Add(1)
	}
	s.mu.Unlock()
	if closed {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "smtptest server closing"}
	}
	defer s.busy.Done()
	data, err := io.ReadAll(r)
	if err != nil {
		return err // a client gone mid-DATA delivered nothing
	}
	_, isTLS := ss.c.TLSConnectionState()
	m := Message{From: ss.from, Rcpts: append([]string(nil), ss.rcpts...), Data: data, TLS: isTLS}
	if s.opts.Reject != nil {
		if err := s.opts.Reject(m); err != nil {
			return asSMTPError(err)
		}
	}
	if err := s.keep(m); err != nil {
		return asSMTPError(err)
	}
	return nil
}

// asSMTPError keeps an *smtp.SMTPError and makes any other error a 554.
func asSMTPError(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 3, 0}, Message: err.Error()}
}

// testLogger reports go-smtp's unexpected errors through the test while
// it runs, and drops them after Close.
type testLogger Server

func (l *testLogger) Printf(format string, v ...any) { l.log(fmt.Sprintf(format, v...)) }
func (l *testLogger) Println(v ...any)               { l.log(fmt.Sprintln(v...)) }

func (l *testLogger) log(line string) {
	s := (*Server)(l)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.t.Logf("smtptest: %s", strings.TrimSpace(line))
	}
}
