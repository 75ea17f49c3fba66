package milter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// spool holds one message's envelope (ciphertext only) while the message is
// in flight: in memory up to a threshold, then in a temporary file in dir
// that Close removes. So twenty in-flight 20 MiB messages do not need
// 400 MiB of memory. The file is never synced: it holds ciphertext only
// for the time of one message, and the MTA keeps the original until the
// milter answers.
//
// The file is written through a 256 KiB buffer because a write call per
// 64 KiB chunk costs more than the copy, and read without one because the
// armor reads large blocks itself (see BENCHMARKS.md, section "Issue 5:
// profiled fixes"). Reader drops the writer and its buffer.
type spool struct {
	dir       string
	threshold int
	mem       bytes.Buffer
	file      *os.File
	bw        *bufio.Writer
	size      int64
}

// spoolBuffer is the write buffer of a spool file.
const spoolBuffer = 256 << 10

func newSpool(dir string, threshold int) *spool {
	return &spool{dir: dir, threshold: threshold}
}

func (s *spool) Write(p []byte) (int, error) {
	if s.file == nil && s.mem.Len()+len(p) > s.threshold {
		f, err := os.CreateTemp(s.dir, "spool-*")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.file = f
		s.bw = bufio.NewWriterSize(f, spoolBuffer)
		if _, err := s.bw.Write(s.mem.Bytes()); err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.mem = bytes.Buffer{}
	}
	s.size += int64(len(p))
	if s.file == nil {
		return s.mem.Write(p)
	}
	if s.bw == nil {
		return 0, errors.New("spool: write after Reader")
	}
	n, err := s.bw.Write(p)
	if err != nil {
		err = fmt.Errorf("spool: %w", err)
	}
	return n, err
}

// Reader returns the spooled bytes from the start. Writing after it is
// called is an error.
func (s *spool) Reader() (io.Reader, error) {
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if s.bw != nil {
		if err := s.bw.Flush(); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		s.bw = nil
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return s.file, nil
}

// Close releases the memory and removes the file.
func (s *spool) Close() error {
	s.mem = bytes.Buffer{}
	if s.file == nil {
		return nil
	}
	name := s.file.Name()
	err := s.file.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	s.file = nil
	return err
}
