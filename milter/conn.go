package milter

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// DefaultPeerTimeout is how long the MTA may stay silent in the middle of
// a message. The MTAs give up well before: Postfix's milter timeouts are
// 30 s per command and 300 s for the content (milter_command_timeout,
// milter_content_timeout), Sendmail's default T= is at most 5 minutes per
// step. Past them the MTA has applied its default action and will not
// come back for this message.
const DefaultPeerTimeout = 6 * time.Minute

// A dead MTA peer. go-milter ends a session when its connection reads EOF
// or an error, but does not tell the backend: without the code here, a
// message whose MTA went away mid-message (smtpd or cleanup killed, the
// MTA's milter timeout fired while serve was stopped) would stay in flight
// with its spool file until restart, and hold SIGTERM for the whole drain.
//
// So every connection gets its own go-milter server, whose sessions share
// one connState; when go-milter closes the connection (always in the
// session's own goroutine, after its last callback), the message still in
// flight is dropped, its spool file removed and the drain count released.
// While a message is in flight every read has a deadline of PeerTimeout,
// so an MTA that stops talking without closing is found too.

// connState is what the sessions of one milter connection share.
type connState struct {
	mu      sync.Mutex
	current *session    // the session with a message in flight, or nil
	busy    atomic.Bool // a message is in flight (read by the conn's Read)
	peer    string      // for the log
}

func (cs *connState) begin(s *session) {
	cs.mu.Lock()
	cs.current = s
	cs.mu.Unlock()
	cs.busy.Store(true)
}

func (cs *connState) end(s *session) {
	cs.mu.Lock()
	if cs.current == s {
		cs.current = nil
		cs.busy.Store(false)
	}
	cs.mu.Unlock()
}

// abandon ends the message in flight, if any, because the MTA is gone.
func (cs *connState) abandon(log *slog.Logger) {
	cs.mu.Lock()
	s := cs.current
	cs.mu.Unlock()
	if s == nil {
		return
	}
	if s.msg != nil {
		s.msg.logAttrs(slog.LevelWarn, "the MTA went away in the middle of the message: dropped, nothing delivered by us",
			slog.String("peer", cs.peer))
	} else {
		log.Warn("the MTA went away in the middle of a message", "peer", cs.peer)
	}
	s.endMessage()
}

// serveConn runs go-milter on one connection until it ends.
func (f *Filter) serveConn(proto *gomilter.Server, c net.Conn) {
	cs := &connState{peer: c.RemoteAddr().String()}
	tc := &trackedConn{Conn: c, f: f, state: cs}
	f.cfg.Events.SessionOpened()
	f.mu.Lock()
	f.conns[tc] = struct{}{}
	f.mu.Unlock()
	srv := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return &session{f: f, conn: cs} },
		Actions:   proto.Actions,
		Protocol:  proto.Protocol,
		SymList:   proto.SymList,
	}
	ln := &oneConnListener{conn: tc, done: make(chan struct{})}
	tc.closed = ln.done
	srv.Serve(ln) // returns once the connection is closed
}

// oneConnListener hands go-milter one connection, then waits for it to
// close.
type oneConnListener struct {
	conn   *trackedConn
	done   chan struct{}
	handed bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.handed {
		l.handed = true
		return l.conn, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// trackedConn is one MTA connection: Shutdown finds it in Filter.conns,
// and its Close (go-milter's, at the end of the session) ends a message
// left in flight.
type trackedConn struct {
	net.Conn
	f      *Filter
	state  *connState
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	expired bool // Shutdown set a deadline in the past; keep it
}

// Read sets the deadline for a dead peer while a message is in flight and
// clears it between messages, when an idle MTA connection is normal.
func (c *trackedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if !c.expired {
		var deadline time.Time
		if c.state.busy.Load() {
			deadline = time.Now().Add(c.f.cfg.PeerTimeout)
		}
		c.Conn.SetReadDeadline(deadline)
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && c.state.busy.Load() {
		c.f.cfg.Logger.Warn("the MTA sent nothing for too long in the middle of a message: taking it for gone",
			"peer", c.state.peer, "timeout", c.f.cfg.PeerTimeout)
	}
	return n, err
}

// expire makes the next read fail at once (Shutdown, after the drain).
func (c *trackedConn) expire() {
	c.mu.Lock()
	c.expired = true
	c.Conn.SetReadDeadline(time.Now())
	c.mu.Unlock()
}

// forceClose cuts the connection from outside the session (Shutdown after
// its timeout); go-milter's own Close follows in the session's goroutine.
func (c *trackedConn) forceClose() { c.Conn.Close() }

// Close is called by go-milter in the session's goroutine once the
// session's loop has ended, so no callback runs concurrently.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.state.abandon(c.f.cfg.Logger)
		c.f.mu.Lock()
		delete(c.f.conns, c)
		c.f.mu.Unlock()
		c.f.cfg.Events.SessionClosed()
		close(c.closed)
	})
	return err
}
