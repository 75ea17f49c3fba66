package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"io"
	"testing"
)

// benchSize is the default max_message_size: the largest message the
// milter seals.
const benchSize = 20 << 20

// BenchmarkSeal20MiB measures sealing a 20 MiB message the way the milter
// does (Seal into a spool, then WriteBody from it), next to the two costs it
// cannot avoid, measured in the same run: AES-256-GCM over 64 KiB chunks and
// base64 encoding. size-ratio is the body's size over the message's.
func BenchmarkSeal20MiB(b *testing.B) {
	payload := testPayload("bench", benchSize)
	notice := testNotice("Alice Example <alice@example.com>")

	b.Run("envelope", func(b *testing.B) {
		var spool bytes.Buffer
		spool.Grow(headerSize + benchSize + (benchSize/ChunkSize+1)*tagSize)
		sealBody := func(dst io.Writer) {
			spool.Reset()
			w, err := Seal(&spool, testDEK, testHeader())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.Write(payload); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			if err := WriteBody(dst, notice, bytes.NewReader(spool.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
		var size countingWriter
		sealBody(&size)
		b.SetBytes(benchSize)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			sealBody(io.Discard)
		}
		b.ReportMetric(float64(size.n)/benchSize, "size-ratio")
	})

	b.Run("raw-aes-gcm", func(b *testing.B) {
		block, err := aes.NewCipher(testDEK)
		if err != nil {
			b.Fatal(err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			b.Fatal(err)
		}
		out := make([]byte, 0, encChunkSize)
		var nonce [nonceSize]byte
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			for i := 0; i < benchSize; i += ChunkSize {
				binary.BigEndian.PutUint64(nonce[3:11], uint64(i/ChunkSize))
				out = aead.Seal(out[:0], nonce[:], payload[i:i+ChunkSize], nil)
			}
		}
	})

	b.Run("raw-base64", func(b *testing.B) {
		dst := make([]byte, base64.StdEncoding.EncodedLen(benchSize))
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			base64.StdEncoding.Encode(dst, payload)
		}
	})
}

// BenchmarkOpen20MiB measures reading a 20 MiB envelope back.
func BenchmarkOpen20MiB(b *testing.B) {
	env := seal(b, testPayload("bench", benchSize), testDEK, testHeader(), 0)
	buf := make([]byte, 32<<10)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		src := bytes.NewReader(env)
		h, err := ReadHeader(src)
		if err != nil {
			b.Fatal(err)
		}
		r, err := Open(src, testDEK, h)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteBody1KiB measures the replacement body of a 1 KiB message
// (the notice and the page around a 1 KiB envelope), as the milter writes
// it for the "tagged 1 KiB" target, in either line-end form.
func BenchmarkWriteBody1KiB(b *testing.B) {
	env := seal(b, testPayload("bench", 1<<10), testDEK, testHeader(), 0)
	for _, lf := range []bool{false, true} {
		name := "CRLF"
		if lf {
			name = "LF"
		}
		b.Run(name, func(b *testing.B) {
			n := testNotice("Alice Example <alice@example.com>")
			n.LF = lf
			var size countingWriter
			if err := WriteBody(&size, n, bytes.NewReader(env)); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size.n)
			b.ReportAllocs()
			r := bytes.NewReader(env)
			for b.Loop() {
				r.Reset(env)
				if err := WriteBody(io.Discard, n, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
