package milter

import (
	"bytes"
	"strings"
	"testing"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/catalog"
)

func TestBrandingPerSenderDomain(t *testing.T) {
	t.Parallel()
	brands := map[string]Branding{
		"example.test": {Brand: envelope.Brand{Organisation: "Example Test Co", Accent: "#0b5d3b", Support: "Call 0800 1"},
			PortalURL: "https://read.example.test/"},
		"": {Brand: envelope.Brand{Organisation: "Hosting Provider"}},
		// A domain whose recipients read German, without a look.
		"beispiel.test": {Language: catalog.German},
	}
	e := newTestEnv(t, nil, func(c *Config) { c.Policy.Brands = brands })
	for _, tc := range []struct {
		from, org, portal string
	}{
		{"zoe@example.test", "Example Test Co", "https://read.example.test/open"},
		{"zoe@Sub.Example.test", "Example Test Co", "https://read.example.test/open"},
		{"zoe@other.test", "Hosting Provider", "https://secure.example.test/open"},
	} {
		t.Run(tc.from, func(t *testing.T) {
			m := tagged("Offer [encrypt]", "alice@external.test", secretBody())
			m.from = tc.from
			o := e.send(t, e.newSession(t), m)
			assertSealed(t, e, m, o)
			msg := o.message()
			page, err := envelope.FindPage(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(page, []byte("<title>Secure message from "+tc.org+"</title>")) {
				t.Errorf("page does not name %q", tc.org)
			}
			if !bytes.Contains(page, []byte(`action="`+tc.portal+`"`)) {
				t.Errorf("page's form does not post to %s", tc.portal)
			}
			if !strings.Contains(string(msg), "Secure message from "+tc.org) {
				t.Errorf("notice does not name %q", tc.org)
			}
		})
	}

	t.Run("language", func(t *testing.T) {
		m := tagged("Angebot [encrypt]", "alice@external.test", secretBody())
		m.from = "zoe@beispiel.test"
		o := e.send(t, e.newSession(t), m)
		assertSealed(t, e, m, o)
		page, err := envelope.FindPage(bytes.NewReader(o.message()))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`<html lang="de">`, "<title>Sichere Nachricht</title>", ">Nachricht lesen</button>"} {
			if !bytes.Contains(page, []byte(want)) {
				t.Errorf("the page of a German-reading domain lacks %q", want)
			}
		}
		if !strings.Contains(string(o.message()), "hat Ihnen eine sichere Nachricht gesendet") {
			t.Error("the notice of a German-reading domain is not in German")
		}
	})

	// A reload changes the brand for the next message.
	pol := testPolicy()
	if _, err := e.filter.SetPolicy(pol); err != nil {
		t.Fatal(err)
	}
	m := tagged("Offer [encrypt]", "alice@external.test", secretBody())
	o := e.send(t, e.newSession(t), m)
	assertSealed(t, e, m, o)
	if bytes.Contains(o.message(), []byte("Secure message from")) {
		t.Error("the brand outlived the reload that removed it")
	}

	pol.Brands = map[string]Branding{"x.test": {Brand: envelope.Brand{Accent: "#ffff00"}}}
	if _, err := e.filter.SetPolicy(pol); err == nil {
		t.Error("SetPolicy accepted an unreadable accent")
	}
	pol.Brands = map[string]Branding{"x.test": {PortalURL: "ftp://x"}}
	if _, err := e.filter.SetPolicy(pol); err == nil {
		t.Error("SetPolicy accepted a non-http portal URL")
	}
}
