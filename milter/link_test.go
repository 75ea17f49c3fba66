package milter

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
)

// faultyCopies stores keys with their server copies in a real store
// unless told to fail, panic or hang, and notes the key ids it was asked
// to store.
type faultyCopies struct {
	keystore.CopyStore

	mu       sync.Mutex
	err      error
	panicMsg string
	block    chan struct{}
	asked    []keystore.KeyID
}

// askedKeys is the key ids CreateKeyWithCopy was called with, so far. The
// calls run on the milter's store goroutines, which outlive a timed-out
// message, so the test reads them under the lock.
func (c *faultyCopies) askedKeys() []keystore.KeyID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.asked)
}

func (c *faultyCopies) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err, c.panicMsg, c.block = nil, "", nil
}

func (c *faultyCopies) CreateKeyWithCopy(ctx context.Context, rec keystore.KeyRecord, sc keystore.ServerCopy, env io.Reader) error {
	c.mu.Lock()
	c.asked = append(c.asked, rec.ID)
	err, panicMsg, block := c.err, c.panicMsg, c.block
	c.mu.Unlock()
	if panicMsg != "" {
		panic(panicMsg)
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err != nil {
		return err
	}
	return c.CopyStore.CreateKeyWithCopy(ctx, rec, sc, env)
}

// newLinkEnv is a filter with the link fallback on (unless off), its
// copies in the same bbolt file as its keys.
func newLinkEnv(t *testing.T, on bool, retention time.Duration, mutate func(*Config)) (*testEnv, *faultyCopies) {
	t.Helper()
	store := newBoltForTest(t)
	copies := &faultyCopies{CopyStore: store.(keystore.CopyStore)}
	e := newTestEnv(t, store, func(c *Config) {
		c.LinkFallback, c.LinkRetention, c.Copies = on, retention, copies
		if mutate != nil {
			mutate(c)
		}
	})
	return e, copies
}

// noticeParts returns the decoded text and HTML parts of a sealed body.
func noticeParts(t *testing.T, o outcome) (text, html string) {
	t.Helper()
	ent, err := gomessage.Read(bytes.NewReader(o.message()))
	if err != nil {
		t.Fatal(err)
	}
	err = ent.Walk(func(_ []int, p *gomessage.Entity, err error) error {
		if err != nil {
			return err
		}
		ct, _, _ := p.Header.ContentType()
		if disp, _, _ := p.Header.ContentDisposition(); disp == "attachment" || p.MultipartReader() != nil {
			return nil
		}
		b, err := io.ReadAll(p.Body)
		switch ct {
		case "text/plain":
			text = string(b)
		case "text/html":
			html = string(b)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return text, html
}

var linkRe = regexp.MustCompile(`https://secure\.example\.test/l/([A-Za-z0-9_-]+)`)

func TestLinkFallbackKeepsACopyBehindAnUnguessableLink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		body      string
		retention time.Duration
	}{
		{"small message, 30 days", secretBody(), 720 * time.Hour},
		// Past the spool's memory threshold: the copy is read from the
		// spool file, in several chunks.
		{"large message", strings.Repeat(secretBody(), 20000), 720 * time.Hour},
		// A retention past the key's lifetime ends with the key.
		{"retention longer than the key", secretBody(), 200 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, copies := newLinkEnv(t, true, tc.retention, nil)
			m := tagged("Report [encrypt]", "alice@external.test", tc.body)
			o := e.send(t, e.newSession(t), m)
			assertSealed(t, e, m, o)
			_, rec := e.open(t, o.message())
			wantUntil := testNow.Add(min(tc.retention, 90*24*time.Hour))
			if !rec.CopyUntil.Equal(wantUntil) {
				t.Fatalf("key record CopyUntil %v, want %v", rec.CopyUntil, wantUntil)
			}
			text, html := noticeParts(t, o)
			found := linkRe.FindStringSubmatch(text)
			if found == nil {
				t.Fatalf("no link in the notice:\n%s", text)
			}
			token := found[1]
			if raw, err := base64.RawURLEncoding.DecodeString(token); err != nil || len(raw) < 16 {
				t.Fatalf("link token %q is not 128 random bits", token)
			}
			if strings.Contains(strings.ToLower(found[0]), rec.ID.String()) {
				t.Fatalf("the link %s carries the key id", found[0])
			}
			if !strings.Contains(html, `href="`+found[0]+`"`) {
				t.Errorf("the HTML notice does not link %s", found[0])
			}
			for _, words := range []string{"two ways", "On a phone or tablet", "SecureMessageATT.html", wantUntil.Format("2 January 2006")} {
				if !strings.Contains(text, words) {
					t.Errorf("the notice does not say %q:\n%s", words, text)
				}
			}
			c, err := copies.GetCopy(context.Background(), keystore.LinkDigest(token))
			if err != nil || c.KeyID != rec.ID || !c.Until.Equal(wantUntil) {
				t.Fatalf("copy behind the link: %+v, %v", c, err)
			}
			page, err := envelope.FindPage(bytes.NewReader(o.message()))
			if err != nil {
				t.Fatal(err)
			}
			form, err := envelope.ParsePage(page)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := copies.OpenCopy(context.Background(), rec.ID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, form.Envelope) {
				t.Fatalf("the server copy (%d bytes, %v) is not the attachment's envelope (%d bytes)", len(got), err, len(form.Envelope))
			}
		})
	}
}

func TestLinkFallbackOffKeepsNoCopy(t *testing.T) {
	t.Parallel()
	e, copies := newLinkEnv(t, false, 720*time.Hour, nil)
	m := tagged("Report [encrypt]", "alice@external.test", secretBody())
	o := e.send(t, e.newSession(t), m)
	assertSealed(t, e, m, o)
	_, rec := e.open(t, o.message())
	if puts := len(copies.askedKeys()); puts != 0 || !rec.CopyUntil.IsZero() {
		t.Fatalf("link fallback off: %d copies stored, CopyUntil %v", puts, rec.CopyUntil)
	}
	if text, html := noticeParts(t, o); strings.Contains(text+html, "/l/") || strings.Contains(text, "two ways") {
		t.Fatalf("link fallback off, but the notice offers a link:\n%s", text)
	}
}

// TestLinkFallbackCopyFailureTempfails: a copy that cannot be stored
// refuses the message with 451 4.3.0, commits no key and changes nothing:
// the MTA keeps the message and retries; it never leaves in plaintext.
func TestLinkFallbackCopyFailureTempfails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault func(*faultyCopies)
		cfg   func(*Config)
	}{
		{"store error", func(c *faultyCopies) { c.err = errDiskFull }, nil},
		{"store panics", func(c *faultyCopies) { c.panicMsg = "boom" }, nil},
		{"store hangs past the timeout", func(c *faultyCopies) { c.block = make(chan struct{}) },
			func(c *Config) { c.KeystoreTimeout = 200 * time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, copies := newLinkEnv(t, true, 720*time.Hour, tc.cfg)
			tc.fault(copies)
			m := tagged("Secret [encrypt]", "alice@external.test", secretBody())
			o := e.send(t, e.newSession(t), m)
			if o.action.Code != gomilter.ActReplyCode || o.action.SMTPCode != 451 || !strings.HasPrefix(o.action.SMTPText, "4.3.0 ") {
				t.Fatalf("got %+v, want 451 4.3.0", o.action)
			}
			if len(o.mods) != 0 {
				t.Fatalf("a refused message was modified: %d modifications", len(o.mods))
			}
			if n := e.keysCommitted(); n != 0 {
				t.Fatalf("%d keys committed for a message whose copy failed", n)
			}
			asked := copies.askedKeys()
			if len(asked) != 1 {
				t.Fatalf("asked to store %d keys with copies, want 1", len(asked))
			}
			if _, err := e.store.Key(context.Background(), asked[0]); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("the key of a refused message is in the store: %v", err)
			}
			if strings.Contains(o.action.SMTPText, "space") || strings.Contains(o.action.SMTPText, "boom") {
				t.Fatalf("internal detail in the reply: %q", o.action.SMTPText)
			}
			if logs := e.logBuf.String(); strings.Contains(logs, secretMarker) || !strings.Contains(logs, "server copy") {
				t.Fatalf("the log should name the server copy and hold no plaintext:\n%s", logs)
			}
			copies.heal()
			m2 := tagged("Again [encrypt]", "alice@external.test", secretBody())
			assertSealed(t, e, m2, e.send(t, e.newSession(t), m2))
		})
	}
}

func TestLinkFallbackNeedsAStore(t *testing.T) {
	t.Parallel()
	cfg := Config{Store: newBoltForTest(t), MasterKey: &keystore.MasterKey{}, Policy: testPolicy(), KeyLifetime: time.Hour,
		SpoolDir: t.TempDir(), LinkFallback: true, LinkRetention: time.Hour}
	if _, err := NewFilter(cfg); err == nil || !strings.Contains(err.Error(), "copy store") {
		t.Fatalf("NewFilter without a copy store: %v", err)
	}
}
