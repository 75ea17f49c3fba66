package main

// More than one host, end to end, in a real browser: three "securemail
// serve" processes on one private PostgreSQL, as a provider would run them.
// One runs only the milter behind a private Postfix; two run only the
// portal, behind a round-robin load balancer (a reverse proxy in the test)
// that both know as their portal.url. Alice's tagged message to Bob, copied
// to Carol at another outside domain, is sealed through Postfix; Bob opens
// its SecureMessageATT.html in headless Chromium, clicks through, registers
// with the code the portal mails, reads the message and replies to
// everyone. The balancer sends every page request (a navigation or a form
// post) to the other portal host than the one before and records who
// answered; the test checks that sequence, and that the reply, which
// leaves the domain for Carol, went out through the milter host's Postfix
// sealed.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/securemail/securemail/cmd/securemail/internal/browsertest"
	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/internal/pgtest"
)

const (
	mhCc          = "carol@partner.test" // a second outside recipient: a reply to everyone leaves the domain
	mhSubject     = "Across hosts"
	mhMarker      = "MULTIHOST-MARKER"
	mhReplyText   = "Received across hosts, thanks. MULTIHOST-REPLY"
	mhReplyMarker = "MULTIHOST-REPLY"
)

func TestMultiHostPostgresInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs PostgreSQL, Postfix, three securemail processes and Chromium")
	}
	began := time.Now()
	step := func(what string) {
		t.Logf("multihost browser: %-26s at %v", what, time.Since(began).Round(time.Millisecond))
	}
	st := newE2EBrowserStack(t, "multihost browser test", pgtest.Require)
	db := pgtest.Start(t, pgtest.Options{})
	dsn := db.DSN(db.NewDatabase(t))

	portalA := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	portalB := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	lb := startMHBalancer(t, map[string]string{"A": portalA, "B": portalB})
	masterKey := filepath.Join(t.TempDir(), "master.key")
	shared := []string{
		"SECUREMAIL_KEYSTORE_BACKEND=postgres",
		"SECUREMAIL_KEYSTORE_POSTGRES_DSN=" + dsn,
		"SECUREMAIL_KEYSTORE_MASTER_KEY_FILE=" + masterKey,
	}
	// Every host knows the portal by the balancer's address: the milter
	// host writes it into envelopes, the portal hosts answer to it.
	const replyAll = "  reply_all: true\n"
	submissionCfg := st.config(t, "", lb.url, replyAll)
	// The milter host creates the master key on the empty database, then
	// the portal hosts start with the same file.
	submission := e2eStartServeAs(t, st.bin, submissionCfg, "tcp", st.milterAddr, nil, append(shared, "SECUREMAIL_PORTAL_ENABLED=false")...)
	hostA := e2eStartServeAs(t, st.bin, st.config(t, portalA, lb.url, replyAll), "tcp", portalA, nil, append(shared, "SECUREMAIL_MILTER_ENABLED=false")...)
	hostB := e2eStartServeAs(t, st.bin, st.config(t, portalB, lb.url, replyAll), "tcp", portalB, nil, append(shared, "SECUREMAIL_MILTER_ENABLED=false")...)
	st.pf.Start(t)
	pbWaitHealthy(t, "http://"+portalA)
	pbWaitHealthy(t, "http://"+portalB)
	step("three hosts and postfix up")

	// Alice writes to Bob, with Carol in copy.
	msgID := fmt.Sprintf("<mh.%d@%s>", time.Now().UnixNano(), pbInternal)
	msg := fmt.Sprintf("From: Alice Example <%s>\r\nTo: <%s>\r\nCc: <%s>\r\nSubject: %s %s\r\nMessage-ID: %s\r\nDate: %s\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Bob,\r\n\r\nthe figures. %s\r\n\r\nAlice\r\n",
		pbSender, pbRecipient, mhCc, mhSubject, e2eTag, msgID, time.Now().Format(time.RFC1123Z), mhMarker)
	page := e2eSubmitSealed(t, st.pf, st.sink, pbSender, []string{pbRecipient, mhCc}, msg, mhSubject, mhMarker)
	step("message sealed")

	b := browsertest.New(t, browsertest.Options{Width: 1280, Height: 900, Timeout: pbWait})
	tab := b.NewTab(t)
	tab.DisableScripts()
	tab.Navigate(brPageURL(t, page))
	tab.Run(chromedp.WaitVisible(brButton, chromedp.ByQuery))
	if text := tab.Text("main"); !strings.Contains(text, lb.url+"/") || !strings.Contains(text, pbSender) {
		t.Fatalf("the attachment page does not name the sender and the shared portal %s/:\n%s", lb.url, text)
	}

	// Click to read message; the portal asks who is reading.
	pbClick(tab, brButton)
	tab.WaitText(pbWait, lb.url+"/m/", "Read your secure message", "Your email address")
	token := strings.TrimPrefix(tab.Location(), lb.url+"/m/")
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{16,}$`).MatchString(token) {
		t.Fatalf("the portal sent the browser to %s/m/%s: not a token", lb.url, token)
	}
	step("envelope opened")
	tab.Run(chromedp.SendKeys("#email", pbRecipient, chromedp.ByQuery))
	pbClick(tab, `form[action="/email"] button[type=submit]`)
	tab.WaitText(pbWait, lb.url+"/signin", "Sign in to read your message", pbRecipient, "First time here", "Code from the email")

	// The code, mailed through the milter host's Postfix to the sink.
	codeMail, err := st.sink.WaitFor(func(m mtatest.Message) bool {
		return pbIsNotice(m) && pbSubjectOf(m) == "Your code to read a secure message"
	}, pbWait)
	if err != nil {
		t.Fatalf("no code mail for %s: %v", pbRecipient, err)
	}
	code := regexp.MustCompile(`\b\d{8}\b`).FindString(pbTextBody(t, codeMail.Data))
	if code == "" {
		t.Fatalf("no 8-digit code in the mail %s:\n%s", codeMail.Path, e2eHead(codeMail.Data))
	}
	step("code mailed")
	tab.Run(chromedp.SendKeys("#code", code, chromedp.ByQuery))
	pbClick(tab, `form[action="/code"] button[type=submit]`)
	tab.WaitText(pbWait, lb.url+"/register/password", "Create your account", "Two security questions")
	pbFillAccount(tab, pbPassword)
	pbClick(tab, `form[action="/register/password"] button[type=submit]`)
	tab.WaitText(pbWait, lb.url+"/m/"+token, "Your secure message", mhSubject, mhMarker, "Send reply")
	step("registered, read")
	// The same page again, now from the other host.
	tab.Navigate(lb.url + "/m/" + token)
	tab.WaitText(pbWait, lb.url+"/m/"+token, "Your secure message", mhSubject, mhMarker)

	// Reply to everyone: Alice, and Carol outside.
	tab.Run(
		chromedp.Click(`input[name="all"]`, chromedp.ByQuery),
		chromedp.SendKeys("textarea#body", mhReplyText, chromedp.ByQuery),
	)
	pbClick(tab, `form[action$="/reply"] button[type=submit]`)
	tab.WaitText(pbWait, lb.url+"/m/"+token+"/reply", "Your reply was sent", pbSender, mhCc)
	reply, err := st.sink.WaitFor(func(m mtatest.Message) bool { return strings.EqualFold(m.From, pbRecipient) }, pbWait)
	if err != nil {
		t.Fatalf("the reply did not arrive: %v", err)
	}
	step("reply delivered")

	// The reply left through the milter host sealed, for Alice and Carol,
	// and the store all hosts share opens it.
	if got := slices.Sorted(slices.Values(reply.Rcpts)); !slices.Equal(got, []string{pbSender, mhCc}) {
		t.Errorf("the reply went to %v, want %s and %s", reply.Rcpts, pbSender, mhCc)
	}
	e2eCheckSealed(t, reply, mhReplyMarker, "Re: "+mhSubject)
	if opened := mhOpen(t, st.bin, submissionCfg, reply.Path, shared); !strings.Contains(opened, mhReplyText) || !strings.Contains(opened, msgID) {
		t.Errorf("the sealed reply opens to something without the reply's text or In-Reply-To %s:\n%s", msgID, e2eHead([]byte(opened)))
	}

	// Who answered each page: the hosts took turns, and every step did
	// what it should.
	want := []mhHit{
		{Method: "POST", Path: "/open", Status: http.StatusSeeOther},
		{Method: "GET", Path: "/m/" + token, Status: http.StatusOK},
		{Method: "POST", Path: "/email", Status: http.StatusSeeOther},
		{Method: "GET", Path: "/signin", Status: http.StatusOK},
		{Method: "POST", Path: "/code", Status: http.StatusSeeOther},
		{Method: "GET", Path: "/register/password", Status: http.StatusOK},
		{Method: "POST", Path: "/register/password", Status: http.StatusSeeOther},
		{Method: "GET", Path: "/m/" + token, Status: http.StatusOK},
		{Method: "GET", Path: "/m/" + token, Status: http.StatusOK},
		{Method: "POST", Path: "/m/" + token + "/reply", Status: http.StatusOK},
	}
	pages, others := lb.hits()
	var seq []string
	for _, h := range pages {
		seq = append(seq, h.Host)
		t.Logf("multihost browser: page %-4s %-32s on %s: %d", h.Method, h.Path, h.Host, h.Status)
	}
	t.Logf("multihost browser: page hosts %s; %d other requests (%s)", strings.Join(seq, " "), len(others), mhCount(others))
	if len(pages) != len(want) {
		t.Errorf("the balancer saw %d page requests, want %d", len(pages), len(want))
	}
	for i := range min(len(pages), len(want)) {
		w := want[i]
		w.Host = [2]string{"A", "B"}[i%2]
		if g := pages[i]; g != w {
			t.Errorf("page request %d: %s %s answered %d by host %s, want %s %s answered %d by host %s",
				i+1, g.Method, g.Path, g.Status, g.Host, w.Method, w.Path, w.Status, w.Host)
		}
	}
	// The hosts' own logs agree: the reply was sent by B.
	if !strings.Contains(hostB.log.String(), "portal: reply sent") || strings.Contains(hostA.log.String(), "portal: reply sent") {
		t.Error("the reply is not in host B's log alone, where the balancer sent it")
	}
	if err := st.pf.WaitQueueEmpty(t, pbWait); err != nil {
		t.Error(err)
	}

	lb.close()
	for name, s := range map[string]*e2eServe{"submission": submission, "portal A": hostA, "portal B": hostB} {
		if code, err := s.stop(30 * time.Second); code != 0 || err != nil {
			t.Errorf("%s host exited %d, %v\n%s", name, code, err, s.log.String())
		}
	}
	for name, s := range map[string]*e2eServe{"submission": submission, "portal A": hostA, "portal B": hostB} {
		role := "roles=portal"
		if s == submission {
			role = "roles=milter"
		}
		if !strings.Contains(s.log.String(), role) {
			t.Errorf("the %s host's start line does not say %s", name, role)
		}
	}
	step("done")
}

// mhHit is one request the balancer passed on.
type mhHit struct {
	Method, Path string
	Host         string // the name of the portal host that answered
	Status       int
}

// mhBalancer is a round-robin reverse proxy in front of the portal hosts,
// as a provider's load balancer: it keeps the Host header (the hosts check
// it against portal.url) and adds X-Forwarded-For. Page requests (what
// the browser navigates to, or a form posts) take turns, A first; other
// requests (the style sheet, the icon) take turns on their own.
type mhBalancer struct {
	url       string // http://127.0.0.1:PORT, every host's portal.url
	names     []string
	proxies   map[string]*httputil.ReverseProxy
	transport *http.Transport
	srv       *http.Server

	mu            sync.Mutex
	pages, others []mhHit
}

func startMHBalancer(t *testing.T, hosts map[string]string) *mhBalancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &mhBalancer{url: "http://" + ln.Addr().String(), proxies: map[string]*httputil.ReverseProxy{},
		transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}
	for name, addr := range hosts {
		target := &url.URL{Scheme: "http", Host: addr}
		lb.names = append(lb.names, name)
		lb.proxies[name] = &httputil.ReverseProxy{
			Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(target)
				r.Out.Host = r.In.Host
				r.SetXForwarded()
			},
			Transport: lb.transport,
		}
	}
	slices.Sort(lb.names)
	lb.srv = &http.Server{Handler: lb, ReadHeaderTimeout: 10 * time.Second}
	go lb.srv.Serve(ln)
	t.Cleanup(lb.close)
	return lb
}

func (lb *mhBalancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	page := r.Header.Get("Sec-Fetch-Mode") == "navigate"
	lb.mu.Lock()
	list := &lb.others
	if page {
		list = &lb.pages
	}
	i := len(*list)
	name := lb.names[i%len(lb.names)]
	*list = append(*list, mhHit{Method: r.Method, Path: r.URL.Path, Host: name})
	lb.mu.Unlock()
	sw := &mhStatus{ResponseWriter: w, status: http.StatusOK}
	lb.proxies[name].ServeHTTP(sw, r)
	lb.mu.Lock()
	(*list)[i].Status = sw.status
	lb.mu.Unlock()
}

// hits returns the page requests and the other requests so far, in order.
func (lb *mhBalancer) hits() (pages, others []mhHit) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return append([]mhHit(nil), lb.pages...), append([]mhHit(nil), lb.others...)
}

func (lb *mhBalancer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lb.srv.Shutdown(ctx)
	lb.transport.CloseIdleConnections()
}

// mhStatus remembers the status code a handler wrote.
type mhStatus struct {
	http.ResponseWriter
	status int
}

func (s *mhStatus) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// mhCount sums up requests as "path on host: n, ...".
func mhCount(hits []mhHit) string {
	n := map[string]int{}
	var keys []string
	for _, h := range hits {
		k := fmt.Sprintf("%s %d on %s", h.Path, h.Status, h.Host)
		if n[k] == 0 {
			keys = append(keys, k)
		}
		n[k]++
	}
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, n[k]))
	}
	return strings.Join(parts, ", ")
}

// mhOpen runs "securemail open" on a delivered message with env added
// (the shared store's settings) and returns what it printed.
func mhOpen(t *testing.T, bin, config, path string, env []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "open", "--config", config, path)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = filepath.Dir(config)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("securemail open %s: %v\nstderr:\n%s", path, err, stderr.String())
	}
	return stdout.String()
}
