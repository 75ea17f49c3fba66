package mtatest

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/securemail/securemail/internal/poll"
)

// waitLogLine waits until a line of log() matches re; what names the log
// in the error.
func waitLogLine(what string, log func() string, re *regexp.Regexp, timeout time.Duration) error {
	matches := func() bool {
		for _, line := range strings.Split(log(), "\n") {
			if re.MatchString(line) {
				return true
			}
		}
		return false
	}
	if poll.Wait(timeout, "", matches) != nil {
		return fmt.Errorf("mtatest: no line of the %s matches %q after %v", what, re, timeout)
	}
	return nil
}

// waitQueueEmpty waits until queued() lists nothing; the error lists what
// was still queued.
func waitQueueEmpty(mta string, queued func() []string, timeout time.Duration) error {
	var left []string
	if poll.Wait(timeout, "", func() bool { left = queued(); return len(left) == 0 }) != nil {
		return fmt.Errorf("mtatest: %s queue not empty after %v: %v", mta, timeout, left)
	}
	return nil
}
