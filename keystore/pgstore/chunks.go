package pgstore

import "io"

// chunkSource feeds COPY one row per len(buf) bytes of r, so an envelope
// is streamed into a chunk table (spool_chunks, copy_chunks), never held
// whole. owner is the first column of every row, seq the second.
type chunkSource struct {
	owner any
	r     io.Reader
	buf   []byte
	seq   int32
	n     int
	size  int64 // bytes handed to COPY so far
	err   error // r's failure, apart from the store's
}

func (c *chunkSource) Next() bool {
	if c.err != nil || len(c.buf) == 0 {
		return false
	}
	n, err := io.ReadFull(c.r, c.buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		c.err = err
		return false
	}
	if n == 0 {
		return false
	}
	if c.n > 0 {
		c.seq++
	}
	c.n = n
	c.size += int64(n)
	return true
}

// Values hands COPY the buffer, which it encodes before the next Next.
func (c *chunkSource) Values() ([]any, error) { return []any{c.owner, c.seq, c.buf[:c.n]}, nil }
func (c *chunkSource) Err() error             { return c.err }
