package milter

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/emersion/go-milter"
)

// restricted returns a config mutator that limits sealing to senders.
func restricted(senders ...string) func(*Config) {
	return func(c *Config) {
		c.Policy.RestrictSenders = true
		c.Policy.Senders = senders
	}
}

func assertNotEntitled(t *testing.T, e *testEnv, o outcome) {
	t.Helper()
	if o.action.Code != gomilter.ActReplyCode || o.action.SMTPCode != 550 || !strings.HasPrefix(o.action.SMTPText, "5.7.1 ") {
		t.Fatalf("got %+v at %s, want 550 5.7.1", o.action, o.stage)
	}
	if o.stage != "eoh" {
		t.Errorf("refused at %s, want at the end of the headers", o.stage)
	}
	for _, want := range []string{"Encrypted email is not enabled for your account", "remove [encrypt]", "ask your provider"} {
		if !strings.Contains(o.action.SMTPText, want) {
			t.Errorf("reply %q lacks %q", o.action.SMTPText, want)
		}
	}
	if o.bodyReplaced() || len(o.mods) != 0 {
		t.Error("a refused message was modified")
	}
	if e.keysCommitted() != 0 {
		t.Fatal("a key was created for a sender without the feature")
	}
}

func TestEntitlement(t *testing.T) {
	t.Parallel()
	with := func(m testMsg, f func(*testMsg)) testMsg { m = m.clone(); f(&m); return m }
	base := tagged("Lunch [encrypt] plans", "alice@external.test", secretBody())
	auth := func(id string) func(*testMsg) { return func(m *testMsg) { m.macros["{auth_authen}"] = id } }
	const (
		sealed = iota
		refused
		untouched
		stripped
	)
	tests := []struct {
		name    string
		senders []string // nil: not restricted
		msg     testMsg
		want    int
	}{
		{"unrestricted: everyone seals", nil, with(base, auth("nobody@elsewhere.test")), sealed},
		{"listed address", []string{"zoe@example.test"}, with(base, auth("zoe@example.test")), sealed},
		{"listed address in another case", []string{"Zoe@Example.TEST"}, with(base, auth("zoe@EXAMPLE.test")), sealed},
		{"listed login name", []string{"zoe"}, with(base, auth("zoe")), sealed},
		{"@domain entry", []string{"@example.test"}, with(base, auth("anyone@example.test")), sealed},
		{"@domain entry does not cover subdomains", []string{"@example.test"}, with(base, auth("anyone@sub.example.test")), refused},
		{".domain entry covers subdomains", []string{".example.test"}, with(base, auth("anyone@deep.sub.example.test")), sealed},
		{".domain entry does not cover the domain", []string{".example.test"}, with(base, auth("anyone@example.test")), refused},
		{"not listed: tagged refused", []string{"zoe@example.test"}, with(base, auth("mallory@example.test")), refused},
		{"not listed: untagged delivered as usual", []string{"zoe@example.test"}, with(base, func(m *testMsg) {
			auth("mallory@example.test")(m)
			m.headers[2][1] = "Lunch plans"
		}), untouched},
		{"not listed: trigger header refused too", []string{"zoe@example.test"}, with(base, func(m *testMsg) {
			auth("mallory@example.test")(m)
			m.headers[2][1] = "Lunch plans"
			m.headers = append(m.headers, [2]string{"X-Secure-Send", "yes"})
		}), refused},
		{"not listed: tagged to internal only refused", []string{"zoe@example.test"}, with(base, func(m *testMsg) {
			auth("mallory@example.test")(m)
			m.rcpts = []string{"bob@example.test"}
		}), refused},
		{"listed: tagged to internal only stripped", []string{"zoe@example.test"}, with(base, func(m *testMsg) {
			auth("zoe@example.test")(m)
			m.rcpts = []string{"bob@example.test"}
		}), stripped},
		{"forged envelope sender and From gain nothing: AUTH identity decides", []string{"zoe@example.test"}, with(base, func(m *testMsg) {
			auth("mallory@example.test")(m) // base's MAIL FROM and From are zoe's
		}), refused},
		{"trusted network without AUTH: envelope sender decides", []string{"zoe@example.test"}, with(base, func(m *testMsg) {
			m.macros = map[string]string{"{client_addr}": "10.1.9.9", "{tls_version}": "TLSv1.3"}
			m.from = "<zoe@example.test>"
		}), sealed},
		{"trusted network without AUTH: unlisted envelope sender refused", []string{"zoe@example.test"}, with(base, func(m *testMsg) {
			m.macros = map[string]string{"{client_addr}": "10.1.9.9", "{tls_version}": "TLSv1.3"}
			m.from = "carl@example.test"
		}), refused},
		{"empty list: nobody seals", []string{}, with(base, auth("zoe@example.test")), refused},
		{"tagged mail from the internet stays untouched", []string{"zoe@example.test"}, with(base, func(m *testMsg) {
			m.macros = map[string]string{"{client_addr}": "203.0.113.5", "{tls_version}": "TLSv1.3"}
		}), untouched},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mutate func(*Config)
			if tc.senders != nil {
				mutate = restricted(tc.senders...)
			}
			e := newTestEnv(t, nil, mutate)
			o := e.send(t, e.newSession(t), tc.msg)
			switch tc.want {
			case sealed:
				assertSealed(t, e, func() testMsg {
					m := tc.msg.clone()
					m.from = strings.Trim(m.from, "<>")
					return m
				}(), o)
			case refused:
				assertNotEntitled(t, e, o)
				if !strings.Contains(e.logBuf.String(), "verdict=\"not entitled\"") {
					t.Errorf("log lacks the not-entitled verdict:\n%s", e.logBuf.String())
				}
			case untouched:
				assertUntouched(t, o, tc.msg)
			case stripped:
				if o.action.Code != gomilter.ActAccept || o.bodyReplaced() || !bytes.Contains(o.message(), []byte(secretMarker)) {
					t.Fatalf("internal message: %+v", o.action)
				}
				if got := o.header("Subject"); len(got) != 1 || got[0] != "Lunch plans" {
					t.Fatalf("subject %q, want the tag stripped", got)
				}
			}
		})
	}
}

func TestEntitlementReplyWithoutSubjectTag(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil, func(c *Config) {
		restricted("zoe@example.test")(c)
		c.Policy.SubjectTag = ""
	})
	m := tagged("Lunch plans", "alice@external.test", secretBody())
	m.macros["{auth_authen}"] = "mallory@example.test"
	m.headers = append(m.headers, [2]string{"X-Secure-Send", "yes"})
	o := e.send(t, e.newSession(t), m)
	if o.action.SMTPCode != 550 || !strings.Contains(o.action.SMTPText, "turn off secure sending") {
		t.Fatalf("got %+v", o.action)
	}
}

func TestReadList(t *testing.T) {
	t.Parallel()
	in := "# written by billing\nZoe@Example.TEST\n  @shop.test   # a whole customer domain\n.corp.test.\nalice\n\n"
	got, err := ReadList(strings.NewReader(in), SenderList)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"zoe@example.test", "@shop.test", ".corp.test", "alice"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ReadList = %q, want %q", got, want)
	}
	doms, err := ReadList(strings.NewReader("example.test\n.Hosted.test\n"), DomainList)
	if err != nil || fmt.Sprint(doms) != "[example.test .hosted.test]" {
		t.Fatalf("domains %q %v", doms, err)
	}
	for _, tc := range []struct {
		kind ListKind
		in   string
		line string
	}{
		{SenderList, "ok@example.test\nzoe example.test\n", "line 2"},
		{SenderList, "a@b@c.test\n", "line 1"},
		{SenderList, "\n\n@\n", "line 3"},
		{DomainList, "zoe@example.test\n", "line 1"},
		{DomainList, "a..b\n", "line 1"},
		{SenderList, strings.Repeat("x", maxListLine+1) + "\n", "longer than"},
	} {
		_, err := ReadList(strings.NewReader(tc.in), tc.kind)
		if !errors.Is(err, ErrBadListEntry) || !strings.Contains(err.Error(), tc.line) {
			t.Errorf("ReadList(%q) error %v, want a bad entry at %s", tc.in[:min(len(tc.in), 30)], err, tc.line)
		}
	}
}

func TestNewFilterRefusesBadEntries(t *testing.T) {
	t.Parallel()
	for _, p := range []func(*Policy){
		func(p *Policy) { p.InternalDomains = []string{"example.test", "bob@example.test"} },
		func(p *Policy) { p.RestrictSenders, p.Senders = true, []string{"zoe example.test"} },
	} {
		pol := testPolicy()
		p(&pol)
		if _, err := compilePolicy(pol); !errors.Is(err, ErrBadListEntry) {
			t.Errorf("compilePolicy(%+v) = %v, want a bad entry error", pol, err)
		}
	}
}

// FuzzReadList checks that the list reader never panics and that what it
// returns is already normal: read again, every entry comes back the same.
func FuzzReadList(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kind := range []ListKind{SenderList, DomainList} {
			got, err := ReadList(bytes.NewReader(data), kind)
			if err != nil {
				continue
			}
			again, err := ReadList(strings.NewReader(strings.Join(got, "\n")), kind)
			if err != nil || fmt.Sprint(again) != fmt.Sprint(got) {
				t.Fatalf("%v list %q read back as %q (%v)", kind, got, again, err)
			}
			if kind == SenderList {
				if _, err := newSenderSet(got); err != nil {
					t.Fatal(err)
				}
			} else if _, err := newInternalSet(got); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestReloadUnderLoadNeverMixesPolicies swaps between two policies while
// many messages, released together, are in flight. Policy A seals
// "[encrypt]" for zoe only; policy B knows the tag "[secure]" and lets
// nobody seal. A message under A is sealed, under B passes untouched (its
// tag means nothing there); only a mix of A's tag with B's sender list
// could refuse it. The swaps run without pause, so the policy changes
// between a message's MAIL FROM and its headers: a message that re-read
// the policy would be caught.
func TestReloadUnderLoadNeverMixesPolicies(t *testing.T) {
	t.Parallel()
	polA := testPolicy()
	polA.RestrictSenders, polA.Senders = true, []string{"zoe@example.test"}
	polB := testPolicy()
	polB.SubjectTag = "[secure]"
	polB.RestrictSenders, polB.Senders = true, nil
	e := newTestEnv(t, nil, func(c *Config) { c.Policy = polA })

	const n = 24
	sessions := make([]*gomilter.ClientSession, n)
	for i := range sessions {
		sessions[i] = e.newSession(t)
	}
	var ready, start sync.WaitGroup
	ready.Add(n)
	start.Add(1)
	results := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			start.Wait()
			m := tagged("Round [encrypt] "+fmt.Sprint(i), "alice@external.test", secretBody())
			m.macros["{auth_authen}"] = "zoe@example.test"
			results[i] = e.send(t, sessions[i], m)
		}()
	}
	stop := make(chan struct{})
	swaps := make(chan int)
	go func() {
		k := 0
		defer func() { swaps <- k }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := polA
			if k%2 == 0 {
				p = polB
			}
			if _, err := e.filter.SetPolicy(p); err != nil {
				t.Error(err)
				return
			}
			k++
		}
	}()
	ready.Wait()
	start.Done()
	wg.Wait()
	close(stop)
	k := <-swaps
	var nSealed, nPlain int
	for i, o := range results {
		switch {
		case o.stage == "eom" && o.action.Code == gomilter.ActAccept && o.bodyReplaced():
			nSealed++
		case o.stage == "eom" && o.action.Code == gomilter.ActAccept && len(o.mods) == 0:
			nPlain++
		default:
			t.Errorf("message %d decided under a mixed policy: %+v at %s", i, o.action, o.stage)
		}
	}
	if e.keysCommitted() != nSealed {
		t.Errorf("%d keys for %d sealed messages", e.keysCommitted(), nSealed)
	}
	t.Logf("%d policy swaps during %d messages: %d sealed, %d passed", k, n, nSealed, nPlain)
}

// TestMessageKeepsThePolicyOfItsMailFrom reloads between one message's
// MAIL FROM and its headers: the message is decided under the old policy,
// the next one under the new.
func TestMessageKeepsThePolicyOfItsMailFrom(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil, nil)
	s := e.newSession(t)
	m := tagged("Lunch [encrypt] plans", "alice@external.test", secretBody())
	m.afterMail = func() {
		pol := testPolicy()
		pol.RestrictSenders = true // nobody
		if _, err := e.filter.SetPolicy(pol); err != nil {
			t.Error(err)
		}
	}
	assertSealed(t, e, m, e.send(t, s, m))

	next := tagged("Lunch [encrypt] plans", "alice@external.test", secretBody())
	o := e.send(t, s, next)
	if o.action.SMTPCode != 550 || e.keysCommitted() != 1 {
		t.Fatalf("message after the reload: %+v, %d keys; want 550 and still 1 key", o.action, e.keysCommitted())
	}
}
