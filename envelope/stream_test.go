package envelope

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite testdata/body.golden, testdata/vectors and the fuzz seed corpora")

// Fixed key material: tests depend on no randomness.
var (
	testDEK   = mustHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	otherDEK  = mustHex("1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100")
	testKeyID = KeyID(mustHex("5ec0e3a11d0000000000000000000001"))
	testSalt  = [saltSize]byte(mustHex("73616c7473616c7473616c7473616c74"))
)

func testHeader() Header { return Header{KeyID: testKeyID, Salt: testSalt} }

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// testPayload returns n deterministic bytes: SHA-256 in counter mode over
// label, so every chunk of a payload differs from every other.
func testPayload(label string, n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	var ctr [8]byte
	for i := uint64(0); len(out) < n; i++ {
		binary.BigEndian.PutUint64(ctr[:], i)
		h := sha256.New()
		h.Write([]byte(label))
		h.Write(ctr[:])
		out = h.Sum(out)
	}
	return out[:n]
}

// seal seals payload with Seal, feeding it to the Writer in writes of at
// most writeSize bytes (all at once when writeSize <= 0).
func seal(t testing.TB, payload, dek []byte, h Header, writeSize int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := Seal(&buf, dek, h)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if writeSize <= 0 {
		writeSize = max(len(payload), 1)
	}
	for p := payload; len(p) > 0; {
		n := min(writeSize, len(p))
		m, err := w.Write(p[:n])
		if err != nil || m != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, m, err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

// open reads env whole, in reads of readSize bytes, and returns the
// plaintext the reader released and the error that ended reading (nil for
// a clean io.EOF).
func open(env, dek []byte, readSize int) ([]byte, error) {
	return openFrom(bytes.NewReader(env), dek, readSize)
}

func openFrom(src io.Reader, dek []byte, readSize int) ([]byte, error) {
	h, err := ReadHeader(src)
	if err != nil {
		return nil, err
	}
	r, err := Open(src, dek, h)
	if err != nil {
		return nil, err
	}
	var out []byte
	buf := make([]byte, readSize)
	for {
		n, err := r.Read(buf)
		if n < 0 || n > len(buf) {
			return out, fmt.Errorf("Read returned n = %d for a %d-byte buffer", n, len(buf))
		}
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// chunks returns how many chunks a payload of n bytes is sealed into.
func chunks(n int) int {
	if n == 0 {
		return 1
	}
	return (n + ChunkSize - 1) / ChunkSize
}

var edgeSizes = []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2 * ChunkSize, 3*ChunkSize + 7}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	writes := []struct {
		name  string
		write func(w *Writer, p []byte) error
	}{
		{"one write", func(w *Writer, p []byte) error {
			_, err := w.Write(p)
			return err
		}},
		{"1-byte writes", func(w *Writer, p []byte) error { return writeEach(w, p, 1) }},
		{"4097-byte writes", func(w *Writer, p []byte) error { return writeEach(w, p, 4097) }},
		{"chunk-size writes", func(w *Writer, p []byte) error { return writeEach(w, p, ChunkSize) }},
		{"io.Copy", func(w *Writer, p []byte) error {
			// Hide bytes.Reader's WriterTo so io.Copy uses its 32 KiB buffer.
			_, err := io.Copy(w, struct{ io.Reader }{bytes.NewReader(p)})
			return err
		}},
		{"empty writes between", func(w *Writer, p []byte) error {
			for len(p) > 0 {
				if n, err := w.Write(nil); n != 0 || err != nil {
					return fmt.Errorf("Write(nil) = %d, %v", n, err)
				}
				n := min(len(p), 30000)
				if _, err := w.Write(p[:n]); err != nil {
					return err
				}
				p = p[n:]
			}
			return nil
		}},
	}
	readSizes := []int{1, 100, 4096, ChunkSize, ChunkSize + 1, 3 * ChunkSize}

	for _, size := range edgeSizes {
		payload := testPayload(fmt.Sprint("round trip ", size), size)
		var want []byte // the envelope, the same whatever the write pattern
		for _, wr := range writes {
			t.Run(fmt.Sprintf("%d/%s", size, wr.name), func(t *testing.T) {
				var buf bytes.Buffer
				w, err := Seal(&buf, testDEK, testHeader())
				if err != nil {
					t.Fatal(err)
				}
				if err := wr.write(w, payload); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				env := buf.Bytes()
				if wantLen := headerSize + size + chunks(size)*tagSize; len(env) != wantLen {
					t.Fatalf("envelope is %d bytes, want %d (%d chunks)", len(env), wantLen, chunks(size))
				}
				if !bytes.Equal(env[:headerSize], testHeader().Marshal()) {
					t.Fatalf("envelope does not start with the header")
				}
				if want == nil {
					want = bytes.Clone(env)
				} else if !bytes.Equal(env, want) {
					t.Fatalf("envelope depends on the write pattern")
				}
				if bytes.Contains(env, payload[:min(size, 64)]) && size >= 16 {
					t.Fatalf("envelope contains plaintext")
				}
				for _, rs := range readSizes {
					got, err := open(env, testDEK, rs)
					if err != nil {
						t.Fatalf("open with %d-byte reads: %v", rs, err)
					}
					if !bytes.Equal(got, payload) {
						t.Fatalf("open with %d-byte reads: got %d bytes, want the %d-byte payload", rs, len(got), size)
					}
				}
			})
		}
	}
}

func writeEach(w io.Writer, p []byte, n int) error {
	for len(p) > 0 {
		k := min(n, len(p))
		m, err := w.Write(p[:k])
		if err != nil {
			return err
		}
		if m != k {
			return fmt.Errorf("Write returned %d, want %d", m, k)
		}
		p = p[k:]
	}
	return nil
}

// TestReaderContract runs the standard io.Reader checks, and reads the
// envelope from sources that return few bytes per call or data with io.EOF.
func TestReaderContract(t *testing.T) {
	t.Parallel()
	for _, size := range edgeSizes {
		payload := testPayload("reader", size)
		env := seal(t, payload, testDEK, testHeader(), 0)
		sources := map[string]func() io.Reader{
			"plain":    func() io.Reader { return bytes.NewReader(env) },
			"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(env)) },
			"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(env)) },
			"data+EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(env)) },
		}
		for name, src := range sources {
			t.Run(fmt.Sprintf("%d/%s", size, name), func(t *testing.T) {
				got, err := openFrom(src(), testDEK, 1000)
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("open = %d bytes, %v; want the %d-byte payload", len(got), err, size)
				}
				r := src()
				h, err := ReadHeader(r)
				if err != nil {
					t.Fatal(err)
				}
				or, err := Open(r, testDEK, h)
				if err != nil {
					t.Fatal(err)
				}
				if err := iotest.TestReader(or, payload); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestCloseTwiceAndWriteAfterClose(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, ChunkSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			payload := testPayload("close", size)
			var buf bytes.Buffer
			w, err := Seal(&buf, testDEK, testHeader())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(payload); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("first Close: %v", err)
			}
			sealed := bytes.Clone(buf.Bytes())

			// A second Close must not add a chunk (the age behaviour: it
			// reports that the writer is closed).
			if err := w.Close(); err == nil {
				t.Errorf("second Close returned nil, want an error saying the writer is closed")
			}
			if n, err := w.Write([]byte("more")); err == nil || n != 0 {
				t.Errorf("Write after Close = %d, %v; want 0 and an error", n, err)
			}
			if n, err := w.Write(nil); err == nil || n != 0 {
				t.Errorf("empty Write after Close = %d, %v; want 0 and an error", n, err)
			}
			if !bytes.Equal(buf.Bytes(), sealed) {
				t.Fatalf("writing after Close changed the envelope from %d to %d bytes", len(sealed), buf.Len())
			}
			got, err := open(buf.Bytes(), testDEK, 4096)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("open after double Close = %d bytes, %v", len(got), err)
			}
		})
	}
}

// failingWriter accepts limit bytes, then fails.
type failingWriter struct {
	limit int
	n     int
}

var errSink = errors.New("sink failed")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n+len(p) > f.limit {
		return 0, errSink
	}
	f.n += len(p)
	return len(p), nil
}

func TestWriterErrorsStick(t *testing.T) {
	t.Parallel()
	// The header goes through, the first chunk does not.
	fw := &failingWriter{limit: headerSize}
	w, err := Seal(fw, testDEK, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	payload := testPayload("sink", 2*ChunkSize)
	n, err := w.Write(payload)
	if !errors.Is(err, errSink) {
		t.Fatalf("Write = %d, %v; want %v", n, err, errSink)
	}
	if n > ChunkSize {
		t.Errorf("Write reported %d bytes written, but the first chunk failed", n)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, errSink) {
		t.Errorf("Write after failure = %v, want %v", err, errSink)
	}
	if err := w.Close(); !errors.Is(err, errSink) {
		t.Errorf("Close after failure = %v, want %v", err, errSink)
	}

	// Close reports a failure to write the last chunk.
	fw = &failingWriter{limit: headerSize}
	w, err = Seal(fw, testDEK, testHeader())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("short")); err != nil {
		t.Fatalf("buffered Write failed: %v", err)
	}
	if err := w.Close(); !errors.Is(err, errSink) {
		t.Errorf("Close = %v, want %v", err, errSink)
	}

	// Seal reports a failure to write the header.
	if _, err := Seal(&failingWriter{limit: 3}, testDEK, testHeader()); !errors.Is(err, errSink) {
		t.Errorf("Seal into a failing writer = %v, want %v", err, errSink)
	}
}

func TestDataKeySize(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := Seal(io.Discard, make([]byte, n), testHeader()); err == nil {
			t.Errorf("Seal with a %d-byte data key succeeded", n)
		}
		if _, err := Open(bytes.NewReader(nil), make([]byte, n), testHeader()); err == nil {
			t.Errorf("Open with a %d-byte data key succeeded", n)
		}
	}
}

// errAfterReader returns the first n bytes of data, then err.
type errAfterReader struct {
	data []byte
	err  error
}

func (r *errAfterReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestSourceError checks that a failing source is reported as itself, not
// as an authentication failure, that it sticks, and that the chunk it cut
// gives no plaintext.
func TestSourceError(t *testing.T) {
	t.Parallel()
	payload := testPayload("source error", 2*ChunkSize+10)
	env := seal(t, payload, testDEK, testHeader(), 0)
	errSource := errors.New("connection reset")
	for _, cut := range []int{headerSize + 10, headerSize + encChunkSize + 10, headerSize + 2*encChunkSize + 5} {
		src := &errAfterReader{data: env[:cut], err: errSource}
		h, err := ReadHeader(src)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Open(src, testDEK, h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if !errors.Is(err, errSource) {
			t.Errorf("cut at %d: error %v, want %v", cut, err, errSource)
		}
		wantRel := (cut - headerSize) / encChunkSize * ChunkSize
		if !bytes.Equal(got, payload[:wantRel]) {
			t.Errorf("cut at %d: released %d bytes, want the first %d", cut, len(got), wantRel)
		}
		if n, err := r.Read(make([]byte, 10)); n != 0 || !errors.Is(err, errSource) {
			t.Errorf("cut at %d: Read after error = %d, %v", cut, n, err)
		}
	}
	if _, err := ReadHeader(&errAfterReader{data: env[:10], err: errSource}); !errors.Is(err, errSource) {
		t.Errorf("ReadHeader from a failing source = %v, want %v", err, errSource)
	}
}

// TestErrorsStick checks that after an authentication failure every later
// Read fails the same way and returns nothing.
func TestErrorsStick(t *testing.T) {
	t.Parallel()
	payload := testPayload("sticky", 3*ChunkSize)
	env := seal(t, payload, testDEK, testHeader(), 0)
	env[headerSize+encChunkSize+100] ^= 0x40 // chunk 1
	h, _ := ReadHeader(bytes.NewReader(env))
	src := bytes.NewReader(env[headerSize:])
	r, err := Open(src, testDEK, h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, ErrAuth) || !bytes.Equal(got, payload[:ChunkSize]) {
		t.Fatalf("ReadAll = %d bytes, %v; want chunk 0 and ErrAuth", len(got), err)
	}
	for range 3 {
		if n, err := r.Read(make([]byte, ChunkSize)); n != 0 || !errors.Is(err, ErrAuth) {
			t.Fatalf("Read after failure = %d, %v", n, err)
		}
	}
}

func TestHeader(t *testing.T) {
	t.Parallel()
	h := testHeader()
	b := h.Marshal()
	if len(b) != headerSize || headerSize != 38 {
		t.Fatalf("header is %d bytes, want 38", len(b))
	}
	want := "534d454e5601" + "5ec0e3a11d0000000000000000000001" + "73616c7473616c7473616c7473616c74"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("Marshal = %s, want %s", got, want)
	}
	r := bytes.NewReader(append(b, "payload"...))
	got, err := ReadHeader(r)
	if err != nil || got != h {
		t.Fatalf("ReadHeader = %+v, %v", got, err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "payload" {
		t.Fatalf("ReadHeader left %q, want the payload", rest)
	}

	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotEnvelope},
		{"short", b[:headerSize-1], ErrNotEnvelope},
		{"magic only", []byte("SMENV"), ErrNotEnvelope},
		{"other magic", append([]byte("SMENW"), b[5:]...), ErrNotEnvelope},
		{"lower case magic", append([]byte("smenv"), b[5:]...), ErrNotEnvelope},
		{"version 0", append(append([]byte("SMENV"), 0), b[6:]...), ErrVersion},
		{"version 2", append(append([]byte("SMENV"), 2), b[6:]...), ErrVersion},
		{"version 0xff", append(append([]byte("SMENV"), 0xff), b[6:]...), ErrVersion},
		{"base64 text", []byte(strings.Repeat("U01FTlYB", 10)), ErrNotEnvelope},
	} {
		if _, err := ReadHeader(bytes.NewReader(tc.in)); !errors.Is(err, tc.want) {
			t.Errorf("%s: ReadHeader = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestNewHeader(t *testing.T) {
	t.Parallel()
	h, err := NewHeader(testKeyID, bytes.NewReader(testSalt[:]))
	if err != nil || h != testHeader() {
		t.Fatalf("NewHeader = %+v, %v", h, err)
	}
	if _, err := NewHeader(testKeyID, bytes.NewReader(testSalt[:15])); err == nil {
		t.Fatalf("NewHeader with 15 random bytes succeeded")
	}
}

func TestKeyID(t *testing.T) {
	t.Parallel()
	s := testKeyID.String()
	if s != "5ec0e3a11d0000000000000000000001" {
		t.Fatalf("String = %q", s)
	}
	id, err := ParseKeyID(s)
	if err != nil || id != testKeyID {
		t.Fatalf("ParseKeyID(%q) = %v, %v", s, id, err)
	}
	for _, bad := range []string{"", s[:31], s + "0", strings.Repeat("g", 32), " " + s[1:], s[:30] + "\n1"} {
		if _, err := ParseKeyID(bad); err == nil {
			t.Errorf("ParseKeyID(%q) succeeded", bad)
		}
	}
}

// TestCiphertextBinding checks that every input of the chunk key and nonce
// changes the ciphertext: the header (key id, salt) is bound, the data key
// is used, and no two chunks of a payload of equal chunks look alike.
func TestCiphertextBinding(t *testing.T) {
	t.Parallel()
	payload := bytes.Repeat([]byte{'A'}, 3*ChunkSize)
	base := seal(t, payload, testDEK, testHeader(), 0)
	c0 := base[headerSize : headerSize+encChunkSize]
	c1 := base[headerSize+encChunkSize : headerSize+2*encChunkSize]
	if bytes.Equal(c0[:ChunkSize], c1[:ChunkSize]) {
		t.Fatalf("equal plaintext chunks gave equal ciphertext: the counter is not in the nonce")
	}
	otherID := testHeader()
	otherID.KeyID[15] ^= 1
	otherSalt := testHeader()
	otherSalt.Salt[0] ^= 1
	for name, env := range map[string][]byte{
		"key id": seal(t, payload, testDEK, otherID, 0),
		"salt":   seal(t, payload, testDEK, otherSalt, 0),
		"dek":    seal(t, payload, otherDEK, testHeader(), 0),
	} {
		if bytes.Equal(env[headerSize:], base[headerSize:]) {
			t.Errorf("changing the %s does not change the payload", name)
		}
		if name == "key id" && !bytes.Equal(env[headerSize:headerSize+ChunkSize], base[headerSize:headerSize+ChunkSize]) {
			// The key id is additional data only: same key stream, other tags.
			t.Errorf("changing the key id changed the key stream, want only the tags")
		}
	}
}

// Sealing must not allocate per chunk: a 20 MiB message is 320 chunks.
func TestSealDoesNotAllocatePerChunk(t *testing.T) {
	dek := bytes.Repeat([]byte{7}, DataKeySize)
	h := Header{KeyID: KeyID{1}}
	payload := make([]byte, 64*ChunkSize)
	for _, writeSize := range []int{ChunkSize, 65535, 10000} {
		allocs := testing.AllocsPerRun(3, func() {
			w, err := Seal(io.Discard, dek, h)
			if err != nil {
				t.Fatal(err)
			}
			for p := payload; len(p) > 0; {
				n := min(len(p), writeSize)
				w.Write(p[:n])
				p = p[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 32 {
			t.Errorf("writes of %d bytes: sealing 64 chunks made %.0f allocations; the chunk buffer is not reused", writeSize, allocs)
		}
	}
}
