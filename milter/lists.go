package milter

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ListKind says what the entries of a list name.
type ListKind int

const (
	// DomainList entries are domains ("example.com": that domain) and
	// ".example.com" (every subdomain of example.com, not example.com
	// itself), as Policy.InternalDomains.
	DomainList ListKind = iota
	// SenderList entries are addresses or login names ("zoe@example.com",
	// "zoe"), "@example.com" (every sender of that domain) and
	// ".example.com" (every sender of a subdomain), as Policy.Senders.
	SenderList
)

func (k ListKind) String() string {
	if k == SenderList {
		return "sender"
	}
	return "domain"
}

// ErrBadListEntry is wrapped by the errors about an entry that is none of
// the forms its list allows.
var ErrBadListEntry = errors.New("milter: bad list entry")

// maxListLine bounds one line of a list file.
const maxListLine = 4 << 10

// ReadList reads a list file: one entry per line, blank lines and
// everything after a '#' ignored, blanks around an entry trimmed. It checks
// every entry against kind and names the line of the first bad one. A
// provider's billing system can write such a file; the lookups it feeds
// take the same time for 10 or 100 000 entries.
func ReadList(r io.Reader, kind ListKind) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxListLine)
	var out []string
	for line := 1; sc.Scan(); line++ {
		entry := sc.Text()
		if i := strings.IndexByte(entry, '#'); i >= 0 {
			entry = entry[:i]
		}
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		norm, err := normalizeEntry(kind, entry)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, norm)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("a line is longer than %d bytes: %w", maxListLine, ErrBadListEntry)
		}
		return nil, err
	}
	return out, nil
}

// normalizeEntry checks one entry and returns it lowercased, without a
// trailing dot on its domain.
func normalizeEntry(kind ListKind, entry string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(entry))
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %q %s", ErrBadListEntry, entry, why)
	}
	for _, c := range e {
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == ',' || c == ';' {
			return bad("holds a blank, a control character or one of <>,;")
		}
	}
	if e == "" {
		return bad("is empty")
	}
	switch kind {
	case DomainList:
		if strings.Contains(e, "@") {
			return bad("is not a domain (write example.com, or .example.com for its subdomains)")
		}
		d := strings.TrimSuffix(strings.TrimPrefix(e, "."), ".")
		if !validDomain(d) {
			return bad("is not a domain (write example.com, or .example.com for its subdomains)")
		}
		if strings.HasPrefix(e, ".") {
			return "." + d, nil
		}
		return d, nil
	default:
		at := strings.LastIndexByte(e, '@')
		switch {
		case strings.HasPrefix(e, "."):
			d := strings.TrimSuffix(e[1:], ".")
			if !validDomain(d) {
				return bad("is not .domain")
			}
			return "." + d, nil
		case at == 0:
			d := strings.TrimSuffix(e[1:], ".")
			if !validDomain(d) {
				return bad("is not @domain")
			}
			return "@" + d, nil
		case at > 0:
			d := strings.TrimSuffix(e[at+1:], ".")
			if !validDomain(d) || strings.Contains(e[:at], "@") {
				return bad("is not an address (write zoe@example.com, @example.com or .example.com)")
			}
			return e[:at+1] + d, nil
		}
		// A login name without a domain, as SMTP AUTH may report it.
		return e, nil
	}
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for _, c := range d {
		if c == '@' || c == '/' || c == '\\' || c == '[' || c == ']' || c == '(' || c == ')' || c == '"' {
			return false
		}
	}
	return true
}

// domainSet answers "is this domain listed" in time independent of the
// number of entries: one map probe for the domain and one per parent
// domain for the ".example.com" entries.
type domainSet struct {
	exact   map[string]struct{}
	parents map[string]struct{} // "example.com" for an entry ".example.com"
}

func newDomainSet(n int) domainSet {
	return domainSet{exact: make(map[string]struct{}, n), parents: map[string]struct{}{}}
}

// add takes a normalised domain entry.
func (s domainSet) add(entry string) {
	if strings.HasPrefix(entry, ".") {
		s.parents[entry[1:]] = struct{}{}
	} else {
		s.exact[entry] = struct{}{}
	}
}

func (s domainSet) len() int { return len(s.exact) + len(s.parents) }

// contains takes a lowercased domain without a trailing dot.
func (s domainSet) contains(domain string) bool {
	if _, ok := s.exact[domain]; ok {
		return true
	}
	if len(s.parents) == 0 {
		return false
	}
	for i := 0; i < len(domain); i++ {
		if domain[i] == '.' {
			if _, ok := s.parents[domain[i+1:]]; ok {
				return true
			}
		}
	}
	return false
}

// senderSet is the compiled Policy.Senders.
type senderSet struct {
	addrs   map[string]struct{}
	domains domainSet // "@example.com" as exact, ".example.com" as parents
}

func newSenderSet(entries []string) (*senderSet, error) {
	s := &senderSet{addrs: make(map[string]struct{}, len(entries)), domains: newDomainSet(0)}
	for _, raw := range entries {
		e, err := normalizeEntry(SenderList, raw)
		if err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(e, "@"):
			s.domains.exact[e[1:]] = struct{}{}
		case strings.HasPrefix(e, "."):
			s.domains.parents[e[1:]] = struct{}{}
		default:
			s.addrs[e] = struct{}{}
		}
	}
	return s, nil
}

func (s *senderSet) len() int { return len(s.addrs) + s.domains.len() }

// contains reports whether identity (an address or a login name) is listed.
func (s *senderSet) contains(identity string) bool {
	id := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(identity), "."))
	if _, ok := s.addrs[id]; ok {
		return true
	}
	at := strings.LastIndexByte(id, '@')
	if at < 0 {
		return false
	}
	return s.domains.contains(id[at+1:])
}

// newInternalSet compiles Policy.InternalDomains.
func newInternalSet(entries []string) (domainSet, error) {
	s := newDomainSet(len(entries))
	for _, raw := range entries {
		if strings.TrimSpace(raw) == "" {
			continue
		}
		e, err := normalizeEntry(DomainList, raw)
		if err != nil {
			return domainSet{}, err
		}
		s.add(e)
	}
	return s, nil
}
