// Package browsertest drives a real, headless Chromium from Go tests through
// chromedp (pinned at v0.14.2: later releases changed its API).
//
// It uses Debian's chromium package and the flags that work as root on a
// machine without network access. Each [Browser] gets a fresh user data
// directory under t.TempDir() and is stopped by t.Cleanup; each [Tab] is a
// page of that browser, closed by its own test's cleanup. When no Chromium
// is installed, [New] skips the test, or fails it when the CI environment
// variable is set (mtatest.SkipUnlessCI).
//
// Screenshots are PNG files written to $SECUREMAIL_ARTIFACTS when it is set
// (so that CI or a developer can look at them), else to a t.TempDir().
//
// Tests that use a Tab call [Tab.Run] with ordinary chromedp actions, or
// [Tab.Ctx] for anything the helpers here do not cover. [Tab.Download]
// captures a file the page makes the browser download.
package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/internal/syncbuf"
)

// ArtifactsEnv names the directory screenshots go to.
const ArtifactsEnv = "SECUREMAIL_ARTIFACTS"

// chromiumPaths are where Debian's chromium package puts the browser: the
// binary itself, then the shell wrapper (which prints a harmless
// "unexpected operator" line).
var chromiumPaths = []string{"/usr/lib/chromium/chromium", "/usr/bin/chromium"}

// ChromiumPath returns the Chromium binary to run, or "" when none is
// installed.
func ChromiumPath() string {
	for _, p := range chromiumPaths {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// Options configure a browser.
type Options struct {
	// Width and Height are the window size in CSS pixels; 1280x900 when
	// zero. A Tab can change its viewport with SetViewport.
	Width, Height int
	// Timeout is the default bound of one Tab.Run; 15 s when zero.
	Timeout time.Duration
}

// Browser is one Chromium process.
type Browser struct {
	Path    string // the binary
	opts    Options
	ctx     context.Context // the first tab's chromedp context
	output  *syncbuf.Buffer // what the browser printed
	started time.Time
}

// New starts a headless Chromium for t, stopped when t's cleanup runs.
func New(t testing.TB, opts Options) *Browser {
	t.Helper()
	path := ChromiumPath()
	if path == "" {
		mtatest.SkipUnlessCI(t, "browsertest: no Chromium in "+strings.Join(chromiumPaths, " or ")+
			" (Debian: apt-get install --no-install-recommends chromium)")
	}
	if opts.Width == 0 || opts.Height == 0 {
		opts.Width, opts.Height = 1280, 900
	}
	if opts.Timeout == 0 {
		opts.Timeout = 15 * time.Second
	}
	b := &Browser{Path: path, opts: opts, output: &syncbuf.Buffer{Limit: 1 << 20}, started: time.Now()}
	// Not t.TempDir: Chromium's helper processes may still write to the
	// profile for a moment after the browser exited, which would fail
	// the test in TempDir's cleanup.
	profile, err := os.MkdirTemp("", "browsertest-profile-")
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	t.Cleanup(func() { removeProfile(t, profile) })
	allocOpts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(opts.Width, opts.Height),
		chromedp.CombinedOutput(b.output),
	}
	// chromedp's defaults (headless, no first run, no background
	// networking, no dev-shm, no sync, ...), then what running as root
	// without network needs.
	allocOpts = append(allocOpts, chromedp.DefaultExecAllocatorOptions[:]...)
	allocOpts = append(allocOpts,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), allocOpts...)
	// chromedp reports CDP events newer than its protocol bindings as
	// errors; they are noise here, so they go to the output buffer.
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(format string, args ...any) { fmt.Fprintf(b.output, "chromedp: "+format+"\n", args...) }))
	t.Cleanup(func() {
		// Close the browser through DevTools, so that it stops its helper
		// processes, then kill whatever is left.
		closeCtx, cancelClose := context.WithTimeout(ctx, 5*time.Second)
		if err := chromedp.Cancel(closeCtx); err != nil {
			t.Logf("browsertest: close Chromium: %v", err)
		}
		cancelClose()
		cancel()
		cancelAlloc() // waits for the process to exit
		if t.Failed() {
			t.Logf("browsertest: Chromium output:\n%s", b.output.String())
		}
	})
	// The first Run starts the browser: no timeout on it, a timeout would
	// stop the browser too (chromedp waits at most 20 s for it to start).
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("browsertest: start %s: %v\n%s", path, err, b.output.String())
	}
	b.ctx = ctx
	t.Logf("browsertest: %s started in %v", path, time.Since(b.started).Round(time.Millisecond))
	return b
}

// Tab is one page of a Browser.
type Tab struct {
	t       testing.TB
	ctx     context.Context
	timeout time.Duration

	mu        sync.Mutex
	docs      []Response
	downloads chan any // *browser.EventDownloadWillBegin and *browser.EventDownloadProgress
	dlDir     string   // set by AllowDownloads
}

// Response is what the browser got for one document it loaded.
type Response struct {
	URL    string
	Status int
}

// NewTab opens a page for t, closed when t's cleanup runs.
func (b *Browser) NewTab(t testing.TB) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	tab := &Tab{t: t, ctx: ctx, timeout: b.opts.Timeout, downloads: make(chan any, 64)}
	// Download events come on the tab's session or the browser's,
	// depending on the Chromium version; take them from both.
	download := func(ev any) {
		switch ev.(type) {
		case *browser.EventDownloadWillBegin, *browser.EventDownloadProgress:
			select {
			case tab.downloads <- ev:
			default: // progress events beyond the buffer carry nothing new
			}
		}
	}
	chromedp.ListenTarget(ctx, func(ev any) {
		if ev, ok := ev.(*network.EventResponseReceived); ok && ev.Type == network.ResourceTypeDocument {
			tab.mu.Lock()
			tab.docs = append(tab.docs, Response{URL: ev.Response.URL, Status: int(ev.Response.Status)})
			tab.mu.Unlock()
		}
		download(ev)
	})
	chromedp.ListenBrowser(ctx, download)
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("browsertest: open a tab: %v", err)
	}
	return tab
}

// Documents lists the responses to the documents the tab loaded so far
// (pages and frames, not images or styles), oldest first.
func (tab *Tab) Documents() []Response {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]Response(nil), tab.docs...)
}

// Ctx is the tab's chromedp context, for chromedp.Run and listeners.
func (tab *Tab) Ctx() context.Context { return tab.ctx }

// Run runs chromedp actions on the tab within the default timeout and fails
// the test on an error.
func (tab *Tab) Run(actions ...chromedp.Action) {
	tab.t.Helper()
	if err := tab.RunErr(tab.timeout, actions...); err != nil {
		tab.t.Fatalf("browsertest: %v", err)
	}
}

// RunErr runs chromedp actions on the tab within timeout.
func (tab *Tab) RunErr(timeout time.Duration, actions ...chromedp.Action) error {
	ctx, cancel := context.WithTimeout(tab.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, actions...)
}

// DisableScripts turns off JavaScript in the tab, as a recipient who blocks
// it would have, and proves it on a probe page: a <script> must not run and
// <noscript> must be shown. DevTools evaluation (chromedp.Evaluate and the
// query actions) keeps working.
func (tab *Tab) DisableScripts() {
	tab.t.Helper()
	tab.Run(emulation.SetScriptExecutionDisabled(true))
	const probe = `<!DOCTYPE html><title>probe</title>` +
		`<script>document.write('<p id="script-ran">script ran</p>')</script>` +
		`<noscript><p id="noscript">no script</p></noscript>`
	tab.Navigate("data:text/html;charset=utf-8," + probe)
	if !tab.ScriptsDisabled() {
		tab.t.Fatal("browsertest: scripts still run after Emulation.setScriptExecutionDisabled")
	}
}

// ScriptsDisabled tells whether the current page runs without scripts: it
// has a <noscript> element parsed as markup and no element that a script
// wrote (id "script-ran"). Pages that mean to be checked carry
// <noscript><p id="noscript"></p></noscript>.
func (tab *Tab) ScriptsDisabled() bool {
	tab.t.Helper()
	return tab.HasNode("#noscript") && !tab.HasNode("#script-ran")
}

// HasNode tells whether the current document has an element that matches
// the CSS selector, using DOM queries only (no script).
func (tab *Tab) HasNode(selector string) bool {
	tab.t.Helper()
	var nodes []*cdp.Node
	tab.Run(chromedp.Nodes(selector, &nodes, chromedp.ByQuery, chromedp.AtLeast(0)))
	return len(nodes) > 0
}

// Navigate loads url and waits for its load event.
func (tab *Tab) Navigate(url string) {
	tab.t.Helper()
	tab.Run(chromedp.Navigate(url))
}

// SetViewport sets the page's viewport in CSS pixels at a device scale
// factor of 1; mobile also makes the page honour its viewport meta tag and
// emulates touch, as a phone does.
func (tab *Tab) SetViewport(width, height int, mobile bool) {
	tab.t.Helper()
	opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if width > height {
		opts[0] = chromedp.EmulateLandscape
	}
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	tab.Run(chromedp.EmulateViewport(int64(width), int64(height), opts...))
}

// Location is the current page's URL.
func (tab *Tab) Location() string {
	tab.t.Helper()
	var loc string
	tab.Run(chromedp.Location(&loc))
	return loc
}

// Text is the rendered text of the first element matching the CSS
// selector (innerText: what a reader sees, without hidden elements).
func (tab *Tab) Text(selector string) string {
	tab.t.Helper()
	var s string
	tab.Run(chromedp.Text(selector, &s, chromedp.ByQuery))
	return s
}

// WaitText waits until the page's location starts with urlPrefix and its
// body's text contains every one of want; it fails the test with what the
// page shows when that does not happen within timeout.
func (tab *Tab) WaitText(timeout time.Duration, urlPrefix string, want ...string) {
	tab.t.Helper()
	deadline := time.Now().Add(timeout)
	var loc, text string
	for {
		// The page may be between documents: errors just mean "not yet".
		err := tab.RunErr(2*time.Second,
			chromedp.Location(&loc),
			chromedp.Evaluate(`document.body ? document.body.innerText : ""`, &text))
		if err == nil && strings.HasPrefix(loc, urlPrefix) && containsAll(text, want) {
			return
		}
		if time.Now().After(deadline) {
			tab.t.Fatalf("browsertest: after %v the page is %s (error %v), want %s* showing %q; it shows:\n%s",
				timeout, loc, err, urlPrefix, want, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// Box is an element's border box in CSS pixels, relative to the document.
type Box struct {
	X, Y, Width, Height float64
}

// BorderBox returns the border box of the first element matching the CSS
// selector (DOM.getBoxModel: no script).
func (tab *Tab) BorderBox(selector string) Box {
	tab.t.Helper()
	var m *dom.BoxModel
	tab.Run(chromedp.Dimensions(selector, &m, chromedp.ByQuery))
	q := m.Border // x1,y1 (top left) ... x3,y3 (bottom right)
	if len(q) != 8 {
		tab.t.Fatalf("browsertest: %s has border quad %v", selector, q)
	}
	x0, y0 := min(q[0], q[2], q[4], q[6]), min(q[1], q[3], q[5], q[7])
	x1, y1 := max(q[0], q[2], q[4], q[6]), max(q[1], q[3], q[5], q[7])
	return Box{X: x0, Y: y0, Width: x1 - x0, Height: y1 - y0}
}

// BorderBoxes returns the border boxes of every rendered element that
// matches the CSS selector, in document order; elements that are not
// rendered (display:none, hidden) have no box and are left out.
func (tab *Tab) BorderBoxes(selector string) []Box {
	tab.t.Helper()
	var nodes []*cdp.Node
	tab.Run(chromedp.Nodes(selector, &nodes, chromedp.ByQueryAll, chromedp.AtLeast(0)))
	var boxes []Box
	for _, n := range nodes {
		var m *dom.BoxModel
		err := tab.RunErr(tab.timeout, chromedp.ActionFunc(func(ctx context.Context) error {
			var err error
			m, err = dom.GetBoxModel().WithNodeID(n.NodeID).Do(ctx)
			return err
		}))
		if err != nil || m == nil || len(m.Border) != 8 {
			continue
		}
		q := m.Border
		x0, y0 := min(q[0], q[2], q[4], q[6]), min(q[1], q[3], q[5], q[7])
		x1, y1 := max(q[0], q[2], q[4], q[6]), max(q[1], q[3], q[5], q[7])
		boxes = append(boxes, Box{X: x0, Y: y0, Width: x1 - x0, Height: y1 - y0})
	}
	return boxes
}

// Layout is the page's size against its viewport, in CSS pixels.
type Layout struct {
	ContentWidth, ContentHeight   float64 // the whole document
	ViewportWidth, ViewportHeight float64 // the visible part (layout viewport)
}

// Layout measures the page (Page.getLayoutMetrics: no script). A page
// that needs horizontal scrolling has ContentWidth > ViewportWidth.
func (tab *Tab) Layout() Layout {
	tab.t.Helper()
	var l Layout
	tab.Run(chromedp.ActionFunc(func(ctx context.Context) error {
		_, _, _, cssLayout, _, cssContent, err := page.GetLayoutMetrics().Do(ctx)
		if err != nil {
			return err
		}
		l = Layout{
			ContentWidth: cssContent.Width, ContentHeight: cssContent.Height,
			ViewportWidth: float64(cssLayout.ClientWidth), ViewportHeight: float64(cssLayout.ClientHeight),
		}
		return nil
	}))
	return l
}

// Screenshot writes a PNG of the whole page (beyond the viewport too) to
// the artifacts directory as name.png and returns its path.
func (tab *Tab) Screenshot(name string) string {
	tab.t.Helper()
	var png []byte
	tab.Run(chromedp.FullScreenshot(&png, 100)) // 100: PNG, anything else is JPEG
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		tab.t.Fatalf("browsertest: screenshot %s is not a PNG", name)
	}
	path := filepath.Join(ArtifactsDir(tab.t), safeName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tab.t.Fatalf("browsertest: %v", err)
	}
	tab.t.Logf("browsertest: screenshot %s (%d bytes)", path, len(png))
	return path
}

// Download is a file the browser saved.
type Download struct {
	URL               string // what was downloaded
	SuggestedFilename string // the name the browser would give it (Content-Disposition)
	Path              string // where it was saved
}

// AllowDownloads makes the browser save what the tab downloads, without
// asking, into a new directory under t.TempDir(), which it returns. Files
// are named by the download's id; [Tab.Download] says which is which.
func (tab *Tab) AllowDownloads() string {
	tab.t.Helper()
	dir := tab.t.TempDir()
	tab.Run(browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllowAndName).
		WithDownloadPath(dir).WithEventsEnabled(true))
	tab.mu.Lock()
	tab.dlDir = dir
	tab.mu.Unlock()
	return dir
}

// Download runs actions, typically a click on a link, which must make the
// browser download one file, and waits up to timeout for the download to
// complete. It fails the test when no download starts, when it is
// cancelled, or when it does not complete in time. Call AllowDownloads
// first.
func (tab *Tab) Download(timeout time.Duration, actions ...chromedp.Action) Download {
	tab.t.Helper()
	tab.mu.Lock()
	dir := tab.dlDir
	tab.mu.Unlock()
	if dir == "" {
		tab.t.Fatal("browsertest: Download before AllowDownloads")
	}
	// Forget events of earlier downloads.
	for len(tab.downloads) > 0 {
		<-tab.downloads
	}
	tab.Run(actions...)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var d Download
	var guid string
	var received float64
	for {
		select {
		case ev := <-tab.downloads:
			switch ev := ev.(type) {
			case *browser.EventDownloadWillBegin:
				if guid == "" {
					guid, d.URL, d.SuggestedFilename = ev.GUID, ev.URL, ev.SuggestedFilename
				}
			case *browser.EventDownloadProgress:
				if ev.GUID != guid {
					continue
				}
				received = ev.ReceivedBytes
				switch ev.State {
				case browser.DownloadProgressStateCompleted:
					d.Path = filepath.Join(dir, guid)
					if ev.FilePath != "" {
						d.Path = ev.FilePath
					}
					return d
				case browser.DownloadProgressStateCanceled:
					tab.t.Fatalf("browsertest: the download of %s was cancelled after %.0f bytes", d.URL, received)
				}
			}
		case <-deadline.C:
			if guid == "" {
				tab.t.Fatalf("browsertest: no download started within %v; the page is %s", timeout, tab.Location())
			}
			tab.t.Fatalf("browsertest: the download of %s did not complete within %v (%.0f bytes so far)", d.URL, timeout, received)
		}
	}
}

var safeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// ArtifactsDir is $SECUREMAIL_ARTIFACTS, created if need be, or else a
// t.TempDir().
func ArtifactsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(ArtifactsEnv)
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browsertest: %s: %v", ArtifactsEnv, err)
	}
	return dir
}

// removeProfile removes a browser's profile directory, retrying while
// exiting helper processes still write to it; a directory left behind is
// only logged.
func removeProfile(t testing.TB, dir string) {
	var err error
	for range 40 {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("browsertest: remove the profile: %v", err)
}
