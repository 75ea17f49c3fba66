package envelope

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The vectors in testdata/vectors follow the style of C2SP age's testkit:
// each file is a few "key: value" lines, a blank line, and the envelope in
// base64 (76-column lines). Keys:
//
//	expect:          success | auth failure | truncated | trailing data |
//	                 not an envelope | unsupported version
//	dek:             the data key to open with, hex
//	payload:         for success, SHA-256 of the whole plaintext, hex
//	payload-size:    for success, its length
//	released:        for failures, how many plaintext bytes a reader that
//	                 releases each chunk as soon as its tag verifies returns
//	                 before the error (a reader may release fewer, never more,
//	                 and never a byte of a chunk that did not verify)
//	released-sha256: SHA-256 of those bytes, hex
//	comment:         what the case is
//
// The files are made by the reference sealer below, written from the spec in
// the package doc and independent of stream.go. Regenerate them with
//
//	go test ./envelope -run TestVectorFiles -update
const vectorDir = "testdata/vectors"

var expectErr = map[string]error{
	"success":             nil,
	"auth failure":        ErrAuth,
	"truncated":           ErrTruncated,
	"trailing data":       ErrTrailing,
	"not an envelope":     ErrNotEnvelope,
	"unsupported version": ErrVersion,
}

type vector struct {
	name     string // file name without .txt
	comment  string
	expect   string
	dek      []byte
	env      []byte
	released []byte // success: the payload; failure: what may be released
	extra    bool   // checked in memory only, not written to testdata
}

// refStream is a reference STREAM sealer, written from the spec.
type refStream struct {
	aead cipher.AEAD
	ad   []byte
}

func newRefStream(dek []byte, keyID KeyID, salt [saltSize]byte) refStream {
	ad := append(append(append([]byte("SMENV"), 0x01), keyID[:]...), salt[:]...)
	key, err := hkdf.Key(sha256.New, dek, salt[:], "securemail/v1 payload", 32)
	if err != nil {
		panic(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return refStream{aead: aead, ad: ad}
}

// chunk seals one chunk with counter i and the given last flag.
func (s refStream) chunk(i uint64, last bool, plain []byte) []byte {
	var nonce [12]byte
	binary.BigEndian.PutUint64(nonce[3:11], i)
	if last {
		nonce[11] = 1
	}
	return s.aead.Seal(nil, nonce[:], plain, s.ad)
}

// chunks seals a payload into its chunks, as the spec cuts it.
func (s refStream) chunks(payload []byte) [][]byte {
	var out [][]byte
	for i := uint64(0); ; i++ {
		n := min(len(payload), 64*1024)
		last := n == len(payload)
		out = append(out, s.chunk(i, last, payload[:n]))
		payload = payload[n:]
		if last {
			return out
		}
	}
}

func (s refStream) envelope(chunks ...[]byte) []byte {
	return slices.Concat(append([][]byte{s.ad}, chunks...)...)
}

func makeVectors() []vector {
	const cs = 64 * 1024
	ref := newRefStream(testDEK, testKeyID, testSalt)
	payload := func(n int) []byte { return testPayload(fmt.Sprint("vector payload ", n), n) }
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0x01
		return b
	}
	var vs []vector
	ok := func(name, comment string, p []byte) {
		vs = append(vs, vector{name: name, comment: comment, expect: "success",
			dek: testDEK, env: ref.envelope(ref.chunks(p)...), released: p})
	}
	bad := func(name, expect, comment string, env, released []byte) {
		vs = append(vs, vector{name: name, comment: comment, expect: expect,
			dek: testDEK, env: env, released: released})
	}
	// extra cases are checked like the files but not written, to keep
	// testdata small: they repeat a file's point on more chunks.
	extra := func(name, expect, comment string, env, released []byte) {
		bad(name, expect, comment, env, released)
		vs[len(vs)-1].extra = true
	}

	// Success.
	ok("success_empty", "empty payload: one empty chunk flagged last", nil)
	ok("success_1_byte", "one byte", payload(1))
	ok("success_64k", "exactly 64 KiB: one full chunk flagged last, no empty chunk after it", payload(cs))
	ok("success_64k_plus_1", "64 KiB + 1: a full chunk and a 1-byte last chunk", payload(cs+1))
	p3 := payload(2*cs + 16)
	ok("success_3_chunks", "three chunks: two full, a 16-byte last one", p3)

	// Keys and headers.
	small := payload(100)
	smallEnv := ref.envelope(ref.chunks(small)...)
	vs = append(vs, vector{name: "wrong_key", expect: "auth failure", dek: otherDEK, env: smallEnv,
		comment: "sealed under another data key"})
	bad("header_key_id", "auth failure", "one bit of the key id flipped: the header is every chunk's additional data",
		flip(smallEnv, 6+15), nil)
	bad("header_salt", "auth failure", "one bit of the salt flipped: another chunk key",
		flip(smallEnv, 6+16), nil)
	bad("header_version_0", "unsupported version", "version byte 0x00", withByte(smallEnv, 5, 0x00), nil)
	bad("header_version_2", "unsupported version", "version byte 0x02, unknown to a v1 reader", withByte(smallEnv, 5, 0x02), nil)
	bad("header_magic", "not an envelope", "magic SMENW", withByte(smallEnv, 4, 'W'), nil)
	bad("header_cut", "not an envelope", "the first 20 bytes only: no whole header", smallEnv[:20], nil)
	bad("empty_input", "not an envelope", "no bytes at all", []byte{}, nil)
	bad("armored_input", "not an envelope", "the envelope still in base64",
		[]byte(base64.StdEncoding.EncodeToString(smallEnv)), nil)

	// Truncation.
	bad("truncated_header_only", "truncated", "the header and no chunk", smallEnv[:headerSize], nil)
	bad("truncated_in_tag", "truncated", "the only chunk cut to 15 bytes, less than a tag",
		smallEnv[:headerSize+15], nil)
	bad("truncated_mid_chunk", "auth failure",
		"the only chunk cut in the middle: a cut chunk cannot be told from a damaged one",
		smallEnv[:headerSize+60], nil)
	p2 := payload(cs + 100)
	c2 := ref.chunks(p2)
	bad("truncated_mid_chunk_1", "auth failure",
		"64 KiB + 100 cut 50 bytes into chunk 1: chunk 0 verified, chunk 1 cannot",
		ref.envelope(c2[0], c2[1][:50]), p2[:cs])
	extra("truncated_chunk_1_in_tag", "truncated",
		"64 KiB + 100 cut 10 bytes into chunk 1: fewer bytes than a tag follow chunk 0",
		ref.envelope(c2[0], c2[1][:10]), p2[:cs])
	extra("truncated_chunk_1_to_16_bytes", "auth failure",
		"64 KiB + 100 cut 16 bytes into chunk 1: as long as an empty chunk, but not one",
		ref.envelope(c2[0], c2[1][:16]), p2[:cs])
	bad("truncated_at_boundary", "truncated",
		"64 KiB + 100 cut after chunk 0: a full chunk at the end that is not flagged last",
		ref.envelope(c2[0]), nil)

	// Extension and trailing data.
	p1 := payload(cs)
	c1 := ref.chunks(p1)
	bad("extended_empty_chunk", "trailing data",
		"exactly 64 KiB with an empty chunk 1 flagged last appended after the full last chunk 0",
		ref.envelope(c1[0], ref.chunk(1, true, nil)), nil)
	extra("extended_chunk", "trailing data",
		"exactly 64 KiB with a 100-byte chunk 1 flagged last appended after the full last chunk 0",
		ref.envelope(c1[0], ref.chunk(1, true, payload(100))), nil)
	bad("noncanonical_empty_last", "trailing data",
		"64 KiB as a full chunk 0 not flagged last and an empty chunk 1 flagged last: "+
			"only the first chunk may be empty, so a payload has one encoding",
		ref.envelope(ref.chunk(0, false, p1), ref.chunk(1, true, nil)), p1)
	bad("trailing_after_full_last", "trailing data",
		"exactly 64 KiB and 8 bytes of garbage after the full last chunk",
		ref.envelope(c1[0], []byte("garbage\n")), nil)
	extra("trailing_1_byte_after_full_last", "trailing data",
		"exactly 64 KiB and one zero byte after the full last chunk",
		ref.envelope(c1[0], []byte{0}), nil)
	bad("trailing_after_short_last", "auth failure",
		"100 bytes and 8 bytes of garbage: a short last chunk has no length, so the garbage is part of it",
		ref.envelope(smallEnv[headerSize:], []byte("garbage\n")), nil)
	extra("last_flag_on_chunk_0", "trailing data",
		"64 KiB + 100 with chunk 0 sealed as last: a whole 64 KiB payload with data after it",
		ref.envelope(ref.chunk(0, true, p2[:cs]), c2[1]), nil)
	bad("last_flag_missing", "auth failure", "100 bytes sealed with the last flag clear",
		ref.envelope(ref.chunk(0, false, small)), nil)

	// Chunk tampering, reordering, duplication.
	c3 := ref.chunks(p3)
	bad("tampered_chunk_0_of_3", "auth failure", "one bit of chunk 0's ciphertext flipped",
		ref.envelope(flip(c3[0], 1000), c3[1], c3[2]), nil)
	bad("tampered_chunk_1_of_3", "auth failure",
		"one bit of chunk 1's ciphertext flipped: chunk 0 verifies, nothing of chunk 1 may be released",
		ref.envelope(c3[0], flip(c3[1], 1000), c3[2]), p3[:cs])
	bad("tampered_tag", "auth failure", "one bit of the only chunk's tag flipped",
		flip(smallEnv, len(smallEnv)-1), nil)
	extra("tampered_tag_2_of_3", "auth failure", "one bit of the last chunk's tag flipped",
		ref.envelope(c3[0], c3[1], flip(c3[2], len(c3[2])-1)), p3[:2*cs])
	bad("reordered_chunks", "auth failure", "64 KiB + 100 with its two chunks swapped",
		ref.envelope(c2[1], c2[0]), nil)
	extra("reordered_chunks_3", "auth failure", "chunks 0 and 1 of 3 swapped",
		ref.envelope(c3[1], c3[0], c3[2]), nil)
	bad("duplicated_chunk", "auth failure",
		"64 KiB + 100 with chunk 0 repeated (chunks 0, 0, 1): the copy fails under counter 1",
		ref.envelope(c2[0], c2[0], c2[1]), p2[:cs])
	extra("duplicated_last_chunk", "auth failure", "64 KiB + 100 with the short last chunk repeated",
		ref.envelope(c2[0], c2[1], c2[1]), p2[:cs])
	extra("dropped_chunk", "auth failure", "chunk 1 of 3 left out",
		ref.envelope(c3[0], c3[2]), p3[:cs])
	otherRef := newRefStream(otherDEK, testKeyID, testSalt)
	extra("spliced_chunk", "auth failure",
		"64 KiB + 100 whose chunk 1 comes from another envelope with the same header and another key",
		ref.envelope(c2[0], otherRef.chunks(p2)[1]), p2[:cs])
	return vs
}

func withByte(b []byte, i int, v byte) []byte {
	b = bytes.Clone(b)
	b[i] = v
	return b
}

func (v vector) marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "expect: %s\n", v.expect)
	sum := sha256.Sum256(v.released)
	if v.expect == "success" {
		fmt.Fprintf(&b, "payload: %x\npayload-size: %d\n", sum, len(v.released))
	} else {
		fmt.Fprintf(&b, "released: %d\nreleased-sha256: %x\n", len(v.released), sum)
	}
	fmt.Fprintf(&b, "dek: %x\ncomment: %s\n\n", v.dek, v.comment)
	enc := base64.StdEncoding.EncodeToString(v.env)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	if enc != "" {
		b.WriteString(enc + "\n")
	}
	return b.Bytes()
}

// parsedVector is a vector file as a reader of the format sees it.
type parsedVector struct {
	fields map[string]string
	dek    []byte
	env    []byte
}

func parseVector(data []byte) (parsedVector, error) {
	v := parsedVector{fields: map[string]string{}}
	head, body, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		// An empty envelope leaves no body after the blank line.
		head, ok = bytes.CutSuffix(data, []byte("\n\n"))
		if !ok {
			head = bytes.TrimSuffix(data, []byte("\n"))
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(head))
	for sc.Scan() {
		k, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			return v, fmt.Errorf("bad header line %q", sc.Text())
		}
		if _, dup := v.fields[k]; dup {
			return v, fmt.Errorf("duplicate key %q", k)
		}
		v.fields[k] = val
	}
	var err error
	if v.dek, err = hex.DecodeString(v.fields["dek"]); err != nil || len(v.dek) != DataKeySize {
		return v, fmt.Errorf("bad dek %q", v.fields["dek"])
	}
	if v.env, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(body), "\n", "")); err != nil {
		return v, fmt.Errorf("envelope: %v", err)
	}
	if _, ok := expectErr[v.fields["expect"]]; !ok {
		return v, fmt.Errorf("unknown expect %q", v.fields["expect"])
	}
	return v, nil
}

func readVectorFiles(t *testing.T) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(vectorDir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(filepath.Base(name), ".txt")] = data
	}
	return files
}

// TestVectorFiles checks that the committed vectors are what the reference
// sealer makes, or rewrites them with -update.
func TestVectorFiles(t *testing.T) {
	t.Parallel()
	var vs []vector
	for _, v := range makeVectors() {
		if !v.extra {
			vs = append(vs, v)
		}
	}
	if *update {
		old, _ := filepath.Glob(filepath.Join(vectorDir, "*.txt"))
		for _, name := range old {
			if err := os.Remove(name); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(vectorDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if err := os.WriteFile(filepath.Join(vectorDir, v.name+".txt"), v.marshal(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files := readVectorFiles(t)
	total := 0
	for _, v := range vs {
		data, ok := files[v.name]
		if !ok {
			t.Errorf("%s.txt missing; run go test ./envelope -run TestVectorFiles -update", v.name)
			continue
		}
		delete(files, v.name)
		total += len(data)
		if !bytes.Equal(data, v.marshal()) {
			t.Errorf("%s.txt differs from the generator's output; run with -update after checking why", v.name)
		}
	}
	for name := range files {
		t.Errorf("%s.txt is not made by the generator", name)
	}
	if total > 1600*1000 {
		t.Errorf("vectors take %d bytes, keep them near 1.5 MB", total)
	}
}

// TestVectors opens every vector file with the package and checks the
// outcome, and that no plaintext beyond what verified was released.
func TestVectors(t *testing.T) {
	t.Parallel()
	files := readVectorFiles(t)
	if len(files) < 25 {
		t.Fatalf("only %d vectors in %s", len(files), vectorDir)
	}
	seen := map[string]bool{}
	for name, data := range files {
		t.Run(name, func(t *testing.T) {
			seen[checkVector(t, data)] = true
		})
	}
	for expect := range expectErr {
		if !seen[expect] {
			t.Errorf("no vector file expects %q", expect)
		}
	}
}

// TestExtraVectors checks the cases kept out of testdata for size.
func TestExtraVectors(t *testing.T) {
	t.Parallel()
	for _, v := range makeVectors() {
		if v.extra {
			t.Run(v.name, func(t *testing.T) { checkVector(t, v.marshal()) })
		}
	}
}

// checkVector checks one vector file's outcome and returns its expect line.
func checkVector(t *testing.T, data []byte) string {
	t.Helper()
	v, err := parseVector(data)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	expect := v.fields["expect"]
	wantErr := expectErr[expect]
	sizeKey, sumKey := "released", "released-sha256"
	if wantErr == nil {
		sizeKey, sumKey = "payload-size", "payload"
	}
	wantSize, err := strconv.Atoi(v.fields[sizeKey])
	if err != nil {
		t.Fatalf("%s: %v", sizeKey, err)
	}
	for _, readSize := range []int{1, 4096, ChunkSize + 17} {
		got, err := open(v.env, v.dek, readSize)
		if !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
			t.Fatalf("reads of %d: error %v, want %v", readSize, err, wantErr)
		}
		if len(got) != wantSize || hex.EncodeToString(sha256Sum(got)) != v.fields[sumKey] {
			t.Fatalf("reads of %d: released %d bytes (sha256 %x), want %d bytes (sha256 %s)",
				readSize, len(got), sha256Sum(got), wantSize, v.fields[sumKey])
		}
		if wantErr != nil && len(got)%ChunkSize != 0 {
			t.Fatalf("released %d bytes before an error: not whole chunks", len(got))
		}
	}
	// The writer makes exactly the vector's envelope from its payload.
	if wantErr == nil {
		plain, _ := open(v.env, v.dek, 4096)
		h, _ := ReadHeader(bytes.NewReader(v.env))
		for _, ws := range []int{0, 1000} {
			if env := seal(t, plain, v.dek, h, ws); !bytes.Equal(env, v.env) {
				t.Fatalf("Seal of the payload (writes of %d) differs from the vector", ws)
			}
		}
	}
	return expect
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
