package poll

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitSeesConditionBecomeTrue(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	if err := Wait(10*time.Second, "three increments", func() bool { return n.Load() == 3 }); err != nil {
		t.Fatal(err)
	}
}

func TestWaitGivesUpNamingWhat(t *testing.T) {
	t.Parallel()
	calls := 0
	err := Wait(30*time.Millisecond, "the spool is empty", func() bool { calls++; return false })
	if err == nil || !strings.Contains(err.Error(), "the spool is empty") || !strings.Contains(err.Error(), "30ms") {
		t.Fatalf("error = %v", err)
	}
	if calls < 2 {
		t.Errorf("condition checked %d times, want it checked again at the deadline", calls)
	}
}
