package mtatest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/securemail/securemail/internal/smtptest"
)

// Sink stands in for the remote side of an MTA's relayhost: the shared
// test SMTP server, keeping each message in its own file as well.
//
// Postfix's smtp-sink(1) can do this too, but it creates its dump file at
// RCPT time and fills it at end of data, so a reader polling the directory
// sees empty or partial files; smtptest renames each file into place
// before answering 250.
type Sink = smtptest.Server

// Message is one message the Sink received.
type Message = smtptest.Message

// StartSink starts a Sink on a free loopback port, storing messages in a new
// directory under t.TempDir(). It is closed by t.Cleanup.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sink")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("mtatest: sink dir: %v", err)
	}
	return smtptest.Start(t, smtptest.Options{Dir: dir})
}
