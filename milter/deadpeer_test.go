package milter

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/internal/poll"
)

// mtaLink is a milter connection through a proxy the test can cut, as a
// killed smtpd or cleanup process cuts it.
type mtaLink struct {
	session  *gomilter.ClientSession
	upstream net.Conn // the proxy's connection to the filter
}

func (e *testEnv) dialThroughProxy(t *testing.T) *mtaLink {
	t.Helper()
	dir, err := os.MkdirTemp("", "smp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	addr := filepath.Join(dir, "p.sock")
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	link := &mtaLink{}
	ready := make(chan struct{})
	go func() {
		defer ln.Close()
		down, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("unix", e.addr)
		if err != nil {
			down.Close()
			return
		}
		link.upstream = up
		close(ready)
		go func() { io.Copy(up, down); up.Close() }()
		io.Copy(down, up)
		down.Close()
	}()
	c := gomilter.NewClientWithOptions("unix", addr, gomilter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeBody | gomilter.OptChangeHeader,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	link.session = s
	// Holds the client until the test ends: a session nobody references is
	// collected, and its socket's finalizer would close it (the MTA "went
	// away") before a silent peer's timeout.
	t.Cleanup(func() { s.Close() })
	return link
}

// startBody sends a tagged message up to the middle of a body larger
// than the spool's memory, so its ciphertext is on disk.
func (l *mtaLink) startBody(t *testing.T) {
	t.Helper()
	s := l.session
	if _, err := s.Conn("client.example.net", gomilter.FamilyInet, 5555, "198.51.100.7"); err != nil {
		t.Fatal(err)
	}
	m := tagged("Half [encrypt] sent", "alice@external.test", "")
	var kv []string
	for k, v := range m.macros {
		kv = append(kv, k, v)
	}
	if err := s.Macros(gomilter.CodeMail, kv...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mail(m.from, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rcpt(m.rcpts[0], nil); err != nil {
		t.Fatal(err)
	}
	for _, h := range m.headers {
		if _, err := s.HeaderField(h[0], h[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("SECRET-BODY-LINE 0123456789\r\n", gomilter.MaxBodyChunk/30))
	for range 4 {
		if act, err := s.BodyChunk(chunk); err != nil || act.Code != gomilter.ActContinue {
			t.Fatalf("body: %v %v", act, err)
		}
	}
}

func spoolFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestDeadPeerMidBodyEndsMessages: MTA connections cut in the middle of
// their bodies, all at once: every message is dropped, its spool file
// removed, and Shutdown returns at once.
func TestDeadPeerMidBodyEndsMessages(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil, nil)
	const n = 6
	links := make([]*mtaLink, n)
	for i := range links {
		links[i] = e.dialThroughProxy(t)
		links[i].startBody(t)
	}
	if got := spoolFiles(t, e.spool); got != n {
		t.Fatalf("%d spool files with %d bodies in flight", got, n)
	}
	if got := e.filter.inFlight(); got != n {
		t.Fatalf("%d messages in flight, want %d", got, n)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			l.upstream.Close()
		}()
	}
	close(start)
	wg.Wait()
	poll.Until(t, 30*time.Second, "spool emptied after the MTA went away", func() bool { return spoolFiles(t, e.spool) == 0 })
	poll.Until(t, 30*time.Second, "no message in flight", func() bool { return e.filter.inFlight() == 0 })
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.filter.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Generous: nothing is in flight, so only a hang would come near it.
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("Shutdown took %v after the MTA went away", took)
	}
	if got := strings.Count(e.logBuf.String(), "the MTA went away in the middle of the message"); got != n {
		t.Fatalf("%d dropped messages logged, want %d:\n%s", got, n, e.logBuf.String())
	}
	if strings.Contains(e.logBuf.String(), "SECRET-BODY") {
		t.Fatal("body content in the log")
	}
}

// TestSilentPeerTimesOut: an MTA that stops talking mid-message without
// closing is taken for gone after PeerTimeout; an idle connection between
// messages is not.
func TestSilentPeerTimesOut(t *testing.T) {
	t.Parallel()
	// Long enough that a loaded machine's pauses within a message never
	// meet it; the idle wait below must exceed it.
	const peerTimeout = 2 * time.Second
	e := newTestEnv(t, nil, func(c *Config) { c.PeerTimeout = peerTimeout })

	idle := e.newSession(t)
	time.Sleep(peerTimeout + 500*time.Millisecond) // idle between messages: allowed
	assertSealed(t, e, tagged("After idle [encrypt]", "alice@external.test", secretBody()),
		e.send(t, idle, tagged("After idle [encrypt]", "alice@external.test", secretBody())))

	l := e.dialThroughProxy(t)
	l.startBody(t)
	poll.Until(t, 30*time.Second, "spool emptied after the MTA fell silent", func() bool { return spoolFiles(t, e.spool) == 0 })
	poll.Until(t, 30*time.Second, "no message in flight", func() bool { return e.filter.inFlight() == 0 })
	if !strings.Contains(e.logBuf.String(), "sent nothing for too long") {
		t.Fatalf("the silent MTA was not logged:\n%s", e.logBuf.String())
	}
}
