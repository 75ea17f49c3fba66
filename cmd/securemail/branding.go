package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/catalog"
	"github.com/securemail/securemail/milter"
	"github.com/securemail/securemail/portal"
)

// BrandConfig is one entry of the branding section. A list of entries
// rather than a map keyed by domain: the configuration loader splits keys
// at dots, so "example.com:" could not be a key.
type BrandConfig struct {
	// Domain is the sender domain (subdomains included) the entry is for;
	// unused in branding.default.
	Domain       string `mapstructure:"domain"`
	Organisation string `mapstructure:"organisation"`
	// Logo is a PNG or SVG file of at most 48 KiB.
	Logo      string `mapstructure:"logo"`
	Accent    string `mapstructure:"accent"`
	Support   string `mapstructure:"support"`
	PortalURL string `mapstructure:"portal_url"`
	// Language is the notice's and the page's: en (the default) or de.
	Language string `mapstructure:"language"`
}

// readBranding reads the branding section, logo files included, into the
// milter's form. Any problem refuses the whole configuration.
func (c *Config) readBranding() (map[string]milter.Branding, error) {
	out := map[string]milter.Branding{}
	add := func(key, domain string, b BrandConfig) error {
		br := milter.Branding{Brand: envelope.Brand{Organisation: strings.TrimSpace(b.Organisation),
			Accent: strings.TrimSpace(b.Accent), Support: strings.TrimSpace(b.Support)}}
		if b.Logo != "" {
			data, err := os.ReadFile(b.Logo)
			if err != nil {
				return fmt.Errorf("%s.logo: %w", key, err)
			}
			if br.Brand.Logo, err = envelope.LogoDataURI(data); err != nil {
				return fmt.Errorf("%s.logo: %s: %w", key, b.Logo, err)
			}
		}
		if err := br.Brand.Check(); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if b.PortalURL != "" {
			if err := checkPublicURL(key+".portal_url", b.PortalURL); err != nil {
				return err
			}
			br.PortalURL = strings.TrimSuffix(b.PortalURL, "/")
		}
		lang, err := catalog.Parse(b.Language)
		if err != nil {
			return fmt.Errorf("%s.language: %w", key, err)
		}
		if b.Language != "" {
			// Set, even to English: an entry replaces the default whole.
			br.Language = lang
		}
		if br != (milter.Branding{}) {
			out[domain] = br
		}
		return nil
	}
	if err := add("branding.default", "", c.Branding.Default); err != nil {
		return nil, err
	}
	if c.Branding.Default.Domain != "" {
		return nil, fmt.Errorf("branding.default.domain: the default applies to every domain without an entry; put %q under branding.domains", c.Branding.Default.Domain)
	}
	for i, b := range c.Branding.Domains {
		key := fmt.Sprintf("branding.domains[%d]", i)
		d, err := milter.ReadList(strings.NewReader(b.Domain), milter.DomainList)
		if err != nil || len(d) != 1 || strings.HasPrefix(d[0], ".") {
			return nil, fmt.Errorf("%s.domain %q is not a domain such as example.com", key, b.Domain)
		}
		if _, dup := out[d[0]]; dup {
			return nil, fmt.Errorf("%s.domain %s is listed twice", key, d[0])
		}
		if err := add(key, d[0], b); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// portalBrands gives the portal the branding in force; a reload swaps it.
type portalBrands struct {
	cur atomic.Pointer[map[string]milter.Branding]
}

var _ portal.Brands = (*portalBrands)(nil)

func newPortalBrands(c *Config) *portalBrands {
	p := &portalBrands{}
	p.set(c)
	return p
}

func (p *portalBrands) set(c *Config) {
	m := c.lists.brands
	p.cur.Store(&m)
}

// defaultBrandID names branding.default in the portal's URLs.
const defaultBrandID = "default"

func (p *portalBrands) ForSender(sender string) (string, envelope.Brand, bool) {
	key, b, ok := milter.LookupBrand(*p.cur.Load(), sender)
	if !ok || b.Brand == (envelope.Brand{}) {
		return "", envelope.Brand{}, false
	}
	if key == "" {
		key = defaultBrandID
	}
	return key, b.Brand, true
}

// Language is the language of sender's entry (its domain's, else the
// default), as the milter writes that sender's notices; "" is English.
func (p *portalBrands) Language(sender string) catalog.Lang {
	_, b, _ := milter.LookupBrand(*p.cur.Load(), sender)
	return b.Language
}

func (p *portalBrands) ByID(id string) (envelope.Brand, bool) {
	if id == defaultBrandID {
		id = ""
	}
	b, ok := (*p.cur.Load())[id]
	return b.Brand, ok
}

// checkPublicURL applies portal.url's rule to another reading-site URL.
func checkPublicURL(key, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s %q must be an http:// or https:// URL", key, raw)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("%s %s is plain HTTP on a host that is not loopback; use https://", key, raw)
	}
	return nil
}

// portalHosts are the host names the portal answers on: portal.url's and
// every branding portal_url's.
func portalHosts(c *Config) map[string]bool {
	hosts := map[string]bool{}
	add := func(raw string) {
		if u, err := url.Parse(raw); err == nil && u.Hostname() != "" {
			hosts[strings.ToLower(u.Hostname())] = true
			if isLoopbackHost(u.Hostname()) {
				// A loopback site (the embedded default, a test) is
				// the same site under each of loopback's names, and no
				// other machine can reach it.
				for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
					hosts[name] = true
				}
			}
		}
	}
	add(c.Portal.URL)
	for _, b := range c.lists.brands {
		if b.PortalURL != "" {
			add(b.PortalURL)
		}
	}
	return hosts
}

// hostCheck refuses portal requests for a host name the configuration
// does not name: a reading site is only ever reached under a name the
// recipient was told to check. A reload changes the set.
type hostCheck struct {
	allowed atomic.Pointer[map[string]bool]
	next    http.Handler
}

func newHostCheck(c *Config, next http.Handler) *hostCheck {
	h := &hostCheck{next: next}
	h.set(c)
	return h
}

func (h *hostCheck) set(c *Config) {
	hosts := portalHosts(c)
	h.allowed.Store(&hosts)
}

func (h *hostCheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if hp, _, err := net.SplitHostPort(host); err == nil {
		host = hp
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	// The liveness probe is answered under any name: monitoring often
	// asks by address, and the answer says nothing about any site.
	if !(*h.allowed.Load())[host] && r.URL.Path != "/healthz" {
		http.Error(w, "This site does not serve that host name.", http.StatusMisdirectedRequest)
		return
	}
	h.next.ServeHTTP(w, r)
}
