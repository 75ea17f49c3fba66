package main

// The admin commands against a live serve that handles Postfix traffic in
// the same test: list, show, open, revoke (the portal then says the sender
// withdrew the message), accounts, a backup while tagged mail flows and a
// restore into a new directory, and a master-key rotation of a large store
// with traffic flowing and a kill -9 in the middle.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/boltstore"
	"github.com/securemail/securemail/keystore/storetest"
)

// aeRun runs the binary and returns stdout, or fails the test.
func aeRun(t *testing.T, bin, config string, stdin io.Reader, args ...string) string {
	t.Helper()
	out, errOut, err := aeTry(bin, config, stdin, args...)
	if err != nil {
		t.Fatalf("securemail %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func aeTry(bin, config string, stdin io.Reader, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--config", config)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// aeSender submits tagged messages like a mail client that retries a
// temporary failure.
type aeSender struct {
	mta  mtatest.MTA
	sent atomic.Int64
}

func (s *aeSender) dial() (*smtp.Client, error) {
	c, err := smtp.Dial(s.mta.SubmissionAddr())
	if err != nil {
		return nil, err
	}
	if err := c.StartTLS(s.mta.TLS().ClientConfig()); err != nil {
		c.Close()
		return nil, err
	}
	user, pass := s.mta.Credentials()
	if err := c.Auth(smtp.PlainAuth("", user, pass, "127.0.0.1")); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// send delivers n tagged messages from from, over one connection at a
// time, retrying each until it is accepted or the deadline passes.
func (s *aeSender) send(from string, n int, deadline time.Time) error {
	var c *smtp.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for i := 0; i < n; {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: message %d not accepted before the deadline", from, i)
		}
		if c == nil {
			var err error
			if c, err = s.dial(); err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
		}
		data := fmt.Sprintf("From: <%s>\r\nTo: <reader@external.test>\r\nSubject: Report [encrypt] %d\r\nMessage-ID: <%s-%d>\r\n\r\nAE-MARKER-%s-%d\r\n", from, i, from, i, from, i)
		if err := mtatest.SendOne(c, from, []string{"reader@external.test"}, data); err != nil {
			c.Close()
			c = nil
			time.Sleep(200 * time.Millisecond)
			continue
		}
		s.sent.Add(1)
		i++
	}
	return nil
}

// aeSealed is a delivered sealed message and its key id.
type aeSealed struct {
	path, keyID, marker string
	form                envelope.Form
}

func aeCollect(t *testing.T, sink *mtatest.Sink, from string, n int) []aeSealed {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for len(sink.FromSender(from)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages from %s delivered", len(sink.FromSender(from)), n, from)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var out []aeSealed
	for _, m := range sink.FromSender(from) {
		page, err := envelope.FindPage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("%s: not sealed: %v", m.Path, err)
		}
		form, err := envelope.ParsePage(page)
		if err != nil {
			t.Fatal(err)
		}
		subj := strings.TrimPrefix(string(m.Data[bytes.Index(m.Data, []byte("Subject: Report ")):]), "Subject: Report ")
		i, _ := strconv.Atoi(strings.Fields(subj)[0])
		out = append(out, aeSealed{path: m.Path, keyID: form.KeyID.String(), marker: fmt.Sprintf("AE-MARKER-%s-%d", from, i), form: form})
	}
	return out
}

// aePortalOpen posts the page's form to the portal's /open and returns
// the status and body.
func aePortalOpen(t *testing.T, portalURL string, s aeSealed) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("v", strconv.Itoa(s.form.Version))
	mw.WriteField("id", s.form.KeyID.String())
	fw, _ := mw.CreateFormField("envelope")
	if err := envelope.WriteArmor(fw, bytes.NewReader(s.form.Envelope)); err != nil {
		t.Fatal(err)
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, portalURL+"/open", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// aeSyntheticDEK is the data key of synthetic record n.
func aeSyntheticDEK(id keystore.KeyID) []byte {
	sum := sha256.Sum256(id[:])
	return sum[:]
}

// aeFillStore adds n synthetic records, really wrapped under the master
// key, as serve's first start would leave the store plus n sealed
// messages; and two portal accounts.
func aeFillStore(t *testing.T, cfg *Config, n int) {
	t.Helper()
	mk, store, err := openKeys(cfg, slog.New(slog.DiscardHandler), true)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	work := make(chan int)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range 512 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rec := storetest.Record(i)
				rec.Created = time.Now().Add(-time.Hour)
				rec.Expires = rec.Created.Add(90 * 24 * time.Hour)
				rec.Sender = "bulk@example.test"
				var err error
				rec.WrappedDEK, rec.MasterKeyID, err = mk.WrapKey(rec.ID, aeSyntheticDEK(rec.ID), rand.Reader)
				if err == nil {
					err = store.CreateKey(ctx, rec)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"reader@external.test", "erase-me@external.test"} {
		if err := store.CreateAccount(ctx, storetest.Account(e)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAdminAgainstLiveServe(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: starts Postfix and the securemail binary")
	}
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	nKeys := 100000
	if v := os.Getenv("SECUREMAIL_ADMIN_E2E_KEYS"); v != "" {
		nKeys, _ = strconv.Atoi(v)
	}
	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	pf := e2eNewPostfix(t, sink, "")
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)
	portalAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	config := e2eWriteConfigWith(t, milterAddr, pf.SMTPAddr(), e2eConfig{
		logLevel: "info", networks: "[]", maxSize: fmt.Sprint(e2eMaxSize), portalListen: portalAddr,
	})
	cfg, err := loadConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	filled := time.Now()
	aeFillStore(t, cfg, nKeys)
	t.Logf("store filled with %d keys in %v", nKeys, time.Since(filled).Round(time.Millisecond))
	srv := e2eStartServe(t, bin, config, milterAddr)
	pf.Start(t)
	sender := &aeSender{mta: pf}

	// 1. list, show, open while serving; revoke, and the portal says so.
	if err := sender.send("one@example.test", 3, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	first := aeCollect(t, sink, "one@example.test", 3)
	var listed []keyView
	if err := json.Unmarshal([]byte(aeRun(t, bin, config, nil, "keys", "list", "--sender", "one@example.test", "--json")), &listed); err != nil || len(listed) != 3 {
		t.Fatalf("keys list --json: %d keys, %v", len(listed), err)
	}
	start := time.Now()
	all := aeRun(t, bin, config, nil, "keys", "list")
	t.Logf("keys list of %d keys while serving: %v", strings.Count(all, "\n"), time.Since(start).Round(time.Millisecond))
	if strings.Count(all, "\n") != nKeys+3 {
		t.Fatalf("keys list printed %d lines, want %d", strings.Count(all, "\n"), nKeys+3)
	}
	f, _ := os.Open(first[1].path)
	plain := aeRun(t, bin, config, f, "open", "-")
	f.Close()
	if !strings.Contains(plain, first[1].marker) {
		t.Fatalf("open while serving lacks %q", first[1].marker)
	}
	aeRun(t, bin, config, nil, "keys", "revoke", first[0].keyID, "--yes")
	portalURL := "http://" + portalAddr
	if code, body := aePortalOpen(t, portalURL, first[0]); code != http.StatusGone || !strings.Contains(body, "withdrew") {
		t.Fatalf("portal /open of a revoked message: %d\n%.300s", code, body)
	}
	if code, _ := aePortalOpen(t, portalURL, first[1]); code != http.StatusSeeOther {
		t.Fatalf("portal /open of a live message: %d", code)
	}
	show := aeRun(t, bin, config, nil, "keys", "show", "--message-id", "<one@example.test-0>")
	if !strings.Contains(show, "state       revoked at") || !strings.Contains(show, "sender      one@example.test") {
		t.Fatalf("keys show after revoke:\n%s", show)
	}
	// A user who may not use the admin socket is told so in one line,
	// with the fix. (The config must be readable to get that far.)
	if err := os.Chmod(config, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(config)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nobody := exec.Command(bin, "keys", "list", "--config", config)
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	denied, err := nobody.CombinedOutput()
	if err == nil || strings.Count(strings.TrimSpace(string(denied)), "\n") != 0 ||
		!strings.Contains(string(denied), "cannot reach the admin socket") || !strings.Contains(string(denied), "run this command as root or as the user securemail serve runs as") {
		t.Fatalf("keys list as nobody: %v\n%s", err, denied)
	}
	if out := aeRun(t, bin, config, nil, "accounts", "list"); !strings.Contains(out, "erase-me@external.test") {
		t.Fatalf("accounts list:\n%s", out)
	}
	aeRun(t, bin, config, nil, "accounts", "delete", "erase-me@external.test")
	if out := aeRun(t, bin, config, nil, "accounts", "list"); strings.Contains(out, "erase-me@external.test") {
		t.Fatalf("accounts list after delete:\n%s", out)
	}

	// 2. A backup while 200 tagged messages flow, restored into a new
	// directory: every message sealed before it opens there, none after.
	const flow = 200
	flowDone := make(chan error, 4)
	for w := range 4 {
		go func() {
			flowDone <- sender.send(fmt.Sprintf("flow%d@example.test", w), flow/4, time.Now().Add(3*time.Minute))
		}()
	}
	for sender.sent.Load() < 3+flow/4 {
		time.Sleep(10 * time.Millisecond)
	}
	backup := filepath.Join(t.TempDir(), "keys.backup")
	beforeBackup := time.Now()
	aeRun(t, bin, config, nil, "backup", "--to", backup)
	afterBackup := time.Now()
	t.Logf("backup of a %d-key store while mail flows: %v", nKeys, afterBackup.Sub(beforeBackup).Round(time.Millisecond))
	for range 4 {
		if err := <-flowDone; err != nil {
			t.Fatal(err)
		}
	}
	var flowed []aeSealed
	for w := range 4 {
		flowed = append(flowed, aeCollect(t, sink, fmt.Sprintf("flow%d@example.test", w), flow/4)...)
	}
	created := map[string]time.Time{}
	var flowKeys []keyView
	if err := json.Unmarshal([]byte(aeRun(t, bin, config, nil, "keys", "list", "--since", "1h", "--json")), &flowKeys); err != nil {
		t.Fatal(err)
	}
	for _, k := range flowKeys {
		created[k.ID] = k.Created
	}
	restoreDir := t.TempDir()
	cfgText, _ := os.ReadFile(config)
	restoredConfig := filepath.Join(restoreDir, "securemail.yaml")
	restoredText := strings.Replace(string(cfgText), "data_dir: "+cfg.DataDir, "data_dir: "+filepath.Join(restoreDir, "data"), 1)
	if err := os.WriteFile(restoredConfig, []byte(restoredText), 0o600); err != nil {
		t.Fatal(err)
	}
	aeRun(t, bin, restoredConfig, nil, "restore", "--from", backup)
	before, after := 0, 0
	for _, s := range flowed {
		c, ok := created[s.keyID]
		if !ok {
			t.Fatalf("delivered message %s has no key %s", s.path, s.keyID)
		}
		f, _ := os.Open(s.path)
		out, errOut, err := aeTry(bin, restoredConfig, f, "open", "-")
		f.Close()
		switch {
		case c.Before(beforeBackup):
			before++
			if err != nil || !strings.Contains(out, s.marker) {
				t.Errorf("message sealed before the backup does not open from it: %v %s", err, errOut)
			}
		case c.After(afterBackup):
			after++
			if err == nil || !strings.Contains(errOut, "not found") {
				t.Errorf("message sealed after the backup: %v %s", err, errOut)
			}
		}
	}
	t.Logf("backup: %d messages sealed before it open from the restored copy, %d sealed after it do not", before, after)
	if before == 0 {
		t.Fatal("no message was sealed before the backup")
	}

	// 3. Rotate with traffic flowing, kill -9 serve half way, start it
	// again, finish: every message ever sealed still opens.
	rotFlow := make(chan error, 1)
	go func() { rotFlow <- sender.send("rot@example.test", 60, time.Now().Add(4*time.Minute)) }()
	rotate := exec.Command(bin, "master-key", "rotate", "--batch", "200", "--config", config)
	var rotOut bytes.Buffer
	rotate.Stdout, rotate.Stderr = &rotOut, &rotOut
	if err := rotate.Start(); err != nil {
		t.Fatal(err)
	}
	oldID, nextID := "", ""
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var st masterKeyStatus
		err := callAdminSocket(context.Background(), adminSocketPath(cfg), "master-key.status", nil, nil, io.Discard, &st)
		if err == nil && st.NextMasterKeyID != "" && st.Use[st.NextMasterKeyID] > nKeys/3 {
			oldID, nextID = st.MasterKeyID, st.NextMasterKeyID
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotation made no progress: %v %+v\n%s", err, st, rotOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.cmd.Process.Kill()
	<-srv.done
	rotate.Wait()
	t.Logf("killed serve half way through the rotation; rotate said: %s", strings.TrimSpace(rotOut.String()))
	srv = e2eStartServe(t, bin, config, milterAddr)
	out := aeRun(t, bin, config, nil, "master-key", "rotate", "--batch", "200")
	if !strings.Contains(out, "resuming") || !strings.Contains(out, "rotation complete") {
		t.Fatalf("resumed rotation:\n%s", out)
	}
	if err := <-rotFlow; err != nil {
		t.Fatal(err)
	}
	rotated := aeCollect(t, sink, "rot@example.test", 60)
	if code, err := srv.stop(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("serve after SIGTERM: exit %d, %v", code, err)
	}
	if !fileExists(cfg.Keystore.MasterKeyFile+".retired-"+oldID) || fileExists(nextMasterKeyPath(cfg)) {
		t.Fatal("the key files were not swapped at the end of the rotation")
	}
	mk, err := keystore.LoadMasterKey(cfg.Keystore.MasterKeyFile)
	if err != nil || mk.ID() != nextID {
		t.Fatalf("master key after rotation: %v (want id %s)", err, nextID)
	}
	store, err := boltstore.Open(keystorePath(cfg), boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	opened := 0
	for _, s := range append(append(first[1:], flowed...), rotated...) {
		data, err := os.ReadFile(s.path)
		if err != nil {
			t.Fatal(err)
		}
		plain, _, err := openSealed(ctx, bytes.NewReader(data), store, mk, time.Now())
		if err != nil || !bytes.Contains(plain, []byte(s.marker)) {
			t.Fatalf("%s does not open after the rotation: %v", s.path, err)
		}
		opened++
	}
	synthetic := 0
	err = store.EachKey(ctx, keystore.KeyFilter{Sender: "bulk@example.test"}, func(rec keystore.KeyRecord) error {
		dek, err := mk.Unwrap(rec)
		if err != nil || !bytes.Equal(dek, aeSyntheticDEK(rec.ID)) {
			return fmt.Errorf("key %s after rotation: %v", rec.ID, err)
		}
		synthetic++
		return nil
	})
	if err != nil || synthetic != nKeys {
		t.Fatalf("synthetic keys after rotation: %d of %d, %v", synthetic, nKeys, err)
	}
	t.Logf("after the rotation %d delivered messages and %d stored keys open under the new master key", opened, synthetic)
}
