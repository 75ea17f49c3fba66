package testport

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestFreeNeverRepeatsUnderBurst claims ports from many goroutines released
// together and checks each number came once, lies below the ephemeral range
// and can be listened on.
func TestFreeNeverRepeatsUnderBurst(t *testing.T) {
	const callers = 64
	var (
		start sync.WaitGroup
		done  sync.WaitGroup
		ports = make([]int, callers)
	)
	start.Add(1)
	for i := range callers {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			ports[i] = Free(t)
		}()
	}
	start.Done()
	done.Wait()
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < lowest || p >= pastHighest {
			t.Fatalf("port %d outside %d-%d", p, lowest, pastHighest-1)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		ln.Close()
	}
}

// TestFreeKeepsProcessesApart runs this test binary again as a second
// process, which claims ports while this one holds many, and checks the
// two sets do not meet.
func TestFreeKeepsProcessesApart(t *testing.T) {
	if os.Getenv("TESTPORT_CHILD") == "1" {
		var out []string
		for range 200 {
			out = append(out, strconv.Itoa(Free(t)))
		}
		os.Stdout.WriteString("PORTS " + strings.Join(out, " ") + "\n")
		return
	}
	mine := map[int]bool{}
	for range 2000 {
		mine[Free(t)] = true
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFreeKeepsProcessesApart$")
	cmd.Env = append(os.Environ(), "TESTPORT_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, list, ok := strings.Cut(string(out), "PORTS ")
	if !ok {
		t.Fatalf("child printed no ports: %s", out)
	}
	fields := strings.Fields(list)
	if len(fields) < 200 {
		t.Fatalf("child claimed %d ports, want 200", len(fields))
	}
	for _, f := range fields[:200] {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("child port %q: %v", f, err)
		}
		if mine[p] {
			t.Fatalf("port %d handed to both processes", p)
		}
	}
}
