package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// ChunkSize is the plaintext size of every chunk but the last.
const ChunkSize = 64 * 1024

const (
	tagSize      = 16
	nonceSize    = 12
	encChunkSize = ChunkSize + tagSize
	lastChunk    = 0x01
	payloadLabel = "securemail/v1 payload"
)

// Errors a reader returns. Every one of them means the envelope cannot be
// trusted; none of them comes with plaintext.
var (
	ErrAuth      = errors.New("envelope: authentication failed (wrong key, or damaged or altered envelope)")
	ErrTruncated = errors.New("envelope: truncated")
	ErrTrailing  = errors.New("envelope: data after the last chunk")
)

// payloadAEAD derives the chunk key from the data key and the header's salt.
func payloadAEAD(dek []byte, h Header) (cipher.AEAD, error) {
	if len(dek) != DataKeySize {
		return nil, fmt.Errorf("envelope: data key is %d bytes, want %d", len(dek), DataKeySize)
	}
	key, err := hkdf.Key(sha256.New, dek, h.Salt[:], payloadLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("envelope: derive payload key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// chunkNonce is the 11-byte big-endian chunk counter followed by the
// last-chunk flag, as in age's STREAM.
type chunkNonce [nonceSize]byte

func (n *chunkNonce) increment() error {
	for i := nonceSize - 2; i >= 0; i-- {
		n[i]++
		if n[i] != 0 {
			return nil
		}
	}
	return errors.New("envelope: chunk counter overflow")
}

func (n *chunkNonce) setLast(last bool) {
	if last {
		n[nonceSize-1] = lastChunk
	} else {
		n[nonceSize-1] = 0
	}
}

func (n *chunkNonce) isZero() bool {
	for _, b := range n[:nonceSize-1] {
		if b != 0 {
			return false
		}
	}
	return true
}

// Writer encrypts a payload into chunks. Close must be called: it writes the
// last chunk, without which the envelope is truncated.
type Writer struct {
	aead  cipher.AEAD
	dst   io.Writer
	ad    []byte
	nonce chunkNonce
	buf   []byte // plaintext of the pending chunk, then room for its tag
	err   error
}

func newWriter(dst io.Writer, dek []byte, h Header) (*Writer, error) {
	aead, err := payloadAEAD(dek, h)
	if err != nil {
		return nil, err
	}
	return &Writer{
		aead: aead,
		dst:  dst,
		ad:   h.Marshal(),
		// Grown by append up to a chunk and its tag: most messages are
		// far smaller than a chunk.
		buf: make([]byte, 0, 4096),
	}, nil
}

// Write buffers p and writes every chunk it completes. A full chunk is held
// back until more data arrives, because only Close knows which chunk is last.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	total := len(p)
	for len(p) > 0 {
		if len(w.buf) == ChunkSize {
			if err := w.flushChunk(false); err != nil {
				w.err = err
				return total - len(p), err
			}
		}
		n := min(ChunkSize-len(w.buf), len(p))
		w.buf = append(w.buf, p[:n]...)
		p = p[n:]
	}
	return total, nil
}

// Close writes the last chunk. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if err := w.flushChunk(true); err != nil {
		w.err = err
		return err
	}
	w.err = errors.New("envelope: writer closed")
	return nil
}

func (w *Writer) flushChunk(last bool) error {
	w.nonce.setLast(last)
	sealed := w.aead.Seal(w.buf[:0], w.nonce[:], w.buf, w.ad)
	if _, err := w.dst.Write(sealed); err != nil {
		return err
	}
	// Keep the buffer Seal returned: it has room for a chunk and its tag,
	// so the next chunk seals in place instead of allocating.
	w.buf = sealed[:0]
	return w.nonce.increment()
}

// Reader decrypts a chunked payload. It releases a chunk's plaintext only
// after that chunk's tag verified, and reports io.EOF only after a chunk
// flagged last verified and nothing follows it.
type Reader struct {
	aead    cipher.AEAD
	src     io.Reader
	ad      []byte
	nonce   chunkNonce
	in      []byte // one encrypted chunk plus one byte of look-ahead
	carried int    // look-ahead bytes already at the start of in
	plain   []byte // backing store for out, apart from in so a failed open can be retried
	out     []byte // verified plaintext not yet returned
	done    bool
	err     error
}

func newReader(src io.Reader, dek []byte, h Header) (*Reader, error) {
	aead, err := payloadAEAD(dek, h)
	if err != nil {
		return nil, err
	}
	return &Reader{
		aead:  aead,
		src:   src,
		ad:    h.Marshal(),
		in:    make([]byte, encChunkSize+1),
		plain: make([]byte, 0, ChunkSize),
	}, nil
}

func (r *Reader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.err = r.readChunk()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

func (r *Reader) readChunk() error {
	n, err := io.ReadFull(r.src, r.in[r.carried:])
	n += r.carried
	r.carried = 0
	last := false
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		last = true
	case err != nil:
		return err
	}
	chunk := r.in[:n]
	if !last {
		chunk = r.in[:encChunkSize]
	}
	if len(chunk) < tagSize {
		return ErrTruncated
	}
	r.nonce.setLast(last)
	plain, openErr := r.aead.Open(r.plain[:0], r.nonce[:], chunk, r.ad)
	if openErr != nil {
		if len(chunk) == encChunkSize {
			// A full chunk that verifies only under the other flag: at the
			// very end, one not flagged last means the stream was cut at a
			// chunk boundary; with more data after it, one flagged last
			// means data follows the end. Nothing is released either way.
			r.nonce.setLast(!last)
			if _, err := r.aead.Open(r.plain[:0], r.nonce[:], chunk, r.ad); err == nil {
				if last {
					return ErrTruncated
				}
				return ErrTrailing
			}
		}
		return ErrAuth
	}
	// Only the first chunk may be empty: an empty last chunk after a full one
	// would give the same plaintext two encodings. Checked after the tag, so
	// that a stream cut a tag's length into a chunk is not called trailing.
	if last && len(plain) == 0 && !r.nonce.isZero() {
		return ErrTrailing
	}
	if !last {
		r.in[0] = r.in[encChunkSize]
		r.carried = 1
	}
	r.out = plain
	r.done = last
	return r.nonce.increment()
}
