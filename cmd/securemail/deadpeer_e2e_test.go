package main

// The MTA side of a milter session killed in the middle of a body, against
// the securemail binary: the spool is empty within seconds and SIGTERM
// returns at once (before, the message stayed in flight until restart and
// SIGTERM waited the whole drain).

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

// halfMTA plays an MTA that sends a tagged message up to the middle of its
// body, through a proxy whose connection to serve the test cuts as a killed
// smtpd or cleanup process's socket is cut.
type halfMTA struct {
	upstream net.Conn
	session  *gomilter.ClientSession
}

func startHalfMTA(t *testing.T, milterAddr string) *halfMTA {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &halfMTA{}
	ready := make(chan error, 1)
	go func() {
		defer ln.Close()
		down, err := ln.Accept()
		if err != nil {
			ready <- err
			return
		}
		up, err := net.Dial("tcp", milterAddr)
		if err != nil {
			down.Close()
			ready <- err
			return
		}
		h.upstream = up
		ready <- nil
		go func() { io.Copy(up, down); up.Close() }()
		io.Copy(down, up)
		down.Close()
	}()
	c := gomilter.NewClientWithOptions("tcp", ln.Addr().String(), gomilter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeBody | gomilter.OptChangeHeader,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	h.session = s
	step := func(act *gomilter.Action, err error) {
		t.Helper()
		if err != nil || act.Code != gomilter.ActContinue {
			t.Fatalf("%v %v", act, err)
		}
	}
	step(s.Conn("client.example.net", gomilter.FamilyInet, 5555, "127.0.0.1"))
	if err := s.Macros(gomilter.CodeMail, "{auth_authen}", "zoe", "{tls_version}", "TLSv1.3", "i", "HALF1"); err != nil {
		t.Fatal(err)
	}
	step(s.Mail("zoe@example.test", nil))
	step(s.Rcpt("alice@external.test", nil))
	step(s.HeaderField("From", "zoe@example.test"))
	step(s.HeaderField("Subject", "Half [encrypt] way"))
	step(s.HeaderEnd())
	chunk := []byte(strings.Repeat("HALF-MTA-SECRET 0123456789abcdef\r\n", gomilter.MaxBodyChunk/40))
	for range 8 { // past the 256 KiB the spool keeps in memory
		step(s.BodyChunk(chunk))
	}
	return h
}

func TestDeadMTAPeerMidBody(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs the securemail binary built and started")
	}
	bin := e2eBuild(t)
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	config := e2eWriteConfigWith(t, milterAddr, "127.0.0.1:25", e2eConfig{
		logLevel: "info", networks: "[]", maxSize: "20MiB",
	})
	cfg, err := loadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	srv := e2eStartServe(t, bin, config, milterAddr)

	mta := startHalfMTA(t, milterAddr)
	spooled, _ := filepath.Glob(filepath.Join(spoolPath(cfg), "spool-*"))
	if len(spooled) != 1 {
		t.Fatalf("%d spool files in the middle of a big body, want 1", len(spooled))
	}
	mta.upstream.Close()
	killed := time.Now()
	for {
		left, _ := filepath.Glob(filepath.Join(spoolPath(cfg), "spool-*"))
		if len(left) == 0 {
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("spool still holds %v 30 s after the MTA side was killed", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("spool empty %v after the MTA side was killed", time.Since(killed).Round(time.Millisecond))
	began := time.Now()
	code, err := srv.stop(10 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("serve after SIGTERM: exit %d, %v", code, err)
	}
	// Generous: a drain that waited for the dead session meets stop's 10 s.
	if took := time.Since(began); took > 8*time.Second {
		t.Fatalf("SIGTERM took %v with the dead session's message gone", took)
	}
	if log := srv.log.String(); !strings.Contains(log, "the MTA went away in the middle of the message") || strings.Contains(log, "HALF-MTA-SECRET") {
		t.Fatalf("serve log:\n%s", log)
	}
}
