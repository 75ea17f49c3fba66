package milter

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
)

// editor applies a message's verdict: go-milter's Modifier in the daemon, a
// rewriting writer in the offline seal tool. ChangeHeader's index counts
// the headers of that name from 1; an empty value deletes the header.
// ReplaceBody must not keep chunk once it returns: its buffer is reused.
type editor interface {
	ChangeHeader(index int, name, value string) error
	AddHeader(name, value string) error
	ReplaceBody(chunk []byte) error
}

type verdict int

const (
	verdictUndecided   verdict = iota // before the end of the headers
	verdictPass                       // not triggered: leave as is
	verdictStrip                      // triggered, all recipients internal
	verdictSeal                       // triggered, some recipient external
	verdictNotEntitled                // triggered by a sender without the feature
)

func (v verdict) String() string {
	return [...]string{"undecided", "pass", "internal", "sealed", "not entitled"}[v]
}

type headerField struct {
	name, value string
	raw         []byte // the field as received, when the caller has it
}

// message is the state of one message, from MAIL FROM to its verdict. A
// new one is made for every message; nothing of it outlives the message.
type message struct {
	f       *Filter
	pol     *policySnapshot // the policy in force at MAIL FROM, to the end
	auth    string          // {auth_authen}, empty without SMTP AUTH
	queueID string          // on every log line of the message
	sender  string
	rcpts   []string
	forced  bool // offline seal: seal whatever the subject and recipients

	headers  []headerField
	bodySize int64
	verdict  verdict
	seal     *sealing
}

// sealing is the state of a message being sealed. The spool only ever
// holds ciphertext.
type sealing struct {
	start time.Time // for the sealing duration
	keyID keystore.KeyID
	dek   []byte
	hdr   envelope.Header
	spool *spool
	enc   *envelope.Writer
}

func (f *Filter) newMessage(sender, queueID string) *message {
	return &message{f: f, pol: f.policy.Load(), sender: sender, queueID: queueID}
}

// logEnabled reports whether lines at level are written. Callers check it
// before they build attributes that allocate, so a message that logs
// nothing pays nothing for its lines (see BENCHMARKS.md, section "Issue 5:
// profiled fixes").
func (m *message) logEnabled(level slog.Level) bool {
	return m.f.cfg.Logger.Enabled(context.Background(), level)
}

// logAttrs writes one log line about the message, with its queue id. It
// hands the record to the handler itself, without a source position:
// Logger.LogAttrs would walk the stack for one, the dearest part of the
// line (see BENCHMARKS.md, section "Issue 5: profiled fixes"), and it
// would only ever name this helper.
func (m *message) logAttrs(level slog.Level, msg string, attrs ...slog.Attr) {
	if !m.logEnabled(level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, 0) // the log's clock, as slog's own
	r.AddAttrs(slog.String("queue_id", m.queueID))
	r.AddAttrs(attrs...)
	_ = m.f.cfg.Logger.Handler().Handle(context.Background(), r) // as Logger.Log, which ignores it too
}

func (m *message) addRecipient(addr string) {
	m.rcpts = append(m.rcpts, addr)
}

func (m *message) addHeader(name, value string, raw []byte) {
	if m.headers == nil {
		m.headers = make([]headerField, 0, 16)
	}
	m.headers = append(m.headers, headerField{name: name, value: value, raw: raw})
}

// triggered reports whether the sender asked for encryption.
func (m *message) triggered() bool {
	p := m.pol
	for _, h := range m.headers {
		switch {
		case p.tag != nil && strings.EqualFold(h.name, "Subject") && p.tag.in(h.value):
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
		if !m.pol.isInternal(r) {
			return true
		}
	}
	return false
}

// endHeaders decides the verdict. When the message is to be sealed it
// starts the envelope and feeds it the header section; sep is the blank
// line that ends it as received (nil: CRLF).
func (m *message) endHeaders(sep []byte) error {
	triggered := m.forced || m.triggered()
	switch {
	case !triggered:
		m.verdict = verdictPass
		return nil
	case !m.forced && !m.pol.entitled(identity(m.auth, m.sender)):
		m.verdict = verdictNotEntitled
		return replyNotEntitled(m.pol.SubjectTag)
	case m.forced || m.anyExternal():
		m.verdict = verdictSeal
	default:
		m.verdict = verdictStrip
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
	s := &sealing{start: time.Now(), dek: make([]byte, envelope.DataKeySize)}
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
	if limit := m.pol.MaxMessageSize; m.bodySize > limit {
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
	wrapped, masterKeyID, err := m.f.cfg.MasterKey.WrapKey(s.keyID, s.dek, m.f.cfg.Rand)
	if err != nil {
		return err
	}
	rec := keystore.KeyRecord{
		ID:          s.keyID,
		WrappedDEK:  wrapped,
		MasterKeyID: masterKeyID,
		Sender:      m.sender,
		Recipients:  m.rcpts,
		Created:     now,
		Expires:     now.Add(m.f.cfg.KeyLifetime),
		MessageID:   m.headerText("Message-ID"),
		Size:        m.bodySize,
	}
	brand := m.pol.brandFor(m.sender)
	portalURL := brand.PortalURL
	if portalURL == "" {
		portalURL = m.f.cfg.PortalURL
	}
	var link string
	if m.f.cfg.LinkFallback {
		// One transaction for both: a committed key that says it has a
		// copy always has one, and the message waits for one durable
		// commit, not two.
		if link, err = m.commitKeyWithCopy(&rec, portalURL); err != nil {
			return fmt.Errorf("commit key with server copy: %w", err)
		}
	} else if err := m.f.commitKey(rec); err != nil {
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
		Lang:      brand.Language,
		Link:      link,
		LinkUntil: rec.CopyUntil,
		From:      fromText,
		Sender:    m.sender,
		Date:      now,
		PortalURL: portalURL,
		Brand:     brand.Brand,
		KeyID:     envelope.KeyID(s.keyID),
		Boundary:  boundary,
		LF:        lf,
	}
	body := newBodyReplacer(ed.ReplaceBody)
	defer body.release()
	if err := envelope.WriteBody(body, notice, env); err != nil {
		return fmt.Errorf("write sealed body: %w", err)
	}
	if err := body.Close(); err != nil {
		return err
	}
	m.f.cfg.Events.Sealed(time.Since(s.start), m.bodySize)
	return nil
}

// linkTokenBytes is the randomness of a phone link: 128 bits, like a
// session id, and unrelated to the key id, which the attachment shows.
const linkTokenBytes = 16

// commitKeyWithCopy commits rec together with the envelope's server copy
// behind a new link, and returns the link.
func (m *message) commitKeyWithCopy(rec *keystore.KeyRecord, portalURL string) (string, error) {
	var raw [linkTokenBytes]byte
	if _, err := io.ReadFull(m.f.cfg.Rand, raw[:]); err != nil {
		return "", fmt.Errorf("link token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	until := rec.Created.Add(m.f.cfg.LinkRetention)
	if until.After(rec.Expires) {
		until = rec.Expires
	}
	env, err := m.seal.spool.Reader()
	if err != nil {
		return "", err
	}
	c := keystore.ServerCopy{KeyID: rec.ID, LinkDigest: keystore.LinkDigest(token), Created: rec.Created, Until: until, Size: m.seal.spool.size}
	rec.CopyUntil = until
	if err := m.f.commitKeyWithCopy(*rec, c, env); err != nil {
		return "", err
	}
	return strings.TrimSuffix(portalURL, "/") + "/l/" + token, nil
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
	p := m.pol
	// index[i] is field i's 1-based position among the fields of its name,
	// as ChangeHeader counts them. Only a message that is edited needs it.
	index := make([]int, len(m.headers))
	perName := make(map[string]int, len(m.headers))
	for i, h := range m.headers {
		key := strings.ToLower(h.name)
		perName[key]++
		index[i] = perName[key]
	}
	haveMIMEVersion, haveContentType := false, false
	for i := len(m.headers) - 1; i >= 0; i-- {
		h := m.headers[i]
		var err error
		switch {
		case strings.EqualFold(h.name, "Subject") && p.tag != nil && p.tag.in(h.value):
			err = ed.ChangeHeader(index[i], h.name, p.tag.strip(h.value))
		case p.TriggerHeader != "" && strings.EqualFold(h.name, p.TriggerHeader):
			err = ed.ChangeHeader(index[i], h.name, "")
		case contentType == "":
		case strings.EqualFold(h.name, "MIME-Version"):
			haveMIMEVersion = true
		case strings.EqualFold(h.name, "Content-Type") && index[i] == 1:
			err = ed.ChangeHeader(index[i], h.name, contentType)
			haveContentType = true
		case len(h.name) > 8 && strings.EqualFold(h.name[:8], "Content-"):
			err = ed.ChangeHeader(index[i], h.name, "")
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
		m.logAttrs(slog.LevelWarn, "spool cleanup failed", slog.Any("err", err))
	}
	m.seal = nil
}

// logVerdict writes the one line per message an operator reads.
func (m *message) logVerdict(outcome string, err error) {
	level, msg := slog.LevelInfo, "message decided"
	r, policy := policyRefusal(err)
	switch {
	case policy:
		// A policy refusal: the sender's program shows why; not an error here.
		msg = "message refused"
	case err != nil:
		level, msg = slog.LevelError, "message refused"
	}
	if !m.logEnabled(level) {
		return
	}
	var buf [7]slog.Attr
	attrs := append(buf[:0], slog.String("verdict", m.verdict.String()), slog.String("outcome", outcome),
		slog.String("from", m.sender), slog.Int("rcpts", len(m.rcpts)), slog.Int64("size", m.bodySize))
	if m.seal != nil && err == nil {
		// Only an accepted message's key was committed; a refused one's
		// id names nothing an operator could look up.
		attrs = append(attrs, slog.String("key_id", m.seal.keyID.String()))
	}
	switch {
	case policy:
		attrs = append(attrs, slog.Int("reply", r.Code))
	case err != nil:
		attrs = append(attrs, slog.Any("err", err))
	}
	m.logAttrs(level, msg, attrs...)
}

// policyRefusal returns the reply of a refusal by policy, which is no error
// of the filter's. It lives apart from logVerdict so that the message
// decided without an error does not pay errors.As's allocation.
func policyRefusal(err error) (*Reply, bool) {
	if err == nil {
		return nil, false
	}
	var r *Reply
	if errors.As(err, &r) && r.Cause == nil {
		return r, true
	}
	return nil, false
}

// replaceChunk is the most body one ReplaceBody call sends: the library
// turns CRLF into LF within one call, so chunks end at a line end.
const replaceChunk = 64 << 10

// bodyReplacer cuts the replacement body into pieces of at most
// replaceChunk bytes that end at a line end. Small writes (the notice, the
// page around the armor) are gathered in buf. A large write of whole lines
// (the armor, a block of 65 520 bytes or less at a time) that follows
// whole lines goes out as it is, without a copy.
type bodyReplacer struct {
	send func([]byte) error
	buf  []byte // never longer than replaceChunk, so never regrown
}

// replaceBuffers keeps bodyReplacer buffers between messages: growing one
// from nothing for every tagged message was a tenth of the bytes the
// milter allocated per small message.
var replaceBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, replaceChunk)
	return &b
}}

func newBodyReplacer(send func([]byte) error) *bodyReplacer {
	return &bodyReplacer{send: send, buf: (*replaceBuffers.Get().(*[]byte))[:0]}
}

// release gives the buffer back; send does not keep the slices it is
// given (editor's contract: go-milter copies them into its packet, the
// offline rewriter into its writer).
func (b *bodyReplacer) release() {
	buf := b.buf[:0]
	b.buf = nil
	replaceBuffers.Put(&buf)
}

func (b *bodyReplacer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= replaceChunk/2 && (len(b.buf) == 0 || b.buf[len(b.buf)-1] == '\n') {
		if err := b.sendAll(); err != nil {
			return 0, err
		}
		for len(p) > replaceChunk || (len(p) > 0 && p[len(p)-1] == '\n') {
			cut := lineCut(p[:min(len(p), replaceChunk)])
			if err := b.sendPiece(p[:cut]); err != nil {
				return n - len(p), err
			}
			p = p[cut:]
		}
	}
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

// lineCut is where a piece of at most replaceChunk bytes taken from the
// front of p ends: after its last LF, or, with no LF at all, at its end
// but for a trailing CR, so that a CRLF is never split.
func lineCut(p []byte) int {
	cut := bytes.LastIndexByte(p, '\n') + 1
	if cut == 0 {
		cut = len(p)
		if p[cut-1] == '\r' && cut > 1 {
			cut--
		}
	}
	return cut
}

// flushLines sends the buffer up to its last LF, keeping the rest. A
// buffer without any LF is sent whole but for a trailing CR.
func (b *bodyReplacer) flushLines() error {
	cut := lineCut(b.buf)
	if err := b.sendPiece(b.buf[:cut]); err != nil {
		return err
	}
	b.buf = b.buf[:copy(b.buf, b.buf[cut:])]
	return nil
}

// sendAll sends whatever is buffered.
func (b *bodyReplacer) sendAll() error {
	if len(b.buf) == 0 {
		return nil
	}
	if err := b.sendPiece(b.buf); err != nil {
		return err
	}
	b.buf = b.buf[:0]
	return nil
}

func (b *bodyReplacer) sendPiece(p []byte) error {
	if err := b.send(p); err != nil {
		return fmt.Errorf("replace body: %w", err)
	}
	return nil
}

func (b *bodyReplacer) Close() error {
	return b.sendAll()
}
