package portal

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Seeds for these targets are committed in testdata/fuzz/<target>; the
// fuzzer's own finds go there too.

// FuzzParsePHC: a stored hash string never panics the parser, and what
// parses writes back to exactly the same string (the parser is strict).
func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$R3BqN/bmu/hJbnZbdEmJ3dnBW2Kg8A8Yt/fyF7Y0bRQ")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePHC(s)
		if err != nil {
			return
		}
		if back := formatPHC(p.params, p.salt, p.key); back != s {
			t.Fatalf("parsed %q but writes back %q", s, back)
		}
	})
}

// FuzzOpenUpload: whatever anyone posts to /open, the answer is a page
// with a 3xx or 4xx status, never a 5xx or a panic, and nothing
// half-written stays in the spool.
func FuzzOpenUpload(f *testing.F) {
	e := newTestEnv(f)
	good := e.seal(alice, []string{bob}, plainMessage)
	for _, fields := range [][][2]string{
		{{"v", "1"}, {"id", good.form.KeyID.String()}, {"envelope", armor(good.form.Envelope)}},
		{{"v", "1"}, {"envelope", armor(good.form.Envelope[:60])}},
		{{"v", "1"}, {"id", "zz"}, {"envelope", "not base64 at all"}},
		{{"envelope", ""}},
	} {
		ct, body := multipartBody(f, fields)
		b := new(bytes.Buffer)
		b.ReadFrom(body)
		f.Add(ct, b.Bytes())
	}
	f.Add("text/plain", []byte("v=1"))
	spoolDir := filepath.Join(e.dir, "portal-spool")
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req := httptest.NewRequest("POST", "/open", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		e.portal.ServeHTTP(rec, req)
		if rec.Code >= 500 || rec.Code < 300 {
			t.Fatalf("status %d for %q:\n%s", rec.Code, contentType, rec.Body.String())
		}
		if rec.Code != http.StatusSeeOther && !strings.Contains(rec.Body.String(), "<h1>") {
			t.Fatalf("status %d without a page", rec.Code)
		}
		entries, _ := os.ReadDir(spoolDir)
		for _, en := range entries {
			if strings.HasPrefix(en.Name(), "upload-") {
				t.Fatalf("half-written upload left: %s", en.Name())
			}
		}
	})
}
