package portal

// Tests for the findings of the black-box assessment (issue 9): every
// limit holds when the requests arrive together. Each burst is released
// by a barrier, not sent in a loop.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
)

// burst runs f(0..n-1) in n goroutines released together.
func burst(n int, f func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// countChecks counts the argon2 derivations the hasher runs.
func countChecks(e *testEnv) *atomic.Int32 {
	var n atomic.Int32
	e.portal.h.opts.Hasher.inSlot = func() { n.Add(1) }
	return &n
}

// atSignIn returns n browsers that opened s and gave addr, ready to post a
// password.
func atSignIn(e *testEnv, s sealed, addr string, n int) []*browser {
	bs := make([]*browser, n)
	for i := range bs {
		bs[i] = e.browser()
		bs[i].follow(bs[i].open(s))
		bs[i].follow(bs[i].email(addr))
	}
	return bs
}

func statuses(rs []response) map[int]int {
	m := map[int]int{}
	for _, r := range rs {
		m[r.status]++
	}
	return m
}

// Finding 1: 24 wrong passwords at once, from 24 clients, are checked no
// more often than the address's budget allows one after another, and the
// right password after them is refused like after 5 sequential failures.
func TestSignInBurstIsCheckedOnlyWithinBudget(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.TrustedProxies = trustLoopback })
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	checks := countChecks(e)
	bs := atSignIn(e, s, bob, 24)
	for i, b := range bs {
		b.forwardedFor = "198.51.100." + itoa(i+1)
	}
	rs := make([]response, len(bs))
	burst(len(bs), func(i int) { rs[i] = bs[i].post("/signin", url.Values{"password": {"wrong password here"}}) })
	budget := DefaultLimits.SignInPerAddress.N
	if n := int(checks.Load()); n != budget {
		t.Errorf("24 simultaneous wrong passwords ran %d password checks, want %d (the address's budget)", n, budget)
	}
	if st := statuses(rs); st[http.StatusUnauthorized] != budget || st[http.StatusTooManyRequests] != 24-budget {
		t.Errorf("answers %v, want %d x 401 and %d x 429", st, budget, 24-budget)
	}
	if r := atSignIn(e, s, bob, 1)[0].post("/signin", url.Values{"password": {testPassword}}); r.status != http.StatusTooManyRequests {
		t.Fatalf("the right password after the burst: %d, want 429 as after %d sequential failures", r.status, budget)
	}
	th, err := e.store.Throttle(context.Background(), "acct:"+bob)
	if err != nil || th.InWindow != budget {
		t.Fatalf("failures counted toward the 30-day lock: %+v %v, want %d (only checked ones)", th, err, budget)
	}
}

// Finding 1: from one client, a burst gets one check at a time; the
// others are told "busy" at once and spend no budget, so the right
// password afterwards still works.
func TestSignInBurstFromOneClientIsOneCheckAtATime(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	var inFlight, peak atomic.Int32
	e.portal.h.opts.Hasher.inSlot = func() {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond) // hold the slot so the burst overlaps
		inFlight.Add(-1)
	}
	bs := atSignIn(e, s, bob, 24)
	rs := make([]response, len(bs))
	burst(len(bs), func(i int) { rs[i] = bs[i].post("/signin", url.Values{"password": {"wrong password here"}}) })
	if p := peak.Load(); p != 1 {
		t.Errorf("%d checks ran at once for one client, want 1", p)
	}
	st := statuses(rs)
	if st[http.StatusUnauthorized]+st[http.StatusServiceUnavailable]+st[http.StatusTooManyRequests] != len(bs) || st[http.StatusServiceUnavailable] == 0 {
		t.Errorf("answers %v", st)
	}
	for _, r := range rs {
		if r.status == http.StatusServiceUnavailable && !strings.Contains(r.body, "busy") {
			t.Fatalf("busy page:\n%s", r.body)
		}
	}
	th, _ := e.store.Throttle(context.Background(), "acct:"+bob)
	if th.InWindow != st[http.StatusUnauthorized] {
		t.Errorf("%d failures counted, %d checked", th.InWindow, st[http.StatusUnauthorized])
	}
}

// Finding 1: 104 wrong passwords at once, from many clients, cannot reach
// the 30-day lock: it counts only checked failures, and each client's
// and the address's budgets stand in front of it.
func TestSignInBurstCannotLockTheOwnerOut(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) {
		o.TrustedProxies = trustLoopback
		o.Limits.UploadsPerClient = Rate{1000, time.Hour} // the setup opens the message 104 times
	})
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	bs := atSignIn(e, s, bob, maxFailuresInWindow+4)
	for i, b := range bs {
		b.forwardedFor = "198.51.100." + itoa(i%250+1)
	}
	burst(len(bs), func(i int) { bs[i].post("/signin", url.Values{"password": {"wrong password here"}}) })
	th, _ := e.store.Throttle(context.Background(), "acct:"+bob)
	if th.InWindow >= maxFailuresInWindow {
		t.Fatalf("one burst locked the owner out: %+v", th)
	}
	e.clock.Advance(DefaultLimits.SignInPerAddress.Per)
	if r := atSignIn(e, s, bob, 1)[0].post("/signin", url.Values{"password": {testPassword}}); r.status != http.StatusSeeOther {
		t.Fatalf("the owner after the burst's window: %d\n%s", r.status, r.body)
	}
}

// Finding 1: past the argon2 wait queue the answer is an immediate 503
// page in words, not a 20-second wait.
func TestSignInBusyWhenTheQueueIsFull(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) {
		o.Hasher = NewHasher(handlerArgon2, 1)
		o.Hasher.SetMaxWaiting(0)
		o.Hasher.SetMaxWait(time.Minute) // a request that waited would show
		o.TrustedProxies = trustLoopback
	})
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	hold, entered := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.portal.h.opts.Hasher.inSlot = func() { once.Do(func() { close(entered); <-hold }) }
	first := atSignIn(e, s, bob, 1)[0]
	done := make(chan response)
	go func() { done <- first.post("/signin", url.Values{"password": {testPassword}}) }()
	<-entered
	b := atSignIn(e, s, carol, 1)[0]
	b.forwardedFor = "198.51.100.9"
	start := time.Now()
	r := b.post("/signin", url.Values{"password": {"whatever whatever"}})
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "busy") || r.header.Get("Retry-After") == "" {
		t.Errorf("sign-in with every slot taken and no queue: %d %v\n%s", r.status, r.header, r.body)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the busy answer took %v: it waited for the slot", d)
	}
	close(hold)
	if r := <-done; r.status != http.StatusSeeOther {
		t.Errorf("the sign-in holding the slot: %d", r.status)
	}
}

// Finding 2: 12 simultaneous sets of wrong answers are checked no more
// often than 3 sequential ones, and the reset ends.
func TestAnswersBurstIsCheckedOnlyWithinBudget(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.TrustedProxies = trustLoopback })
	s := e.seal(alice, []string{bob}, plainMessage)
	e.browser().register(s, bob)
	b := atSignIn(e, s, bob, 1)[0]
	b.follow(b.post("/code", url.Values{"code": {e.sink.code(t, bob)}}))
	checks := countChecks(e)
	rs := make([]response, 12)
	burst(12, func(i int) {
		bb := *b // the same browser, seen from 12 clients
		bb.forwardedFor = "198.51.100." + itoa(i+1)
		rs[i] = bb.post("/reset/answers", url.Values{"a1": {"x"}, "a2": {"y"}, "a3": {"z"}})
	})
	budget := DefaultLimits.AnswersPerReset.N
	if n := int(checks.Load()); n != registerQuestions*budget {
		t.Errorf("12 simultaneous wrong sets ran %d answer checks, want %d (%d sets of %d)", n, registerQuestions*budget, budget, registerQuestions)
	}
	for _, r := range rs {
		// 401 for a checked or refused set; a 303 back to the message
		// once the reset has ended under a request's feet.
		if r.status != http.StatusUnauthorized && !(r.status == http.StatusSeeOther && strings.HasPrefix(r.header.Get("Location"), "/m/")) {
			t.Errorf("answer to a wrong set: %d %v", r.status, r.header.Get("Location"))
		}
	}
	r := b.post("/reset/answers", url.Values{"a1": {"fluffy"}, "a2": {"springfield"}, "a3": {"blue"}})
	if r.status == http.StatusSeeOther && r.header.Get("Location") == "/reset/password" {
		t.Fatal("right answers accepted after the burst spent the reset")
	}
}

// Finding 3: 12 simultaneous code requests (the address step, from 12
// browsers) mail 5 codes, not 12; every one still lands on the sign-in
// page, the refused ones marked for the metrics.
func TestCodeSendBurstMailsOnlyTheBudget(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	bs := make([]*browser, 12)
	for i := range bs {
		bs[i] = e.browser()
		bs[i].follow(bs[i].open(s))
	}
	rs := make([]response, len(bs))
	burst(len(bs), func(i int) { rs[i] = bs[i].email(bob) })
	budget := DefaultLimits.CodesPerAddress.N
	if n := e.sink.countTo(bob); n != budget {
		t.Errorf("12 simultaneous code requests mailed %d codes, want %d", n, budget)
	}
	locs := map[string]int{}
	for _, r := range rs {
		if r.status != http.StatusSeeOther {
			t.Errorf("a code request answered %d:\n%s", r.status, r.body)
		}
		locs[r.header.Get("Location")]++
	}
	if locs["/signin"] != budget || locs["/signin?codes=held"] != len(bs)-budget {
		t.Errorf("answers %v, want %d to /signin and %d to /signin?codes=held", locs, budget, len(bs)-budget)
	}
}

// Finding 4: a wrong code gets the same page, byte for byte, for an
// address with an account, one without (both given a code) and one the
// message was not sent to (no code).
func TestWrongCodePagesTellNothing(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob, carol}, plainMessage)
	e.browser().register(s, bob)
	const stranger = "dave@external.test" // not a recipient, no account
	wrongCode := func(addr string) string {
		b := atSignIn(e, s, addr, 1)[0]
		r := b.post("/code", url.Values{"code": {"12345678"}})
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: a wrong code answered %d", addr, r.status)
		}
		return strings.ReplaceAll(r.body, addr, "ADDRESS")
	}
	holder := wrongCode(bob)
	if other := wrongCode(carol); other != holder {
		t.Errorf("account holder and address without an account get different pages:\n%s\n---\n%s", holder, other)
	}
	if other := wrongCode(stranger); other != holder {
		t.Errorf("a recipient with a code and an address without one get different pages:\n%s\n---\n%s", holder, other)
	}
	// The count of tries left is there, and the same for every address.
	if !strings.Contains(holder, "You have 4 tries left with this code") {
		t.Errorf("the first wrong code does not say 4 tries are left:\n%s", holder)
	}
}

// The wrong-code page counts the tries left down to the last, the same
// for an address with a code and one without, and a new code starts the
// count afresh.
func TestWrongCodeCountsTriesLeft(t *testing.T) {
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob, carol}, plainMessage)
	const stranger = "dave@external.test" // not a recipient: gets no code
	tries := func(addr string) []string {
		b := atSignIn(e, s, addr, 1)[0]
		// The code is stored by the mail job, before its mail goes: a
		// reader can only type it after that. Tries made sooner find no
		// code, which spends none of its own (CI once got there first).
		e.portal.h.mail.wait()
		var pages []string
		for range codeTries + 1 {
			r := b.post("/code", url.Values{"code": {"12345678"}})
			if r.status != http.StatusUnauthorized {
				t.Fatalf("%s: wrong code answered %d", addr, r.status)
			}
			pages = append(pages, strings.ReplaceAll(r.body, addr, "ADDRESS"))
		}
		return pages
	}
	withCode, without := tries(carol), tries(stranger)
	for i := range withCode {
		if withCode[i] != without[i] {
			t.Errorf("wrong code %d: a recipient with a code and a stranger get different pages:\n%s\n---\n%s", i+1, withCode[i], without[i])
		}
	}
	for i, want := range []string{"4 tries left", "3 tries left", "2 tries left", "1 try left", "that was the last try", "that was the last try"} {
		if !strings.Contains(withCode[i], want) {
			t.Errorf("wrong code %d does not say %q:\n%s", i+1, want, withCode[i])
		}
	}
	// The count shown was the code's own: the store's code is spent too.
	err := e.store.ConsumeCode(context.Background(), keystore.CodeRegister, carol, CodeDigest(string(keystore.CodeRegister), carol, e.sink.code(t, carol)), e.clock.Now())
	if !errors.Is(err, keystore.ErrTooManyAttempts) {
		t.Errorf("after five wrong tries the store's code answers %v, want %v", err, keystore.ErrTooManyAttempts)
	}
	// A new code has all its tries again.
	b := atSignIn(e, s, carol, 1)[0]
	if r := b.post("/code", url.Values{"code": {"12345678"}}); !strings.Contains(r.body, "4 tries left") {
		t.Errorf("a new code does not start the count afresh:\n%s", r.body)
	}
	if r := b.post("/code", url.Values{"code": {e.sink.code(t, carol)}}); r.status != http.StatusSeeOther {
		t.Errorf("the new code after one wrong try: %d\n%s", r.status, r.body)
	}
}

// Twelve wrong codes at once for one address are checked no more often
// than five one after another: the counts shown are 4, 3, 2, 1 once each
// and the last-try words for the rest, and the code is dead after.
func TestWrongCodeBurstCountsOnce(t *testing.T) {
	e := newTestEnv(t, func(o *Options) { o.Limits.CodesPerAddress = Rate{100, time.Hour} })
	s := e.seal(alice, []string{bob}, plainMessage)
	bs := atSignIn(e, s, bob, 12) // each mailed a code: the last one is live
	code := e.sink.code(t, bob)   // the newest, the one the store holds
	wrong := "00000000"
	if code == wrong {
		wrong = "00000001"
	}
	rs := make([]response, len(bs))
	burst(len(bs), func(i int) { rs[i] = bs[i].post("/code", url.Values{"code": {wrong}}) })
	counts := map[string]int{}
	for _, r := range rs {
		if r.status != http.StatusUnauthorized {
			t.Fatalf("a wrong code in the burst answered %d", r.status)
		}
		for _, w := range []string{"4 tries left", "3 tries left", "2 tries left", "1 try left", "the last try"} {
			if strings.Contains(r.body, w) {
				counts[w]++
			}
		}
	}
	want := map[string]int{"4 tries left": 1, "3 tries left": 1, "2 tries left": 1, "1 try left": 1, "the last try": 8}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("the burst's pages say %v, want %v", counts, want)
	}
	err := e.store.ConsumeCode(context.Background(), keystore.CodeRegister, bob, CodeDigest(string(keystore.CodeRegister), bob, code), e.clock.Now())
	if !errors.Is(err, keystore.ErrTooManyAttempts) {
		t.Errorf("after the burst the store's code answers %v, want %v: the shown count and the code's own disagree", err, keystore.ErrTooManyAttempts)
	}
}

// Finding 4: the address step, which asks for a code, answers in the
// same time for an account holder and an address without an account
// (both recipients, both mailed a code) and for a recipient and a
// stranger (mailed nothing): medians of 200 interleaved requests within
// 20 %.
func TestSendCodeTimingTellsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs a quiet machine for a timing comparison")
	}
	// Room for every round: 2 pairs x 3 rounds x 2 x 200 requests from
	// one client (1000 ran out when the first pair took two rounds).
	e := newTestEnv(t, func(o *Options) {
		o.Limits.CodesPerAddress = Rate{10_000, time.Hour}
		o.Limits.CodesPerClient = Rate{10_000, time.Hour}
	})
	s := e.seal(alice, []string{bob, carol}, plainMessage)
	e.browser().register(s, bob)
	const stranger = "dave@external.test" // not a recipient, no account
	for _, tc := range []struct {
		one, other             string
		oneMailed, otherMailed bool
		note                   string
	}{
		{bob, carol, true, true, "an account holder vs an address without one"},
		{carol, stranger, true, false, "a recipient vs a stranger"},
	} {
		one, other := atSignIn(e, s, tc.one, 1)[0], atSignIn(e, s, tc.other, 1)[0]
		e.portal.h.mail.wait()
		oneBefore, otherBefore := e.sink.countTo(tc.one), e.sink.countTo(tc.other)
		const n = 200
		measure := func(b *browser) time.Duration {
			// Each answer is timed with the mail queue idle: what is
			// compared is the answer itself, not the previous request's
			// mail going out meanwhile.
			e.portal.h.mail.wait()
			start := time.Now()
			if r := b.again(); r.status != http.StatusSeeOther || r.header.Get("Location") != "/signin" {
				t.Fatalf("POST /email: %d %s\n%s", r.status, r.header.Get("Location"), r.body)
			}
			return time.Since(start)
		}
		// A machine shared with other test packages can stall one side
		// of a round; a real difference (the slow path on the request,
		// 2x before the fix) shows in every round, so up to three rounds
		// of n pairs are run and one round within 20 % passes.
		const rounds = 3
		var mh, mo time.Duration
		passed, ran := false, 0
		for round := 1; round <= rounds && !passed; round++ {
			ran = round
			var tOne, tOther []time.Duration
			for i := range n {
				// Alternate the order so that drift of the machine hits both.
				if i%2 == 0 {
					tOne = append(tOne, measure(one))
					tOther = append(tOther, measure(other))
				} else {
					tOther = append(tOther, measure(other))
					tOne = append(tOne, measure(one))
				}
			}
			mh, mo = median(tOne), median(tOther)
			ratio := float64(mh) / float64(mo)
			t.Logf("POST /email median, %s, round %d: %v vs %v (ratio %.2f)", tc.note, round, mh, mo, ratio)
			passed = ratio <= 1.2 && ratio >= 1/1.2
		}
		if !passed {
			t.Errorf("POST /email medians differ by more than 20%% in all %d rounds, %s: last %v vs %v", rounds, tc.note, mh, mo)
		}
		e.portal.h.mail.wait()
		for _, c := range []struct {
			addr   string
			mailed bool
			before int
		}{{tc.one, tc.oneMailed, oneBefore}, {tc.other, tc.otherMailed, otherBefore}} {
			want := 0
			if c.mailed {
				want = n * ran
			}
			if got := e.sink.countTo(c.addr) - c.before; got != want {
				t.Errorf("%s: %d codes mailed to %s, want %d", tc.note, got, c.addr, want)
			}
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Finding 8: 25 replies at once send 20, the account's budget; the rest
// get a page in words.
func TestReplyBurstSendsOnlyTheBudget(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.Uploads.PerClient = 100 }) // the budget, not the parallel cap

	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.register(s, bob)
	token := strings.TrimPrefix(b.open(s).header.Get("Location"), "/m/")
	before := e.sink.countTo(alice)
	rs := make([]response, 25)
	burst(25, func(i int) { rs[i] = b.postMultipart("/m/"+token+"/reply", [][2]string{{"body", "reply " + itoa(i)}}) })
	budget := DefaultLimits.RepliesPerAccount.N
	if n := e.sink.countTo(alice) - before; n != budget {
		t.Errorf("25 simultaneous replies delivered %d, want %d", n, budget)
	}
	st := statuses(rs)
	if st[http.StatusOK] != budget || st[http.StatusTooManyRequests] != 25-budget {
		t.Errorf("answers %v", st)
	}
	for _, r := range rs {
		if r.status == http.StatusTooManyRequests && !strings.Contains(r.body, "was not sent") {
			t.Errorf("the refusal does not say the reply was not sent:\n%s", r.body)
			break
		}
	}
}

// Finding 9: bidi controls leave a reply attachment's name.
func TestReplyAttachmentNameWithoutBidi(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.register(s, bob)
	token := strings.TrimPrefix(b.open(s).header.Get("Location"), "/m/")
	name := "x\u202Egpj.exe\u2066\u200F"
	r := b.postMultipart("/m/"+token+"/reply", [][2]string{{"body", "see file"}, {"file:files", name + "\x00MZ"}})
	if r.status != http.StatusOK {
		t.Fatalf("%d\n%s", r.status, r.body)
	}
	data := string(e.sink.last(t, alice).Data)
	for _, c := range []string{"\u202E", "\u2066", "\u200F", "%E2%80%AE", "=E2=80=AE", "4oCu"} {
		if strings.Contains(data, c) || strings.Contains(r.body, c) {
			t.Errorf("bidi control %q kept in the reply or the page", c)
		}
	}
	if !strings.Contains(data, "xgpj.exe") {
		t.Errorf("the cleaned name is not xgpj.exe:\n%s", data)
	}
}

// Finding 13: the session cookie lives as long as the browser session.
func TestSessionCookieIsABrowserSessionCookie(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage)
	b := e.browser()
	b.follow(b.open(s))
	r := b.email(bob)
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.Contains(strings.ToLower(c), "max-age") || strings.Contains(strings.ToLower(c), "expires") {
			t.Errorf("session cookie with a lifetime: %s", c)
		}
	}
	if len(r.header.Values("Set-Cookie")) == 0 {
		t.Fatal("no cookie set")
	}
}

// trustLoopback makes the test's own connections a trusted proxy, so each
// browser's forwardedFor is its client address.
var trustLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func itoa(i int) string { return strconv.Itoa(i) }
