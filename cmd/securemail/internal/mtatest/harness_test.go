package mtatest

import (
	"strings"
	"testing"
	"time"
)

// harnessCase is one submission a harness self-test sends, and what swaks
// must answer.
type harnessCase struct {
	name     string
	sub      Submission
	wantExit int
	wantText string // in the transcript
}

// checkHarness runs cases against a started mta that relays to sink, then
// two messages on one authenticated STARTTLS connection, and checks that
// every accepted message reached the sink and the queue drained. It is the
// common part of each MTA's self-test, without a milter.
func checkHarness(t *testing.T, mta MTA, sink *Sink, cases []harnessCase) {
	t.Helper()
	user, pass := mta.Credentials()
	delivered := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sub
			if s.Server == "" {
				s.Server = mta.SubmissionAddr()
			}
			if s.Auth != "" {
				s.User = user
				if s.Password == "" {
					s.Password = pass
				}
			}
			s.To = []string{"rcpt@external.test"}
			s.Subject = "harness " + tc.name
			s.Body = "body of " + tc.name
			res := s.Send(t)
			if res.ExitCode != tc.wantExit || !strings.Contains(res.Transcript, tc.wantText) {
				t.Fatalf("swaks exit %d, want %d with %q\n%s", res.ExitCode, tc.wantExit, tc.wantText, res.Transcript)
			}
			if tc.wantExit != SwaksOK {
				return
			}
			delivered++
			m, err := sink.WaitFor(func(m Message) bool { return m.From == s.From }, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(m.Data), "body of "+tc.name) || len(m.Rcpts) != 1 || m.Rcpts[0] != "rcpt@external.test" {
				t.Errorf("delivered message %s: rcpts %v\n%s", m.Path, m.Rcpts, m.Data)
			}
		})
	}

	t.Run("two messages one connection", func(t *testing.T) {
		c := DialSubmission(t, mta)
		for _, from := range []string{"one@example.test", "two@example.test"} {
			if err := SendOne(c, from, []string{"rcpt@external.test"}, "Subject: "+from+"\r\n\r\nbody\r\n"); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
		delivered += 2
	})

	if _, err := sink.Wait(delivered, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := mta.WaitQueueEmpty(t, 10*time.Second); err != nil {
		t.Error(err)
	}
}
