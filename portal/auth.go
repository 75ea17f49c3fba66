package portal

import (
	"github.com/securemail/securemail/internal/catalog"

	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/securemail/securemail/keystore"
)

// maxFormBody bounds every form but the envelope upload and the reply.
const maxFormBody = 64 << 10

// preAuth are the stages of a browser that gave an address but is not
// signed in: all of them show the sign-in page.
var preAuth = []string{stageEmail, stageCodeSent, stageCodeHeld}

// codePurpose is the purpose the sign-in page's code is stored under. One
// code proves the mailbox for a first visit (it leads to account
// creation) and for a forgotten password (it leads to the security
// questions) alike: which of the two follows is decided only after the
// code was right, so nothing before that depends on the account.
const codePurpose = keystore.CodeRegister

func (h *handler) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, pageFormUnreadable(err))
		return false
	}
	return true
}

// POST /email: the browser says who it is, for the message whose token
// the form carries, and a code is mailed to that address if the message
// was sent to it. The sign-in page's "Email me a code" and "Send a new
// code" buttons post here too, with again=1: they leave the remembered
// address as it is.
//
// The code goes out from this step, once per visit, and not from the
// sign-in page itself: an account holder whose device remembers the
// address reaches the sign-in page without this step and gets no mail;
// one who typed the address gets one code, which they need only if they
// forgot the password. Whether a code goes out depends on the message's
// recipients and the code budgets alone, never on the account, and the
// answer is the same in every case (codeRequest).
func (h *handler) email(w http.ResponseWriter, r *http.Request) {
	if !h.ready(w, r) || !h.parseForm(w, r) {
		return
	}
	s, err := h.session(r)
	if err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return
	}
	token := r.PostForm.Get("token")
	if token == "" && s != nil {
		token = s.Token
	}
	if _, err := h.tokenRecord(r.Context(), token); err != nil {
		h.fail(w, r, envelopePage(err))
		return
	}
	raw := strings.TrimSpace(r.PostForm.Get("email"))
	addr, ok := bareAddress(raw)
	if !ok {
		v := h.emailView(h.lang(r), token)
		v.Email, v.Remember = raw, r.PostForm.Get("remember") != ""
		v.Error, v.Field = catalog.Text(v.Lang, "portal.email.invalid"), "email"
		h.render(w, r, http.StatusBadRequest, "email", v)
		return
	}
	if r.PostForm.Get("again") == "" {
		if r.PostForm.Get("remember") != "" {
			h.rememberAddress(w, addr)
		} else {
			h.forgetAddress(w, r)
		}
	}
	// A different address starts over: nothing proved for one address
	// carries over to another.
	ns, err := h.newSession(w, r, s, addr, stageEmail, token)
	if err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return
	}
	h.codeRequest(w, r, ns)
}

// signinView is the sign-in page for s: the password form, and the code
// form or the button that mails one. It depends on the session's stage
// and address only, never on whether the address has an account or may
// read the message.
func signinView(l catalog.Lang, s *keystore.Session) view {
	v := view{Title: catalog.Text(l, "portal.signin.title"), Email: s.Email, Token: s.Token, Lang: l}
	switch s.Stage {
	case stageCodeSent:
		v.Code = codeView{Form: true, Words: codeSentNotice(l, s.Email)}
	case stageCodeHeld:
		v.Code = codeView{Form: true, Words: catalog.Text(l, "portal.code.held")}
	}
	return v
}

func (h *handler) signinPage(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, preAuth...)
	if s == nil {
		return
	}
	h.render(w, r, http.StatusOK, "signin", signinView(h.lang(r), s))
}

// signinSession is the browser's pre-sign-in session for POST /signin, or,
// for a browser with no session whose device remembers an address (it
// came to the sign-in page straight from the message link), one made
// from that address and the form's token and not stored. Nil when it
// answered the request itself.
func (h *handler) signinSession(w http.ResponseWriter, r *http.Request) *keystore.Session {
	if !h.ready(w, r) {
		return nil
	}
	s, err := h.session(r)
	if err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return nil
	}
	if s != nil {
		return h.atStage(w, r, s, preAuth...)
	}
	if !h.parseForm(w, r) {
		return nil
	}
	addr, token := h.remembered(r), r.PostForm.Get("token")
	if addr == "" || token == "" {
		h.startOver(w, r, nil)
		return nil
	}
	if _, err := h.tokenRecord(r.Context(), token); err != nil {
		h.fail(w, r, envelopePage(err))
		return nil
	}
	return &keystore.Session{Email: strings.ToLower(addr), Token: token, Stage: stageEmail}
}

// POST /signin: password for the address in the session (or the one this
// device remembers).
func (h *handler) signin(w http.ResponseWriter, r *http.Request) {
	s := h.signinSession(w, r)
	if s == nil || !h.parseForm(w, r) {
		return
	}
	// A session made from the remembered address is not stored: nothing
	// to replace when the password is right.
	var old *keystore.Session
	if s.Digest != nil {
		old = s
	}
	ctx := r.Context()
	password := r.PostForm.Get("password")
	acct, found, err := h.account(ctx, s.Email)
	if err != nil {
		h.fail(w, r, pageStoreFailed("account", err))
		return
	}
	signinView := signinView(h.lang(r), s)
	release, ok := h.checkSlot(h.clientIP(r))
	if !ok {
		h.fail(w, r, pageBusy(errCheckRefused))
		return
	}
	defer release()
	if msg, err := h.passwordTry(ctx, h.lang(r), s.Email, h.clientIP(r), acct, found); err != nil {
		h.fail(w, r, pageStoreFailed("throttle", err))
		return
	} else if msg != "" {
		signinView.Error = msg
		h.render(w, r, http.StatusTooManyRequests, "signin", signinView)
		return
	}
	ok = false
	if found && acct.PasswordHash == "" {
		// An administrator required a reset (securemail accounts
		// reset): no password signs in until the owner sets a new one.
		err = h.opts.Hasher.DummyVerify(ctx, NormalizePassword(password))
	} else if found {
		ok, err = h.opts.Hasher.Verify(ctx, acct.PasswordHash, NormalizePassword(password))
		if err != nil && !errors.Is(err, ErrBusy) && ctx.Err() == nil {
			h.log.Error("portal: stored password hash unusable", "err", err)
			err = nil
		}
	} else {
		err = h.opts.Hasher.DummyVerify(ctx, NormalizePassword(password))
	}
	if err != nil {
		h.fail(w, r, pageHashFailed("verify password", err))
		return
	}
	if !ok {
		if err := h.loginFailed(ctx, s.Email); err != nil {
			h.fail(w, r, pageStoreFailed("throttle", err))
			return
		}
		h.log.Info("portal: sign-in failed", "remote", h.clientIP(r))
		signinView.Error = catalog.Text(signinView.Lang, "portal.signin.wrong")
		h.render(w, r, http.StatusUnauthorized, "signin", signinView)
		return
	}
	if err := h.signedIn(ctx, acct, password); err != nil {
		h.fail(w, r, pageStoreFailed("sign-in", err))
		return
	}
	if _, err := h.newSession(w, r, old, acct.Email, stageAuthenticated, s.Token); err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return
	}
	h.log.Info("portal: signed in", "remote", h.clientIP(r))
	h.goToMessage(w, r, s.Token, "")
}

// advance moves the browser to stage for email under a new session id, and
// on to next.
func (h *handler) advance(w http.ResponseWriter, r *http.Request, s *keystore.Session, email, stage, next string) {
	if _, err := h.newSession(w, r, s, email, stage, s.Token); err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *handler) goToMessage(w http.ResponseWriter, r *http.Request, token, query string) {
	if token == "" {
		http.Redirect(w, r, "/"+query, http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/m/"+token+query, http.StatusSeeOther)
}

// account looks an address up; found is false when there is none.
func (h *handler) account(ctx context.Context, email string) (keystore.Account, bool, error) {
	a, err := h.opts.Store.Account(ctx, email)
	if errors.Is(err, keystore.ErrNotFound) {
		return keystore.Account{}, false, nil
	}
	return a, err == nil, err
}

// signedIn starts the address's count of tries afresh after a right
// password and upgrades a hash made with older cost settings. The
// client's count stays: see Limits.SignInPerClient.
func (h *handler) signedIn(ctx context.Context, acct keystore.Account, password string) error {
	if err := h.opts.Store.ResetHits(ctx, "signin-acct:"+acct.Email); err != nil {
		return err
	}
	if err := h.opts.Store.ClearFailures(ctx, "acct:"+acct.Email); err != nil {
		return err
	}
	if h.opts.Hasher.NeedsRehash(acct.PasswordHash) {
		if phc, err := h.opts.Hasher.Hash(ctx, NormalizePassword(password)); err == nil {
			return h.opts.Store.SetPassword(ctx, acct.Email, phc, acct.PasswordSet)
		}
	}
	return nil
}

// loginFailed counts a checked wrong password toward the address's long
// window lock. Only tries that passed passwordTry get here, so a burst
// adds at most the tries it was allowed.
func (h *handler) loginFailed(ctx context.Context, email string) error {
	_, err := h.opts.Store.AddFailure(ctx, "acct:"+email, h.now(), throttleWindow)
	return err
}

// passwordTry decides, before any argon2 work, whether this password try
// may be checked, and counts it. It answers "" when it may, or the
// sentence to show. The checks, in order: the long-window lock of the
// address (100 checked failures in 30 days, lifted by a password reset),
// the client's budget (in front, so one client cannot spend an address's
// budget beyond its own), then the address's budget. It answers the same
// whether or not the account exists: tries count against the address
// either way.
func (h *handler) passwordTry(ctx context.Context, l catalog.Lang, email, ip string, acct keystore.Account, found bool) (string, error) {
	now := h.now()
	at, err := h.opts.Store.Throttle(ctx, "acct:"+email)
	if err != nil {
		return "", err
	}
	if at.InWindow >= maxFailuresInWindow && now.Sub(at.WindowStart) < throttleWindow &&
		!(found && acct.PasswordSet.After(at.LastFailure)) {
		return catalog.Text(l, "portal.signin.locked"), nil
	}
	lim := h.opts.Limits
	for _, c := range []struct {
		key  string
		rate Rate
	}{{"signin-client:" + ip, lim.SignInPerClient}, {"signin-acct:" + email, lim.SignInPerAddress}} {
		res, err := h.hit(ctx, c.key, c.rate)
		if err != nil {
			return "", err
		}
		if !res.Allowed {
			return catalog.Text(l, "portal.signin.too_many", "Wait", durationWords(l, res.RetryAfter)), nil
		}
	}
	return "", nil
}

// durationWords says d, rounded up, in l: "a minute", "5 minutes".
func durationWords(l catalog.Lang, d time.Duration) string {
	if d <= time.Minute {
		return catalog.Text(l, "portal.duration.minute")
	}
	if d < time.Hour {
		return catalog.Text(l, "portal.duration.minutes", "N", int((d+time.Minute-1)/time.Minute))
	}
	if d <= time.Hour {
		return catalog.Text(l, "portal.duration.hour")
	}
	if d < 48*time.Hour {
		return catalog.Text(l, "portal.duration.hours", "N", int((d+time.Hour-1)/time.Hour))
	}
	return catalog.Text(l, "portal.duration.days", "N", int((d+24*time.Hour-1)/(24*time.Hour)))
}

// newCode makes a code for purpose and email and stores its digest.
func (h *handler) newCode(ctx context.Context, purpose keystore.CodePurpose, email string) (string, error) {
	code, err := NewCode()
	if err != nil {
		return "", err
	}
	err = h.opts.Store.PutCode(ctx, keystore.Code{
		Purpose:   purpose,
		Email:     email,
		Digest:    CodeDigest(string(purpose), email, code),
		Expires:   h.now().Add(codeLifetime),
		TriesLeft: codeTries,
	})
	return code, err
}

// codeRequest asks for a code for s's address and moves the browser to
// the sign-in page. Everything that depends on the address (whether it
// may read the message, whether it has an account, the code itself and
// the mail) happens in mailCode, on the mail queue, after the answer: the
// answer's words and time are the same for every address. Before that,
// one Hit per client and one per address bound the mail a stranger can
// cause; past either, no code is sent and the sign-in page says so, and
// a password still signs in.
func (h *handler) codeRequest(w http.ResponseWriter, r *http.Request, s *keystore.Session) {
	ctx := r.Context()
	lim := h.opts.Limits
	s.Stage = stageCodeSent
	for _, c := range []struct {
		key  string
		rate Rate
	}{{"code-client:" + h.clientIP(r), lim.CodesPerClient}, {"code-send:" + string(codePurpose) + ":" + s.Email, lim.CodesPerAddress}} {
		res, err := h.hit(ctx, c.key, c.rate)
		if err != nil {
			h.fail(w, r, pageStoreFailed("throttle", err))
			return
		}
		if !res.Allowed {
			s.Stage = stageCodeHeld
			break
		}
	}
	next := "/signin"
	if s.Stage == stageCodeSent {
		queued, lang := *s, h.lang(r)
		if err := h.mail.add(func(ctx context.Context) { h.mailCode(ctx, lang, queued) }); err != nil {
			h.fail(w, r, pageBusy(fmt.Errorf("code request: %w", err)))
			return
		}
		// A new code, if the job makes one, has all its tries: the count
		// the page shows starts afresh, for every address alike.
		if err := h.opts.Store.ResetHits(ctx, codeTryKey(s.Email)); err != nil {
			h.fail(w, r, pageStoreFailed("throttle", err))
			return
		}
	} else {
		// Said in the address for the metrics (internal/metrics): a
		// refused code request is otherwise a 303 like any other.
		next = "/signin?codes=held"
	}
	if err := h.updateSession(r, s); err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// mailCode is the queued part of a code request. The code goes out only
// when the address may read the message; an address with an account gets
// it too (it is how a forgotten password is reset), with words that say
// it is needed only then. Any other address gets nothing.
func (h *handler) mailCode(ctx context.Context, l catalog.Lang, s keystore.Session) {
	rec, err := h.tokenRecord(ctx, s.Token)
	if err != nil {
		h.log.Info("portal: code not sent: the message is gone", "err", err)
		return
	}
	if !rec.IsRecipient(s.Email) {
		h.log.Info("portal: code not sent: address is not a recipient", "key_id", rec.ID.String())
		return
	}
	_, found, err := h.account(ctx, s.Email)
	var code string
	if err == nil {
		code, err = h.newCode(ctx, codePurpose, s.Email)
	}
	if err == nil && found {
		err = h.sendNotice(ctx, s.Email, catalog.Text(l, "text.mail.reset_code_subject"), catalog.Text(l, "text.mail.reset_code", "Code", code))
	} else if err == nil {
		err = h.sendNotice(ctx, s.Email, catalog.Text(l, "text.mail.code_subject"), catalog.Text(l, "text.mail.code", "Code", code))
	}
	if err != nil {
		h.log.Error("portal: could not send a code", "err", err)
	}
}

func codeSentNotice(l catalog.Lang, email string) string {
	return catalog.Text(l, "portal.code.sent", "Email", email)
}

// POST /code: the code from the email. Right, it leads to account
// creation for an address without an account and to the security
// questions (a password reset) for one with an account.
func (h *handler) code(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, preAuth...)
	if s == nil || !h.parseForm(w, r) {
		return
	}
	h.checkCode(w, r, s)
}

// codeTryKey counts the code tries of an address since its last code
// request.
func codeTryKey(email string) string {
	return "code-try:" + string(codePurpose) + ":" + strings.ToLower(email)
}

// checkCode spends one try of the session's code; right, it moves the
// browser (under a new session id) to account creation or to the
// security questions.
//
// Tries are counted twice. The store's code keeps its own count, which
// guards it; and a Hit per address, made afresh by every code request the
// same way for every address, counts each try before the code is looked
// at and refuses past codeTries. The second count is what the page shows
// as tries left: it is the code's own count when the address has a code,
// and the same number when it has none, so the page tells nothing about
// accounts or codes.
func (h *handler) checkCode(w http.ResponseWriter, r *http.Request, s *keystore.Session) {
	ctx := r.Context()
	tries, err := h.hit(ctx, codeTryKey(s.Email), Rate{codeTries, codeLifetime})
	if err != nil {
		h.fail(w, r, pageStoreFailed("throttle", err))
		return
	}
	left := 0
	if tries.Allowed {
		left = codeTries - tries.Count
		code := digitsOnly(r.PostForm.Get("code"))
		err = h.opts.Store.ConsumeCode(ctx, codePurpose, s.Email, CodeDigest(string(codePurpose), s.Email, code), h.now())
	} else {
		err = keystore.ErrTooManyAttempts
	}
	switch {
	case err == nil:
		// Only the owner of the mailbox gets here: what follows may
		// depend on the account.
		_, found, err := h.account(ctx, s.Email)
		if err != nil {
			h.fail(w, r, pageStoreFailed("account", err))
			return
		}
		if !found {
			h.advance(w, r, s, s.Email, stageRegisterVerified, "/register/password")
			return
		}
		// A code proved the mailbox again: the answers get a new budget
		// for this reset.
		if err := h.opts.Store.ResetHits(ctx, "answers:"+s.Email); err != nil {
			h.fail(w, r, pageStoreFailed("throttle", err))
			return
		}
		h.advance(w, r, s, s.Email, stageResetVerified, "/reset/answers")
		return
	case errors.Is(err, keystore.ErrCodeMismatch), errors.Is(err, keystore.ErrNotFound),
		errors.Is(err, keystore.ErrExpired), errors.Is(err, keystore.ErrTooManyAttempts):
		// One sentence for every failure: a wrong code and no code at
		// all must look the same, or the page tells who has an account.
	default:
		h.fail(w, r, pageStoreFailed("code", err))
		return
	}
	h.log.Info("portal: wrong or dead code", "tries_left", left, "remote", h.clientIP(r))
	v := signinView(h.lang(r), s)
	v.Code.Form = true
	if v.Code.Words == "" {
		v.Code.Words = codeSentNotice(v.Lang, s.Email)
	}
	v.Error, v.Field = wrongCodeWords(v.Lang, left), "code"
	h.render(w, r, http.StatusUnauthorized, "signin", v)
}

// wrongCodeWords is the wrong-code page's sentence with left tries.
func wrongCodeWords(l catalog.Lang, left int) string {
	if left <= 0 {
		return catalog.Text(l, "portal.code.wrong_last")
	}
	tries := catalog.Text(l, "portal.code.tries_many", "N", left)
	if left == 1 {
		tries = catalog.Text(l, "portal.code.tries_one")
	}
	return catalog.Text(l, "portal.code.wrong", "Tries", tries)
}

func digitsOnly(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// passwordView is a page that sets a password, in l, titled by the
// catalogue entry titleKey.
func (h *handler) passwordView(l catalog.Lang, titleKey string, s *keystore.Session) view {
	v := view{Title: catalog.Text(l, titleKey), Email: s.Email, Token: s.Token, MinPassword: h.opts.MinPassword, MaxPassword: h.opts.MaxPassword,
		Questions: securityQuestions(l), SignedIn: s.Stage == stageAuthenticated, Lang: l}
	if v.SignedIn {
		v.Back = messagePath(s.Token)
	}
	return v
}

// messagePath is the page of the message token leads to; "" for none.
func messagePath(token string) string {
	if token == "" {
		return ""
	}
	return "/m/" + token
}

// registerQuestions is how many security questions an account is created
// with. Two, with the password and its confirmation, keep a first visit
// to 8 fields in all (address, code, password twice, two questions and
// their answers); accounts made with three before keep their three, and
// a reset asks all of an account's questions.
const registerQuestions = 2

func (h *handler) registerPasswordPage(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, stageRegisterVerified)
	if s == nil {
		return
	}
	v := h.passwordView(h.lang(r), "portal.register.title", s)
	v.Notice = catalog.Text(v.Lang, "portal.register.confirmed", "Email", s.Email)
	h.render(w, r, http.StatusOK, "register", v)
}

// newPassword checks the password and confirmation fields of the form and
// returns the password normalised, or a sentence for the user and the
// field to fix.
func (h *handler) newPassword(r *http.Request) (pw, problem, field string) {
	l := h.lang(r)
	pw = NormalizePassword(r.PostForm.Get("password"))
	if problem := PasswordProblemIn(l, pw, h.opts.MinPassword, h.opts.MaxPassword); problem != "" {
		return "", problem, "password"
	}
	if pw != NormalizePassword(r.PostForm.Get("confirm")) {
		return "", catalog.Text(l, "portal.password.mismatch"), "confirm"
	}
	return pw, "", ""
}

func (h *handler) registerPassword(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, stageRegisterVerified)
	if s == nil || !h.parseForm(w, r) {
		return
	}
	ctx := r.Context()
	// A refused form comes back as typed (the passwords excepted), with
	// the confirmation of the address, and names the field to fix.
	l := h.lang(r)
	refuse := func(msg, field string) {
		v := h.passwordView(l, "portal.register.title", s)
		v.Notice = catalog.Text(l, "portal.register.confirmed", "Email", s.Email)
		v.Error, v.Field = msg, field
		v.Form = map[string]string{}
		for i := 1; i <= registerQuestions; i++ {
			for _, k := range []string{fmt.Sprintf("q%d", i), fmt.Sprintf("a%d", i)} {
				if val := r.PostForm.Get(k); len(val) <= 200 {
					v.Form[k] = val
				}
			}
		}
		h.render(w, r, http.StatusBadRequest, "register", v)
	}
	var questions [registerQuestions]int
	var answers [registerQuestions]string
	for i := range registerQuestions {
		n := i + 1
		q, err := strconv.Atoi(r.PostForm.Get(fmt.Sprintf("q%d", n)))
		if err != nil || q < 0 || q >= len(SecurityQuestions) {
			refuse(catalog.Text(l, "portal.register.question_none", "N", n), fmt.Sprintf("q%d", n))
			return
		}
		for j := range i {
			if questions[j] == q {
				refuse(catalog.Text(l, "portal.register.question_same", "N", n, "Other", j+1), fmt.Sprintf("q%d", n))
				return
			}
		}
		questions[i] = q
		answers[i] = NormalizeAnswer(r.PostForm.Get(fmt.Sprintf("a%d", n)))
		if len([]rune(answers[i])) < 2 {
			refuse(catalog.Text(l, "portal.register.answer_none", "N", n), fmt.Sprintf("a%d", n))
			return
		}
	}
	pw, problem, field := h.newPassword(r)
	if problem != "" {
		refuse(catalog.Text(l, "portal.register.kept", "Problem", problem), field)
		return
	}
	acct := keystore.Account{Email: s.Email, Created: h.now(), VerifiedAt: s.Created, PasswordSet: h.now()}
	var err error
	if acct.PasswordHash, err = h.opts.Hasher.Hash(ctx, pw); err != nil {
		h.fail(w, r, pageHashFailed("hash", err))
		return
	}
	for i := range registerQuestions {
		phc, err := h.opts.Hasher.Hash(ctx, answers[i])
		if err != nil {
			h.fail(w, r, pageHashFailed("hash", err))
			return
		}
		acct.Questions = append(acct.Questions, keystore.SecurityAnswer{Question: questions[i], AnswerHash: phc})
	}
	err = h.opts.Store.CreateAccount(ctx, acct)
	if errors.Is(err, keystore.ErrAccountExists) {
		h.fail(w, r, pageAccountExists(s.Email))
		return
	}
	if err != nil {
		h.fail(w, r, pageStoreFailed("create account", err))
		return
	}
	if err := h.opts.Store.ClearFailures(ctx, "acct:"+s.Email); err != nil {
		h.log.Warn("portal: could not clear failures", "err", err)
	}
	if _, err := h.newSession(w, r, s, s.Email, stageAuthenticated, s.Token); err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return
	}
	h.log.Info("portal: account created", "remote", h.clientIP(r))
	h.goToMessage(w, r, s.Token, "")
}

func (h *handler) askedView(l catalog.Lang, s *keystore.Session, acct keystore.Account) view {
	v := view{Title: catalog.Text(l, "portal.answers.title"), Email: s.Email, Token: s.Token, AnswerTries: h.opts.Limits.AnswersPerReset.N, Lang: l}
	questions := securityQuestions(l)
	for i, q := range acct.Questions {
		text := catalog.Text(l, "portal.answers.question")
		if q.Question >= 0 && q.Question < len(questions) {
			text = questions[q.Question]
		}
		v.Asked = append(v.Asked, askedAnswer{Index: i + 1, Question: text})
	}
	return v
}

func (h *handler) resetAnswersPage(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, stageResetVerified)
	if s == nil {
		return
	}
	acct, found, err := h.account(r.Context(), s.Email)
	if err != nil || !found {
		h.fail(w, r, pageStoreFailed("account for a verified reset", cmpErr(err, keystore.ErrNotFound)))
		return
	}
	h.render(w, r, http.StatusOK, "answers", h.askedView(h.lang(r), s, acct))
}

func (h *handler) resetAnswers(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, stageResetVerified)
	if s == nil || !h.parseForm(w, r) {
		return
	}
	ctx := r.Context()
	acct, found, err := h.account(ctx, s.Email)
	if err != nil || !found {
		h.fail(w, r, pageStoreFailed("account for a verified reset", cmpErr(err, keystore.ErrNotFound)))
		return
	}
	key := "answers:" + s.Email
	endReset := func() {
		s.Stage = stageEmail
		if err := h.updateSession(r, s); err != nil {
			h.fail(w, r, pageStoreFailed("session", err))
			return
		}
		h.fail(w, r, pageTooManyAnswers())
	}
	release, ok := h.checkSlot(h.clientIP(r))
	if !ok {
		h.fail(w, r, pageBusy(errCheckRefused))
		return
	}
	defer release()
	// Count the set before checking it, so a burst of sets is checked no
	// more often than the same sets sent one after another.
	res, err := h.hit(ctx, key, h.opts.Limits.AnswersPerReset)
	if err != nil {
		h.fail(w, r, pageStoreFailed("throttle", err))
		return
	}
	if !res.Allowed {
		endReset()
		return
	}
	right := len(acct.Questions) > 0
	for i, q := range acct.Questions {
		ok, err := h.opts.Hasher.Verify(ctx, q.AnswerHash, NormalizeAnswer(r.PostForm.Get(fmt.Sprintf("a%d", i+1))))
		if errors.Is(err, ErrBusy) || ctx.Err() != nil {
			h.fail(w, r, pageHashFailed("verify answers", cmpErr(err, ctx.Err())))
			return
		}
		if err != nil || !ok {
			right = false
		}
	}
	if !right {
		h.log.Info("portal: wrong security answers", "remote", h.clientIP(r))
		if res.Count >= h.opts.Limits.AnswersPerReset.N {
			endReset()
			return
		}
		v := h.askedView(h.lang(r), s, acct)
		v.Error = catalog.Text(v.Lang, "portal.answers.wrong")
		h.render(w, r, http.StatusUnauthorized, "answers", v)
		return
	}
	if err := h.opts.Store.ResetHits(ctx, key); err != nil {
		h.fail(w, r, pageStoreFailed("throttle", err))
		return
	}
	h.advance(w, r, s, s.Email, stageResetAnswered, "/reset/password")
}

// cmpErr returns the first error that is not nil.
func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *handler) resetPasswordPage(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, stageResetAnswered)
	if s == nil {
		return
	}
	h.render(w, r, http.StatusOK, "newpassword", h.passwordView(h.lang(r), "portal.newpassword.reset_title", s))
}

func (h *handler) resetPassword(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, stageResetAnswered)
	if s == nil || !h.parseForm(w, r) {
		return
	}
	pw, problem, field := h.newPassword(r)
	if problem != "" {
		v := h.passwordView(h.lang(r), "portal.newpassword.reset_title", s)
		v.Error, v.Field = problem, field
		h.render(w, r, http.StatusBadRequest, "newpassword", v)
		return
	}
	if !h.setPassword(w, r, s, pw, "reset") {
		return
	}
	h.goToMessage(w, r, s.Token, "?changed=1")
}

// setPassword stores a new password, ends every session of the account,
// signs this browser in under a new id and mails the owner a notice.
func (h *handler) setPassword(w http.ResponseWriter, r *http.Request, s *keystore.Session, pw, how string) bool {
	ctx := r.Context()
	phc, err := h.opts.Hasher.Hash(ctx, pw)
	if err != nil {
		h.fail(w, r, pageHashFailed("hash", err))
		return false
	}
	if err := h.opts.Store.SetPassword(ctx, s.Email, phc, h.now()); err != nil {
		h.fail(w, r, pageStoreFailed("set password", err))
		return false
	}
	n, err := h.opts.Store.DeleteSessionsFor(ctx, s.Email, nil)
	if err != nil {
		h.fail(w, r, pageStoreFailed("end sessions", err))
		return false
	}
	if err := h.opts.Store.ClearFailures(ctx, "acct:"+s.Email); err != nil {
		h.log.Warn("portal: could not clear failures", "err", err)
	}
	if _, err := h.newSession(w, r, s, s.Email, stageAuthenticated, s.Token); err != nil {
		h.fail(w, r, pageStoreFailed("session", err))
		return false
	}
	h.log.Info("portal: password "+how, "other_sessions_ended", n-1, "remote", h.clientIP(r))
	l := h.lang(r)
	err = h.sendNotice(ctx, s.Email, catalog.Text(l, "text.mail.password_subject"),
		catalog.Text(l, map[string]string{"reset": "text.mail.password_was_reset", "change": "text.mail.password_was_changed"}[how],
			"PortalURL", h.opts.PortalURL, "When", catalog.Date(l, h.now())))
	if err != nil {
		h.log.Error("portal: could not send the password-change notice", "err", err)
	}
	return true
}

func (h *handler) changePasswordPage(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, stageAuthenticated)
	if s == nil {
		return
	}
	h.render(w, r, http.StatusOK, "newpassword", h.passwordView(h.lang(r), "portal.newpassword.change_title", s))
}

func (h *handler) changePassword(w http.ResponseWriter, r *http.Request) {
	s := h.sessionAt(w, r, stageAuthenticated)
	if s == nil || !h.parseForm(w, r) {
		return
	}
	ctx := r.Context()
	refuse := func(status int, msg string) {
		v := h.passwordView(h.lang(r), "portal.newpassword.change_title", s)
		v.Error = msg
		h.render(w, r, status, "newpassword", v)
	}
	acct, found, err := h.account(ctx, s.Email)
	if err != nil || !found {
		h.fail(w, r, pageStoreFailed("account of a session", cmpErr(err, keystore.ErrNotFound)))
		return
	}
	release, ok := h.checkSlot(h.clientIP(r))
	if !ok {
		h.fail(w, r, pageBusy(errCheckRefused))
		return
	}
	defer release()
	if msg, err := h.passwordTry(ctx, h.lang(r), s.Email, h.clientIP(r), acct, true); err != nil {
		h.fail(w, r, pageStoreFailed("throttle", err))
		return
	} else if msg != "" {
		refuse(http.StatusTooManyRequests, msg)
		return
	}
	ok, err = h.opts.Hasher.Verify(ctx, acct.PasswordHash, NormalizePassword(r.PostForm.Get("current")))
	if errors.Is(err, ErrBusy) || ctx.Err() != nil {
		h.fail(w, r, pageHashFailed("verify password", cmpErr(err, ctx.Err())))
		return
	}
	if err != nil || !ok {
		if err := h.loginFailed(ctx, s.Email); err != nil {
			h.fail(w, r, pageStoreFailed("throttle", err))
			return
		}
		refuse(http.StatusUnauthorized, catalog.Text(h.lang(r), "portal.newpassword.wrong"))
		return
	}
	pw, problem, _ := h.newPassword(r)
	if problem != "" {
		refuse(http.StatusBadRequest, problem)
		return
	}
	if !h.setPassword(w, r, s, pw, "change") {
		return
	}
	l := h.lang(r)
	h.render(w, r, http.StatusOK, "plain", view{Title: catalog.Text(l, "portal.newpassword.done_title"), Email: s.Email, SignedIn: true, Token: s.Token,
		Notice: catalog.Text(l, "portal.newpassword.done"),
		Back:   messagePath(s.Token)})
}

func (h *handler) signout(w http.ResponseWriter, r *http.Request) {
	if h.opts.Store != nil {
		if s, err := h.session(r); err == nil && s != nil {
			if err := h.opts.Store.DeleteSession(r.Context(), s.Digest); err != nil {
				h.fail(w, r, pageStoreFailed("sign out", err))
				return
			}
		}
	}
	h.clearCookie(w)
	l := h.lang(r)
	h.render(w, r, http.StatusOK, "plain", view{Title: catalog.Text(l, "portal.signout.title"),
		Paragraphs: []string{catalog.Text(l, "portal.signout.words")}})
}

func (h *handler) emailView(l catalog.Lang, token string) view {
	return view{Title: catalog.Text(l, "portal.email.title"), Token: token, Lang: l,
		Paragraphs: []string{catalog.Text(l, "portal.email.intro")}}
}

func (h *handler) emailPage(w http.ResponseWriter, r *http.Request, token string) {
	h.render(w, r, http.StatusOK, "email", h.emailView(h.lang(r), token))
}
