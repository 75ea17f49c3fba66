// Package syncbuf is the one goroutine-safe byte buffer the tests share:
// a log or a child process's output that is written from other goroutines
// while the test reads it.
//
// Every method may be called concurrently. The zero value is an empty,
// unbounded buffer.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer behind a mutex.
type Buffer struct {
	// Limit, when positive, is how many bytes the buffer keeps: writes past
	// it are dropped (and reported as written), so a chatty writer that
	// outlives its test cannot grow it without bound.
	Limit int

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p, or drops it once Limit is reached; it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Limit > 0 && b.buf.Len() >= b.Limit {
		return len(p), nil
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len is the number of bytes kept.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
