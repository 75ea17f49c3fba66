// Package poll is the tests' bounded wait for a condition that no event
// reports: it checks the condition at once and then at a short interval,
// and gives up after a timeout with a message that says what it waited for.
//
// A condition must be cheap and safe to call from the test's goroutine.
// Prefer an event (a channel, smtptest.Server.WaitFor) where the code
// under test offers one; poll is for state seen from outside (a file, a
// counter, a log line).
package poll

import (
	"fmt"
	"testing"
	"time"
)

// Interval is how often a condition is checked.
const Interval = 10 * time.Millisecond

// Wait checks cond until it returns true, or returns an error naming what
// after timeout. cond is checked once more at the deadline, so a slow
// machine that starves the loop still sees a condition that came true.
func Wait(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("poll: %s: not true after %v", what, timeout)
		}
		time.Sleep(Interval)
	}
}

// Until is Wait that fails t.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Wait(timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}
