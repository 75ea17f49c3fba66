package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/securemail/securemail/milter"
)

// policyLists are the policy's lists with the list files read: what the
// milter gets. loadConfig fills them once the configuration is valid, and
// every reload reads the files again.
type policyLists struct {
	internalDomains []string
	senders         []string
	// restrictSenders is set when policy.senders or policy.senders_files
	// names anything: only the listed senders may seal. With neither,
	// everyone may (the behaviour before entitlement existed).
	restrictSenders bool
	// brands is the branding section with the logo files read.
	brands map[string]milter.Branding
}

// readPolicyLists reads policy.internal_domains_files and
// policy.senders_files and joins them to the inline entries. A file that
// cannot be read or holds a bad entry fails the whole configuration: a
// partial list could refuse paying customers or seal for others.
func (c *Config) readPolicyLists() (policyLists, error) {
	var l policyLists
	var err error
	l.internalDomains, err = joinList("policy.internal_domains", c.Policy.InternalDomains,
		"policy.internal_domains_files", c.Policy.InternalDomainsFiles, milter.DomainList)
	if err != nil {
		return policyLists{}, err
	}
	l.senders, err = joinList("policy.senders", c.Policy.Senders,
		"policy.senders_files", c.Policy.SendersFiles, milter.SenderList)
	if err != nil {
		return policyLists{}, err
	}
	l.restrictSenders = len(nonEmpty(c.Policy.Senders)) > 0 || len(nonEmpty(c.Policy.SendersFiles)) > 0
	if l.brands, err = c.readBranding(); err != nil {
		return policyLists{}, err
	}
	return l, nil
}

func joinList(inlineKey string, inline []string, filesKey string, files []string, kind milter.ListKind) ([]string, error) {
	out := make([]string, 0, len(inline))
	for _, e := range inline {
		if strings.TrimSpace(e) == "" {
			continue
		}
		// The same check as the files get, so an inline typo is named
		// here rather than by the milter.
		got, err := milter.ReadList(strings.NewReader(e), kind)
		if err != nil || len(got) != 1 {
			return nil, fmt.Errorf("%s: %q is not a %s entry (see contrib/securemail.example.yaml)", inlineKey, e, kind)
		}
		out = append(out, got[0])
	}
	for _, path := range nonEmpty(files) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filesKey, err)
		}
		got, err := milter.ReadList(f, kind)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", filesKey, path, err)
		}
		out = append(out, got...)
	}
	return out, nil
}
