package main

// More than one host, end to end: three "securemail serve" processes on
// one private PostgreSQL, as a provider would run them. One runs only the
// milter behind a private Postfix; two run only the portal. A tagged
// message is sealed through Postfix on the first, then opened, registered,
// read and replied to with every request going to the other portal host
// than the one before. The recipient's side is a plain HTTP client with a
// cookie jar (each step is what the page's form posts), not a browser.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/pgtest"
)

func TestMultiHostPostgresEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs PostgreSQL, Postfix and three securemail processes")
	}
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	db := pgtest.Start(t, pgtest.Options{})
	dsn := db.DSN(db.NewDatabase(t))

	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	pf := e2eNewPostfix(t, sink, "")
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)
	portalA := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	portalB := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	masterKey := filepath.Join(t.TempDir(), "master.key")
	shared := []string{
		"SECUREMAIL_KEYSTORE_BACKEND=postgres",
		"SECUREMAIL_KEYSTORE_POSTGRES_DSN=" + dsn,
		"SECUREMAIL_KEYSTORE_MASTER_KEY_FILE=" + masterKey,
	}
	config := func(portalListen string) string {
		return e2eWriteConfigWith(t, milterAddr, pf.SMTPAddr(), e2eConfig{
			logLevel: "info", networks: "[127.0.0.0/8]", maxSize: fmt.Sprint(20 << 20),
			internal: pbInternal, portalListen: portalListen,
			portalExtra: "  argon2:\n    time: 1\n    memory: 8MiB\n    threads: 1\n",
		})
	}
	// The milter host writes host A's address into every envelope; it
	// creates the master key on the empty database, then the portal hosts
	// start with the same file.
	submission := e2eStartServeAs(t, bin, config(portalA), "tcp", milterAddr, nil, append(shared, "SECUREMAIL_PORTAL_ENABLED=false")...)
	hostA := e2eStartServeAs(t, bin, config(portalA), "tcp", portalA, nil, append(shared, "SECUREMAIL_MILTER_ENABLED=false")...)
	hostB := e2eStartServeAs(t, bin, config(portalB), "tcp", portalB, nil, append(shared, "SECUREMAIL_MILTER_ENABLED=false")...)
	pf.Start(t)

	const marker = "MULTIHOST-MARKER"
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: Across hosts %s\r\nMessage-ID: <mh.%d@%s>\r\n\r\nThe figures. %s\r\n",
		pbSender, pbRecipient, e2eTag, time.Now().UnixNano(), pbInternal, marker)
	page := pbSubmitSealed(t, pf, sink, msg, "Across hosts", marker)
	form, err := envelope.ParsePage(page)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "http://"+portalA) {
		t.Fatalf("the envelope does not point at portal host A (%s)", portalA)
	}

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: pbWait, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	hosts := []string{"http://" + portalA, "http://" + portalB}
	turn := 0
	// next sends one request to the host after the one before.
	next := func(method, path, contentType string, body []byte) (int, string, string) {
		t.Helper()
		base := hosts[turn%2]
		turn++
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if path == "/open" {
			req.Header.Set("Origin", "null")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s%s: %v", method, base, path, err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		t.Logf("multihost: %s %s%s: %d", method, base, path, resp.StatusCode)
		return resp.StatusCode, resp.Header.Get("Location"), b.String()
	}
	post := func(path string, v url.Values) (int, string, string) {
		return next("POST", path, "application/x-www-form-urlencoded", []byte(v.Encode()))
	}
	get := func(path string) (int, string, string) { return next("GET", path, "", nil) }
	want := func(what string, status, wantStatus int, body string, texts ...string) {
		t.Helper()
		if status != wantStatus {
			t.Fatalf("%s: %d, want %d\n%s", what, status, wantStatus, body)
		}
		for _, s := range texts {
			if !strings.Contains(body, s) {
				t.Fatalf("%s: the page does not say %q\n%s", what, s, body)
			}
		}
	}

	// Click to read message (host A, as the attachment's form posts).
	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	w.WriteField("v", "1")
	w.WriteField("id", form.KeyID.String())
	w.WriteField("envelope", armorEnvelope(form.Envelope))
	w.Close()
	status, loc, body := next("POST", "/open", w.FormDataContentType(), mp.Bytes())
	want("open on A", status, http.StatusSeeOther, body)
	if !strings.HasPrefix(loc, "/m/") {
		t.Fatalf("open on A sent the browser to %q", loc)
	}
	token := strings.TrimPrefix(loc, "/m/")
	status, _, body = get(loc) // B
	want("the uploaded envelope on B", status, http.StatusOK, body, `action="/email"`)
	status, loc, body = post("/email", url.Values{"email": {pbRecipient}, "token": {token}}) // A
	want("email on A", status, http.StatusSeeOther, body)
	status, _, body = get(loc) // B
	want("sign-in page on B", status, http.StatusOK, body, "Create an account")
	status, loc, body = post("/register/send-code", nil) // A
	want("send code on A", status, http.StatusSeeOther, body)
	codeMail, err := sink.WaitFor(func(m mtatest.Message) bool {
		return pbIsNotice(m) && pbSubjectOf(m) == "Your code to read a secure message"
	}, pbWait)
	if err != nil {
		t.Fatalf("no code mail: %v", err)
	}
	code := regexp.MustCompile(`\b\d{8}\b`).FindString(pbTextBody(t, codeMail.Data))
	status, _, body = get(loc) // B
	want("code page on B", status, http.StatusOK, body)
	status, loc, body = post("/register/code", url.Values{"code": {code}}) // A
	want("code on A", status, http.StatusSeeOther, body)
	status, _, body = get(loc) // B
	want("create-account page on B", status, http.StatusOK, body, "Create your account")
	status, loc, body = post("/register/password", url.Values{"password": {pbPassword}, "confirm": {pbPassword}, // A
		"q1": {"0"}, "a1": {"Fluffy"}, "q2": {"3"}, "a2": {"Hill Street Primary"}, "q3": {"7"}, "a3": {"Mill Lane"}})
	want("register on A", status, http.StatusSeeOther, body)
	status, _, body = get(loc) // B
	want("read on B", status, http.StatusOK, body, marker, "Send reply")
	status, _, body = get("/m/" + token) // A
	want("read on A", status, http.StatusOK, body, marker)

	// Reply (host B).
	mp.Reset()
	w = multipart.NewWriter(&mp)
	w.WriteField("body", "Received across hosts, thanks. MULTIHOST-REPLY")
	w.Close()
	status, _, body = next("POST", "/m/"+token+"/reply", w.FormDataContentType(), mp.Bytes())
	want("reply on B", status, http.StatusOK, body, "Your reply was sent")
	if _, err := sink.WaitFor(func(m mtatest.Message) bool {
		return strings.EqualFold(m.From, pbRecipient) && len(m.Rcpts) == 1 && strings.EqualFold(m.Rcpts[0], pbSender)
	}, pbWait); err != nil {
		t.Fatalf("the reply sent through host B did not arrive: %v", err)
	}
	if turn < 10 {
		t.Fatalf("only %d requests alternated", turn)
	}
	for name, s := range map[string]*e2eServe{"submission": submission, "portal A": hostA, "portal B": hostB} {
		if code, err := s.stop(30 * time.Second); code != 0 || err != nil {
			t.Errorf("%s host exited %d, %v\n%s", name, code, err, s.log.String())
		}
	}
	if !strings.Contains(submission.log.String(), "roles=milter") || !strings.Contains(hostB.log.String(), "roles=portal") {
		t.Error("the hosts' start lines do not name their roles")
	}
}

// armorEnvelope is the envelope as the attachment's textarea holds it.
func armorEnvelope(env []byte) string {
	var b strings.Builder
	enc := base64.StdEncoding.EncodeToString(env)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.String()
}
