package portal

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/poll"
)

// spoolFiles lists the envelope and temporary files in the spool.
func spoolFiles(t *testing.T, e *testEnv) (envs, temps []string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.dir, "portal-spool"))
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		switch {
		case strings.HasSuffix(en.Name(), ".env"):
			envs = append(envs, en.Name())
		case strings.HasPrefix(en.Name(), "upload-"):
			temps = append(temps, en.Name())
		}
	}
	return envs, temps
}

// Finding 6: the same envelope posted 30 times at once is one spool file.
func TestSameEnvelopeReusesItsSpoolFile(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) { o.Uploads.PerClient = 100 })
	s := e.seal(alice, []string{bob}, plainMessage)
	rs := make([]response, 30)
	bs := make([]*browser, 30)
	for i := range bs {
		bs[i] = e.browser()
	}
	burst(30, func(i int) { rs[i] = bs[i].open(s) })
	token := rs[0].header.Get("Location")
	for i, r := range rs {
		if r.status != http.StatusSeeOther || r.header.Get("Location") != token {
			t.Fatalf("upload %d: %d %q, want 303 to %q", i, r.status, r.header.Get("Location"), token)
		}
	}
	envs, temps := spoolFiles(t, e)
	if len(envs) != 1 || len(temps) != 0 {
		t.Fatalf("spool after 30 uploads of one envelope: %v %v, want one file", envs, temps)
	}
	if stored, inUse := e.portal.h.spool.(*spool).used(); stored != int64(len(s.form.Envelope)) || inUse != stored {
		t.Errorf("spool counts %d stored, %d in use; want %d both", stored, inUse, len(s.form.Envelope))
	}
	// A second, different envelope gets its own file.
	other := e.seal(alice, []string{bob}, strings.Replace(plainMessage, "Quarterly", "Yearly", 1))
	if r := e.browser().open(other); r.status != http.StatusSeeOther || r.header.Get("Location") == token {
		t.Fatalf("another envelope: %d %q", r.status, r.header.Get("Location"))
	}
}

// Finding 6: one client may post at most its budget of envelopes.
func TestUploadsPerClientBudget(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) {
		o.Uploads.PerClient = 100
		o.Limits.UploadsPerClient = Rate{8, time.Hour}
	})
	s := e.seal(alice, []string{bob}, plainMessage)
	rs := make([]response, 20)
	burst(20, func(i int) { rs[i] = e.browser().open(s) })
	if st := statuses(rs); st[http.StatusSeeOther] != 8 || st[http.StatusTooManyRequests] != 12 {
		t.Fatalf("20 simultaneous uploads with a budget of 8: %v", st)
	}
}

// Finding 6: past the quota /open answers 503 in words; expired files are
// swept first, so an old file makes room.
func TestSpoolQuota(t *testing.T) {
	t.Parallel()
	var quota int64
	e := newTestEnv(t, func(o *Options) {
		o.MaxMessageSize = 64 << 10
		quota = maxUpload(o.MaxMessageSize) + 4<<10 // room for the reservation and a few small envelopes
		o.SpoolMax = quota
		o.SpoolTTL = time.Hour
	})
	var accepted, refused int
	for i := 0; i < 20 && refused == 0; i++ {
		s := e.seal(alice, []string{bob}, strings.Replace(plainMessage, "Quarterly", fmt.Sprint("Message ", i), 1))
		r := e.browser().open(s)
		switch r.status {
		case http.StatusSeeOther:
			accepted++
		case http.StatusServiceUnavailable:
			refused++
			if !strings.Contains(r.body, "cannot take yours") || r.header.Get("Retry-After") == "" {
				t.Errorf("full spool page: %s", r.body)
			}
		default:
			t.Fatalf("upload %d: %d\n%s", i, r.status, r.body)
		}
		if stored, _ := e.portal.h.spool.(*spool).used(); stored > quota {
			t.Fatalf("spool holds %d bytes, quota %d", stored, quota)
		}
	}
	if accepted == 0 || refused == 0 {
		t.Fatalf("%d accepted, %d refused: want the quota to bite", accepted, refused)
	}
	e.clock.Advance(time.Hour + time.Minute)
	s := e.seal(alice, []string{bob}, strings.Replace(plainMessage, "Quarterly", "After the sweep", 1))
	if r := e.browser().open(s); r.status != http.StatusSeeOther {
		t.Fatalf("upload after the old files expired: %d\n%s", r.status, r.body)
	}

	// Released together, uploads never take the spool past its quota.
	e.clock.Advance(time.Hour + time.Minute)
	sealedMsgs := make([]sealed, 10)
	for i := range sealedMsgs {
		sealedMsgs[i] = e.seal(alice, []string{bob}, strings.Replace(plainMessage, "Quarterly", fmt.Sprint("Burst ", i), 1))
	}
	rs := make([]response, 10)
	burst(10, func(i int) { rs[i] = e.browser().open(sealedMsgs[i]) })
	for i, r := range rs {
		if r.status != http.StatusSeeOther && r.status != http.StatusServiceUnavailable {
			t.Errorf("burst upload %d: %d\n%s\n%s", i, r.status, r.body, e.logs.String()[max(0, len(e.logs.String())-3000):])
		}
	}
	if stored, inUse := e.portal.h.spool.(*spool).used(); stored > quota || inUse != stored {
		t.Errorf("after the burst: %d stored, %d in use, quota %d", stored, inUse, quota)
	}
}

// slowUpload opens a raw connection and starts a POST to path whose body
// it then sends 4 bytes at a time every interval until stop is closed.
// It reports when the server ended the request, and with which status
// line.
func slowUpload(t *testing.T, addr, path string, interval time.Duration, stop <-chan struct{}) <-chan string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nOrigin: null\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n\r\n", path, addr)
	fmt.Fprintf(c, "--b\r\nContent-Disposition: form-data; name=\"v\"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name=\"envelope\"\r\n\r\n")
	ended := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			line = "closed: " + err.Error()
		}
		ended <- strings.TrimSpace(line)
	}()
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte("AAAA")); err != nil {
					return
				}
			}
		}
	}()
	return ended
}

// Finding 7: uploads trickling 4 bytes at a time are cut off once the
// grace is over, all of them, and leave nothing in the spool.
func TestSlowUploadsAreCutOff(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) {
		o.Uploads = UploadGuard{PerClient: 100, Grace: 400 * time.Millisecond, MinRate: 1 << 10, Deadline: time.Minute}
	})
	stop := make(chan struct{})
	defer close(stop)
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	const n = 20
	ends := make([]<-chan string, n)
	for i := range ends {
		ends[i] = slowUpload(t, addr, "/open", 50*time.Millisecond, stop)
	}
	timeout := time.After(10 * time.Second)
	var cut atomic.Int32
	for i, ch := range ends {
		select {
		case line := <-ch:
			if !strings.Contains(line, "408") && !strings.HasPrefix(line, "closed") {
				t.Errorf("upload %d ended with %q", i, line)
			}
			cut.Add(1)
		case <-timeout:
			t.Fatalf("%d of %d slow uploads still open after 10 s", n-int(cut.Load()), n)
		}
	}
	e.portal.h.uploads.Wait()
	if envs, temps := spoolFiles(t, e); len(envs)+len(temps) != 0 {
		t.Errorf("slow uploads left files: %v %v", envs, temps)
	}
	if stored, inUse := e.portal.h.spool.(*spool).used(); stored != 0 || inUse != 0 {
		t.Errorf("spool counts after cut-off uploads: %d %d", stored, inUse)
	}
}

// Finding 7: one client has at most PerClient uploads open at once; the
// next is refused at once.
func TestParallelUploadsPerClientCapped(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(o *Options) {
		o.Uploads = UploadGuard{PerClient: 3, Grace: 30 * time.Second, MinRate: 1, Deadline: time.Minute}
	})
	stop := make(chan struct{})
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	for range 3 {
		slowUpload(t, addr, "/open", 20*time.Millisecond, stop)
	}
	poll.Until(t, 30*time.Second, "3 uploads in progress", func() bool {
		e.portal.h.uploadMu.Lock()
		defer e.portal.h.uploadMu.Unlock()
		return e.portal.h.uploading["127.0.0.1"] == 3
	})
	s := e.seal(alice, []string{bob}, plainMessage)
	if r := e.browser().open(s); r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "several messages") {
		t.Fatalf("a fourth upload: %d\n%s", r.status, r.body)
	}
	close(stop)
}
