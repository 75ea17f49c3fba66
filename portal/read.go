package portal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
)

// POST /open: the form of SecureMessageATT.html.
func (h *handler) open(w http.ResponseWriter, r *http.Request) {
	if !h.ready(w, r) {
		return
	}
	h.uploads.Add(1)
	defer h.uploads.Done()
	// The client's budget is spent before a byte of the body is read.
	if res, err := h.hit(r.Context(), "open-client:"+h.clientIP(r), h.opts.Limits.UploadsPerClient); err != nil {
		h.fail(w, r, pageStoreFailed("throttle", err))
		return
	} else if !res.Allowed {
		h.fail(w, r, pageTooManyOpened(res.RetryAfter))
		return
	}
	done, ok := h.guardUpload(w, r)
	if !ok {
		return
	}
	defer done()
	r.Body = http.MaxBytesReader(w, r.Body, maxUploadBody(h.spool.maxEnvelope()))
	mr, err := r.MultipartReader()
	if err != nil {
		h.fail(w, r, pageDamaged(fmt.Errorf("upload is not a multipart form: %w", err)))
		return
	}
	var version, id, token string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			h.spool.drop(r.Context(), token)
			h.fail(w, r, uploadPage(err))
			return
		}
		switch part.FormName() {
		case "v":
			version, err = readSmall(part, 16)
		case "id":
			id, err = readSmall(part, 64)
		case "envelope":
			if token != "" {
				err = errors.New("two envelopes in one form")
				break
			}
			token, err = h.spool.put(r.Context(), part, h.now())
		default:
			_, err = io.Copy(io.Discard, io.LimitReader(part, 1<<10))
		}
		part.Close()
		if err != nil {
			h.spool.drop(r.Context(), token)
			h.fail(w, r, uploadPage(err))
			return
		}
	}
	if token == "" || strings.TrimSpace(version) != "1" {
		h.spool.drop(r.Context(), token)
		h.fail(w, r, pageDamaged(errors.New("upload: form fields missing or unknown version")))
		return
	}
	keep := false
	defer func() {
		if !keep {
			h.spool.drop(r.Context(), token)
		}
	}()
	rec, err := h.checkEnvelope(r.Context(), token, strings.TrimSpace(id))
	if err != nil {
		h.fail(w, r, envelopePage(err))
		return
	}
	keep = true
	h.log.Info("portal: envelope opened", "key_id", rec.ID.String(), "remote", h.clientIP(r))
	http.Redirect(w, r, "/m/"+token, http.StatusSeeOther)
}

func readSmall(r io.Reader, max int64) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return "", err
	}
	if int64(len(b)) > max {
		return "", errors.New("form field too long")
	}
	return string(b), nil
}

// uploadPage explains an upload to /open that failed before its end.
func uploadPage(err error) *pageError {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, errTooSlow):
		return pageUploadTooSlow(err)
	case errors.Is(err, errSpoolFull):
		return pageSpoolFull(err)
	case errors.Is(err, keystore.ErrUnavailable):
		// The shared spool's database is down: nothing was wrong with
		// the upload, so do not call it damaged.
		return pageStoreFailed("spool", err)
	case errors.As(err, &tooBig), errors.Is(err, errSpoolTooLarge):
		return pageMessageTooLarge(err)
	}
	return pageDamaged(fmt.Errorf("upload failed: %w", err))
}

// Errors of checkEnvelope besides the store's.
var (
	errEnvelopeDamaged = errors.New("envelope damaged")
	errEnvelopeGone    = errors.New("envelope no longer spooled")
)

// checkEnvelope decrypts the spooled envelope once, to the end, and
// returns its key record. An envelope that fails here is never shown; one
// that passes may be streamed to the browser later without a second
// thought about tampering half-way. wantID, if set, must be the key id
// in the envelope's header.
func (h *handler) checkEnvelope(ctx context.Context, token, wantID string) (keystore.KeyRecord, error) {
	pt, rec, err := h.plaintext(ctx, token)
	if err != nil {
		return rec, err
	}
	defer pt.Close()
	if wantID != "" && !strings.EqualFold(wantID, rec.ID.String()) {
		return keystore.KeyRecord{}, fmt.Errorf("%w: form id and envelope header disagree", errEnvelopeDamaged)
	}
	if _, err := io.Copy(io.Discard, pt); err != nil {
		return rec, fmt.Errorf("%w: %v", errEnvelopeDamaged, err)
	}
	return rec, nil
}

// spooled opens token's spool file and reads the envelope header, leaving
// the file at the payload. The caller closes the file.
func (h *handler) spooled(ctx context.Context, token string) (io.ReadCloser, envelope.Header, error) {
	f, err := h.spool.get(ctx, token, h.now())
	// Unavailable first: a database that cannot be dialled on its unix
	// socket reports ENOENT, which is os.ErrNotExist too.
	if errors.Is(err, os.ErrNotExist) && !errors.Is(err, keystore.ErrUnavailable) {
		return nil, envelope.Header{}, errEnvelopeGone
	}
	if err != nil {
		// The shared spool's database, not the envelope: a store failure.
		return nil, envelope.Header{}, err
	}
	hdr, err := envelope.ReadHeader(f)
	if err != nil {
		f.Close()
		return nil, hdr, fmt.Errorf("%w: %v", errEnvelopeDamaged, err)
	}
	return f, hdr, nil
}

// envelopePage explains an envelope that cannot be opened.
func envelopePage(err error) *pageError {
	switch {
	case errors.Is(err, errEnvelopeDamaged):
		return pageDamaged(err)
	case errors.Is(err, errEnvelopeGone):
		return pageEnvelopeGone(err)
	case errors.Is(err, keystore.ErrExpired), errors.Is(err, keystore.ErrNotFound):
		// Expired keys are swept after a grace period, so an unknown key
		// is most often an old one.
		return pageExpired(fmt.Errorf("expired or unknown key: %w", err))
	case errors.Is(err, keystore.ErrRevoked):
		return pageRevoked(err)
	}
	return pageStoreFailed("key", err)
}

// tokenRecord returns the key record of the envelope spooled under token.
func (h *handler) tokenRecord(ctx context.Context, token string) (keystore.KeyRecord, error) {
	f, hdr, err := h.spooled(ctx, token)
	if err != nil {
		return keystore.KeyRecord{}, err
	}
	f.Close()
	rec, err := h.opts.Keys.Key(ctx, keystore.KeyID(hdr.KeyID))
	if err != nil {
		return rec, err
	}
	return rec, rec.Usable(h.now())
}

// plaintext opens the spooled envelope for reading. The caller closes it.
func (h *handler) plaintext(ctx context.Context, token string) (io.ReadCloser, keystore.KeyRecord, error) {
	f, hdr, err := h.spooled(ctx, token)
	if err != nil {
		return nil, keystore.KeyRecord{}, err
	}
	dek, rec, err := h.opts.MasterKey.DataKey(ctx, h.opts.Keys, keystore.KeyID(hdr.KeyID), h.now())
	if err == nil && rec.ID != keystore.KeyID(hdr.KeyID) {
		err = fmt.Errorf("%w: key record does not match the header", errEnvelopeDamaged)
	}
	if err != nil {
		f.Close()
		return nil, rec, err
	}
	er, err := envelope.Open(f, dek, hdr)
	if err != nil {
		f.Close()
		return nil, rec, fmt.Errorf("%w: %v", errEnvelopeDamaged, err)
	}
	return &readCloser{Reader: &stickyErrReader{r: er}, Closer: f}, rec, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// stickyErrReader remembers the first error that is not EOF, so a MIME
// parser that treats a read error as the end of a part cannot hide a
// failed authentication tag.
type stickyErrReader struct {
	r   io.Reader
	err error
}

func (s *stickyErrReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func readErr(rc io.ReadCloser) error {
	if c, ok := rc.(*readCloser); ok {
		if s, ok := c.Reader.(*stickyErrReader); ok && s.err != nil {
			return fmt.Errorf("%w: %v", errEnvelopeDamaged, s.err)
		}
	}
	return nil
}

// reader returns the signed-in session allowed to read the message of the
// request's {token}: nil after it answered the request itself.
func (h *handler) reader(w http.ResponseWriter, r *http.Request) (*keystore.Session, keystore.KeyRecord) {
	token := r.PathValue("token")
	s := h.sessionAt(w, r, stageAuthenticated)
	if s == nil {
		return nil, keystore.KeyRecord{}
	}
	rec, err := h.tokenRecord(r.Context(), token)
	if err != nil {
		h.fail(w, r, envelopePage(err))
		return nil, rec
	}
	if !rec.IsRecipient(s.Email) {
		h.notForYou(w, r, s)
		return nil, rec
	}
	return s, rec
}

func (h *handler) notForYou(w http.ResponseWriter, r *http.Request, s *keystore.Session) {
	h.log.Info("portal: read refused: not a recipient", "remote", h.clientIP(r))
	h.render(w, r, http.StatusForbidden, "plain", view{Title: "This message was not sent to you", Email: s.Email, SignedIn: true, Token: s.Token,
		Paragraphs: []string{
			"You are signed in as " + s.Email + ", and this message was not sent to that address.",
			"If it was sent to another address of yours, sign out and sign in with that address. A message forwarded to you cannot be opened: ask the sender to send it to you directly.",
		}})
}

// GET /m/{token}: sign in, or read.
func (h *handler) message(w http.ResponseWriter, r *http.Request) {
	if !h.ready(w, r) {
		return
	}
	token := r.PathValue("token")
	rec, err := h.tokenRecord(r.Context(), token)
	if err != nil {
		h.fail(w, r, envelopePage(err))
		return
	}
	s, err := h.session(r)
	if err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return
	}
	change := r.URL.Query().Get("change") != ""
	if change {
		// "Not you? Use another address": this device forgets the
		// address it remembered.
		h.forgetAddress(w, r)
	}
	if s == nil {
		// No session is stored until the browser gives an address: a
		// page view writes nothing. A device that remembers an address
		// goes straight to the sign-in page for it; no code is mailed
		// until the reader asks for one.
		if addr := h.remembered(r); addr != "" && !change {
			h.render(w, r, http.StatusOK, "signin", signinView(h.lang(r), &keystore.Session{Email: strings.ToLower(addr), Token: token, Stage: stageEmail}))
			return
		}
		h.emailPage(w, r, token)
		return
	}
	if s.Token != token {
		s.Token = token
		if err := h.updateSession(r, s); err != nil {
			h.fail(w, r, pageStoreFailed("session", err))
			return
		}
	}
	if s.Stage != stageAuthenticated {
		// Back to the step the browser is at. A stage no page serves
		// (one a previous version wrote) starts at the address.
		if next := stagePage[s.Stage]; next != "" && s.Email != "" && !change {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		h.emailPage(w, r, token)
		return
	}
	if !rec.IsRecipient(s.Email) {
		h.notForYou(w, r, s)
		return
	}
	h.read(w, r, s, token)
}

// stagePage is the page of each stage before sign-in.
var stagePage = map[string]string{
	stageEmail:            "/signin",
	stageCodeSent:         "/signin",
	stageCodeHeld:         "/signin",
	stageRegisterVerified: "/register/password",
	stageResetVerified:    "/reset/answers",
	stageResetAnswered:    "/reset/password",
}

func (h *handler) read(w http.ResponseWriter, r *http.Request, s *keystore.Session, token string) {
	ctx := r.Context()
	pt, rec, err := h.plaintext(ctx, token)
	if err != nil {
		h.fail(w, r, envelopePage(err))
		return
	}
	defer pt.Close()
	prefix := "/m/" + token
	msg, err := ParseMessage(pt, h.opts.Render, func(cid string) string {
		return prefix + "/cid/" + urlPathEscape(cid)
	})
	if rerr := readErr(pt); rerr != nil {
		h.fail(w, r, envelopePage(rerr))
		return
	}
	if err != nil {
		h.fail(w, r, pageCannotShow(fmt.Errorf("message of key %s does not parse: %w", rec.ID, err)))
		return
	}
	at := h.now()
	if err := h.opts.Store.RecordRead(ctx, keystore.ReadEvent{KeyID: rec.ID, Reader: s.Email, At: at, Remote: h.clientIP(r)}); err != nil {
		// The audit trail is part of the promise to the sender: no
		// record, no read.
		h.fail(w, r, pageStoreFailed("record read", err))
		return
	}
	msg.Subject = h.withoutTag(msg.Subject)
	h.log.Info("portal: message read", "key_id", rec.ID.String(), "reader", s.Email, "remote", h.clientIP(r))
	h.noteRead(ctx, rec, s.Email, msg.Subject, at)
	v := view{Title: "Your secure message", Email: s.Email, SignedIn: true, Token: token, Msg: msg, ReplyAll: h.opts.ReplyAll}
	loc, chosen := h.readerZone(r)
	v.Zone = newZoneView(loc, chosen)
	if !msg.Sent.IsZero() {
		v.When = formatWhen(msg.Sent, loc)
	}
	if r.URL.Query().Get("changed") != "" {
		v.Notice = "Your password was changed. Every other browser signed in to your account was signed out."
	}
	for _, a := range msg.Attachments {
		v.Attachments = append(v.Attachments, attachmentLink{
			URL:  prefix + "/part/" + strconv.Itoa(a.Index),
			Name: a.Filename, Type: fileKind(a.Filename, a.ContentType), Size: humanSize(a.Size),
		})
	}
	h.render(w, r, http.StatusOK, "read", v)
}

// withoutTag removes the trigger tag from a subject: the envelope holds the
// message as the sender wrote it, and the recipient's copy never showed the
// tag.
func (h *handler) withoutTag(subject string) string {
	tag := h.opts.SubjectTag
	if tag == "" {
		return subject
	}
	for i := 0; i+len(tag) <= len(subject); i++ {
		if strings.EqualFold(subject[i:i+len(tag)], tag) {
			return h.withoutTag(strings.TrimRight(subject[:i], " \t") + " " + strings.TrimLeft(subject[i+len(tag):], " \t"))
		}
	}
	return strings.TrimSpace(subject)
}

func urlPathEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~@$!*+,;=", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// inlineImageTypes are the only types served as themselves; everything
// else is application/octet-stream, so no browser renders it on this
// origin.
var inlineImageTypes = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true}

// GET /m/{token}/part/{index} and /m/{token}/cid/{cid}.
func (h *handler) part(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	s, rec := h.reader(w, r)
	if s == nil {
		return
	}
	sel := PartSelector{Index: -1, ContentID: r.PathValue("cid")}
	if idx := r.PathValue("index"); idx != "" {
		n, err := strconv.Atoi(idx)
		if err != nil || n < 0 {
			h.fail(w, r, pageNoSuchAttachment(errors.New("part index is not a number")))
			return
		}
		sel.Index = n
	}
	// The spool was checked at upload; check it again before streaming,
	// so a file damaged on disk since then releases no byte either.
	if _, err := h.checkEnvelope(r.Context(), token, ""); err != nil {
		h.fail(w, r, envelopePage(err))
		return
	}
	pt, _, err := h.plaintext(r.Context(), token)
	if err != nil {
		h.fail(w, r, envelopePage(err))
		return
	}
	defer pt.Close()
	started := false
	err = OpenPart(pt, sel, func(info PartInfo) (io.Writer, error) {
		started = true
		ct := "application/octet-stream"
		if inlineImageTypes[info.ContentType] {
			ct = info.ContentType
		}
		hdr := w.Header()
		hdr.Set("Content-Type", ct)
		hdr.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": info.Filename}))
		hdr.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		hdr.Set("Cache-Control", "private, no-store")
		w.WriteHeader(http.StatusOK)
		return w, nil
	})
	if started {
		if err != nil {
			h.log.Warn("portal: attachment download ended early", "key_id", rec.ID.String(), "err", err)
		} else {
			h.log.Info("portal: attachment downloaded", "key_id", rec.ID.String(), "remote", h.clientIP(r))
		}
		return
	}
	if rerr := readErr(pt); rerr != nil {
		h.fail(w, r, envelopePage(rerr))
		return
	}
	if errors.Is(err, ErrPartNotFound) || err == nil {
		h.fail(w, r, pageNoSuchAttachment(cmpErr(err, ErrPartNotFound)))
		return
	}
	h.fail(w, r, pageAttachmentUnreadable(fmt.Errorf("attachment of key %s: %w", rec.ID, err)))
}

// readPageSources are the message page and the page after a reply, as
// pageSources are the others.
var readPageSources = map[string]string{
	"read": `{{with .Msg}}<dl class="headers">
<dt>From</dt><dd>{{.From}}</dd>
<dt>To</dt><dd>{{.To}}</dd>
{{if .Cc}}<dt>Cc</dt><dd>{{.Cc}}</dd>{{end}}
{{if $.When}}<dt>Date</dt><dd>{{$.When}}</dd>{{else if .Date}}<dt>Date</dt><dd>{{.Date}}</dd>{{end}}
<dt>Subject</dt><dd>{{.Subject}}</dd>
</dl>
{{if $.When}}<details class="tz"><summary>Change the time zone</summary>
<form method="post" action="/m/{{$.Token}}/timezone">
<p class="hint">{{if $.Zone.Chosen}}This device remembers the zone you chose.{{else}}Your browser does not tell this site its time zone{{if ne $.Zone.Words "UTC"}}, so it was guessed from your language{{end}}. Choose yours, and this device remembers it.{{end}}</p>
<label for="tz">Show times in</label>
<select id="tz" name="tz"><option value="UTC"{{if eq $.Zone.Current "UTC"}} selected{{end}}>UTC</option>
{{with $.Zone.Extra}}<option value="{{.Name}}" selected>{{.Label}}</option>
{{end}}{{range $.Zone.Groups}}<optgroup label="{{.Label}}">{{range .Zones}}<option value="{{.Name}}"{{if eq .Name $.Zone.Current}} selected{{end}}>{{.Label}}</option>{{end}}</optgroup>
{{end}}</select>
<button class="secondary" type="submit">Show times in this zone</button>
</form></details>{{end}}
{{if .HTML}}<article class="html-body">{{.HTML}}</article>
{{else if .Text}}<pre class="text-body">{{.Text}}</pre>
{{else}}<p class="hint">This message has no text.</p>{{end}}
{{if .Truncated}}<p class="hint">The text is too long to show here in full.</p>{{end}}
{{if .HTMLTooLarge}}<p class="hint">The formatted version of this message is too large to show here; it is listed with the attachments.</p>{{end}}
{{end}}
{{if .Attachments}}<section><h2>Attachments</h2><ul class="attachments">
{{range .Attachments}}<li><a href="{{.URL}}" download>{{.Name}}</a> <span class="hint">{{.Type}}, {{.Size}}</span></li>
{{end}}</ul></section>{{end}}
<section><h2>Reply</h2>
<form method="post" action="/m/{{.Token}}/reply" enctype="multipart/form-data">
{{if .ReplyAll}}<p><label class="check"><input type="checkbox" name="all" value="1"> Reply to everyone this message was sent to</label></p>{{end}}
<label for="body">Your reply{{if .Msg}} to {{.Msg.From}}{{end}}</label>
<textarea id="body" name="body" rows="8" required></textarea>
<label for="files">Attach files (optional)</label>
<input id="files" name="files" type="file" multiple>
<button type="submit">Send reply</button>
</form></section>`,

	"sent": `{{with .Sent}}<dl class="headers">
<dt>To</dt><dd>{{range $i, $a := .To}}{{if $i}}, {{end}}{{$a}}{{end}}</dd>
<dt>Subject</dt><dd>{{.Subject}}</dd>
{{if .Attachments}}<dt>Attached</dt><dd>{{range $i, $a := .Attachments}}{{if $i}}, {{end}}{{$a}}{{end}}</dd>{{end}}
</dl>
<p>Your reply is sent encrypted if it leaves {{$.Org}}, like the message you read.</p>{{end}}`,
}
