package milter

import (
	"fmt"
	"testing"
)

// benchPolicy, when set, adjusts the policy of the filters newBenchEnv
// starts.
var benchPolicy func(*Policy)

// bigLists returns n sender entries (the bench sender among them) and n
// internal domains, as a hosting provider's billing system writes them.
func bigLists(n int) (senders, domains []string) {
	senders = make([]string, 0, n+2)
	domains = make([]string, 0, n+1)
	for i := range n {
		senders = append(senders, fmt.Sprintf("user%06d@customer%05d.test", i, i%50_000))
		domains = append(domains, fmt.Sprintf("customer%06d.test", i))
	}
	senders = append(senders, "zoe", "zoe@example.test", ".hosted.test")
	domains = append(domains, "example.test", ".corp.test")
	return senders, domains
}

// BenchmarkMilterLists100k is BenchmarkMilter's 1 KiB cases with and
// without 100 000-entry sender and domain lists, in one run: "lists-100k"
// against "securemail" (today's policy, no sender list) is the cost of
// entitlement at that size.
func BenchmarkMilterLists100k(b *testing.B) {
	plain := newBenchEnv(b)
	senders, domains := bigLists(100_000)
	benchPolicy = func(p *Policy) {
		p.RestrictSenders, p.Senders = true, senders
		p.InternalDomains = domains
	}
	big := newBenchEnv(b)
	benchPolicy = nil
	for _, c := range benchCases[:2] {
		b.Run(c.name, func(b *testing.B) {
			b.Run("noop", func(b *testing.B) { benchSequential(b, plain.targets()[0], c) })
			b.Run("securemail", func(b *testing.B) { benchSequential(b, plain.targets()[1], c) })
			b.Run("lists-100k", func(b *testing.B) {
				tg := big.targets()[1]
				benchSequential(b, tg, c)
			})
		})
	}
}

// BenchmarkLookup measures one entitlement and one internal-domain lookup
// against lists of 10 and 100 000 entries: the time must not grow with the
// list.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10, 100_000} {
		senders, domains := bigLists(n)
		pol := testPolicy()
		pol.RestrictSenders, pol.Senders, pol.InternalDomains = true, senders, domains
		s, err := compilePolicy(pol)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("entries-%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !s.entitled("zoe@example.test") || s.entitled("mallory@elsewhere.test") ||
					!s.isInternal("bob@mx.deep.corp.test") || s.isInternal("alice@external.test") {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}

// BenchmarkCompilePolicy100k is the milter's share of a reload of 100 000
// senders and 100 000 domains.
func BenchmarkCompilePolicy100k(b *testing.B) {
	senders, domains := bigLists(100_000)
	pol := testPolicy()
	pol.RestrictSenders, pol.Senders, pol.InternalDomains = true, senders, domains
	for b.Loop() {
		if _, err := compilePolicy(pol); err != nil {
			b.Fatal(err)
		}
	}
}
