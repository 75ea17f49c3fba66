package main

// The start that the browser tests of the whole product share: the
// securemail binary, a private Postfix configured from contrib/ with its
// milter on a free loopback port, relaying everything to an in-process
// sink. Each test then writes its serve configs, starts its serve
// processes and Postfix, and drives Chromium.

import (
	"fmt"
	"testing"

	"github.com/securemail/securemail/cmd/securemail/internal/browsertest"
	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

// e2eBrowserStack is the mail side of a browser test.
type e2eBrowserStack struct {
	bin        string           // the securemail binary
	sink       *mtatest.Sink    // where Postfix relays every message
	pf         *mtatest.Postfix // configured, not started: the test starts it after its milter
	milterAddr string           // Postfix's smtpd_milters is inet:milterAddr
}

// newE2EBrowserStack checks that Chromium, Postfix, root and whatever each
// of require checks are there, before anything is built: a test without
// them is skipped with a message that says what to install, or fails when
// CI is set. Then it builds the binary, starts the sink and configures
// Postfix.
func newE2EBrowserStack(t *testing.T, what string, require ...func(testing.TB)) *e2eBrowserStack {
	t.Helper()
	if browsertest.ChromiumPath() == "" {
		mtatest.SkipUnlessCI(t, what+": no Chromium (Debian: apt-get install --no-install-recommends chromium)")
	}
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	for _, r := range require {
		r(t)
	}
	s := &e2eBrowserStack{bin: e2eBuild(t), sink: mtatest.StartSink(t)}
	s.pf = e2eNewPostfix(t, s.sink, "")
	s.milterAddr = fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	s.pf.Postconf(t, "-e", "smtpd_milters=inet:"+s.milterAddr)
	return s
}

// config writes a serve config for the stack and returns its path. Loopback
// is trusted and TLS-exempt, as in a default install: the portal submits
// codes and replies to Postfix's port 25 on loopback. The internal domain
// is pbInternal, messages up to 20 MiB; the portal listens on listen and
// is known as url ("": http://listen), hashes passwords with cheap argon2
// settings, and gets extraPortal (YAML lines indented by two spaces).
func (s *e2eBrowserStack) config(t *testing.T, listen, url, extraPortal string) string {
	t.Helper()
	return e2eWriteConfigWith(t, s.milterAddr, s.pf.SMTPAddr(), e2eConfig{
		logLevel: "info", networks: "[127.0.0.0/8]", maxSize: fmt.Sprint(20 << 20),
		internal: pbInternal, portalListen: listen, portalURL: url,
		portalExtra: "  argon2:\n    time: 1\n    memory: 8MiB\n    threads: 1\n" + extraPortal,
	})
}
