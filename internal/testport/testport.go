// Package testport hands tests loopback TCP ports for daemons they start
// themselves (Postfix, Sendmail, PostgreSQL, securemail serve), with the
// contract that no two callers on this machine get the same port while the
// first is alive.
//
// Asking the kernel for a free port (listen on :0, close, pass the number on)
// is not enough: Linux may hand the same number to the next :0 listener a
// moment later, and it uses that range for the source ports of outgoing
// connections too. CI once failed when a private Postfix got one port for
// two of its services. So ports come from below the kernel's ephemeral range,
// each one is never handed out twice in a process, and a lock file per port
// (flock, released by the kernel when the process ends, even on SIGKILL)
// keeps test binaries that run in parallel apart.
package testport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// The range lies below Linux's default ephemeral range (32768-60999), which
// the kernel uses for :0 listeners and outgoing connections.
const (
	lowest      = 20000
	pastHighest = 32768
)

var (
	mu sync.Mutex
	// held maps each port handed out by this process to its lock file,
	// kept open (and so locked) until the process exits.
	held = map[int]*os.File{}
)

// Free returns a TCP port on 127.0.0.1 that is free now and that no other
// caller of Free on this machine gets while this process runs. It fails t
// when none is left.
func Free(t testing.TB) int {
	t.Helper()
	port, err := claim()
	if err != nil {
		t.Fatalf("testport: %v", err)
	}
	return port
}

func claim() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	dir := filepath.Join(os.TempDir(), "securemail-testports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, err
	}
	// Tests run as root in CI and as a user locally: let both lock here.
	_ = os.Chmod(dir, 0o1777)
	span := pastHighest - lowest
	start := rand.IntN(span)
	for i := range span {
		port := lowest + (start+i)%span
		if _, mine := held[port]; mine {
			continue
		}
		lock, err := lockPort(dir, port)
		if err != nil {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			// Something outside the tests listens here; skip it for good.
			held[port] = lock
			continue
		}
		if err := ln.Close(); err != nil {
			lock.Close()
			return 0, err
		}
		held[port] = lock
		return port, nil
	}
	return 0, errors.New("no free port left between 20000 and 32767")
}

func lockPort(dir string, port int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("port %d is held by another test process: %w", port, err)
	}
	return f, nil
}
