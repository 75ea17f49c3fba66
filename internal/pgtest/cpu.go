package pgtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux this runs on).
const clockTick = 10 * time.Millisecond

// CPU returns the processor time the server has used so far: the
// postmaster's, its running children's (backends, WAL writer,
// checkpointer, ...) and that of children that have exited. Benchmarks
// take differences of it, which mean something on a loaded machine where
// wall-clock times swing. Linux only.
func (s *Server) CPU() (time.Duration, error) {
	postmaster, err := s.postmaster()
	if err != nil {
		return 0, fmt.Errorf("pgtest: server CPU: %w", err)
	}
	self, err := procStat(postmaster)
	if err != nil {
		return 0, fmt.Errorf("pgtest: server CPU: %w", err)
	}
	// utime + stime, and cutime + cstime for the children reaped.
	total := self.utime + self.stime + self.cutime + self.cstime
	children, err := childrenOf(postmaster)
	if err != nil {
		return 0, fmt.Errorf("pgtest: server CPU: %w", err)
	}
	for _, st := range children {
		total += st.utime + st.stime
	}
	return time.Duration(total) * clockTick, nil
}

// Pin restricts the server to the processors in cpus (taskset's list
// form, "0" or "0-1"): the postmaster, whose later children inherit it,
// and every process it has started so far (backends, WAL writer, ...).
// Benchmarks use it to keep the database off the processors of the
// process under test, as a database on its own machine would be.
// Linux only; needs taskset (util-linux).
func (s *Server) Pin(cpus string) error {
	postmaster, err := s.postmaster()
	if err != nil {
		return fmt.Errorf("pgtest: pin: %w", err)
	}
	children, err := childrenOf(postmaster)
	if err != nil {
		return fmt.Errorf("pgtest: pin: %w", err)
	}
	pids := []int{postmaster}
	for pid := range children {
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		// -a: every thread of the process.
		if out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return fmt.Errorf("pgtest: pin: taskset %d: %v: %s", pid, err, out)
		}
	}
	return nil
}

// postmaster returns the server's postmaster PID.
func (s *Server) postmaster() (int, error) {
	pidFile, err := os.ReadFile(filepath.Join(s.data(), "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(pidFile, []byte("\n"))
	pid, err := strconv.Atoi(string(line))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid: %w", err)
	}
	return pid, nil
}

// childrenOf returns the running children of parent, by PID.
func childrenOf(parent int) (map[int]procStatus, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int]procStatus{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procStat(pid)
		if err != nil || st.ppid != int64(parent) {
			continue // gone meanwhile, or not the server's
		}
		children[pid] = st
	}
	return children, nil
}

type procStatus struct{ ppid, utime, stime, cutime, cstime int64 }

// procStat reads the fields of /proc/PID/stat that CPU needs.
func procStat(pid int) (procStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStatus{}, err
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (field 3, the state, comes first).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStatus{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 15 {
		return procStatus{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(string(f[k]), 10, 64); return n }
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15,
	// cutime 16, cstime 17.
	return procStatus{ppid: num(1), utime: num(11), stime: num(12), cutime: num(13), cstime: num(14)}, nil
}
