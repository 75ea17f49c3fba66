package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
)

// The newcomer walk: docs/operators.md's own command blocks, marked with
// "<!-- newcomer-walk: NAME -->", run in order as a new operator would on
// this machine, as far as a host without systemd as PID 1 allows: a fresh
// clone, the build and install, the example configuration edited as
// section 3 shows, check-config, serve started by hand as section 2 says,
// a tagged message through a private Postfix made from contrib's
// main.cf.snippet and sent with the guide's sendmail(1) command, open,
// keys list, an online backup, and the restore test of section 9 into a
// new directory. The blocks are read from the guide, not copied here, so
// the guide cannot drift from what works.
//
// What the walk changes, and only this: every absolute path of the guide
// (/usr/local/bin, /etc/securemail, /var/lib/securemail, /var/backups,
// /var/tmp/restore-test) lies under a scratch root; the service user is
// root (no securemail user here); the listening ports are free ones; the
// systemd lines (sysusers, systemctl) are left out; sendmail(1) is the
// private Postfix instance's, and check-config reads its configuration.

// walkPaths are the guide's absolute paths the walk moves under its root.
var walkPaths = []string{"/usr/local/bin", "/etc/securemail", "/var/lib/securemail", "/var/backups/securemail", "/var/tmp/restore-test", "/etc/sysusers.d"}

// walkBlock returns the fenced block that follows the marker NAME in doc.
func walkBlock(t *testing.T, doc, name string) string {
	t.Helper()
	marker := "<!-- newcomer-walk: " + name + " -->\n"
	_, rest, ok := strings.Cut(doc, marker)
	if !ok {
		t.Fatalf("docs/operators.md has no block marked %q", marker)
	}
	sc := bufio.NewScanner(strings.NewReader(rest))
	var lines []string
	for i := 0; sc.Scan(); i++ {
		l := sc.Text()
		if i == 0 {
			if !strings.HasPrefix(l, "```") {
				t.Fatalf("the marker %q is not followed by a fenced block", name)
			}
			continue
		}
		if strings.HasPrefix(l, "```") {
			return strings.Join(lines, "\n") + "\n"
		}
		lines = append(lines, l)
	}
	t.Fatalf("block %q has no closing fence", name)
	return ""
}

// walkInline returns the guide's inline command that starts with prefix.
func walkInline(t *testing.T, doc, prefix string) string {
	t.Helper()
	m := regexp.MustCompile("`(" + regexp.QuoteMeta(prefix) + "[^`]*)`").FindStringSubmatch(doc)
	if m == nil {
		t.Fatalf("docs/operators.md has no command `%s...`", prefix)
	}
	return m[1]
}

type newcomerWalk struct {
	t    *testing.T
	root string // the scratch root
	env  []string
	log  *os.File // every block's output, and serve's log
}

// moved rewrites the guide's absolute paths under the walk's root.
func (w *newcomerWalk) moved(s string) string {
	for _, p := range walkPaths {
		s = strings.ReplaceAll(s, p, w.root+p)
	}
	return s
}

// run runs a block with sh -e in dir and fails the test on a non-zero
// exit, showing the block and its output.
func (w *newcomerWalk) run(name, dir, script string) string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "sh", "-ec", script)
	cmd.Dir, cmd.Env = dir, w.env
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	fmt.Fprintf(w.log, "=== %s\n%s--- output\n%s\n", name, script, out.String())
	if err != nil {
		w.t.Fatalf("newcomer walk, block %s: %v\n%s\noutput:\n%s", name, err, script, out.String())
	}
	return out.String()
}

func TestNewcomerWalk(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs a clone of the repository, Postfix and the securemail binary")
	}
	mtatest.RequireTools(t, append([]string{"git", "go"}, mtatest.PostfixTools...)...)
	mtatest.RequireRoot(t)
	docBytes, err := os.ReadFile(filepath.Join("..", "..", "docs", "operators.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(docBytes)
	modRoot, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	w := &newcomerWalk{t: t, root: mtatest.MustTempDir(t)}
	if w.log, err = os.Create(filepath.Join(w.root, "walk.log")); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() || os.Getenv("SECUREMAIL_WALK_LOG") != "" {
			b, _ := os.ReadFile(w.log.Name())
			t.Logf("walk log:\n%s", b)
		}
		w.log.Close()
	}()
	home := filepath.Join(w.root, "home")
	shims := filepath.Join(w.root, "shims")
	for _, d := range append([]string{home, shims}, w.root+"/usr/local/bin") {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// GOFLAGS: a machine may set -buildvcs=false (go env); the guide's
	// build in a git clone stamps the commit, which version then shows.
	w.env = append(os.Environ(), "PATH="+shims+":"+w.root+"/usr/local/bin:"+os.Getenv("PATH"), "GOFLAGS=-buildvcs=auto")

	// The private Postfix, from contrib's main.cf snippet, relaying to a sink.
	sink := mtatest.StartSink(t)
	pf := mtatest.NewPostfix(t, mtatest.PostfixOptions{RelayHost: sink.Addr, MainCF: e2eReadSnippet(t, "main.cf.snippet")})
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)
	sendmailPath := strings.TrimSpace(pf.Postconf(t, "-h", "sendmail_path"))
	shim := fmt.Sprintf("#!/bin/sh\nexec %s -C %s \"$@\"\n", sendmailPath, pf.ConfigDir)
	if err := os.WriteFile(filepath.Join(shims, "sendmail"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}

	// Section 1: a fresh clone of this checkout's commit, built and installed.
	install := walkBlock(t, doc, "install")
	install = strings.Replace(install, "<this repository>", "-q "+modRoot, 1)
	w.run("install", home, w.moved(install))
	checkout := filepath.Join(home, "securemail")
	head := strings.TrimSpace(w.run("clone's commit", checkout, "git rev-parse --short=12 HEAD"))
	if out := w.run("version", home, "securemail version"); !strings.Contains(out, "go1.") || !strings.Contains(out, head) {
		t.Errorf("securemail version says %q, want the clone's commit %s and the Go version", out, head)
	}

	// Section 2: the example configuration into /etc/securemail; the
	// systemd lines are left out (no systemd as PID 1 here).
	var cfgLines []string
	for _, l := range strings.Split(walkBlock(t, doc, "user-and-config"), "\n") {
		if strings.Contains(l, "contrib/securemail.example.yaml") {
			cfgLines = append(cfgLines, l)
		}
	}
	if len(cfgLines) != 1 {
		t.Fatalf("section 2's block installs the example configuration in %d lines, want 1", len(cfgLines))
	}
	w.run("config from contrib", checkout, w.moved(cfgLines[0]))

	// Section 3: the file edited as the guide shows; here the ports are
	// free ones and mail leaves through the private Postfix.
	config := w.moved(walkBlock(t, doc, "config"))
	portalPort := mtatest.FreePort(t)
	for old, repl := range map[string]string{
		"listen: inet:127.0.0.1:8894": "listen: inet:" + milterAddr,
		"listen: 127.0.0.1:8080":      fmt.Sprintf("listen: 127.0.0.1:%d", portalPort),
		"relay: 127.0.0.1:25":         "relay: " + pf.SMTPAddr(),
	} {
		if !strings.Contains(config, old) {
			t.Fatalf("section 3's configuration has no %q", old)
		}
		config = strings.Replace(config, old, repl, 1)
	}
	configPath := w.root + "/etc/securemail/securemail.yaml"
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	check := walkInline(t, doc, "runuser -u securemail -- securemail check-config")
	check = strings.Replace(check, "runuser -u securemail -- ", "", 1)
	// Exit 1 (warnings) is what a first check before the first start
	// gives; 2 would be an error the guide does not prepare for.
	out := w.run("check-config", home, w.moved(check)+" --postfix-config "+pf.ConfigDir+" --sendmail-cf none || rc=$?; test \"${rc:-0}\" -le 1")
	if strings.Contains(out, "error: ") {
		t.Errorf("check-config on the guide's configuration reports errors:\n%s", out)
	}

	// Section 2, without systemd: serve started by hand, in the background.
	start := walkBlock(t, doc, "start-without-systemd")
	start = strings.ReplaceAll(start, "-o securemail -g securemail", "-o root -g root")
	start = strings.ReplaceAll(start, "runuser -u securemail --", "runuser -u root --")
	serveLog, err := os.Create(filepath.Join(w.root, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer serveLog.Close()
	startCmd := exec.Command("sh", "-ec", w.moved(start))
	startCmd.Dir, startCmd.Env, startCmd.Stdout, startCmd.Stderr = home, w.env, serveLog, serveLog
	if err := startCmd.Run(); err != nil {
		t.Fatalf("section 2's start block: %v", err)
	}
	pidFile := w.root + "/var/lib/securemail/serve.pid"
	stop := w.moved(walkInline(t, doc, "kill -TERM "))
	stopped := false
	defer func() {
		if !stopped {
			_ = exec.Command("sh", "-c", stop).Run()
		}
	}()
	if err := mtatest.WaitListening(milterAddr, 30*time.Second); err != nil {
		b, _ := os.ReadFile(serveLog.Name())
		t.Fatalf("serve started by hand does not listen: %v\n%s", err, b)
	}
	pf.Start(t)

	// Section 4's first test: the guide's sendmail(1) line, through Postfix.
	w.run("first test", home, walkBlock(t, doc, "first-test"))
	m, err := sink.WaitFor(func(m mtatest.Message) bool { return m.From == "you@example.com" }, e2eDeliveryWait)
	if err != nil {
		t.Fatalf("%v\npostfix log:\n%s", err, pf.Log())
	}
	if !bytes.Contains(m.Data, []byte("SecureMessageATT.html")) || bytes.Contains(m.Data, []byte("\nhello\n")) {
		t.Fatalf("the first test message did not leave sealed:\n%s", e2eHead(m.Data))
	}
	// open takes the whole delivered message as well as the attachment.
	sealed := filepath.Join(home, "SecureMessageATT.html")
	if err := os.WriteFile(sealed, m.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := w.run("open", home, w.moved(walkBlock(t, doc, "open"))); !strings.Contains(out, "hello") {
		t.Errorf("securemail open of the first test gave:\n%s", out)
	}
	if out := w.run("keys list", home, w.moved("securemail keys list --config /etc/securemail/securemail.yaml")); !strings.Contains(out, "you@example.com -> you@gmail.example") {
		t.Errorf("keys list does not show the first test's key:\n%s", out)
	}

	// Section 9: a backup while serve runs, then the restore test into a
	// new directory, with the master key kept apart.
	w.run("backup", home, w.moved(walkBlock(t, doc, "backup")))
	restore := walkBlock(t, doc, "restore-test")
	restore = strings.Replace(restore, "/path/to/your/master.key.copy", "/var/lib/securemail/master.key", 1)
	restore = strings.Replace(restore, " sealed.eml", " "+sealed, 1)
	if out := w.run("restore test", home, w.moved(restore)); !strings.Contains(out, "hello") {
		t.Errorf("the restore test's open did not give the message back:\n%s", out)
	}

	// Stop as the guide says, by the PID in serve.pid.
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	w.run("stop", home, stop)
	stopped = true
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := exec.Command("kill", "-0", strings.TrimSpace(string(pid))).Run(); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve (pid %s) still runs 20 s after the guide's stop command", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b, _ := os.ReadFile(serveLog.Name()); !bytes.Contains(b, []byte("securemail stopped")) {
		t.Errorf("serve's log has no clean stop:\n%s", b)
	}
}
