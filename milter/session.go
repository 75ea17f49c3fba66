package milter

import (
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"runtime/debug"
	"strings"

	gomilter "github.com/emersion/go-milter"
)

// session adapts one go-milter backend to messages. go-milter makes a new
// backend after every final reply but keeps it after a custom reply code,
// so every MAIL FROM starts a new message here whatever came before.
type session struct {
	f    *Filter
	conn *connState // shared by the sessions of one MTA connection
	msg  *message   // nil between messages
	// counted is true while the current message counts as in flight.
	counted bool
}

var _ gomilter.Milter = (*session)(nil)

// guard runs one callback: it turns a panic or an error into the reply
// the MTA gets, ends the message on a final reply, and logs the verdict.
func (s *session) guard(step string, fn func() (gomilter.Response, error)) (resp gomilter.Response, err error) {
	defer func() {
		if v := recover(); v != nil {
			// The stack names code, not message content.
			s.f.cfg.Logger.Error("panic in milter session", "step", step, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			resp, err = s.refuse(replyTempFail.withCause(fmt.Errorf("panic in %s: %v", step, v))), nil
		}
	}()
	resp, err = fn()
	if err != nil {
		return s.refuse(asReply(err)), nil
	}
	return resp, nil
}

// refuse ends the current message with reply r.
func (s *session) refuse(r *Reply) gomilter.Response {
	s.f.cfg.Events.MessageDone(VerdictRefused, r.Reason)
	if s.msg != nil {
		s.msg.logVerdict("refused", r)
	} else if r.Cause != nil {
		s.f.cfg.Logger.Error("message refused", "reply", r.Code, "err", r.Cause)
	}
	s.endMessage()
	return r.response()
}

func (s *session) endMessage() {
	if s.conn != nil {
		s.conn.end(s)
	}
	if s.msg != nil {
		s.msg.close()
		s.msg = nil
	}
	if s.counted {
		s.counted = false
		s.f.endMessage()
	}
}

func (s *session) Connect(host string, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	return s.guard("mail", func() (gomilter.Response, error) {
		s.endMessage()
		if !s.f.beginMessage() {
			return replyShuttingDown.response(), nil
		}
		s.counted = true
		if s.conn != nil {
			s.conn.begin(s)
		}
		macros := m.Macros
		s.msg = s.f.newMessage(from, macros["i"])
		s.msg.auth = macros["{auth_authen}"]
		client := parseClientAddr(macros["{client_addr}"])
		p := s.msg.pol
		auth := s.msg.auth != ""
		if !auth && !inPrefixes(client, p.TrustedNetworks) {
			// Mail from the internet: never ours to seal.
			if s.msg.logEnabled(slog.LevelDebug) {
				s.msg.logAttrs(slog.LevelDebug, "not a submission: accepted untouched", slog.Any("client", client))
			}
			s.endMessage()
			s.f.cfg.Events.MessageDone(VerdictInbound, "")
			return gomilter.RespAccept, nil
		}
		if p.RequireTLS && macros["{tls_version}"] == "" && !inPrefixes(client, p.TLSExemptNetworks) {
			return nil, replyNeedTLS
		}
		return gomilter.RespContinue, nil
	})
}

func (s *session) RcptTo(rcptTo string, m *gomilter.Modifier) (gomilter.Response, error) {
	return s.guard("rcpt", func() (gomilter.Response, error) {
		if s.msg != nil {
			s.msg.addRecipient(rcptTo)
		}
		return gomilter.RespContinue, nil
	})
}

func (s *session) Header(name string, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	return s.guard("header", func() (gomilter.Response, error) {
		if s.msg != nil {
			s.msg.addHeader(name, value, nil)
		}
		return gomilter.RespContinue, nil
	})
}

func (s *session) Headers(_ textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	return s.guard("headers", func() (gomilter.Response, error) {
		if s.msg == nil {
			return gomilter.RespContinue, nil
		}
		if id := m.Macros["i"]; id != "" && s.msg.queueID == "" {
			s.msg.setQueueID(id)
		}
		return gomilter.RespContinue, s.msg.endHeaders(nil)
	})
}

func (s *session) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	return s.guard("body", func() (gomilter.Response, error) {
		if s.msg == nil {
			return gomilter.RespContinue, nil
		}
		return gomilter.RespContinue, s.msg.bodyChunk(chunk)
	})
}

func (s *session) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	return s.guard("eom", func() (gomilter.Response, error) {
		msg := s.msg
		if msg == nil {
			return gomilter.RespAccept, nil
		}
		if id := m.Macros["i"]; id != "" && msg.queueID == "" {
			msg.setQueueID(id)
		}
		if err := msg.finish(m, true); err != nil {
			return nil, err
		}
		msg.logVerdict("accepted", nil)
		s.f.cfg.Events.MessageDone(msg.verdict.event(), "")
		s.endMessage()
		return gomilter.RespAccept, nil
	})
}

func (s *session) Abort(m *gomilter.Modifier) error {
	s.endMessage()
	return nil
}

func (m *message) setQueueID(id string) {
	m.queueID = strings.TrimSpace(id)
}
