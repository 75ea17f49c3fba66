package milter

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/catalog"
)

// Branding is one sender domain's look (Policy.Brands).
type Branding struct {
	Brand envelope.Brand
	// PortalURL is the reading site this domain's recipients use, e.g.
	// https://secure.example.com; empty: Config.PortalURL.
	PortalURL string
	// Language is the language of the notice and SecureMessageATT.html
	// for this domain's messages; zero: English.
	Language catalog.Lang
}

// policySnapshot is one compiled Policy. It is never changed once built:
// a reload builds a new one and swaps it in whole (Filter.SetPolicy), and
// every message keeps the snapshot it took at MAIL FROM until its verdict,
// so no message is ever decided under half of an old and half of a new
// policy.
type policySnapshot struct {
	Policy
	tag      *tagMatcher // nil without a subject tag
	internal domainSet
	senders  *senderSet // nil: every submitter may seal
	brands   map[string]Branding
}

// compilePolicy checks p and builds its lookup tables. It does the slow
// part of a reload (100 000 entries take milliseconds) outside any lock.
func compilePolicy(p Policy) (*policySnapshot, error) {
	if p.SubjectTag == "" && p.TriggerHeader == "" {
		return nil, errors.New("milter: neither a subject tag nor a trigger header is set: nothing could ever be sealed")
	}
	if p.MaxMessageSize <= 0 {
		return nil, errors.New("milter: max message size must be positive")
	}
	s := &policySnapshot{Policy: p}
	if p.SubjectTag != "" {
		s.tag = newTagMatcher(p.SubjectTag)
	}
	var err error
	if s.internal, err = newInternalSet(p.InternalDomains); err != nil {
		return nil, fmt.Errorf("internal domains: %w", err)
	}
	s.brands = make(map[string]Branding, len(p.Brands))
	for domain, b := range p.Brands {
		if err := b.Brand.Check(); err != nil {
			return nil, fmt.Errorf("brand of %q: %w", domain, err)
		}
		if b.PortalURL != "" {
			u, err := url.Parse(b.PortalURL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return nil, fmt.Errorf("brand of %q: portal URL %q is not an http(s) URL", domain, b.PortalURL)
			}
			b.PortalURL = strings.TrimSuffix(b.PortalURL, "/")
		}
		s.brands[strings.ToLower(strings.TrimSuffix(domain, "."))] = b
	}
	if p.RestrictSenders {
		if s.senders, err = newSenderSet(p.Senders); err != nil {
			return nil, fmt.Errorf("senders: %w", err)
		}
	}
	return s, nil
}

// isInternal reports whether mail to addr stays on this host: its domain is
// one of the internal domains, or it has no domain at all (a local user).
func (p *policySnapshot) isInternal(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return true
	}
	return p.internal.contains(strings.ToLower(strings.TrimSuffix(addr[at+1:], ".")))
}

// entitled reports whether identity may send encrypted mail.
func (p *policySnapshot) entitled(identity string) bool {
	return p.senders == nil || p.senders.contains(identity)
}

// PolicyStats describes the policy in force, for the log of a reload.
type PolicyStats struct {
	InternalDomains int
	// Senders is the number of sender entries, -1 when every submitter
	// may seal.
	Senders int
}

// SetPolicy checks p and puts it in force for every message that starts
// after it returns; messages in flight finish under the policy they
// started with. On an error the policy in force stays as it was.
func (f *Filter) SetPolicy(p Policy) (PolicyStats, error) {
	s, err := compilePolicy(p)
	if err != nil {
		return PolicyStats{}, err
	}
	f.policy.Store(s)
	return s.stats(), nil
}

func (p *policySnapshot) stats() PolicyStats {
	st := PolicyStats{InternalDomains: p.internal.len(), Senders: -1}
	if p.senders != nil {
		st.Senders = p.senders.len()
	}
	return st
}

// PolicyStats describes the policy in force.
func (f *Filter) PolicyStats() PolicyStats { return f.policy.Load().stats() }

// identity is who is sending for the entitlement check: the SMTP AUTH
// identity when there is one, so that a forged From or envelope sender
// gains nothing; else the envelope sender of a trusted-network client.
func identity(authAuthen, envelopeFrom string) string {
	if authAuthen != "" {
		return authAuthen
	}
	return strings.Trim(strings.TrimSpace(envelopeFrom), "<>")
}

// brandFor returns the branding of the sender's domain, or of its nearest
// parent domain that has one, or the default ("").
func (p *policySnapshot) brandFor(sender string) Branding {
	_, b, _ := LookupBrand(p.brands, sender)
	return b
}

// LookupBrand finds sender's entry in brands (keyed by lowercase domain,
// "" the default): its domain's, else its nearest parent domain's, else
// the default. key is the entry's key; ok is false when none applies.
func LookupBrand(brands map[string]Branding, sender string) (key string, b Branding, ok bool) {
	if len(brands) == 0 {
		return "", Branding{}, false
	}
	if at := strings.LastIndexByte(sender, '@'); at >= 0 {
		domain := strings.ToLower(strings.TrimSuffix(strings.Trim(sender[at+1:], "<> "), "."))
		for domain != "" {
			if b, ok := brands[domain]; ok {
				return domain, b, true
			}
			dot := strings.IndexByte(domain, '.')
			if dot < 0 {
				break
			}
			domain = domain[dot+1:]
		}
	}
	b, ok = brands[""]
	return "", b, ok
}
