package portal

// The server's share of a first visit (issue 14): the sum of the answer
// times of every request from "Click to read message" to the message
// (POST /open, the email page, the address step, the sign-in page, the
// code, the account page, creating the account, the message), without a
// browser, with argon2id at the default cost (64 MiB, t=3, p=4, two at a
// time), as serve runs it:
//
//	go test ./portal -run '^$' -bench BenchmarkFirstVisitJourney -benchtime 10x -count 1
//
// It reports server-ms/journey (the target is under 1500) and, of it,
// create-account-ms/journey (the POST that hashes the password and the
// answers). The wait for the code mail (on the queue, after the answer)
// is not counted.

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

func BenchmarkFirstVisitJourney(b *testing.B) {
	e := newTestEnv(b, func(o *Options) {
		o.Hasher = NewHasher(DefaultArgon2, 2)
		o.Limits.CodesPerClient = Rate{1 << 20, time.Hour}
		o.Limits.UploadsPerClient = Rate{1 << 20, time.Hour}
	})
	var total, create time.Duration
	var requests int
	for i := 0; b.Loop(); i++ {
		// A new recipient each time: every journey is a first visit.
		addr := fmt.Sprintf("reader%d@external.test", i)
		s := e.seal(alice, []string{addr}, plainMessage)
		var spent time.Duration
		br := e.browser()
		br.spent = &spent
		n := 0
		step := func(r response) response { n++; return r }
		page := br.follow(step(br.open(s)))
		n++
		if !strings.Contains(page.body, `action="/email"`) {
			b.Fatalf("no email page:\n%s", page.body)
		}
		page = br.follow(step(br.email(addr)))
		n++
		br.spent = nil
		code := e.sink.code(b, addr) // the mail, on the queue: not the answer's time
		br.spent = &spent
		page = br.follow(step(br.post("/code", url.Values{"code": {code}})))
		n++
		if !strings.Contains(page.body, "Create your account") {
			b.Fatalf("code not accepted:\n%s", page.body)
		}
		before := spent
		created := step(br.post("/register/password", registrationForm(testPassword)))
		create += spent - before
		page = br.follow(created)
		n++
		if !strings.Contains(page.body, "Quarterly numbers") {
			b.Fatalf("no message at the end:\n%s", page.body)
		}
		total += spent
		requests = n
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "server-ms/journey")
	b.ReportMetric(float64(create.Milliseconds())/float64(b.N), "create-account-ms/journey")
	b.ReportMetric(float64(requests), "requests/journey")
}
