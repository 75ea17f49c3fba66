package main

// Round trips through the offline tools: "seal" then "open" must give back
// the original message byte for byte, for a corpus of real-world-shaped
// messages (testdata/corpus/*.eml) and for generated ones at the edges of
// the envelope's 64 KiB chunks, in process through the same functions the
// commands use and once through the built binary, with its error paths.
//
// Every corpus message with a body carries the marker "CORPUS-" + its file
// name (without .eml) in its body and nowhere else; the sealed message must
// not. The files are byte-exact (.gitattributes: -text): CRLF, LF only,
// 8-bit bodies, and one that ends inside its header section.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/charset"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/milter"
)

const (
	rtFrom = "zoe@example.test"
	rtRcpt = "alice@external.test"
	rtTag  = "[encrypt]"
)

// rtWriteConfig writes the configuration the round-trip tests use, with
// its data and master key in dir, and returns its path.
func rtWriteConfig(t *testing.T, dir string) string {
	t.Helper()
	cfg := fmt.Sprintf(`data_dir: %[1]s/data
log:
  level: warn
portal:
  url: https://secure.example.test
policy:
  internal_domains: [example.test]
  max_message_size: 20MiB
  subject_tag: %[2]q
keystore:
  master_key_file: %[1]s/master.key
`, dir, rtTag)
	path := filepath.Join(dir, "securemail.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rtEnv is what "securemail seal" and "securemail open" build, in process.
type rtEnv struct {
	cfg    *Config
	store  keystore.Store
	master *keystore.MasterKey
	filter *milter.Filter
}

func newRTEnv(t *testing.T) *rtEnv {
	t.Helper()
	return newRTEnvFrom(t, rtWriteConfig(t, t.TempDir()))
}

// newRTEnvFrom is newRTEnv with the configuration file at path.
func newRTEnvFrom(t *testing.T, path string) *rtEnv {
	t.Helper()
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	mk, store, err := openKeys(cfg, log, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f, err := newFilter(cfg, store, mk, log)
	if err != nil {
		t.Fatal(err)
	}
	return &rtEnv{cfg: cfg, store: store, master: mk, filter: f}
}

// roundTrip seals msg, checks the sealed message, opens it and compares.
func (e *rtEnv) roundTrip(t *testing.T, msg []byte, marker string) {
	t.Helper()
	var sealed bytes.Buffer
	if err := e.filter.SealMessage(bytes.NewReader(msg), &sealed, rtFrom, []string{rtRcpt}); err != nil {
		t.Fatalf("seal: %v", err)
	}
	rtCheckSealed(t, msg, sealed.Bytes(), marker)
	plain, _, err := openSealed(context.Background(), bytes.NewReader(sealed.Bytes()), e.store, e.master, time.Now())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if !bytes.Equal(plain, msg) {
		t.Fatalf("open gave back %d bytes that differ from the %d-byte original at byte %d",
			len(plain), len(msg), firstDiff(plain, msg))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestSealOpenRoundTripCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	e := newRTEnv(t)
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		t.Run(name, func(t *testing.T) {
			msg, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			e.roundTrip(t, msg, "CORPUS-"+name)
		})
	}
}

// TestSealOpenRoundTripSizes runs generated messages at the envelope's
// chunk edges, counted on the body and on the whole message, and a
// 20 MiB one.
func TestSealOpenRoundTripSizes(t *testing.T) {
	e := newRTEnv(t)
	const chunk = envelope.ChunkSize
	cases := []struct {
		name        string
		body, total int // exactly one is set
	}{
		{name: "body 1 byte", body: 1},
		{name: "body 64 KiB", body: 64 << 10},
		{name: "total 64 KiB-1", total: chunk - 1},
		{name: "total 64 KiB", total: 64 << 10},
		{name: "total 64 KiB+1", total: chunk + 1},
		{name: "total 128 KiB", total: 2 * chunk},
		{name: "total 20 MiB", total: 20 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.total > 1<<20 && testing.Short() {
				t.Skip("large message; skipped with -short")
			}
			marker := "CORPUS-generated-" + strings.NewReplacer(" ", "-", "+", "plus").Replace(tc.name)
			msg := rtMessage(t, marker, tc.body, tc.total)
			if !bytes.Contains(msg, []byte(marker)) {
				marker = "" // no room for it
			}
			began := time.Now()
			e.roundTrip(t, msg, marker)
			if d := time.Since(began); tc.total > 1<<20 {
				t.Logf("%d-byte round trip took %v", len(msg), d.Round(time.Millisecond))
			}
		})
	}
}

// rtMessage makes a text message whose body is exactly body bytes, or
// which is exactly total bytes with its header section; the body holds
// marker and CRLF lines of 78 characters.
func rtMessage(t *testing.T, marker string, body, total int) []byte {
	t.Helper()
	head := "From: Zoe Sender <zoe@example.test>\r\nTo: Alice <alice@external.test>\r\n" +
		"Subject: Sizes " + rtTag + "\r\nMessage-ID: <sizes@example.test>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
	if total > 0 {
		body = total - len(head)
	}
	if body < 1 {
		t.Fatalf("header section is %d bytes, no room for a body", len(head))
	}
	line := []byte("the quick brown fox jumps over the lazy dog, again and again and again....\r\n")
	b := make([]byte, 0, len(head)+body+len(line))
	b = append(b, head...)
	b = append(b, (marker + "\r\n")[:min(body, len(marker)+2)]...)
	for len(b) < len(head)+body {
		b = append(b, line...)
	}
	return b[:len(head)+body]
}

// rtCheckSealed checks a sealed message against its original in: no line
// longer than 998 bytes, 7-bit but for header lines copied from the
// input, no marker, the original's header fields kept (but Subject and
// Content-*), one MIME-Version and one Content-Type of ours, and no Subject
// that still shows the tag.
func rtCheckSealed(t *testing.T, in, sealed []byte, marker string) {
	t.Helper()
	inHead, inBody := rtSplit(in)
	if marker != "" && len(inBody) > 0 {
		if !bytes.Contains(inBody, []byte(marker)) || bytes.Contains(inHead, []byte(marker)) {
			t.Fatalf("test message must have marker %q in its body and nowhere else", marker)
		}
		if bytes.Contains(sealed, []byte(marker)) {
			t.Fatalf("sealed message contains the marker %q of the original body", marker)
		}
	}

	head, body := rtSplit(sealed)
	for n, line := range bytes.SplitAfter(sealed, []byte("\n")) {
		if l := len(bytes.TrimRight(line, "\r\n")); l > 998 {
			t.Fatalf("sealed line %d is %d bytes long", n+1, l)
		}
	}
	if i := bytes.IndexFunc(body, func(r rune) bool { return r >= 0x80 || r == 0 }); i >= 0 {
		t.Fatalf("sealed body is not 7-bit: byte %d", i)
	}
	for _, line := range bytes.SplitAfter(head, []byte("\n")) {
		if bytes.IndexFunc(line, func(r rune) bool { return r >= 0x80 }) >= 0 && !bytes.Contains(inHead, line) {
			t.Errorf("8-bit header line %q is not copied from the input", line)
		}
	}

	for _, f := range rtFields(inHead) {
		name, _, _ := strings.Cut(f, ":")
		if strings.EqualFold(name, "Subject") || strings.HasPrefix(strings.ToLower(name), "content-") {
			continue
		}
		if !bytes.Contains(head, []byte(f)) {
			t.Errorf("original field %q is not in the sealed header section", f)
		}
	}

	m, err := mail.ReadMessage(bytes.NewReader(sealed))
	if err != nil {
		t.Fatalf("sealed message does not parse: %v", err)
	}
	if v := m.Header["Mime-Version"]; len(v) != 1 || v[0] != "1.0" {
		t.Errorf("sealed MIME-Version fields %q, want one, 1.0; sealed header section:\n%s", v, head)
	}
	ct := m.Header["Content-Type"]
	if len(ct) != 1 || !strings.HasPrefix(ct[0], "multipart/mixed;") {
		t.Errorf("sealed Content-Type: %q", ct)
	}
	if v := m.Header["Content-Transfer-Encoding"]; len(v) != 0 {
		t.Errorf("original Content-Transfer-Encoding kept: %q", v)
	}
	dec := &mime.WordDecoder{CharsetReader: charset.Reader}
	for _, s := range m.Header["Subject"] {
		text, err := dec.DecodeHeader(s)
		if err != nil {
			t.Errorf("sealed Subject %q: %v", s, err)
		}
		if strings.Contains(strings.ToLower(text), rtTag) {
			t.Errorf("sealed Subject %q (%q) still shows the tag", s, text)
		}
	}
}

// rtSplit cuts a message after the blank line that ends its header
// section.
func rtSplit(msg []byte) (head, body []byte) {
	off := 0
	for off < len(msg) {
		end := bytes.IndexByte(msg[off:], '\n')
		if end < 0 {
			break
		}
		line := msg[off : off+end+1]
		off += end + 1
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return msg[:off], msg[off:]
		}
	}
	return msg, nil
}

// rtFields returns the raw fields of a header section, folded lines
// included.
func rtFields(head []byte) []string {
	var fields []string
	for _, line := range strings.SplitAfter(string(head), "\n") {
		switch {
		case strings.TrimRight(line, "\r\n") == "":
		case (line[0] == ' ' || line[0] == '\t') && len(fields) > 0:
			fields[len(fields)-1] += line
		default:
			fields = append(fields, line)
		}
	}
	return fields
}

// TestCLISealOpen runs the built binary: seal then open gives back the
// message; the error paths say what went wrong, exit 1 and print no
// plaintext.
func TestCLISealOpen(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the securemail binary")
	}
	bin := e2eBuild(t)
	dir := t.TempDir()
	config := rtWriteConfig(t, dir)
	orig := filepath.Join("testdata", "corpus", "attachments.eml")
	want, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}

	// seal never creates a master key: without a data directory it
	// says so. serve's first start creates both.
	r := rtRun(t, bin, orig, "seal", "--config", config, "--from", rtFrom, "--rcpt", rtRcpt)
	if r.code != 1 || !strings.Contains(string(r.stderr), "no key database at") {
		t.Fatalf("seal before the first start: exit %d\n%s", r.code, r.stderr)
	}
	rtInitStore(t, config)

	sealed := filepath.Join(dir, "sealed.eml")
	r = rtRun(t, bin, orig, "seal", "--config", config, "--from", rtFrom, "--rcpt", rtRcpt)
	if r.code != 0 {
		t.Fatalf("seal: exit %d\n%s", r.code, r.stderr)
	}
	if err := os.WriteFile(sealed, r.stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	rtCheckSealed(t, want, r.stdout, "CORPUS-attachments")
	r = rtRun(t, bin, "", "open", "--config", config, sealed)
	if r.code != 0 {
		t.Fatalf("open: exit %d\n%s", r.code, r.stderr)
	}
	if !bytes.Equal(r.stdout, want) {
		t.Fatalf("open gave back %d bytes that differ from the %d-byte original at byte %d",
			len(r.stdout), len(want), firstDiff(r.stdout, want))
	}

	// A three-chunk message, tampered in its second chunk: the first chunk
	// authenticates on its own, and must not be printed either.
	const marker = "CORPUS-cli-tampered"
	big := filepath.Join(dir, "big.eml")
	if err := os.WriteFile(big, rtMessage(t, marker+"-"+strings.Repeat("x", 16), 0, 2*envelope.ChunkSize+100), 0o600); err != nil {
		t.Fatal(err)
	}
	r = rtRun(t, bin, big, "seal", "--config", config, "--from", rtFrom, "--rcpt", rtRcpt)
	if r.code != 0 {
		t.Fatalf("seal: exit %d\n%s", r.code, r.stderr)
	}
	tampered := filepath.Join(dir, "tampered.eml")
	if err := os.WriteFile(tampered, rtTamper(t, r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}

	noPage := filepath.Join("testdata", "corpus", "plain-text.eml")
	errCases := []struct {
		name  string
		stdin string
		args  []string
		want  string             // in the error line
		setup func(t *testing.T) // runs before the command
	}{
		{name: "open a message without a page", args: []string{"open", "--config", config, noPage},
			want: "no SecureMessageATT.html page found"},
		{name: "open a tampered envelope", args: []string{"open", "--config", config, tampered},
			want: "authentication failed"},
		{name: "seal without --rcpt", stdin: orig, args: []string{"seal", "--config", config, "--from", rtFrom},
			want: "give at least one --rcpt"},
		{name: "open while the keystore is in use", args: []string{"open", "--config", config, sealed},
			want: "is in use, but nothing answers on the admin socket", setup: func(t *testing.T) {
				cfg, err := loadConfig(config)
				if err != nil {
					t.Fatal(err)
				}
				s, err := boltstore.Open(keystorePath(cfg), boltstore.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
			}},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			r := rtRun(t, bin, tc.stdin, tc.args...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			if len(r.stdout) != 0 {
				t.Errorf("printed %d bytes on stdout, want none: %.200q", len(r.stdout), r.stdout)
			}
			lines := strings.Split(strings.TrimSuffix(string(r.stderr), "\n"), "\n")
			last := lines[len(lines)-1]
			t.Logf("exit %d: %s", r.code, last)
			if !strings.HasPrefix(last, "securemail: ") || !strings.Contains(last, tc.want) {
				t.Errorf("error line %q, want \"securemail: ...%s...\"; stderr:\n%s", last, tc.want, r.stderr)
			}
			if strings.Contains(string(r.stderr), "CORPUS-") {
				t.Errorf("stderr holds plaintext:\n%s", r.stderr)
			}
		})
	}
}

// rtInitStore creates the master key and the key database as serve's
// first start does.
func rtInitStore(t *testing.T, config string) {
	t.Helper()
	cfg, err := loadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	_, store, err := openKeys(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
}

type rtResult struct {
	code           int
	stdout, stderr []byte
}

// rtRun runs the binary with stdin read from the file stdin (none: empty).
func rtRun(t *testing.T, bin, stdin string, args ...string) rtResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return rtResult{0, stdout.Bytes(), stderr.Bytes()}
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return rtResult{exit.ExitCode(), stdout.Bytes(), stderr.Bytes()}
	}
	t.Fatalf("securemail %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	return rtResult{}
}

// rtTamper flips one base64 character in the middle of the page's
// envelope.
func rtTamper(t *testing.T, sealed []byte) []byte {
	t.Helper()
	open := []byte(`<textarea name="envelope" hidden readonly>`)
	start := bytes.Index(sealed, open)
	end := bytes.Index(sealed, []byte("</textarea>"))
	if start < 0 || end < start {
		t.Fatal("sealed message has no envelope textarea")
	}
	start += len(open)
	out := bytes.Clone(sealed)
	for i := start + (end-start)/2; i < end; i++ {
		switch c := out[i]; {
		case c == '\r' || c == '\n' || c == '=':
			continue
		case c == 'A':
			out[i] = 'B'
		default:
			out[i] = 'A'
		}
		return out
	}
	t.Fatal("no base64 character to flip")
	return nil
}
