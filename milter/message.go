package milter

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
)

// editor applies a message's verdict: go-milter's Modifier in the daemon, a
// rewriting writer in the offline seal tool. ChangeHeader's index counts
// the headers of that name from 1; an empty value deletes the header.
type editor interface {
	ChangeHeader(index int, name, value string) error
	AddHeader(name, value string) error
	ReplaceBody(chunk []byte) error
}

type verdict int

const (
	verdictUndecided verdict = iota // before the end of the headers
	verdictPass                     // not triggered: leave as is
	verdictStrip                    // triggered, all recipients internal
	verdictSeal                     // triggered, some recipient external
)

func (v verdict) String() string {
	return [...]string{"undecided", "pass", "internal", "sealed"}[v]
}

type headerField struct {
	name, value string
	raw         []byte // the field as received, when the caller has it
	index       int    // 1-based among fields of the same name
}

// message is the state of one message, from MAIL FROM to its verdict. A
// new one is made for every message; nothing of it outlives the message.
type message struct {
	f       *Filter
	log     *slog.Logger
	queueID string
	sender  string
	rcpts   []string
	forced  bool // offline seal: seal whatever the subject and recipients

	headers  []headerField
	perName  map[string]int
	bodySize int64
	verdict  verdict
	seal     *sealing
}

// sealing is the state of a message being sealed. The spool only ever
// holds ciphertext.
type sealing struct {
	keyID keystore.KeyID
	dek   []byte
	hdr   envelope.Header
	spool *spool
	enc   *envelope.Writer
}

func (f *Filter) newMessage(sender, queueID string) *message {
	m := &message{f: f, sender: sender, queueID: queueID, perName: map[string]int{}}
	m.log = f.cfg.Logger.With("queue_id", queueID)
	return m
}

func (m *message) addRecipient(addr string) {
	m.rcpts = append(m.rcpts, addr)
}

func (m *message) addHeader(name, value string, raw []byte) {
	key := strings.ToLower(name)
	m.perName[key]++
	m.headers = append(m.headers, headerField{name: name, value: value, raw: raw, index: m.perName[key]})
}

// triggered reports whether the sender asked for encryption.
func (m *message) triggered() bool {
	p := m.f.cfg.Policy
	for _, h := range m.headers {
		switch {
		case m.f.tag != nil && strings.EqualFold(h.name, "Subject") && m.f.tag.in(h.value):
			return true
		case p.TriggerHeader != "" && strings.EqualFold(h.name, p.TriggerHeader) && triggerValue(h.value):
			return true
		}
	}
	return false
}

func triggerValue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(unfold(v))) {
	case "yes", "true", "1":
		return true
	}
	return false
}

func (m *message) anyExternal() bool {
	for _, r := range m.rcpts {
		if !m.f.isInternal(r) {
			return true
		}
	}
	return false
}

// endHeaders decides the verdict. When the message is to be sealed it
// starts the envelope and feeds it the header section; sep is the blank
// line that ends it as received (nil: CRLF).
func (m *message) endHeaders(sep []byte) error {
	switch {
	case m.forced || (m.triggered() && m.anyExternal()):
		m.verdict = verdictSeal
	case m.triggered():
		m.verdict = verdictStrip
		return nil
	default:
		m.verdict = verdictPass
		return nil
	}
	if err := m.startSealing(); err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, h := range m.headers {
		if h.raw != nil {
			buf.Write(h.raw)
			continue
		}
		// The MTA hands over name and value without the blank after the
		// colon; line ends inside a folded value may be LF or CRLF.
		buf.WriteString(h.name)
		buf.WriteString(": ")
		buf.WriteString(strings.ReplaceAll(strings.ReplaceAll(h.value, "\r\n", "\n"), "\n", "\r\n"))
		buf.WriteString("\r\n")
	}
	if sep == nil {
		sep = []byte("\r\n")
	}
	buf.Write(sep)
	if _, err := m.seal.enc.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("seal headers: %w", err)
	}
	return nil
}

func (m *message) startSealing() error {
	s := &sealing{dek: make([]byte, envelope.DataKeySize)}
	if _, err := io.ReadFull(m.f.cfg.Rand, s.keyID[:]); err != nil {
		return fmt.Errorf("key id: %w", err)
	}
	if _, err := io.ReadFull(m.f.cfg.Rand, s.dek); err != nil {
		return fmt.Errorf("data key: %w", err)
	}
	hdr, err := envelope.NewHeader(envelope.KeyID(s.keyID), m.f.cfg.Rand)
	if err != nil {
		return err
	}
	s.hdr = hdr
	s.spool = newSpool(m.f.cfg.SpoolDir, m.f.cfg.SpoolMemory)
	m.seal = s
	s.enc, err = envelope.Seal(s.spool, s.dek, hdr)
	if err != nil {
		return fmt.Errorf("start envelope: %w", err)
	}
	return nil
}

// bodyChunk counts the body and, when sealing, encrypts it.
func (m *message) bodyChunk(p []byte) error {
	m.bodySize += int64(len(p))
	if limit := m.f.cfg.Policy.MaxMessageSize; m.bodySize > limit {
		return replyTooBig(limit)
	}
	if m.seal == nil {
		return nil
	}
	if _, err := m.seal.enc.Write(p); err != nil {
		return fmt.Errorf("seal body: %w", err)
	}
	return nil
}

// finish applies the verdict through ed. For a sealed message it commits
// the key before it touches the message, so nothing is ever accepted whose
// key could be lost. lf writes the new body with bare LF line ends, which
// go-milter would otherwise make out of CRLF with a pass over every chunk.
func (m *message) finish(ed editor, lf bool) error {
	switch m.verdict {
	case verdictPass:
		return nil
	case verdictStrip:
		return m.editHeaders(ed, "")
	}
	s := m.seal
	if err := s.enc.Close(); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	now := m.f.cfg.Now()
	wrapped, err := m.f.cfg.MasterKey.Wrap(s.keyID, s.dek, m.f.cfg.Rand)
	if err != nil {
		return err
	}
	rec := keystore.KeyRecord{
		ID:          s.keyID,
		WrappedDEK:  wrapped,
		MasterKeyID: m.f.cfg.MasterKey.ID(),
		Sender:      m.sender,
		Recipients:  m.rcpts,
		Created:     now,
		Expires:     now.Add(m.f.cfg.KeyLifetime),
		MessageID:   m.headerText("Message-ID"),
		Size:        m.bodySize,
	}
	if err := m.f.commitKey(rec); err != nil {
		return fmt.Errorf("commit key: %w", err)
	}
	boundary, err := m.boundary()
	if err != nil {
		return err
	}
	if err := m.editHeaders(ed, envelope.ContentType(boundary)); err != nil {
		return err
	}
	env, err := s.spool.Reader()
	if err != nil {
		return err
	}
	fromText, _ := decodeHeader(m.headerText("From"))
	notice := envelope.Notice{
		From:      fromText,
		Sender:    m.sender,
		Date:      now,
		PortalURL: m.f.cfg.PortalURL,
		KeyID:     envelope.KeyID(s.keyID),
		Boundary:  boundary,
		LF:        lf,
	}
	body := &bodyReplacer{send: ed.ReplaceBody}
	if err := envelope.WriteBody(body, notice, env); err != nil {
		return fmt.Errorf("write sealed body: %w", err)
	}
	return body.Close()
}

func (m *message) boundary() (string, error) {
	var b [12]byte
	if _, err := io.ReadFull(m.f.cfg.Rand, b[:]); err != nil {
		return "", fmt.Errorf("boundary: %w", err)
	}
	return "securemail-" + hex.EncodeToString(b[:]), nil
}

func (m *message) headerText(name string) string {
	for _, h := range m.headers {
		if strings.EqualFold(h.name, name) {
			return strings.TrimSpace(unfold(h.value))
		}
	}
	return ""
}

// editHeaders strips the tag from every tagged Subject and removes the
// trigger header. With a content type (sealing), it also replaces the
// MIME headers of the original body, whose content is now in the envelope.
// It walks the fields from last to first, so deleting one never shifts the
// index of a field it has yet to edit, however the MTA counts deleted ones.
func (m *message) editHeaders(ed editor, contentType string) error {
	p := m.f.cfg.Policy
	haveMIMEVersion, haveContentType := false, false
	for i := len(m.headers) - 1; i >= 0; i-- {
		h := m.headers[i]
		var err error
		switch {
		case strings.EqualFold(h.name, "Subject") && m.f.tag != nil && m.f.tag.in(h.value):
			err = ed.ChangeHeader(h.index, h.name, m.f.tag.strip(h.value))
		case p.TriggerHeader != "" && strings.EqualFold(h.name, p.TriggerHeader):
			err = ed.ChangeHeader(h.index, h.name, "")
		case contentType == "":
		case strings.EqualFold(h.name, "MIME-Version"):
			haveMIMEVersion = true
		case strings.EqualFold(h.name, "Content-Type") && h.index == 1:
			err = ed.ChangeHeader(h.index, h.name, contentType)
			haveContentType = true
		case len(h.name) > 8 && strings.EqualFold(h.name[:8], "Content-"):
			err = ed.ChangeHeader(h.index, h.name, "")
		}
		if err != nil {
			return fmt.Errorf("edit header %s: %w", h.name, err)
		}
	}
	if contentType == "" {
		return nil
	}
	if !haveMIMEVersion {
		if err := ed.AddHeader("MIME-Version", "1.0"); err != nil {
			return fmt.Errorf("add MIME-Version: %w", err)
		}
	}
	if !haveContentType {
		if err := ed.AddHeader("Content-Type", contentType); err != nil {
			return fmt.Errorf("add Content-Type: %w", err)
		}
	}
	return nil
}

// close releases what the message holds: the spool file and the data key.
func (m *message) close() {
	if m.seal == nil {
		return
	}
	clear(m.seal.dek)
	if err := m.seal.spool.Close(); err != nil {
		m.log.Warn("spool cleanup failed", "err", err)
	}
	m.seal = nil
}

// logVerdict writes the one line per message an operator reads.
func (m *message) logVerdict(outcome string, err error) {
	attrs := []any{"verdict", m.verdict.String(), "outcome", outcome,
		"from", m.sender, "rcpts", len(m.rcpts), "size", m.bodySize}
	if m.seal != nil && err == nil {
		// Only an accepted message's key was committed; a refused one's
		// id names nothing an operator could look up.
		attrs = append(attrs, "key_id", m.seal.keyID.String())
	}
	var r *Reply
	if errors.As(err, &r) && r.Cause == nil {
		// A policy refusal: the sender's program shows why; not an error here.
		m.log.Info("message refused", append(attrs, "reply", r.Code)...)
		return
	}
	if err != nil {
		m.log.Error("message refused", append(attrs, "err", err)...)
		return
	}
	m.log.Info("message decided", attrs...)
}

// replaceChunk is the most body one ReplaceBody call sends: the library
// turns CRLF into LF within one call, so chunks end at a line end.
const replaceChunk = 64 << 10

type bodyReplacer struct {
	send func([]byte) error
	buf  []byte
}

func (b *bodyReplacer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := replaceChunk - len(b.buf)
		take := min(room, len(p))
		b.buf = append(b.buf, p[:take]...)
		p = p[take:]
		if len(b.buf) == replaceChunk {
			if err := b.flushLines(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// flushLines sends the buffer up to its last LF, keeping the rest. A
// buffer without any LF is sent whole but for a trailing CR.
func (b *bodyReplacer) flushLines() error {
	cut := bytes.LastIndexByte(b.buf, '\n') + 1
	if cut == 0 {
		cut = len(b.buf)
		if b.buf[cut-1] == '\r' {
			cut--
		}
	}
	if err := b.send(b.buf[:cut]); err != nil {
		return fmt.Errorf("replace body: %w", err)
	}
	b.buf = b.buf[:copy(b.buf, b.buf[cut:])]
	return nil
}

func (b *bodyReplacer) Close() error {
	if len(b.buf) == 0 {
		return nil
	}
	if err := b.send(b.buf); err != nil {
		return fmt.Errorf("replace body: %w", err)
	}
	b.buf = b.buf[:0]
	return nil
}
