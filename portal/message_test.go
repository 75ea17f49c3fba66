package portal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/securemail/securemail/internal/mailparse"
)

// crlfJoin builds a message from lines, each ended by CRLF.
func crlfJoin(lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n"
}

func testCIDURL(id string) string { return "/m/tok/cid/" + url.PathEscape(id) }

func parseString(t *testing.T, msg string, lim RenderLimits) *Message {
	t.Helper()
	m, err := ParseMessage(strings.NewReader(msg), lim, testCIDURL)
	if err != nil {
		t.Fatalf("ParseMessage: %v", err)
	}
	return m
}

// openPart returns what OpenPart writes for sel.
func openPart(t *testing.T, msg string, sel PartSelector) (PartInfo, []byte, error) {
	t.Helper()
	var info PartInfo
	var buf bytes.Buffer
	calls := 0
	err := OpenPart(strings.NewReader(msg), sel, func(pi PartInfo) (io.Writer, error) {
		calls++
		info = pi
		return &buf, nil
	})
	if calls > 1 {
		t.Fatalf("open called %d times", calls)
	}
	return info, buf.Bytes(), err
}

func readCorpus(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "message", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseMessageCorpus(t *testing.T) {
	t.Parallel()
	pdf := func(t *testing.T) int64 {
		// The size of contract.pdf, decoded independently of message.go.
		msg := readCorpus(t, "attachments.eml")
		start := strings.Index(msg, "filename=\"contract.pdf\"")
		body := msg[start:]
		body = body[strings.Index(body, "\r\n\r\n")+4:]
		body = body[:strings.Index(body, "\r\n--")]
		b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(body, "\r\n", ""))
		if err != nil {
			t.Fatal(err)
		}
		return int64(len(b))
	}
	tests := []struct {
		file                 string
		subject, from, text  string
		textPrefix           string
		html                 string
		attachments          []Attachment
		checkAttachmentSizes bool
	}{
		{file: "plain-text.eml", subject: "Quarterly [encrypt] numbers", from: "Zoe Sender <zoe@example.test>",
			text: "Hello Alice,\n\nthe Q3 numbers are attached below. Reference CORPUS-plain-text.\n\nRevenue:  1,234,567\nCosts:      987,654\n\n-- \nZoe\n"},
		{file: "iso-8859-1.eml", subject: "Grüße [Encrypt] aus Köln",
			text: "Hallo Alice,\n\nGrüße aus Köln, à bientôt. Ça coûte 12 £.\n\nRef CORPUS-iso-8859-1\n"},
		{file: "shift-jis.eml", subject: "[encrypt] 見積書の件",
			text: "アリス様\n\nお世話になっております。見積書を送付いたします。\nご確認のほど、よろしくお願いいたします。\n\nRef CORPUS-shift-jis\n"},
		{file: "utf8-8bit.eml", subject: "[encrypt] Grüße – 見積書 ✓", from: "Zoë Søren <zoe@example.test>",
			text: "Liebe Alice,\n\nviele Grüße aus Köln! Der Preis beträgt 1.234 €.\n見積書を添付します。よろしくお願いします。\nΚαλημέρα — привет — 🙂\n\nRef CORPUS-utf8-8bit\n"},
		{file: "lf-only.eml", subject: "[encrypt] Unix line ends",
			text: "Hello Alice,\n\nthis message has LF line ends only (CORPUS-lf-only).\n"},
		{file: "empty-body.eml", subject: "[encrypt] nothing to say", text: ""},
		{file: "headers-only-no-eol.eml", subject: "[encrypt] headers only", text: ""},
		{file: "long-line.eml", subject: "Log excerpt", textPrefix: "The line below is 5000 characters long:\n0123456789abcdefghijklmnopqrstuvwxyz 0123"},
		{file: "html-inline-images.eml", subject: "[ENCRYPT] Floor plan",
			text: "Hello Alice,\n\nhere is the floor plan (ref CORPUS-html-inline-images).\n\nRegards,\nZoe\n",
			html: "\n<p>Hello Alice,</p>\n<p>here is the floor plan (ref CORPUS-html-inline-images):</p>\n" +
				`<p><img src="/m/tok/cid/plan-1@example.test" alt="plan" width="32" height="32"></p>` + "\n" +
				`<p><img src="/m/tok/cid/logo-2@example.test" alt="logo" width="32" height="32"></p>` + "\n<p>Regards,<br>Zoe</p>\n"},
		{file: "attachments.eml", subject: "Contract documents",
			text: "Hi Alice,\n\nplease find the contract, the offer and my notes attached (CORPUS-attachments).\n\nZoe\n",
			attachments: []Attachment{
				{Index: 1, Filename: "contract.pdf", ContentType: "application/pdf", Size: -1},
				{Index: 2, Filename: "offer.docx", ContentType: "application/vnd.openxmlformats-officedocument.wordprocessingml.document", Size: 18045},
				{Index: 3, Filename: "notes.txt", ContentType: "text/plain", Size: 62},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			msg := readCorpus(t, tt.file)
			m := parseString(t, msg, RenderLimits{})
			if m.Subject != tt.subject {
				t.Errorf("Subject = %q, want %q", m.Subject, tt.subject)
			}
			if tt.from != "" && m.From != tt.from {
				t.Errorf("From = %q, want %q", m.From, tt.from)
			}
			if m.FromAddress != "zoe@example.test" || !reflect.DeepEqual(m.ToAddresses, []string{"alice@external.test"}) {
				t.Errorf("addresses = %q %q", m.FromAddress, m.ToAddresses)
			}
			wantID := "<" + strings.TrimSuffix(tt.file, ".eml") + "@example.test>"
			if m.MessageID != wantID {
				t.Errorf("MessageID = %q, want %q", m.MessageID, wantID)
			}
			if tt.textPrefix != "" {
				if !strings.HasPrefix(m.Text, tt.textPrefix) {
					t.Errorf("Text = %.100q, want prefix %q", m.Text, tt.textPrefix)
				}
			} else if m.Text != tt.text {
				t.Errorf("Text = %q, want %q", m.Text, tt.text)
			}
			if string(m.HTML) != tt.html {
				t.Errorf("HTML = %q, want %q", m.HTML, tt.html)
			}
			want := tt.attachments
			for i := range want {
				if want[i].Size < 0 {
					want[i].Size = pdf(t)
				}
			}
			if len(m.Attachments) != 0 || len(want) != 0 {
				if !reflect.DeepEqual(m.Attachments, want) {
					t.Errorf("Attachments = %+v, want %+v", m.Attachments, want)
				}
			}
			if m.Truncated || m.HTMLTooLarge {
				t.Errorf("Truncated %v, HTMLTooLarge %v", m.Truncated, m.HTMLTooLarge)
			}
		})
	}
}

func TestParseMessageLongLineCorpus(t *testing.T) {
	t.Parallel()
	m := parseString(t, readCorpus(t, "long-line.eml"), RenderLimits{})
	lines := strings.Split(m.Text, "\n")
	if len(lines[1]) != 5000 {
		t.Errorf("long line has %d bytes, want 5000", len(lines[1]))
	}
}

// htmlSanitizeInput holds one of each thing the policy must remove.
const htmlSanitizeInput = `<html><head><base href="https://evil.test/"><meta http-equiv="refresh" content="0;url=https://evil.test/"><link rel="stylesheet" href="https://evil.test/x.css"><style>body{background:url(https://evil.test/bg.png)}</style><title>T</title></head>
<body onload="alert(1)">
<script>alert(1)</script>
<p style="color: red; background-image: url(https://evil.test/p.png)">Hello</p>
<p style="background: url(https://evil.test/q.png); font-weight: bold">bg</p>
<div style="position: fixed; top: 0; width: 100%">over</div>
<img src="https://evil.test/track.png" alt="remote">
<img src="//evil.test/track.png" alt="proto">
<img src="data:image/png;base64,iVBORw0KGgo=" alt="data">
<img src="/logout" alt="relative">
<img src="cid:logo@example.test" alt="logo" onerror="alert(1)">
<img src="CID:logo%40example.test" alt="escaped">
<img src="cid:doc@example.test" alt="pdf">
<img src="cid:missing@example.test" alt="missing">
<img src="https://evil.test/x.png">
<iframe src="https://evil.test/">inside</iframe>
<form action="https://evil.test/"><input name="pw" type="password"><button>Send</button></form>
<a href="https://example.com/x" target="_self" rel="opener">link</a>
<a href="javascript:alert(1)">js</a>
<a href="mailto:bob@example.com">mail</a>
<a href="/relative">rel</a>
<a href="cid:logo@example.test">cidlink</a>
<object data="x.swf">obj</object><embed src="x.swf">
<svg><image href="https://evil.test/i.png"/></svg>
<table width="100%" style="border-collapse: collapse"><tr><td bgcolor="#ffffff" background="https://evil.test/td.png">cell</td></tr></table>
<textarea><img src=x onerror=alert(1)></textarea>
<!-- comment -->
</body></html>`

const htmlSanitizeOutput = "\n\n\n" +
	`<p style="color: red">Hello</p>` + "\n" +
	`<p style="font-weight: bold">bg</p>` + "\n" +
	`<div style="width: 100%">over</div>` + "\n" +
	`<img alt="remote">` + "\n" +
	`<img alt="proto">` + "\n" +
	`<img alt="data">` + "\n" +
	`<img alt="relative">` + "\n" +
	`<img src="/m/tok/cid/logo@example.test" alt="logo">` + "\n" +
	`<img src="/m/tok/cid/logo@example.test" alt="escaped">` + "\n" +
	`<img alt="pdf">` + "\n" +
	`<img alt="missing">` + "\n" +
	"\n\nSend\n" +
	`<a href="https://example.com/x" target="_blank" rel="noopener noreferrer nofollow">link</a>` + "\n" +
	"js\n" +
	`<a href="mailto:bob@example.com" target="_blank" rel="noopener noreferrer nofollow">mail</a>` + "\n" +
	"rel\ncidlink\n\n\n" +
	`<table width="100%" style="border-collapse: collapse"><tbody><tr><td bgcolor="#ffffff">cell</td></tr></tbody></table>` + "\n" +
	"&lt;img src=x onerror=alert(1)&gt;\n\n"

// relatedMessage is an HTML body with inline images: one image shown,
// one image shown but marked as an attachment, a PDF that the HTML names
// by cid, and an image nobody references.
func relatedMessage(htmlBody string) string {
	return crlfJoin(
		"From: Zoe <zoe@example.test>",
		"To: alice@external.test",
		"Subject: related",
		"Content-Type: multipart/related; boundary=rel",
		"",
		"--rel",
		"Content-Type: text/html; charset=utf-8",
		"Content-Transfer-Encoding: quoted-printable",
		"",
		qpEncode(htmlBody),
		"--rel",
		"Content-Type: image/png",
		"Content-ID: <logo@example.test>",
		"Content-Transfer-Encoding: base64",
		"",
		base64.StdEncoding.EncodeToString([]byte("PNG-logo")),
		"--rel",
		"Content-Type: application/pdf",
		"Content-ID: <doc@example.test>",
		"Content-Transfer-Encoding: base64",
		"",
		base64.StdEncoding.EncodeToString([]byte("%PDF-doc")),
		"--rel",
		"Content-Type: image/gif",
		"Content-ID: <unused@example.test>",
		"",
		"GIF89a",
		"--rel--",
	)
}

func qpEncode(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	io.WriteString(w, s)
	w.Close()
	return b.String()
}

func TestParseMessageHTMLSanitised(t *testing.T) {
	t.Parallel()
	m := parseString(t, relatedMessage(htmlSanitizeInput), RenderLimits{})
	if string(m.HTML) != htmlSanitizeOutput {
		t.Errorf("HTML =\n%s\nwant\n%s", m.HTML, htmlSanitizeOutput)
	}
	want := []Attachment{
		{Index: 2, Filename: "attachment-2.pdf", ContentType: "application/pdf", Size: 8},
		{Index: 3, Filename: "attachment-3.gif", ContentType: "image/gif", Size: 6},
	}
	if !reflect.DeepEqual(m.Attachments, want) {
		t.Errorf("Attachments = %+v, want %+v", m.Attachments, want)
	}
	if m.Text != "" {
		t.Errorf("Text = %q", m.Text)
	}

	// Without cidURL no image loads, and the logo is listed again.
	m, err := ParseMessage(strings.NewReader(relatedMessage(htmlSanitizeInput)), RenderLimits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m.HTML), `src="`) || len(m.Attachments) != 3 {
		t.Errorf("nil cidURL: HTML %q, attachments %+v", m.HTML, m.Attachments)
	}
}

func TestParseMessageHTMLCharsets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, contentType, body, want string
	}{
		{"mime charset", "text/html; charset=iso-8859-1", "<p>K\xf6ln</p>", "<p>Köln</p>"},
		{"meta charset", "text/html", "<meta charset=\"iso-8859-15\"><p>12 \xa4</p>", "<p>12 €</p>"},
		{"utf-8 without label", "text/html", "<p>Köln</p>", "<p>Köln</p>"},
		{"unknown charset", "text/html; charset=x-nonsense", "<p>K\xc3\xb6ln \xff</p>", "<p>Köln \uFFFD</p>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := parseString(t, crlfJoin("From: a@b.test", "Content-Type: "+tt.contentType, "", tt.body), RenderLimits{})
			if got := strings.TrimSpace(string(m.HTML)); got != tt.want {
				t.Errorf("HTML = %q, want %q", got, tt.want)
			}
		})
	}
}

var alternativeMessage = crlfJoin(
	"From: =?utf-8?q?Zo=C3=AB?= <Zoe@Example.TEST>",
	"To: Alice <alice@external.test>, \"Bob, B.\" <bob@external.test>",
	"Cc: undisclosed:;, carol@EXTERNAL.test",
	"Reply-To: replies@example.test",
	"Subject: =?utf-8?b?R3LDvMOfZQ==?= and",
	" more",
	"Message-ID:",
	"   <id-1@example.test> (comment)",
	"References: <a@x>",
	"\t<b@y>   <c@z>",
	"Date: Sun, 29 Nov 2026 12:00:00 +0000",
	"MIME-Version: 1.0",
	"Content-Type: multipart/alternative; boundary=\"alt\"",
	"",
	"preamble",
	"--alt",
	"Content-Type: text/plain; charset=utf-8",
	"",
	"plain body",
	"--alt",
	"Content-Type: text/html; charset=utf-8",
	"",
	"<p>html <b>body</b></p>",
	"--alt--",
	"epilogue",
)

func TestParseMessageAlternative(t *testing.T) {
	t.Parallel()
	msg := alternativeMessage
	m := parseString(t, msg, RenderLimits{})
	want := &Message{
		From: "Zoë <Zoe@Example.TEST>", To: `Alice <alice@external.test>, "Bob, B." <bob@external.test>`,
		Cc: "undisclosed:;, carol@EXTERNAL.test", Date: "Sun, 29 Nov 2026 12:00:00 +0000", Subject: "Grüße and more",
		Sent:      time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		MessageID: "<id-1@example.test>", References: "<a@x> <b@y> <c@z>",
		FromAddress: "Zoe@example.test", ReplyToAddresses: []string{"replies@example.test"},
		ToAddresses: []string{"alice@external.test", "bob@external.test"}, CcAddresses: []string{"carol@external.test"},
		Text: "plain body", HTML: "<p>html <b>body</b></p>", leaves: 2,
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
}

func TestParseMessageAddressFallback(t *testing.T) {
	t.Parallel()
	tests := []struct{ in string }{
		{"Broken <a@x.test>, =?x-nonsense?q?N=E4me?= <b@Y.TEST>, <<c@x.test>"},
	}
	for _, tt := range tests {
		got := parseAddressList(tt.in)
		want := []string{"a@x.test", "b@y.test", "c@x.test"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parseAddressList(%q) = %q, want %q", tt.in, got, want)
		}
	}
	for _, in := range []string{"no address here", "<@\xa6>", "<a@>", "<@b>", "<a\x00b@c>", "<a b@c>"} {
		if got := parseAddressList(in); got != nil {
			t.Errorf("parseAddressList(%q) = %q, want none", in, got)
		}
	}
}

// mixedMessage has attachments with every kind of filename, and the
// bytes of its base64 part.
func mixedMessage() (string, []byte) {
	bin := make([]byte, 3000)
	for i := range bin {
		bin[i] = byte(i * 7)
	}
	b64 := base64.StdEncoding.EncodeToString(bin)
	var wrapped []string
	for len(b64) > 76 {
		wrapped = append(wrapped, b64[:76])
		b64 = b64[76:]
	}
	wrapped = append(wrapped, b64)
	parts := []string{
		"From: zoe@example.test",
		"Content-Type: multipart/mixed; boundary=mix",
		"",
		"--mix",
		"Content-Type: text/plain",
		"",
		"body",
		"--mix",
		"Content-Type: application/octet-stream; name=\"ignored.bin\"",
		"Content-Disposition: attachment;",
		" filename*0*=utf-8''%E2%82%AC%20;",
		" filename*1=\"report\";",
		" filename*2*=%2Epdf",
		"Content-Transfer-Encoding: base64",
		"",
	}
	parts = append(parts, wrapped...)
	parts = append(parts,
		"--mix",
		"Content-Type: text/plain; name*=iso-8859-1'de'K%F6ln.txt",
		"Content-Disposition: inline",
		"Content-Transfer-Encoding: quoted-printable",
		"",
		"line one=0D=0Aline =C3=A4=",
		"two",
		"--mix",
		"Content-Type: application/pdf; name=\"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=.pdf\"",
		"",
		"%PDF",
		"--mix",
		"Content-Type: application/octet-stream",
		"Content-Disposition: attachment; filename=\"../../etc/passwd\"",
		"",
		"root",
		"--mix",
		"Content-Type: application/x-msdownload",
		"Content-Disposition: attachment; filename=\"C:\\\\Users\\\\zoe\\\\inv\u202Efdp.exe\"",
		"",
		"MZ",
		"--mix",
		"Content-Type: application/octet-stream",
		"Content-Disposition: attachment; filename=\"a\x01b\x7fc\tname.bin\"",
		"",
		"x",
		"--mix",
		"Content-Type: IMAGE/JPEG; foo=bar",
		"Content-Disposition: attachment; filename=\"..\"",
		"",
		"jpg",
		"--mix",
		"Content-Type: text/plain",
		"",
		"second text part",
		"--mix",
		"Content-Type: application/octet-stream",
		"Content-Disposition: attachment; filename=\""+strings.Repeat("n", 300)+".tar.gz\"",
		"",
		"",
		"--mix--",
	)
	return crlfJoin(parts...), bin
}

func TestParseMessageMixedAttachments(t *testing.T) {
	t.Parallel()
	msg, bin := mixedMessage()
	m := parseString(t, msg, RenderLimits{})
	want := []Attachment{
		{1, "€ report.pdf", "application/octet-stream", 3000},
		{2, "Köln.txt", "text/plain", int64(len("line one\r\nline ätwo"))},
		{3, "Grüße.pdf", "application/pdf", 4},
		{4, "passwd", "application/octet-stream", 4},
		{5, "invfdp.exe", "application/x-msdownload", 2},
		{6, "abc name.bin", "application/octet-stream", 1},
		{7, "attachment-7.jpg", "image/jpeg", 3},
		{8, "attachment-8.txt", "text/plain", 16},
		{9, strings.Repeat("n", 200-3) + ".gz", "application/octet-stream", 0},
	}
	if !reflect.DeepEqual(m.Attachments, want) {
		t.Errorf("Attachments:\n got %+v\nwant %+v", m.Attachments, want)
	}
	if m.Text != "body" {
		t.Errorf("Text = %q", m.Text)
	}
	// OpenPart gives exactly the bytes, and the same names.
	for _, a := range want {
		info, got, err := openPart(t, msg, PartSelector{Index: a.Index})
		if err != nil {
			t.Fatalf("OpenPart(%d): %v", a.Index, err)
		}
		if info != (PartInfo{a.Filename, a.ContentType}) || int64(len(got)) != a.Size {
			t.Errorf("OpenPart(%d) = %+v, %d bytes; want %+v", a.Index, info, len(got), a)
		}
	}
	if _, got, _ := openPart(t, msg, PartSelector{Index: 1}); !bytes.Equal(got, bin) {
		t.Errorf("base64 part differs")
	}
	if _, got, _ := openPart(t, msg, PartSelector{Index: 2}); string(got) != "line one\r\nline \xc3\xa4two" {
		t.Errorf("quoted-printable part = %q", got)
	}
}

func TestParseMessageRFC822Leaf(t *testing.T) {
	t.Parallel()
	inner := crlfJoin(
		"From: inner@example.test",
		"Subject: forwarded",
		"Content-Type: multipart/mixed; boundary=inner",
		"",
		"--inner",
		"Content-Type: text/plain",
		"",
		"inner text",
		"--inner--",
	)
	msg := crlfJoin(
		"From: zoe@example.test",
		"Subject: fwd",
		"Content-Type: multipart/mixed; boundary=outer",
		"",
		"--outer",
		"Content-Type: text/plain",
		"",
		"see below",
		"--outer",
		"Content-Type: message/rfc822",
		"",
		inner,
		"--outer",
		"Content-Type: message/rfc822; name=\"fwd.eml\"",
		"",
		inner,
		"--outer--",
	)
	m := parseString(t, msg, RenderLimits{})
	want := []Attachment{
		{Index: 1, Filename: "message-1.eml", ContentType: "message/rfc822", Size: int64(len(inner))},
		{Index: 2, Filename: "fwd.eml", ContentType: "message/rfc822", Size: int64(len(inner))},
	}
	if !reflect.DeepEqual(m.Attachments, want) || m.Text != "see below" || m.leaves != 3 {
		t.Errorf("got %+v, text %q, %d leaves", m.Attachments, m.Text, m.leaves)
	}
	_, got, err := openPart(t, msg, PartSelector{Index: 1})
	if err != nil || string(got) != inner {
		t.Errorf("OpenPart = %q, %v", got, err)
	}

	// In a multipart/digest, parts are message/rfc822 by default.
	digest := crlfJoin(
		"From: list@example.test",
		"Content-Type: multipart/digest; boundary=d",
		"",
		"--d",
		"",
		inner,
		"--d--",
	)
	m = parseString(t, digest, RenderLimits{})
	if len(m.Attachments) != 1 || m.Attachments[0].ContentType != "message/rfc822" {
		t.Errorf("digest: %+v", m.Attachments)
	}
}

func TestOpenPart(t *testing.T) {
	t.Parallel()
	msg := relatedMessage("<p><img src=\"cid:logo@example.test\"></p>")
	tests := []struct {
		name string
		sel  PartSelector
		info PartInfo
		body string
		err  error
	}{
		{"index html", PartSelector{Index: 0}, PartInfo{"attachment-0.html", "text/html"}, "<p><img src=\"cid:logo@example.test\"></p>", nil},
		{"index image", PartSelector{Index: 1}, PartInfo{"attachment-1.png", "image/png"}, "PNG-logo", nil},
		{"cid", PartSelector{Index: -1, ContentID: "logo@example.test"}, PartInfo{"attachment-1.png", "image/png"}, "PNG-logo", nil},
		{"cid wins over index", PartSelector{Index: 3, ContentID: "doc@example.test"}, PartInfo{"attachment-2.pdf", "application/pdf"}, "%PDF-doc", nil},
		{"cid with brackets", PartSelector{Index: -1, ContentID: "<unused@example.test>"}, PartInfo{"attachment-3.gif", "image/gif"}, "GIF89a", nil},
		{"cid is case-sensitive", PartSelector{Index: -1, ContentID: "LOGO@example.test"}, PartInfo{}, "", ErrPartNotFound},
		{"index past the end", PartSelector{Index: 4}, PartInfo{}, "", ErrPartNotFound},
		{"negative index", PartSelector{Index: -1}, PartInfo{}, "", ErrPartNotFound},
		{"unknown cid", PartSelector{Index: 0, ContentID: "nope@example.test"}, PartInfo{}, "", ErrPartNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, body, err := openPart(t, msg, tt.sel)
			if !errors.Is(err, tt.err) || info != tt.info || string(body) != tt.body {
				t.Errorf("OpenPart = %+v %q %v; want %+v %q %v", info, body, err, tt.info, tt.body, tt.err)
			}
		})
	}

	errOpen := errors.New("no writer")
	if err := OpenPart(strings.NewReader(msg), PartSelector{Index: 1}, func(PartInfo) (io.Writer, error) { return nil, errOpen }); err != errOpen {
		t.Errorf("open error: %v", err)
	}
	errWrite := errors.New("client went away")
	if err := OpenPart(strings.NewReader(msg), PartSelector{Index: 1}, func(PartInfo) (io.Writer, error) { return failingWriter{errWrite}, nil }); err != errWrite {
		t.Errorf("write error: %v", err)
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestParseMessageLimits(t *testing.T) {
	t.Parallel()
	t.Run("text cut on a rune boundary", func(t *testing.T) {
		// "ab€" is 5 bytes; a limit of 4 must not split the euro sign.
		m := parseString(t, crlfJoin("From: a@b.test", "Content-Type: text/plain; charset=utf-8", "", "ab€cd"), RenderLimits{MaxInlineText: 4})
		if m.Text != "ab" || !m.Truncated {
			t.Errorf("Text %q, Truncated %v", m.Text, m.Truncated)
		}
	})
	t.Run("limit counts LF line ends", func(t *testing.T) {
		// 3 lines of 3 bytes: 11 bytes with CRLF, 9 with LF.
		m := parseString(t, "From: a@b.test\r\n\r\nab\r\ncd\r\nef", RenderLimits{MaxInlineText: 8})
		if m.Text != "ab\ncd\nef" || m.Truncated {
			t.Errorf("Text %q, Truncated %v", m.Text, m.Truncated)
		}
	})
	t.Run("limit after charset conversion", func(t *testing.T) {
		m := parseString(t, crlfJoin("From: a@b.test", "Content-Type: text/plain; charset=iso-8859-1", "", "\xe4\xe4\xe4"), RenderLimits{MaxInlineText: 5})
		if m.Text != "ää" || !m.Truncated {
			t.Errorf("Text %q, Truncated %v", m.Text, m.Truncated)
		}
	})
	t.Run("exactly at the limit", func(t *testing.T) {
		m := parseString(t, "From: a@b.test\r\n\r\n12345", RenderLimits{MaxInlineText: 5})
		if m.Text != "12345" || m.Truncated {
			t.Errorf("Text %q, Truncated %v", m.Text, m.Truncated)
		}
	})
	t.Run("html too large", func(t *testing.T) {
		msg := crlfJoin(
			"From: a@b.test",
			"Content-Type: multipart/alternative; boundary=b",
			"",
			"--b",
			"Content-Type: text/plain",
			"",
			"plain",
			"--b",
			"Content-Type: text/html",
			"",
			"<p>0123456789</p>",
			"--b--",
		)
		m := parseString(t, msg, RenderLimits{MaxInlineHTML: 16})
		want := []Attachment{{Index: 1, Filename: "attachment-1.html", ContentType: "text/html", Size: 17}}
		if m.HTML != "" || !m.HTMLTooLarge || m.Text != "plain" || !reflect.DeepEqual(m.Attachments, want) {
			t.Errorf("got HTML %q, tooLarge %v, text %q, attachments %+v", m.HTML, m.HTMLTooLarge, m.Text, m.Attachments)
		}
		m = parseString(t, msg, RenderLimits{MaxInlineHTML: 17})
		if m.HTML != "<p>0123456789</p>" || m.HTMLTooLarge || len(m.Attachments) != 0 {
			t.Errorf("at the limit: HTML %q, tooLarge %v, attachments %+v", m.HTML, m.HTMLTooLarge, m.Attachments)
		}
	})
}

type malformedWant struct {
	err         error
	text        string
	attachments []Attachment
	leaves      int
}

// malformedMessages are broken messages and what ParseMessage shows of
// them. They are fuzz seeds too.
var malformedMessages = []struct {
	name string
	msg  string
	want malformedWant
}{
	{"empty", "", malformedWant{err: ErrMalformedMessage}},
	{"garbage", "\x00\x01\x02 not a header\r\n\r\nbody", malformedWant{err: ErrMalformedMessage}},
	{"leading space", " From: a@b.test\r\n\r\nbody", malformedWant{err: ErrMalformedMessage}},
	{"mbox From line", "From zoe@example.test Sun Nov 29 12:00:00 2026\nFrom: a@b.test\n\nbody\n", malformedWant{text: "body\n", leaves: 1}},
	{"header without body separator", "From: a@b.test\r\nthis line is body\r\nmore", malformedWant{text: "this line is body\nmore", leaves: 1}},
	{"bare CR header end", "From: a@b.test\r\r\nx", malformedWant{text: "x", leaves: 1}},
	{"multipart without boundary", crlfJoin("From: a@b.test", "Content-Type: multipart/mixed", "", "--x", "", "hi", "--x--"),
		malformedWant{attachments: []Attachment{{0, "attachment-0.bin", "multipart/mixed", 18}}, leaves: 1}},
	{"boundary never used", crlfJoin("From: a@b.test", "Content-Type: multipart/mixed; boundary=zz", "", "text", "more"),
		malformedWant{leaves: 0}},
	{"no close delimiter", crlfJoin("From: a@b.test", "Content-Type: multipart/mixed; boundary=b", "", "--b", "", "one", "--b", "Content-Type: application/pdf", "", "%PDF"),
		malformedWant{text: "one", attachments: []Attachment{{1, "attachment-1.pdf", "application/pdf", 6}}, leaves: 2}},
	{"delimiter at end of input", "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b",
		malformedWant{text: "one", leaves: 1}},
	{"empty parts skipped", crlfJoin("From: a@b.test", "Content-Type: multipart/mixed; boundary=b", "", "--b", "--b", "", "x", "--b", "--b--"),
		malformedWant{text: "x", leaves: 1}},
	{"part header without blank line", crlfJoin("From: a@b.test", "Content-Type: multipart/mixed; boundary=b", "", "--b", "just text, no header", "--b--"),
		malformedWant{text: "just text, no header", leaves: 1}},
	{"boundary prefix of another", crlfJoin("From: a@b.test", "Content-Type: multipart/mixed; boundary=ab", "", "--ab", "Content-Type: multipart/alternative; boundary=abc", "", "--abc", "", "inner", "--abc--", "--ab--"),
		malformedWant{text: "inner", leaves: 1}},
	{"delimiter with trailing space", "From: a@b.test\nContent-Type: multipart/mixed; boundary=b\n\n--b  \n\nlf only\n--b-- \t\n",
		malformedWant{text: "lf only", leaves: 1}},
	{"bad base64", crlfJoin("From: a@b.test", "Content-Transfer-Encoding: base64", "", "aGVs!!bG8g\x00d29y", "bGQ=", "-_"),
		malformedWant{text: "hello world", leaves: 1}},
	{"bad quoted-printable", crlfJoin("From: a@b.test", "Content-Transfer-Encoding: quoted-printable", "", "a=ZZb=4", "c=3D=", "d\x0ce="),
		malformedWant{text: "a=ZZb=4\nc=d\fe", leaves: 1}},
	{"unknown transfer encoding", crlfJoin("From: a@b.test", "Content-Type: text/plain", "Content-Transfer-Encoding: x-uuencode", "", "begin 644 x"),
		malformedWant{attachments: []Attachment{{0, "attachment-0.txt", "text/plain", 13}}, leaves: 1}},
	{"unknown charset", crlfJoin("From: a@b.test", "Content-Type: text/plain; charset=x-klingon", "", "K\xc3\xb6ln \xff!"),
		malformedWant{text: "Köln \uFFFD!\n", leaves: 1}},
	{"invalid content type", crlfJoin("From: a@b.test", "Content-Type: text", "", "hi"),
		malformedWant{text: "hi\n", leaves: 1}},
	{"duplicate and broken params", crlfJoin("From: a@b.test", "Content-Type: application/pdf; name=a.pdf; name=b.pdf; =x; junk; filename*1=tail", "", "x"),
		malformedWant{attachments: []Attachment{{0, "a.pdf", "application/pdf", 3}}, leaves: 1}},
	{"unterminated quote", crlfJoin("From: a@b.test", "Content-Type: application/pdf; name=\"a b.pdf", "", "x"),
		malformedWant{attachments: []Attachment{{0, "a b.pdf", "application/pdf", 3}}, leaves: 1}},
	{"long preamble line", crlfJoin("From: a@b.test", "Content-Type: multipart/mixed; boundary=b", "", strings.Repeat("p", 10000), "--b", "", "after", "--b--"),
		malformedWant{text: "after", leaves: 1}},
	{"deep nesting", deepMessage(40), malformedWant{attachments: []Attachment{{0, "attachment-0.bin", "multipart/mixed", deepLeafSize(40)}}, leaves: 1}},
}

// TestParseMessageMalformed feeds broken messages: none may panic, and
// each shows what can be shown.
func TestParseMessageMalformed(t *testing.T) {
	t.Parallel()
	for _, tt := range malformedMessages {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMessage(strings.NewReader(tt.msg), RenderLimits{}, testCIDURL)
			if !errors.Is(err, tt.want.err) {
				t.Fatalf("err = %v, want %v", err, tt.want.err)
			}
			if err != nil {
				return
			}
			if m.Text != tt.want.text || !reflect.DeepEqual(m.Attachments, tt.want.attachments) || m.leaves != tt.want.leaves {
				t.Errorf("got text %q, attachments %+v, %d leaves; want %q, %+v, %d", m.Text, m.Attachments, m.leaves, tt.want.text, tt.want.attachments, tt.want.leaves)
			}
			checkConsistent(t, []byte(tt.msg), m)
		})
	}
}

// deepBody is n nested multiparts around a text part.
func deepBody(n int) string {
	body := "\r\ninnermost"
	for i := n - 1; i >= 0; i-- {
		body = fmt.Sprintf("Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n%s\r\n--b%d--", i, i, body, i)
	}
	return body
}

// deepLeafSize is the size of the body of the multipart that
// deepMessage(n) nests too deep to open: it becomes a leaf.
func deepLeafSize(n int) int64 {
	msg := deepMessage(n)
	start := strings.Index(msg, fmt.Sprintf("boundary=b%d\r\n\r\n", mailparse.MaxNesting)) + len(fmt.Sprintf("boundary=b%d\r\n\r\n", mailparse.MaxNesting))
	end := strings.Index(msg, fmt.Sprintf("\r\n--b%d--", mailparse.MaxNesting-1))
	return int64(end - start)
}

func deepMessage(n int) string {
	return "From: a@b.test\r\n" + deepBody(n) + "\r\n"
}

func TestParseMessageLeafLimit(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(crlfJoin("From: a@b.test", "Content-Type: multipart/mixed; boundary=b", ""))
	for i := 0; i < mailparse.MaxLeaves+10; i++ {
		b.WriteString(crlfJoin("--b", "Content-Type: application/octet-stream", "", "x"))
	}
	b.WriteString("--b--\r\n")
	m := parseString(t, b.String(), RenderLimits{})
	if m.leaves != mailparse.MaxLeaves || len(m.Attachments) != mailparse.MaxLeaves {
		t.Errorf("%d leaves, %d attachments", m.leaves, len(m.Attachments))
	}
}

func TestParseMessageHeaderLimit(t *testing.T) {
	t.Parallel()
	big := "X-Big: " + strings.Repeat("x", 2*mailparse.MaxHeaderBytes) + "\r\n"
	many := strings.Repeat("X-Fold: a\r\n"+strings.Repeat(" b\r\n", 200000), 2)
	for _, h := range []string{big, many} {
		msg := "From: a@b.test\r\n" + h + "Subject: late\r\n\r\nbody"
		m := parseString(t, msg, RenderLimits{})
		if m.Text != "body" || m.Subject != "" || m.FromAddress != "a@b.test" {
			t.Errorf("text %q, subject %q, from %q", m.Text, m.Subject, m.FromAddress)
		}
	}
}

// errAfterReader returns err after n bytes of r.
type errAfterReader struct {
	r   io.Reader
	n   int
	err error
}

func (e *errAfterReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, e.err
	}
	if len(p) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= n
	return n, err
}

func TestParseMessageReadError(t *testing.T) {
	t.Parallel()
	msg := relatedMessage("<p>x</p>")
	errTag := errors.New("chunk tag mismatch")
	for _, n := range []int{0, 10, 150, len(msg) - 5} {
		_, err := ParseMessage(&errAfterReader{strings.NewReader(msg), n, errTag}, RenderLimits{}, testCIDURL)
		if !errors.Is(err, errTag) {
			t.Errorf("after %d bytes: err = %v", n, err)
		}
	}
	// The error is reported even when it comes after everything shown.
	plain := crlfJoin("From: a@b.test", "", strings.Repeat("line\r\n", 1000))
	_, err := ParseMessage(&errAfterReader{strings.NewReader(plain), len(plain) - 10, errTag}, RenderLimits{MaxInlineText: 10}, nil)
	if !errors.Is(err, errTag) {
		t.Errorf("late error: %v", err)
	}
	err = OpenPart(&errAfterReader{strings.NewReader(msg), 300, errTag}, PartSelector{Index: 3}, func(PartInfo) (io.Writer, error) { return io.Discard, nil })
	if !errors.Is(err, errTag) {
		t.Errorf("OpenPart: %v", err)
	}
}

func TestCleanAttachmentName(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\zoe\evil.exe`, "evil.exe"},
		{"dir/", ""},
		{"..", ""},
		{"  spaced  ", "spaced"},
		{"tab\tand\nnewline", "tab and newline"},
		{"nul\x00del\x7fc1\u0085", "nuldelc1"},
		{"bidi\u202egpj.exe", "bidigpj.exe"},
		{"zero\u200bwidth", "zerowidth"},
		{"=?utf-8?q?caf=C3=A9?=.txt", "café.txt"},
		{"bad\xffutf8", "badutf8"},
	}
	for _, tt := range tests {
		if got := cleanAttachmentName(tt.in); got != tt.want {
			t.Errorf("cleanAttachmentName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := cleanAttachmentName(strings.Repeat("é", 150) + ".pdf")
	if len(long) > maxFilename || !strings.HasSuffix(long, ".pdf") || !utf8.ValidString(long) {
		t.Errorf("long name: %d bytes %q", len(long), long)
	}
}

func TestMultipartScannerKeepsContent(t *testing.T) {
	t.Parallel()
	// A binary part keeps its CR, LF and CRLF bytes; only the line end
	// before the delimiter goes.
	content := "a\r\nb\nc\r\r\n--bx\r\n-- b\r\n\r\n"
	msg := "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n" +
		content + "\r\n--b--\r\n"
	_, got, err := openPart(t, msg, PartSelector{Index: 0})
	if err != nil || string(got) != content {
		t.Errorf("got %q, %v; want %q", got, err, content)
	}
}

// generateLargeMessage returns a message of about size bytes: a short
// text part and one base64 attachment, and the attachment's decoded size.
func generateLargeMessage(size int) ([]byte, int64) {
	raw := size / 4 * 3 * 76 / 78
	data := make([]byte, raw)
	x := uint32(2463534242)
	for i := range data {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		data[i] = byte(x)
	}
	var b bytes.Buffer
	b.WriteString(crlfJoin(
		"From: Zoe <zoe@example.test>",
		"To: alice@external.test",
		"Subject: big",
		"Content-Type: multipart/mixed; boundary=big",
		"",
		"--big",
		"Content-Type: text/plain",
		"",
		"see attachment",
		"--big",
		"Content-Type: application/octet-stream",
		"Content-Disposition: attachment; filename=big.bin",
		"Content-Transfer-Encoding: base64",
		"",
	))
	enc := base64.StdEncoding.EncodeToString(data)
	for i := 0; i < len(enc); i += 76 {
		b.WriteString(enc[i:min(i+76, len(enc))])
		b.WriteString("\r\n")
	}
	b.WriteString("--big--\r\n")
	return b.Bytes(), int64(raw)
}

func TestParseMessage20MiBMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs a 20 MiB message parsed")
	}
	msg, size := generateLargeMessage(20 << 20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := ParseMessage(bytes.NewReader(msg), RenderLimits{}, testCIDURL)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("ParseMessage on %d bytes allocated %d bytes in %d objects", len(msg), alloc, after.Mallocs-before.Mallocs)
	if want := []Attachment{{1, "big.bin", "application/octet-stream", size}}; !reflect.DeepEqual(m.Attachments, want) || m.Text != "see attachment" {
		t.Fatalf("got %+v, %q", m.Attachments, m.Text)
	}
	if alloc > 1<<20 {
		t.Errorf("ParseMessage allocated %d bytes for a %d-byte message; want < 1 MiB", alloc, len(msg))
	}

	var n countingWriter
	runtime.GC()
	runtime.ReadMemStats(&before)
	err = OpenPart(bytes.NewReader(msg), PartSelector{Index: 1}, func(PartInfo) (io.Writer, error) { return &n, nil })
	runtime.ReadMemStats(&after)
	if err != nil || int64(n) != size {
		t.Fatalf("OpenPart: %d bytes, %v", n, err)
	}
	alloc = after.TotalAlloc - before.TotalAlloc
	t.Logf("OpenPart allocated %d bytes", alloc)
	if alloc > 1<<20 {
		t.Errorf("OpenPart allocated %d bytes; want < 1 MiB", alloc)
	}
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

func BenchmarkParseMessage20MiB(b *testing.B) {
	msg, _ := generateLargeMessage(20 << 20)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMessage(bytes.NewReader(msg), RenderLimits{}, testCIDURL); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenPart20MiB(b *testing.B) {
	msg, _ := generateLargeMessage(20 << 20)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		var n countingWriter
		if err := OpenPart(bytes.NewReader(msg), PartSelector{Index: 1}, func(PartInfo) (io.Writer, error) { return &n, nil }); err != nil {
			b.Fatal(err)
		}
	}
}
