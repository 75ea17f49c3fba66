package portal

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/securemail/securemail/internal/catalog"
	"github.com/securemail/securemail/keystore"
)

// readNoticeForever is the window of a read notice's Hit for a key that
// never expires: longer than any message is kept.
const readNoticeForever = 100 * 365 * 24 * time.Hour

// readNoticeKey is the Hit key that lets one notice through per message
// and reader.
func readNoticeKey(id keystore.KeyID, reader string) string {
	return "read-notice:" + id.String() + ":" + strings.ToLower(reader)
}

// noteRead queues the read notice for the first read of rec by reader.
// The Hit is the check: of any number of simultaneous first reads, on
// any number of portal hosts, one is allowed. Its window lasts as long as
// the key, so the entry is swept with it. A notice that cannot be queued
// or sent gives the Hit back, so the reader's next read tries again. A
// failure here never stops the read: the notice is a courtesy, the audit
// trail (RecordRead) is the record.
func (h *handler) noteRead(ctx context.Context, rec keystore.KeyRecord, reader, subject string, at time.Time) {
	if !h.opts.ReadNotice || rec.Sender == "" {
		return
	}
	window := readNoticeForever
	if !rec.Expires.IsZero() {
		window = max(rec.Expires.Sub(at), 0) + time.Hour
	}
	key := readNoticeKey(rec.ID, reader)
	res, err := h.opts.Store.Hit(ctx, key, at, window, 1)
	if err != nil {
		h.log.Warn("portal: read notice not sent: store failed", "key_id", rec.ID.String(), "err", err)
		return
	}
	if !res.Allowed {
		return
	}
	giveBack := func(why string, err error) {
		h.log.Warn("portal: read notice not sent", "key_id", rec.ID.String(), "why", why, "err", err)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := h.opts.Store.ResetHits(rctx, key); err != nil {
			h.log.Warn("portal: read notice: could not allow a retry", "key_id", rec.ID.String(), "err", err)
		}
	}
	err = h.mail.add(func(ctx context.Context) {
		if err := h.sendReadNotice(ctx, rec, reader, subject, at); err != nil {
			giveBack("mail failed", err)
			return
		}
		h.log.Info("portal: read notice sent", "key_id", rec.ID.String(), "reader", reader)
	})
	if err != nil {
		giveBack("mail queue full", err)
	}
}

// sendReadNotice mails rec's sender that reader read the message at at:
// who, when, the key id and the subject without the tag, never a word of
// the content; in the language configured for the sender's domain. It carries the milter's trigger like every mail of the
// portal's, and refers to the original so mail programs thread it.
func (h *handler) sendReadNotice(ctx context.Context, rec keystore.KeyRecord, reader, subject string, at time.Time) error {
	l := h.senderLang(rec.Sender)
	shown := subject
	if strings.TrimSpace(shown) == "" {
		shown = catalog.Text(l, "text.readnotice.no_subject")
	}
	notice := catalog.Text(l, "text.readnotice.subject", "Subject", shown)
	if strings.TrimSpace(subject) == "" {
		notice = catalog.Text(l, "text.readnotice.subject_none")
	}
	hdr, err := newHeader(h.opts.From, []string{rec.Sender}, notice, h.now())
	if err != nil {
		return err
	}
	hdr.Set("Auto-Submitted", "auto-generated")
	if rec.MessageID != "" {
		hdr.Set("In-Reply-To", rec.MessageID)
		hdr.Set("References", rec.MessageID)
	}
	if h.opts.TriggerHeader != "" {
		hdr.Set(h.opts.TriggerHeader, "yes")
	} else if h.opts.SubjectTag != "" {
		hdr.SetSubject(notice + " " + h.opts.SubjectTag)
	}
	var b strings.Builder
	line := func(key string, nameValues ...any) { b.WriteString(catalog.Text(l, key, nameValues...) + "\n") }
	line("text.readnotice.intro", "Reader", reader)
	b.WriteString("\n")
	line("text.readnotice.subject_line", "Subject", shown)
	if !rec.Created.IsZero() {
		line("text.readnotice.sent_line", "Sent", catalog.Date(l, rec.Created))
	}
	line("text.readnotice.reader_line", "Reader", reader)
	line("text.readnotice.read_line", "Read", catalog.Date(l, at))
	line("text.readnotice.key_line", "KeyID", rec.ID)
	b.WriteString("\n")
	line("text.readnotice.once")
	line("text.readnotice.withdraw")
	return h.opts.Mailer.Send(ctx, h.opts.From, []string{rec.Sender}, func(w io.Writer) error {
		return writeTextMessage(w, hdr, b.String())
	})
}
