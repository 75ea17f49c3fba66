package envelope

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The seed corpora in testdata/fuzz/Fuzz*/seed-* are made by seedFiles;
// regenerate them with go test ./envelope -run TestFuzzSeeds -update.
// Other files there are inputs the fuzzer found; keep them.

// fuzzSeeds returns the committed seeds of each fuzz target.
func fuzzSeeds(t testing.TB) map[string]map[string][]byte {
	small := []byte(goldenPayload)
	env := seal(t, small, testDEK, testHeader(), 0)
	empty := seal(t, nil, testDEK, testHeader(), 0)
	n := testNotice("Alice Example <alice@example.com>")
	var page bytes.Buffer
	if err := WritePage(&page, n, bytes.NewReader(env)); err != nil {
		t.Fatal(err)
	}
	body, _ := writeBody(t, n, small)
	msg := "From: Alice Example <alice@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: " +
		ContentType(n.Boundary) + "\r\n\r\n" + string(body)
	return map[string]map[string][]byte{
		"FuzzOpen": {
			"empty-payload": empty,
			"one-byte":      seal(t, []byte("x"), testDEK, testHeader(), 0),
			"message":       env,
			"trailing":      append(bytes.Clone(env), "garbage"...),
			"header-only":   env[:headerSize],
			"cut-in-tag":    env[:headerSize+10],
			"cut-mid-chunk": env[:len(env)-20],
			"version-2":     withByte(env, 5, 2),
			"other-key":     seal(t, small, otherDEK, testHeader(), 0),
			"not-envelope":  []byte("Subject: hello\r\n\r\nhi\r\n"),
		},
		"FuzzParsePage": {
			"page":       page.Bytes(),
			"page-lf":    []byte(strings.ReplaceAll(page.String(), "\r\n", "\n")),
			"page-empty": pageWith(t, n, nil),
			"minimal": []byte(`<input type="hidden" name="v" value="1">` +
				`<input type="hidden" name="id" value="` + testKeyID.String() + `">` +
				`<textarea name="envelope">U01FTlYB</textarea>`),
			"version-2": []byte(strings.Replace(page.String(), `name="v" value="1"`, `name="v" value="2"`, 1)),
		},
		"FuzzFindPage": {
			"message":    []byte(msg),
			"message-lf": []byte(strings.ReplaceAll(msg, "\r\n", "\n")),
			"page":       page.Bytes(),
			"nested": []byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" +
				"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
				"Content-Type: text/html; name=SecureMessageATT.html\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
				"PCFET0NUWVBFIGh0bWw+\r\n--b--\r\n--a--\r\n"),
			"no-page": []byte("Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nhi=E9\r\n"),
		},
	}
}

func pageWith(t testing.TB, n Notice, env []byte) []byte {
	var b bytes.Buffer
	if err := WritePage(&b, n, bytes.NewReader(env)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func corpusFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

// seedFiles returns the committed seed files of each fuzz target: those
// of fuzzSeeds and those of FuzzWriteBody, whose inputs
// are more than one value.
func seedFiles(t testing.TB) map[string]map[string][]byte {
	files := map[string]map[string][]byte{}
	for target, seeds := range fuzzSeeds(t) {
		files[target] = map[string][]byte{}
		for name, data := range seeds {
			files[target][name] = corpusFile(data)
		}
	}
	files["FuzzWriteBody"] = map[string][]byte{}
	for name, s := range writeBodySeeds(t) {
		files["FuzzWriteBody"][name] = s.corpusFile()
	}
	return files
}

// TestFuzzSeeds checks that the committed seed corpora are what seedFiles
// makes, or rewrites them with -update.
func TestFuzzSeeds(t *testing.T) {
	t.Parallel()
	for target, seeds := range seedFiles(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if *update {
			old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
			for _, name := range old {
				if err := os.Remove(name); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, data := range seeds {
				if err := os.WriteFile(filepath.Join(dir, "seed-"+name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		files, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
		if len(files) != len(seeds) {
			t.Errorf("%s: %d seed files, want %d; run go test ./envelope -run TestFuzzSeeds -update", target, len(files), len(seeds))
		}
		for name, data := range seeds {
			got, err := os.ReadFile(filepath.Join(dir, "seed-"+name))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: seed-%s missing or stale (%v); run with -update", target, name, err)
			}
		}
	}
}

// FuzzOpen opens arbitrary bytes as an envelope under the test key; see
// checkOpen for what must hold. Inputs of a chunk or more are too big for
// the fuzzer's mutator and minimizer: TestOpenProperty covers them.
func FuzzOpen(f *testing.F) {
	f.Fuzz(checkOpen)
}

// TestOpenProperty runs FuzzOpen's checks on multi-chunk envelopes, every
// vector, and every vector cut at each chunk boundary and around it.
func TestOpenProperty(t *testing.T) {
	t.Parallel()
	big := testPayload("fuzz open", 2*ChunkSize+5)
	var inputs [][]byte
	for _, n := range []int{ChunkSize, ChunkSize + 1, 2*ChunkSize + 5} {
		inputs = append(inputs, seal(t, big[:n], testDEK, testHeader(), 0))
	}
	for _, v := range makeVectors() {
		inputs = append(inputs, v.env)
	}
	for _, env := range inputs {
		checkOpen(t, env)
		for _, cut := range []int{headerSize + encChunkSize, headerSize + 2*encChunkSize} {
			for _, d := range []int{-tagSize - 1, -tagSize, -1, 0, 1, tagSize, tagSize + 1} {
				if c := cut + d; c > 0 && c < len(env) {
					checkOpen(t, env[:c])
				}
			}
		}
	}
}

// checkOpen opens data as an envelope under the test key. It must not
// panic; a success must be the one encoding of its plaintext (sealing the
// plaintext again under the same header gives back the input, so nothing
// unauthenticated was accepted); a failure must be one of the package's
// errors and release only whole chunks that are exactly the input's first
// chunks, sealed not last.
func checkOpen(t *testing.T, data []byte) {
	h, err := ReadHeader(bytes.NewReader(data))
	if err != nil {
		if !errors.Is(err, ErrNotEnvelope) && !errors.Is(err, ErrVersion) {
			t.Fatalf("ReadHeader: unexpected error %v", err)
		}
		return
	}
	r, err := Open(bytes.NewReader(data[headerSize:]), testDEK, h)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(r)
	if err == nil {
		if again := seal(t, plain, testDEK, h, 0); !bytes.Equal(again, data) {
			t.Fatalf("accepted %d bytes that are not the sealing of their %d-byte plaintext", len(data), len(plain))
		}
		return
	}
	if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTrailing) {
		t.Fatalf("unexpected error %v", err)
	}
	if len(plain)%ChunkSize != 0 {
		t.Fatalf("released %d bytes before %v: not whole chunks", len(plain), err)
	}
	ref := newRefStream(testDEK, h.KeyID, h.Salt)
	for i := 0; i < len(plain)/ChunkSize; i++ {
		c := ref.chunk(uint64(i), false, plain[i*ChunkSize:(i+1)*ChunkSize])
		off := headerSize + i*encChunkSize
		if !bytes.Equal(data[off:off+encChunkSize], c) {
			t.Fatalf("released chunk %d, which is not the input's chunk %d", i, i)
		}
	}
}

// FuzzParsePage parses arbitrary pages. It must not panic, and a page it
// accepts must give the same form when its envelope is written into a page
// of our own and parsed again.
func FuzzParsePage(f *testing.F) {
	f.Fuzz(func(t *testing.T, page []byte) {
		form, err := ParsePage(page)
		if err != nil {
			return
		}
		n := testNotice("Fuzz <fuzz@example.com>")
		n.KeyID = form.KeyID
		var b bytes.Buffer
		if err := WritePage(&b, n, bytes.NewReader(form.Envelope)); err != nil {
			t.Fatalf("WritePage: %v", err)
		}
		again, err := ParsePage(b.Bytes())
		if err != nil {
			t.Fatalf("ParsePage of our own page: %v", err)
		}
		if again.Version != form.Version || again.KeyID != form.KeyID || !bytes.Equal(again.Envelope, form.Envelope) {
			t.Fatalf("form changed: v%d %s %x -> v%d %s %x", form.Version, form.KeyID, form.Envelope,
				again.Version, again.KeyID, again.Envelope)
		}
	})
}

// FuzzFindPage looks for the page in arbitrary messages. It must not panic.
func FuzzFindPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		page, err := FindPage(bytes.NewReader(data))
		if err != nil {
			if page != nil {
				t.Fatalf("FindPage returned a page with error %v", err)
			}
			return
		}
		if len(page) > maxPageSize {
			t.Fatalf("page of %d bytes", len(page))
		}
		ParsePage(page) // must not panic either
	})
}
