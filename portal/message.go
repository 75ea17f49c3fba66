// Rendering a decrypted message for the read page.
//
// The portal gets the original RFC 5322 message as a stream of plaintext
// (up to the envelope limit, 20 MiB) and reads it once per request with
// internal/mailparse (whose package doc states the walk and its
// leniency): ParseMessage to show it, OpenPart to send one part of it.
// Nothing is held in memory beyond the header fields, at most
// RenderLimits bytes of text and of HTML, and a few small buffers per
// nesting level; every other body is decoded into a counter and dropped.
// Leaf indexes are mailparse's. ParseMessage fails only when the input
// does not start with a header (ErrMalformedMessage) or when reading the
// input fails (that error, wrapped); it reads the input to its end, so a
// damaged or cut plaintext stream is always reported. Every string handed
// out is valid UTF-8. Parts with an unknown Content-Transfer-Encoding are
// attachments served as they are, still encoded.
//
// Bodies. Text is the first text/plain leaf that is not an attachment (no
// filename, disposition not "attachment", a known transfer encoding),
// decoded to UTF-8 with line ends as LF and cut at MaxInlineText bytes on a
// rune boundary. HTML is the first such text/html leaf: if its decoded
// body is at most MaxInlineHTML bytes it is sanitised (htmlPolicy, then
// finishHTML) and shown; otherwise HTMLTooLarge is set and it is listed
// as an attachment.
//
// Attachments lists every leaf except the shown Text and HTML bodies and
// the image/* leaves that the shown HTML displays through a cid: URL
// (unless their disposition is "attachment"). So a second text/plain part,
// a text/calendar part or an HTML body too large to show is listed, and
// nothing the sender sent is hidden. Sizes are of the body after the
// transfer encoding is undone, which is exactly what OpenPart writes.
//
// HTML. The policy keeps text formatting, lists, tables and a fixed set of
// CSS properties whose values are checked one by one (no url(), no
// position); it drops scripts, event handlers, forms, frames, objects,
// style sheets, <base>, <meta>, <link>, comments and relative URLs. Links
// keep only http, https and mailto targets and get target="_blank"
// rel="noopener noreferrer nofollow". An <img> keeps its src only if it is
// a cid: URL naming an image/* leaf of this message; that src becomes
// cidURL(contentID), with contentID as in the part's Content-ID without
// angle brackets (the URL's %-escapes undone, RFC 2392). Every other src
// (http, https, data:, //host, relative) is removed.

package portal

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/microcosm-cc/bluemonday"
	"github.com/securemail/securemail/internal/mailparse"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	htmlcharset "golang.org/x/net/html/charset"
)

// RenderLimits bound what the read page shows inline. A zero or negative
// limit means the default of 1 MiB.
type RenderLimits struct {
	// MaxInlineText is how many bytes of the text/plain body are shown;
	// a longer body is cut and Message.Truncated set.
	MaxInlineText int64
	// MaxInlineHTML is how many decoded bytes of text/html are sanitised
	// and shown; a larger body is not shown but listed as an attachment,
	// and Message.HTMLTooLarge set.
	MaxInlineHTML int64
}

const defaultInlineLimit = 1 << 20

// Message is a decrypted message prepared for display. Strings are plain
// text in UTF-8 for the template to escape; HTML is already sanitised.
type Message struct {
	// From, To, Cc, Date and Subject are the header fields as text:
	// RFC 2047 words decoded, unfolded, control characters removed.
	From, To, Cc, Date, Subject string
	// Sent is the Date field parsed (RFC 5322, obsolete forms included);
	// in UTC; zero when the field is missing or does not parse.
	Sent time.Time
	// MessageID is the first <msg-id> of the Message-ID field, with its
	// angle brackets; "" if none.
	MessageID string
	// References is the References field unfolded, runs of white space
	// made one space; "" if none.
	References string
	// FromAddress is the addr-spec of the first From mailbox with its
	// domain lowercased; "" if none can be parsed.
	FromAddress string
	// ReplyToAddresses, ToAddresses and CcAddresses are the addr-specs
	// of those fields (domains lowercased), in order.
	ReplyToAddresses, ToAddresses, CcAddresses []string

	// Text is the text/plain body; "" if none.
	Text string
	// Truncated reports that Text was cut at MaxInlineText.
	Truncated bool
	// HTML is the sanitised text/html body; "" if none or too large.
	HTML template.HTML
	// HTMLTooLarge reports that the HTML body was larger than
	// MaxInlineHTML and is listed in Attachments instead.
	HTMLTooLarge bool

	// Attachments are the leaves offered for download, in walk order.
	Attachments []Attachment

	leaves int // number of leaves walked, for tests
}

// Attachment describes one leaf offered for download.
type Attachment struct {
	// Index is the leaf index to give OpenPart.
	Index int
	// Filename is safe to show and to put in Content-Disposition: no
	// directories, no control or bidi formatting characters, at most
	// maxFilename bytes; "attachment-3.bin" and the like when the part
	// names none.
	Filename string
	// ContentType is the media type alone, lowercased.
	ContentType string
	// Size is the decoded size in bytes.
	Size int64
}

// PartInfo describes the part OpenPart is about to write.
type PartInfo struct {
	Filename    string // as in Attachment.Filename
	ContentType string // as in Attachment.ContentType
}

// PartSelector chooses the part OpenPart writes: the leaf with Content-ID
// ContentID if that is not "", otherwise the leaf numbered Index.
type PartSelector struct {
	Index int
	// ContentID is compared with the part's Content-ID without its angle
	// brackets, byte for byte: give it %-unescaped, as cidURL received it.
	ContentID string
}

var (
	// ErrPartNotFound is returned by OpenPart when no leaf matches.
	ErrPartNotFound = errors.New("portal: message part not found")
	// ErrMalformedMessage is returned when the plaintext does not start
	// with a header section, so there is nothing to show.
	ErrMalformedMessage = errors.New("portal: plaintext is not a mail message")
)

const (
	maxFilename = 200 // bytes
)

// ParseMessage reads the message r once and prepares it for display (see
// the comment at the top of this file). cidURL gives the same-origin URL
// an inline image is loaded from; it may be nil, and then no image is
// shown.
func ParseMessage(r io.Reader, lim RenderLimits, cidURL func(contentID string) string) (*Message, error) {
	for _, l := range []*int64{&lim.MaxInlineText, &lim.MaxInlineHTML} {
		if *l <= 0 {
			*l = defaultInlineLimit
		}
		*l = min(*l, 1<<30) // a limit, not an allocation; keeps limit+1 sane
	}
	p := &messageParser{lim: lim, msg: &Message{}, cids: map[string]cidTarget{}, scratch: make([]byte, 8<<10)}
	h, err := mailparse.Walk(r, true, p.leaf)
	if errors.Is(err, mailparse.ErrNoHeader) {
		return nil, ErrMalformedMessage
	}
	if err != nil {
		return nil, err
	}
	p.msg.leaves = p.leaves
	p.headers(h)
	p.finish(cidURL)
	return p.msg, nil
}

// OpenPart reads the message r until the part chosen by sel and writes its
// decoded body (transfer encoding undone, charset untouched) to the writer
// that open returns. open is called once, before any byte is written, and
// not at all if no part matches: then the error is ErrPartNotFound. Errors
// from open and from the writer are returned as they are.
func OpenPart(r io.Reader, sel PartSelector, open func(PartInfo) (io.Writer, error)) error {
	cid := strings.TrimSpace(sel.ContentID)
	if strings.HasPrefix(cid, "<") && strings.HasSuffix(cid, ">") {
		cid = cid[1 : len(cid)-1]
	}
	if cid == "" && sel.Index < 0 {
		return ErrPartNotFound
	}
	found := false
	_, err := mailparse.Walk(r, false, func(l *mailparse.Leaf) error {
		if cid != "" && l.ContentID != cid || cid == "" && l.Index != sel.Index {
			return nil
		}
		found = true
		w, err := open(PartInfo{Filename: leafFilename(l), ContentType: l.MediaType})
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(w, l.Decoded(), make([]byte, 8<<10)); err != nil {
			return err
		}
		return mailparse.ErrStopWalk
	})
	if err != nil {
		return err
	}
	if !found {
		return ErrPartNotFound
	}
	return nil
}

// messageParser is ParseMessage's state for one message.
type messageParser struct {
	lim      RenderLimits
	msg      *Message
	leaves   int
	textDone bool
	htmlDone bool
	rawHTML  string // sanitised by htmlPolicy, before finishHTML
	cands    []attachmentCandidate
	cids     map[string]cidTarget // first leaf with each Content-ID
	scratch  []byte
}

type attachmentCandidate struct {
	Attachment
	asAttachment bool // Content-Disposition: attachment
}

type cidTarget struct {
	index     int
	mediaType string
}

func (p *messageParser) leaf(l *mailparse.Leaf) error {
	p.leaves++
	if l.ContentID != "" {
		if _, ok := p.cids[l.ContentID]; !ok {
			p.cids[l.ContentID] = cidTarget{l.Index, l.MediaType}
		}
	}
	body := l.Decoded()
	bodyCandidate := l.Known && !l.Named && l.Disposition != "attachment"
	switch {
	case bodyCandidate && l.MediaType == "text/plain" && !p.textDone:
		p.textDone = true
		p.msg.Text, p.msg.Truncated = readInlineText(body, l.Params["charset"], p.lim.MaxInlineText)
		return nil
	case bodyCandidate && l.MediaType == "text/html" && !p.htmlDone:
		p.htmlDone = true
		var buf bytes.Buffer
		n, _ := io.CopyN(&buf, body, p.lim.MaxInlineHTML+1)
		if n <= p.lim.MaxInlineHTML {
			p.rawHTML = sanitizeHTML(buf.Bytes(), l.Params["charset"])
			return nil
		}
		p.msg.HTMLTooLarge = true
		rest, _ := drain(body, p.scratch)
		p.cands = append(p.cands, attachmentCandidate{Attachment: leafAttachment(l, n+rest), asAttachment: l.Disposition == "attachment"})
		return nil
	}
	n, _ := drain(body, p.scratch)
	p.cands = append(p.cands, attachmentCandidate{Attachment: leafAttachment(l, n), asAttachment: l.Disposition == "attachment"})
	return nil
}

// finish rewrites the HTML's cid: images and drops the images it shows
// from the attachment list.
func (p *messageParser) finish(cidURL func(string) string) {
	shown := map[int]bool{}
	if p.rawHTML != "" {
		p.msg.HTML = template.HTML(finishHTML(p.rawHTML, func(cid string) string {
			t, ok := p.cids[cid]
			if !ok || !strings.HasPrefix(t.mediaType, "image/") || cidURL == nil {
				return ""
			}
			u := cidURL(cid)
			if u != "" {
				shown[t.index] = true
			}
			return u
		}))
	}
	for _, c := range p.cands {
		if shown[c.Index] && !c.asAttachment {
			continue
		}
		p.msg.Attachments = append(p.msg.Attachments, c.Attachment)
	}
}

func (p *messageParser) headers(h mailparse.Header) {
	m := p.msg
	m.From = displayHeader(h.Get("from"))
	m.To = displayHeader(strings.Join(h.Values("to"), ", "))
	m.Cc = displayHeader(strings.Join(h.Values("cc"), ", "))
	m.Date = displayHeader(h.Get("date"))
	if t, err := mail.ParseDate(strings.TrimSpace(stripControls(h.Get("date")))); err == nil {
		m.Sent = t.UTC()
	}
	m.Subject = displayHeader(h.Get("subject"))
	m.MessageID = firstMsgID(h.Get("message-id"))
	m.References = strings.Join(strings.Fields(stripControls(h.Get("references"))), " ")
	if from := parseAddressList(h.Get("from")); len(from) > 0 {
		m.FromAddress = from[0]
	}
	m.ReplyToAddresses = parseAddressList(strings.Join(h.Values("reply-to"), ", "))
	m.ToAddresses = parseAddressList(strings.Join(h.Values("to"), ", "))
	m.CcAddresses = parseAddressList(strings.Join(h.Values("cc"), ", "))
}

// readInlineText decodes a text body to UTF-8 with LF line ends and keeps
// at most limit bytes of it, cut on a rune boundary.
func readInlineText(body io.Reader, label string, limit int64) (string, bool) {
	r := mailparse.NewTextReader(label, body)
	var buf bytes.Buffer
	n, _ := io.CopyN(&buf, r, limit+1)
	b := buf.Bytes()
	truncated := n > limit
	if truncated {
		b = b[:limit]
		// Drop a rune cut in half by the limit rather than show U+FFFD.
		for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
			if utf8.RuneStart(b[len(b)-i]) {
				if !utf8.FullRune(b[len(b)-i:]) {
					b = b[:len(b)-i]
				}
				break
			}
		}
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if int64(len(s)) > limit {
		s = cutUTF8(s, int(limit))
		truncated = true
	}
	return s, truncated
}

// cutUTF8 returns the longest prefix of s that is at most n bytes and
// ends on a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// drain reads r to its end and returns how many bytes it had.
func drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// displayHeader makes a header value plain UTF-8 text on one line.
func displayHeader(v string) string {
	return strings.TrimSpace(stripControls(mailparse.DecodeWords(v)))
}

// stripControls makes s valid UTF-8, turns tabs and line ends into spaces
// and removes other control characters.
func stripControls(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\r' || r == '\n':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
}

// firstMsgID returns the first <...> of a Message-ID field; a bare id is
// put in brackets.
func firstMsgID(v string) string {
	v = stripControls(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 1 {
			id := v[i : i+j+1]
			if !strings.ContainsAny(id[1:len(id)-1], " <") {
				return id
			}
		}
		return ""
	}
	if v = strings.TrimSpace(v); v != "" && !strings.ContainsAny(v, " >") {
		return "<" + v + ">"
	}
	return ""
}

var addressParser = &mail.AddressParser{WordDecoder: mailparse.WordDecoder}

// parseAddressList returns the addr-specs of an address list, domain
// lowercased. When the list does not parse as a whole, each
// comma-separated item is tried alone, then its <...> part. Addresses
// without a local part or a domain, or with white space, control
// characters or invalid UTF-8, are dropped.
func parseAddressList(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var out []string
	add := func(a string) {
		at := strings.LastIndexByte(a, '@')
		if at <= 0 || at == len(a)-1 || !utf8.ValidString(a) ||
			strings.IndexFunc(a, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
			return
		}
		out = append(out, a[:at]+strings.ToLower(a[at:]))
	}
	if list, err := addressParser.ParseList(v); err == nil {
		for _, a := range list {
			add(a.Address)
		}
		return out
	}
	for _, item := range splitAddressList(v) {
		if a, err := addressParser.Parse(item); err == nil {
			add(a.Address)
			continue
		}
		if i := strings.LastIndexByte(item, '<'); i >= 0 {
			if j := strings.IndexByte(item[i:], '>'); j > 0 {
				if a := item[i+1 : i+j]; strings.Count(a, "@") == 1 {
					add(a)
				}
			}
		}
	}
	return out
}

// splitAddressList splits at commas outside quotes, comments and angle
// brackets.
func splitAddressList(v string) []string {
	var items []string
	quoted, depth, angle, start := false, 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && depth == 0 && !angle:
			items = append(items, v[start:i])
			start = i + 1
		}
	}
	return append(items, v[start:])
}

// Filenames.

// cleanAttachmentName makes a part's filename safe for display and for
// Content-Disposition: RFC 2047 words decoded, only the part after the
// last '/' or '\', no control or format (bidi, zero width) characters, at
// most maxFilename bytes keeping a short extension. It returns "" if
// nothing is left.
func cleanAttachmentName(name string) string {
	name = strings.ToValidUTF8(mailparse.DecodeWords(name), "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return ' '
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError:
			return -1
		case unicode.IsSpace(r):
			return ' '
		}
		return r
	}, name)
	name = strings.TrimSpace(name)
	if len(name) > maxFilename {
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
			ext = name[i:]
		}
		name = strings.TrimSpace(cutUTF8(name[:len(name)-len(ext)], maxFilename-len(ext))) + ext
	}
	if name == "." || name == ".." {
		return ""
	}
	return name
}

// leafFilename is the cleaned filename of l, or a made-up one such as
// "attachment-3.bin" when the part gives none that survives cleaning.
func leafFilename(l *mailparse.Leaf) string {
	if name := cleanAttachmentName(l.RawFilename); name != "" {
		return name
	}
	prefix, ext := "attachment-", fallbackExt[l.MediaType]
	if l.MediaType == "message/rfc822" {
		prefix = "message-"
	}
	if ext == "" {
		ext = ".bin"
	}
	return fmt.Sprintf("%s%d%s", prefix, l.Index, ext)
}

func leafAttachment(l *mailparse.Leaf, size int64) Attachment {
	return Attachment{Index: l.Index, Filename: leafFilename(l), ContentType: l.MediaType, Size: size}
}

// fallbackExt is the extension of made-up filenames.
var fallbackExt = map[string]string{
	"text/plain":      ".txt",
	"text/html":       ".html",
	"text/calendar":   ".ics",
	"message/rfc822":  ".eml",
	"image/png":       ".png",
	"image/jpeg":      ".jpg",
	"image/gif":       ".gif",
	"image/webp":      ".webp",
	"application/pdf": ".pdf",
}

// HTML.

// htmlPolicy is the sanitiser for HTML bodies, built once. finishHTML
// runs on its output.
var htmlPolicy = newHTMLPolicy()

func newHTMLPolicy() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.RequireParseableURLs(true)
	p.AllowRelativeURLs(false)
	p.AllowURLSchemes("http", "https", "mailto", "cid")
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)

	p.AllowElements("a", "abbr", "acronym", "address", "article", "aside", "b", "bdi", "bdo",
		"big", "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup",
		"dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "font",
		"footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "i", "img", "ins", "kbd",
		"li", "mark", "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "section", "small",
		"span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
		"th", "thead", "tr", "tt", "u", "ul", "var", "wbr")

	p.AllowAttrs("dir").Matching(bluemonday.Direction).Globally()
	p.AllowAttrs("lang").Matching(regexp.MustCompile(`^[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*$`)).Globally()
	// title and alt take any text: they are attribute values, escaped on
	// output, and a screen reader needs them whole (bluemonday.Paragraph
	// dropped any alt with ':', '&', '-', '+' or '%').
	p.AllowAttrs("title").Globally()
	p.AllowAttrs("align").Matching(regexp.MustCompile(`(?i)^(left|right|center|justify)$`)).Globally()

	p.AllowAttrs("href").Matching(regexp.MustCompile(`(?i)^\s*(https?|mailto):`)).OnElements("a")
	p.AllowAttrs("src").Matching(regexp.MustCompile(`(?i)^\s*cid:`)).OnElements("img")
	p.AllowAttrs("alt").OnElements("img")

	cells := []string{"td", "th"}
	p.AllowAttrs("width", "height").Matching(bluemonday.NumberOrPercent).OnElements("img", "table", "td", "th", "col", "colgroup")
	p.AllowAttrs("border", "cellpadding", "cellspacing").Matching(bluemonday.Integer).OnElements("table")
	p.AllowAttrs("border").Matching(bluemonday.Integer).OnElements("img")
	p.AllowAttrs("colspan", "rowspan").Matching(bluemonday.Integer).OnElements(cells...)
	p.AllowAttrs("span").Matching(bluemonday.Integer).OnElements("col", "colgroup")
	p.AllowAttrs("nowrap").Matching(regexp.MustCompile(`(?i)^(|nowrap)$`)).OnElements(cells...)
	p.AllowAttrs("valign").Matching(regexp.MustCompile(`(?i)^(top|middle|bottom|baseline)$`)).
		OnElements("td", "th", "tr", "tbody", "thead", "tfoot", "col", "colgroup")
	color := regexp.MustCompile(`^#?[0-9a-zA-Z]{1,20}$`)
	p.AllowAttrs("bgcolor").Matching(color).OnElements("table", "tr", "td", "th")
	p.AllowAttrs("color").Matching(color).OnElements("font")
	p.AllowAttrs("face").Matching(regexp.MustCompile(`^[\p{L}\p{N} ,'"-]{1,100}$`)).OnElements("font")
	p.AllowAttrs("size").Matching(regexp.MustCompile(`^[+-]?[1-7]$`)).OnElements("font")
	p.AllowAttrs("type").Matching(bluemonday.ListType).OnElements("ol", "ul", "li")
	p.AllowAttrs("start").Matching(bluemonday.Integer).OnElements("ol")
	p.AllowAttrs("value").Matching(bluemonday.Integer).OnElements("li")
	p.AllowAttrs("open").Matching(regexp.MustCompile(`(?i)^(|open)$`)).OnElements("details")

	// Each property's value is checked by bluemonday's handler for it;
	// none of these accepts url(), and position is not among them.
	p.AllowStyles("color", "background-color",
		"font-family", "font-size", "font-style", "font-weight", "font-variant",
		"text-align", "text-decoration", "text-indent", "text-transform",
		"line-height", "letter-spacing", "word-spacing", "white-space", "vertical-align",
		"word-break", "word-wrap", "overflow-wrap", "direction",
		"margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
		"padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
		"border", "border-top", "border-right", "border-bottom", "border-left",
		"border-color", "border-style", "border-width", "border-collapse", "border-radius",
		"width", "height", "max-width", "min-width", "max-height", "min-height",
		"list-style-type", "table-layout").Globally()
	return p
}

// sanitizeHTML converts an HTML body to UTF-8 (by the MIME charset, else
// by its BOM or <meta>, else UTF-8 if valid, else windows-1252) and runs
// htmlPolicy on it.
func sanitizeHTML(b []byte, label string) string {
	if strings.TrimSpace(label) != "" {
		b = []byte(mailparse.DecodeCharsetString(label, b))
	} else if enc, _, _ := htmlcharset.DetermineEncoding(b, "text/html"); enc != nil {
		if out, err := enc.NewDecoder().Bytes(b); err == nil {
			b = out
		}
	}
	b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	var out bytes.Buffer
	if err := htmlPolicy.SanitizeReaderToWriter(bytes.NewReader(b), &out); err != nil {
		return ""
	}
	return out.String()
}

// finishHTML rewrites htmlPolicy's output: an <img> keeps its src only if
// it is a cid: URL that resolve maps to a non-empty URL; an <a> with an
// href gets target="_blank" rel="noopener noreferrer nofollow"; a style
// attribute that somehow still mentions url(), expression(), @import or
// a CSS escape is dropped.
//
// The fragment is parsed as the HTML5 parser parses the content of the
// <article> that shows it, and rendered back from the tree, so the result
// is always balanced: a stray </article> is dropped and an <a>, <font> or
// <details> left open is closed at the end of the message, never around
// the portal's own page.
func finishHTML(s string, resolve func(contentID string) string) string {
	container := &html.Node{Type: html.ElementNode, Data: "article", DataAtom: atom.Article}
	nodes, err := html.ParseFragment(strings.NewReader(s), container)
	if err != nil {
		return ""
	}
	var tree strings.Builder
	tree.Grow(len(s))
	for _, n := range nodes {
		finishNode(n, resolve)
		if err := html.Render(&tree, n); err != nil {
			return ""
		}
	}
	// html.Render writes void elements as <br/>; write them as <br>, as
	// the rest of the page does.
	z := html.NewTokenizer(strings.NewReader(tree.String()))
	var b strings.Builder
	b.Grow(tree.Len())
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return b.String()
		}
		t := z.Token()
		if tt == html.SelfClosingTagToken {
			t.Type = html.StartTagToken
		}
		b.WriteString(t.String())
	}
}

// finishNode applies finishHTML's attribute rules to n and everything
// under it.
func finishNode(n *html.Node, resolve func(contentID string) string) {
	if n.Type == html.ElementNode {
		attrs := n.Attr[:0]
		hasHref := false
		for _, a := range n.Attr {
			switch {
			case a.Namespace != "":
				continue
			case n.Data == "img" && a.Key == "src":
				if a.Val = resolveCID(a.Val, resolve); a.Val == "" {
					continue
				}
			case n.Data == "a" && (a.Key == "rel" || a.Key == "target"):
				continue
			case n.Data == "a" && a.Key == "href":
				hasHref = true
			case a.Key == "style" && unsafeStyle(a.Val):
				continue
			}
			attrs = append(attrs, a)
		}
		if hasHref {
			attrs = append(attrs, html.Attribute{Key: "target", Val: "_blank"},
				html.Attribute{Key: "rel", Val: "noopener noreferrer nofollow"})
		}
		n.Attr = attrs
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		finishNode(c, resolve)
	}
}

// resolveCID maps a cid: URL to resolve's URL for its content ID; "" for
// anything else.
func resolveCID(src string, resolve func(string) string) string {
	src = strings.TrimSpace(src)
	if len(src) < 4 || !strings.EqualFold(src[:4], "cid:") {
		return ""
	}
	id := src[4:]
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	if id == "" {
		return ""
	}
	return resolve(id)
}

func unsafeStyle(v string) bool {
	v = strings.ToLower(v)
	for _, bad := range []string{"url(", "expression", "@import", `\`, "image-set", "var("} {
		if strings.Contains(v, bad) {
			return true
		}
	}
	return false
}
