package portal

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/emersion/go-message/mail"
)

// maxReplyBody is the most text a reply may carry.
const maxReplyBody = 1 << 20

// replyAttachmentLimit is how many bytes of files a reply may carry so
// that, base64-encoded in a message, it stays within maxMessage.
func replyAttachmentLimit(maxMessage int64) int64 {
	return max(0, (maxMessage-maxReplyBody-64<<10)/78*76/4*3)
}

var errReplyTooLarge = errors.New("reply larger than the limit")

// POST /m/{token}/reply: multipart/form-data with all (optional), body and
// files, in that order (the order of the form). Files are streamed into
// the outgoing SMTP transaction; a reply that turns out too large is
// abandoned before its end, so nothing is sent.
func (h *handler) reply(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	s, rec := h.reader(w, r)
	if s == nil {
		return
	}
	ctx := r.Context()
	done, ok := h.guardUpload(w, r)
	if !ok {
		return
	}
	defer done()
	fileLimit := replyAttachmentLimit(h.opts.MaxMessageSize)
	r.Body = http.MaxBytesReader(w, r.Body, fileLimit+maxReplyBody+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		h.fail(w, r, pageReplyUnreadable(err))
		return
	}
	var all bool
	var body string
	var firstFile *multipart.Part
	for firstFile == nil {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			h.fail(w, r, h.replyPage(err))
			return
		}
		switch p.FormName() {
		case "all":
			v, err := readSmall(p, 16)
			if err != nil {
				h.fail(w, r, h.replyPage(err))
				return
			}
			all = v == "1" && h.opts.ReplyAll
		case "body":
			if body, err = readSmall(p, maxReplyBody); err != nil {
				h.fail(w, r, h.replyPage(errReplyTooLarge))
				return
			}
		case "files":
			if p.FileName() == "" {
				io.Copy(io.Discard, io.LimitReader(p, 1<<10))
				continue
			}
			firstFile = p
			continue
		}
		p.Close()
	}
	body = strings.ReplaceAll(body, "\r\n", "\n")
	if strings.TrimSpace(body) == "" && firstFile == nil {
		h.fail(w, r, pageReplyEmpty())
		return
	}

	orig, err := h.original(r, token)
	if err != nil {
		h.fail(w, r, envelopePage(err))
		return
	}
	to := []string{orig.FromAddress}
	if orig.FromAddress == "" {
		to[0] = rec.Sender
	}
	if all {
		to = append(to, orig.ToAddresses...)
		to = append(to, orig.CcAddresses...)
	}
	to = uniqueAddresses(to, s.Email)
	if len(to) == 0 || to[0] == "" {
		h.fail(w, r, pageNobodyToReply())
		return
	}
	// The reply budget is spent before anything is sent, so a burst of
	// replies sends no more than the same replies one after another.
	if res, err := h.hit(ctx, "reply:"+s.Email, h.opts.Limits.RepliesPerAccount); err != nil {
		h.fail(w, r, pageStoreFailed("throttle", err))
		return
	} else if !res.Allowed {
		h.fail(w, r, pageTooManyReplies(h.opts.Limits.RepliesPerAccount.N, res.RetryAfter))
		return
	}
	subject := h.withoutTag(orig.Subject)
	if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(subject)), "re:") {
		subject = "Re: " + subject
	}
	hdr, err := newHeader(s.Email, to, subject, h.now())
	if err != nil {
		h.fail(w, r, pageStoreFailed("message id", err))
		return
	}
	// Mark the reply with the milter's trigger and let the milter decide:
	// it seals a reply that leaves the host's domains and strips the
	// mark from one that stays inside.
	if h.opts.TriggerHeader != "" {
		hdr.Set(h.opts.TriggerHeader, "yes")
	} else if h.opts.SubjectTag != "" {
		hdr.SetSubject(subject + " " + h.opts.SubjectTag)
	}
	if orig.MessageID != "" {
		hdr.Set("In-Reply-To", orig.MessageID)
		hdr.Set("References", strings.TrimSpace(orig.References+" "+orig.MessageID))
	}
	var names []string
	err = h.opts.Mailer.Send(ctx, s.Email, to, func(wr io.Writer) error {
		if firstFile == nil {
			return writeTextMessage(wr, hdr, body)
		}
		return writeReplyWithFiles(wr, hdr, body, firstFile, mr, fileLimit, &names)
	})
	if err != nil {
		h.fail(w, r, h.replyPage(err))
		return
	}
	h.log.Info("portal: reply sent", "key_id", rec.ID.String(), "recipients", len(to), "attachments", len(names))
	h.render(w, r, http.StatusOK, "sent", view{Title: "Your reply was sent", Email: s.Email, SignedIn: true, Token: token,
		Sent: &sentReply{To: to, Subject: subject, Attachments: names}, Org: senderDomain(rec.Sender), Back: messagePath(token)})
}

// replyPage explains a reply that was cut off or not sent.
func (h *handler) replyPage(err error) *pageError {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, errTooSlow):
		return pageUploadTooSlow(err)
	case errors.As(err, &tooBig), errors.Is(err, errReplyTooLarge):
		return pageReplyTooLarge(replyAttachmentLimit(h.opts.MaxMessageSize), err)
	}
	return pageReplyNotSent(err)
}

// original parses the message's headers again for a reply.
func (h *handler) original(r *http.Request, token string) (*Message, error) {
	pt, _, err := h.plaintext(r.Context(), token)
	if err != nil {
		return nil, err
	}
	defer pt.Close()
	msg, err := ParseMessage(pt, RenderLimits{MaxInlineText: 1, MaxInlineHTML: 1}, func(string) string { return "" })
	if rerr := readErr(pt); rerr != nil {
		return nil, rerr
	}
	if err != nil {
		return nil, errors.Join(errEnvelopeDamaged, err)
	}
	return msg, nil
}

// uniqueAddresses drops duplicates (ignoring case), empty entries and
// self.
func uniqueAddresses(addrs []string, self string) []string {
	seen := map[string]bool{strings.ToLower(self): true}
	var out []string
	for _, a := range addrs {
		k := strings.ToLower(a)
		if a == "" || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, a)
	}
	return out
}

func writeReplyWithFiles(w io.Writer, hdr mail.Header, body string, first *multipart.Part, mr *multipart.Reader, limit int64, names *[]string) error {
	mw, err := mail.CreateWriter(w, hdr)
	if err != nil {
		return err
	}
	var th mail.InlineHeader
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	tw, err := mw.CreateSingleInline(th)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(tw, strings.ReplaceAll(body, "\n", "\r\n")); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	remaining := limit
	p := first
	for p != nil {
		if p.FormName() == "files" && p.FileName() != "" {
			name := cleanFilename(p.FileName())
			ct := "application/octet-stream"
			if t, _, err := mime.ParseMediaType(p.Header.Get("Content-Type")); err == nil && strings.Count(t, "/") == 1 {
				ct = t
			}
			var ah mail.AttachmentHeader
			ah.SetContentType(ct, nil)
			ah.SetFilename(name)
			ah.Set("Content-Transfer-Encoding", "base64")
			aw, err := mw.CreateAttachment(ah)
			if err != nil {
				return err
			}
			n, err := io.Copy(aw, io.LimitReader(p, remaining+1))
			if err != nil {
				return err
			}
			if remaining -= n; remaining < 0 {
				return errReplyTooLarge
			}
			if err := aw.Close(); err != nil {
				return err
			}
			*names = append(*names, name)
		}
		p.Close()
		if p, err = mr.NextPart(); err == io.EOF {
			p = nil
		} else if err != nil {
			return err
		}
	}
	return mw.Close()
}

// cleanFilename makes an uploaded file's name safe the way the read page
// cleans a message's attachment names (cleanAttachmentName): the last path
// element, no control characters and no bidi or other format characters,
// which would let "x\u202Egpj.exe" look like a picture to the person it
// is sent to.
func cleanFilename(name string) string {
	if name = cleanAttachmentName(name); name == "" {
		return "attachment"
	}
	return name
}

// senderDomain names the organisation a reply goes back to, for the
// confirmation page: the domain of the message's sender.
func senderDomain(sender string) string {
	if at := strings.LastIndexByte(sender, '@'); at >= 0 && at < len(sender)-1 {
		return sender[at+1:]
	}
	return "the organisation that sent you the message"
}
