package milter

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/emersion/go-milter"
)

// The body goes back in pieces of at most 64 KiB that never end between
// the CR and the LF of a line end, whatever sizes it is written in.
func TestBodyReplacerChunks(t *testing.T) {
	t.Parallel()
	var body bytes.Buffer
	for i := 0; body.Len() < 300<<10; i++ {
		body.WriteString(strings.Repeat("x", i%97) + "\r\n")
	}
	body.WriteString(strings.Repeat("y", 70<<10)) // a last line longer than a chunk
	body.WriteString("\r\r\n")
	// A write size of 0 writes whole lines, about 40 KiB at a time after a
	// small first write, as the armor comes after the notice: those go out
	// without being copied.
	for _, writeSize := range []int{1, 7, 4096, 32767, 32768, 40000, 65520, 65535, 65536, 65537, 100000, body.Len(), 0} {
		var chunks [][]byte
		br := &bodyReplacer{send: func(p []byte) error {
			chunks = append(chunks, bytes.Clone(p))
			return nil
		}}
		data := body.Bytes()
		for first := true; len(data) > 0; first = false {
			n := min(writeSize, len(data))
			if writeSize == 0 {
				n = min(1000, len(data))
				if !first {
					n = min(len(data), bytes.LastIndexByte(data[:min(40<<10, len(data))], '\n')+1)
					if n == 0 {
						n = len(data)
					}
				}
			}
			if _, err := br.Write(data[:n]); err != nil {
				t.Fatal(err)
			}
			data = data[n:]
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
		if got := bytes.Join(chunks, nil); !bytes.Equal(got, body.Bytes()) {
			t.Fatalf("write size %d: the pieces do not add up to the body", writeSize)
		}
		for i, c := range chunks {
			if len(c) == 0 || len(c) > replaceChunk {
				t.Fatalf("write size %d: piece %d has %d bytes", writeSize, i, len(c))
			}
			if i < len(chunks)-1 && c[len(c)-1] == '\r' {
				t.Fatalf("write size %d: piece %d ends in a CR", writeSize, i)
			}
		}
	}
}

// The replacement body's buffer is pooled between messages: twelve tagged
// messages of different sizes (some sent through the buffer, some large
// enough to bypass it), released together and twice over, must each
// arrive as the sealed form of their own body.
func TestSealedBodiesApartUnderBurst(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil, nil)
	const n = 12
	for round := range 2 {
		msgs := make([]testMsg, n)
		sessions := make([]*gomilter.ClientSession, n)
		for i := range n {
			body := secretBody() + strings.Repeat(fmt.Sprintf("round %d message %d line\r\n", round, i), i*300)
			msgs[i] = tagged(fmt.Sprintf("Burst %d-%d [encrypt]", round, i), "alice@external.test", body)
			sessions[i] = e.newSession(t)
		}
		results := make([]outcome, n)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range n {
			done.Go(func() {
				start.Wait()
				results[i] = e.send(t, sessions[i], msgs[i])
			})
		}
		start.Done()
		done.Wait()
		for i := range n {
			assertSealed(t, e, msgs[i], results[i])
		}
	}
}
