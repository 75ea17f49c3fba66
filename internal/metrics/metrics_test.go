package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/milter"
)

// TestPortalCountsByRouteAndStatus sends a known mix of answered requests
// through the wrapper, released together, and checks each counter moved
// by exactly its share.
func TestPortalCountsByRouteAndStatus(t *testing.T) {
	t.Parallel()
	m := New("test", nil)
	// status by "METHOD path" as the portal answers (package portal).
	answers := map[string]int{
		"POST /open":                 http.StatusSeeOther,
		"POST /signin":               http.StatusSeeOther,
		"POST /signin?bad":           http.StatusUnauthorized,
		"POST /signin?slow":          http.StatusTooManyRequests,
		"POST /register/password":    http.StatusSeeOther,
		"POST /email":                http.StatusSeeOther,
		"POST /email?held":           http.StatusSeeOther,
		"GET /m/tok123":              http.StatusOK,
		"GET /m/tok123/part/1":       http.StatusOK,
		"POST /m/tok123/reply":       http.StatusSeeOther,
		"GET /static/portal.css":     http.StatusOK,
		"POST /open?refused":         http.StatusBadRequest,
		"POST /register/password?no": http.StatusBadRequest,
	}
	h := m.Portal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		key := r.Method + " " + r.URL.Path
		if r.URL.RawQuery != "" {
			key += "?" + r.URL.RawQuery
		}
		if key == "POST /email?held" {
			// A code request past its budget: the portal still shows
			// the sign-in page, and says so in the address.
			w.Header().Set("Location", "/signin?codes=held")
		}
		w.WriteHeader(answers[key])
	}))
	const rounds = 5
	var wg, ready sync.WaitGroup
	start := make(chan struct{})
	for range rounds {
		for key := range answers {
			method, target, _ := strings.Cut(key, " ")
			wg.Add(1)
			ready.Add(1)
			go func() {
				defer wg.Done()
				req := httptest.NewRequest(method, target, strings.NewReader("0123456789"))
				ready.Done()
				<-start
				h.ServeHTTP(httptest.NewRecorder(), req)
			}()
		}
	}
	ready.Wait()
	close(start)
	wg.Wait()
	for name, c := range map[string]struct {
		got  float64
		want float64
	}{
		"opens":            {testutil.ToFloat64(m.opens), rounds},
		"signins ok":       {testutil.ToFloat64(m.signins.WithLabelValues("ok")), rounds},
		"signins failed":   {testutil.ToFloat64(m.signins.WithLabelValues("failed")), rounds},
		"signins throttle": {testutil.ToFloat64(m.signins.WithLabelValues("throttled")), rounds},
		"registrations":    {testutil.ToFloat64(m.registrations), 0}, // PortalStore counts them
		"codes sent":       {testutil.ToFloat64(m.codeRequests.WithLabelValues("sent")), 0},
		"codes throttled":  {testutil.ToFloat64(m.codeRequests.WithLabelValues("throttled")), rounds},
		"reads":            {testutil.ToFloat64(m.reads), 0},
		"replies":          {testutil.ToFloat64(m.replies), rounds},
		// two /open and one reply per round, 10 bytes each
		"upload bytes": {testutil.ToFloat64(m.uploadBytes), rounds * 3 * 10},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
}

func TestMilterEventsUnderConcurrency(t *testing.T) {
	t.Parallel()
	m := New("test", nil)
	ev := m.Milter()
	const n = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ev.SessionOpened()
			ev.MessageDone(milter.VerdictSealed, "")
			ev.MessageDone(milter.VerdictRefused, milter.ReasonNotEntitled)
			ev.MessageDone(milter.VerdictRefused, "something new")
			ev.Sealed(0, 100)
			ev.SessionClosed()
		}()
	}
	close(start)
	wg.Wait()
	if got := testutil.ToFloat64(m.messages[milter.VerdictRefused]); got != 2*n {
		t.Errorf("refused %v", got)
	}
	if got := testutil.ToFloat64(m.refused[milter.ReasonNotEntitled]); got != n {
		t.Errorf("not entitled %v", got)
	}
	if got := testutil.ToFloat64(m.refusedOther); got != n {
		t.Errorf("other %v", got)
	}
	if got := testutil.ToFloat64(m.sealedBytes); got != 100*n {
		t.Errorf("sealed bytes %v", got)
	}
	if got := testutil.ToFloat64(m.sessions); got != 0 {
		t.Errorf("sessions %v after all closed", got)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	m := New("test", map[string]string{"milter": t.TempDir()})
	fail := errors.New("disk gone")
	var broken bool
	h := m.Handler([]Check{
		{Name: "spool", Fn: WritableDir(t.TempDir())},
		{Name: "keystore", Fn: func(context.Context) error {
			if broken {
				return fail
			}
			return nil
		}},
	}, slog.New(slog.DiscardHandler))
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("readyz %d %q", code, body)
	}
	broken = true
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "keystore") || strings.Contains(body, "disk gone") {
		t.Errorf("readyz with a failing check: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `securemail_build_info{version="test"} 1`) || !strings.Contains(body, `securemail_spool_bytes{spool="milter"} 0`) {
		t.Errorf("metrics %d:\n%s", code, body)
	}
}

func TestPortalStoreCountsWhatTheStoreDid(t *testing.T) {
	t.Parallel()
	b, err := boltstore.Open(filepath.Join(t.TempDir(), "keys.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m := New("test", nil)
	s := m.PortalStore(b)
	ctx := context.Background()
	now := time.Now()
	acct := keystore.Account{Email: "bob@external.test", PasswordHash: "$argon2id$x", Created: now}
	if err := s.CreateAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, acct); err == nil {
		t.Fatal("a second account for the same address")
	}
	for range 3 {
		if err := s.PutCode(ctx, keystore.Code{Purpose: keystore.CodeRegister, Email: "bob@external.test", Digest: make([]byte, 32), Expires: now.Add(time.Hour), TriesLeft: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordRead(ctx, keystore.ReadEvent{KeyID: keystore.KeyID{1}, Reader: "bob@external.test", At: now}); err != nil {
		t.Fatal(err)
	}
	if r, c, n := testutil.ToFloat64(m.registrations), testutil.ToFloat64(m.codeRequests.WithLabelValues("sent")), testutil.ToFloat64(m.reads); r != 1 || c != 3 || n != 1 {
		t.Errorf("registrations %v (want 1: the refused one does not count), codes %v (want 3), reads %v (want 1)", r, c, n)
	}
}
