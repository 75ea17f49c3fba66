package mtatest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Message is one message the Sink received.
type Message struct {
	Seq   int      // 1, 2, ... in order of arrival
	From  string   // envelope sender, without angle brackets ("" for bounces)
	Rcpts []string // envelope recipients, without angle brackets
	// Data is the message as transmitted (CRLF line ends), dot-unstuffed,
	// without the terminating ".".
	Data []byte
	// Path is the file holding Data: Sink.Dir/NNNN.eml.
	Path string
}

// Sink is a minimal SMTP server that accepts every message and writes each
// one to its own file. It stands in for the remote side of an MTA's relayhost.
//
// Postfix's smtp-sink(1) can do this too, but it creates its dump file at
// RCPT time and fills it at end of data, so a reader polling the directory
// sees empty or partial files with nothing to tell them apart; this sink
// writes the file under a temporary name and renames it before answering 250,
// so a message is visible only when complete.
type Sink struct {
	Addr string // 127.0.0.1:port
	Dir  string // where NNNN.eml files are written

	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	msgs    []Message
	changed chan struct{} // closed and replaced whenever msgs grows
	conns   map[net.Conn]struct{}
	closed  bool
}

// sinkMaxMessage bounds one message in memory.
const sinkMaxMessage = 64 << 20

// StartSink starts a Sink on a free loopback port, storing messages in a new
// directory under t.TempDir(). It is closed by t.Cleanup.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sink")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("mtatest: sink dir: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mtatest: sink listen: %v", err)
	}
	s := &Sink{
		Addr:    ln.Addr().String(),
		Dir:     dir,
		ln:      ln,
		changed: make(chan struct{}),
		conns:   make(map[net.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Close stops accepting, drops open connections and waits for them to end.
func (s *Sink) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// Messages returns the messages received so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count is len(s.Messages()).
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Wait blocks until at least n messages have arrived in total and returns
// them all, or returns an error after timeout.
func (s *Sink) Wait(n int, timeout time.Duration) ([]Message, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			msgs := append([]Message(nil), s.msgs...)
			s.mu.Unlock()
			return msgs, nil
		}
		ch, got := s.changed, len(s.msgs)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return nil, fmt.Errorf("mtatest: sink has %d message(s) after %v, want %d", got, timeout, n)
		}
	}
}

// WaitFor waits up to timeout for a message for which match returns true
// and returns the first such message.
func (s *Sink) WaitFor(match func(Message) bool, timeout time.Duration) (Message, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for _, m := range s.msgs {
			if match(m) {
				s.mu.Unlock()
				return m, nil
			}
		}
		ch, got := s.changed, len(s.msgs)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return Message{}, fmt.Errorf("mtatest: no matching message among %d after %v", got, timeout)
		}
	}
}

// FromSender returns the messages whose envelope sender is from
// (case-insensitive).
func (s *Sink) FromSender(from string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		if strings.EqualFold(m.From, from) {
			out = append(out, m)
		}
	}
	return out
}

func (s *Sink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Sink) handle(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(lines ...string) error {
		for _, l := range lines {
			w.WriteString(l)
			w.WriteString("\r\n")
		}
		return w.Flush()
	}
	if reply("220 sink.test ESMTP mtatest sink") != nil {
		return
	}
	var from string
	var rcpts []string
	inTx := false
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			err = reply("250-sink.test", "250-PIPELINING", "250-8BITMIME", "250-SMTPUTF8", "250 SIZE 104857600")
		case "HELO":
			err = reply("250 sink.test")
		case "MAIL":
			addr, ok := pathArg(arg, "FROM:")
			if !ok {
				err = reply("501 5.5.4 Syntax: MAIL FROM:<address>")
				break
			}
			from, rcpts, inTx = addr, nil, true
			err = reply("250 2.1.0 Ok")
		case "RCPT":
			addr, ok := pathArg(arg, "TO:")
			switch {
			case !inTx:
				err = reply("503 5.5.1 Error: need MAIL command")
			case !ok || addr == "":
				err = reply("501 5.5.4 Syntax: RCPT TO:<address>")
			default:
				rcpts = append(rcpts, addr)
				err = reply("250 2.1.5 Ok")
			}
		case "DATA":
			if !inTx || len(rcpts) == 0 {
				err = reply("503 5.5.1 Error: need RCPT command")
				break
			}
			if err = reply("354 End data with <CR><LF>.<CR><LF>"); err != nil {
				return
			}
			data, rerr := readData(r)
			if rerr != nil {
				return
			}
			seq, serr := s.store(from, rcpts, data)
			if serr != nil {
				err = reply("451 4.3.0 sink cannot store message: " + serr.Error())
			} else {
				err = reply(fmt.Sprintf("250 2.0.0 Ok: queued as %04d", seq))
			}
			from, rcpts, inTx = "", nil, false
		case "RSET":
			from, rcpts, inTx = "", nil, false
			err = reply("250 2.0.0 Ok")
		case "NOOP":
			err = reply("250 2.0.0 Ok")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			err = reply("502 5.5.2 Error: command not recognized")
		}
		if err != nil {
			return
		}
	}
}

// pathArg parses "FROM:<addr> PARAMS" (or "TO:...") and returns addr.
func pathArg(arg, prefix string) (string, bool) {
	arg = strings.TrimSpace(arg)
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	return rest[1:end], true
}

// readData reads a DATA section up to the terminating "." line and undoes
// dot-stuffing. Line ends are kept as sent.
func readData(r *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		if bytes.Equal(line, []byte(".\r\n")) || bytes.Equal(line, []byte(".\n")) {
			return buf.Bytes(), nil
		}
		if line[0] == '.' {
			line = line[1:]
		}
		if buf.Len()+len(line) > sinkMaxMessage {
			return nil, errors.New("message too large for sink")
		}
		buf.Write(line)
	}
}

func (s *Sink) store(from string, rcpts []string, data []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := len(s.msgs) + 1
	path := filepath.Join(s.Dir, fmt.Sprintf("%04d.eml", seq))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	s.msgs = append(s.msgs, Message{
		Seq:   seq,
		From:  from,
		Rcpts: append([]string(nil), rcpts...),
		Data:  data,
		Path:  path,
	})
	close(s.changed)
	s.changed = make(chan struct{})
	return seq, nil
}
