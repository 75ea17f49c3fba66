package mtatest

import (
	"net/smtp"
	"strings"
	"testing"
	"time"
)

// TestPostfix checks the harness itself, without a milter: a private
// instance starts, takes authenticated submissions with and without
// STARTTLS, refuses a wrong password, and relays everything to the sink.
func TestPostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Postfix instance")
	}
	sink := StartSink(t)
	pf := NewPostfix(t, PostfixOptions{RelayHost: sink.Addr})
	start := time.Now()
	pf.Start(t)
	t.Logf("postfix started in %v", time.Since(start))
	user, pass := pf.Credentials()

	cases := []struct {
		name     string
		sub      Submission
		wantExit int
	}{
		{"starttls auth plain", Submission{From: "tls@example.test", STARTTLS: true, Auth: "PLAIN"}, SwaksOK},
		{"plaintext auth login", Submission{From: "plain@example.test", Auth: "LOGIN"}, SwaksOK},
		{"wrong password", Submission{From: "wrong@example.test", STARTTLS: true, Auth: "PLAIN", Password: "nope"}, SwaksFailedAuth},
		{"no auth on submission", Submission{From: "noauth@example.test", STARTTLS: true}, SwaksFailedRcpt},
		{"mx port", Submission{From: "mx@example.test", Server: pf.SMTPAddr()}, SwaksOK},
	}
	delivered := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.sub
			if s.Server == "" {
				s.Server = pf.SubmissionAddr()
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
			if res.ExitCode != tc.wantExit {
				t.Fatalf("swaks exit %d, want %d\n%s", res.ExitCode, tc.wantExit, res.Transcript)
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
		c, err := smtp.Dial(pf.SubmissionAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.StartTLS(pf.TLS().ClientConfig()); err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(smtp.PlainAuth("", user, pass, "127.0.0.1")); err != nil {
			t.Fatal(err)
		}
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
	if err := pf.WaitQueueEmpty(t, 10*time.Second); err != nil {
		t.Error(err)
	}
}
