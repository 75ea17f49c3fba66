package portal

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/securemail/securemail/internal/catalog"
)

func TestFormatWhen(t *testing.T) {
	at := time.Date(2026, 12, 4, 14, 5, 59, 0, time.UTC)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	ny, _ := time.LoadLocation("America/New_York")
	ba, _ := time.LoadLocation("America/Argentina/Buenos_Aires")
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	for _, tc := range []struct {
		t    time.Time
		loc  *time.Location
		want string
	}{
		{at, time.UTC, "Friday 4 December 2026, 14:05 (UTC)"},
		{at, nil, "Friday 4 December 2026, 14:05 (UTC)"},
		{at, berlin, "Friday 4 December 2026, 15:05 (Berlin time)"},
		{at, ny, "Friday 4 December 2026, 09:05 (New York time)"},
		{at, ba, "Friday 4 December 2026, 11:05 (Buenos Aires time)"},
		{at, kolkata, "Friday 4 December 2026, 19:35 (Kolkata time)"},
		// Summer time and a date line crossed by the zone.
		{time.Date(2026, 7, 1, 23, 30, 0, 0, time.UTC), berlin, "Thursday 2 July 2026, 01:30 (Berlin time)"},
		// A header's own offset does not matter: the reader's zone does.
		{time.Date(2026, 1, 9, 8, 0, 0, 0, time.FixedZone("", -8*3600)), time.UTC, "Friday 9 January 2026, 16:00 (UTC)"},
	} {
		if got := formatWhen(tc.t, tc.loc); got != tc.want {
			t.Errorf("formatWhen(%v, %v) = %q, want %q", tc.t, tc.loc, got, tc.want)
		}
	}
}

func TestZoneFromLanguage(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"de-DE,de;q=0.9,en;q=0.8", "Europe/Berlin"},
		{"en-GB", "Europe/London"},
		{"fr-CH, fr;q=0.9", "Europe/Zurich"},
		{"ja-JP", "Asia/Tokyo"},
		{"zh-Hant-TW", "Asia/Taipei"},
		{"hi-IN", "Asia/Kolkata"},
		// The most preferred language with a region decides.
		{"de, en-GB;q=0.8", "Europe/London"},
		{"en-GB;q=0.5, de-AT", "Europe/Vienna"},
		// Several zones in the country: no guess.
		{"en-US,en;q=0.9", ""},
		{"en-US, en-GB;q=0.9", ""},
		{"pt-BR", ""},
		{"es-ES", ""},
		{"ru-RU", ""},
		{"en-AU", ""},
		// No region, a region that is not a country, nonsense.
		{"de", ""},
		{"es-419", ""},
		{"", ""},
		{"*", ""},
		{"x;q=oops,,", ""},
	} {
		if got := zoneFromLanguage(tc.header); got != tc.want {
			t.Errorf("zoneFromLanguage(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}

// Every zone the portal may use loads, so a choice or a guess never
// fails at the moment a page is shown.
func TestKnownZonesLoad(t *testing.T) {
	for name := range knownZones {
		if _, ok := loadZone(name); !ok {
			t.Errorf("zone %q does not load", name)
		}
	}
	for _, bad := range []string{"", "Local", "../../etc/passwd", "Europe/Atlantis", "Mars/Olympus_Mons", "europe/berlin"} {
		if _, ok := loadZone(bad); ok {
			t.Errorf("loadZone(%q) accepted an unknown zone", bad)
		}
	}
	if loc, ok := loadZone("UTC"); !ok || loc != time.UTC {
		t.Errorf("loadZone(UTC) = %v, %v", loc, ok)
	}
}

func TestReaderZone(t *testing.T) {
	h := &handler{}
	req := func(lang, cookie string) *http.Request {
		r, _ := http.NewRequest("GET", "/", nil)
		if lang != "" {
			r.Header.Set("Accept-Language", lang)
		}
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: zoneCookie, Value: cookie})
		}
		return r
	}
	for _, tc := range []struct {
		lang, cookie string
		want         string
		chosen       bool
	}{
		{"", "", "UTC", false},
		{"en-US", "", "UTC", false},
		{"de-DE", "", "Europe/Berlin", false},
		{"de-DE", "Asia/Tokyo", "Asia/Tokyo", true},
		{"en-US", "UTC", "UTC", true},
		// A cookie naming a zone the portal does not offer is ignored.
		{"de-DE", "Asia/Nowhere", "Europe/Berlin", false},
	} {
		loc, chosen := h.readerZone(req(tc.lang, tc.cookie))
		if loc.String() != tc.want || chosen != tc.chosen {
			t.Errorf("Accept-Language %q, cookie %q: %v (chosen %v), want %s (chosen %v)", tc.lang, tc.cookie, loc, chosen, tc.want, tc.chosen)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 bytes"},
		{1, "1 byte"},
		{999, "999 bytes"},
		{1000, "1 KB"},
		{1499, "1 KB"},
		{1500, "2 KB"},
		{66_000, "66 KB"},
		{65_536, "66 KB"},
		{999_499, "999 KB"},
		{999_500, "1.0 MB"},
		{1_000_000, "1.0 MB"},
		{1_048_576, "1.0 MB"},
		{1_550_000, "1.6 MB"},
		{20 << 20, "21.0 MB"},
		{999_949_999, "999.9 MB"},
		{999_950_000, "1.0 GB"},
		{3_200_000_000, "3.2 GB"},
	} {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestFileKind(t *testing.T) {
	for _, tc := range []struct{ name, typ, want string }{
		{"plan.pdf", "application/pdf", "PDF document"},
		{"plan.PDF", "application/octet-stream", "PDF document"},
		{"report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "Word document"},
		{"attachment-3.bin", "application/msword", "Word document"},
		{"sheet.xlsx", "application/octet-stream", "Excel spreadsheet"},
		{"photo.jpg", "image/jpeg", "JPEG image"},
		{"photo", "image/jpeg", "JPEG image"},
		{"scan", "image/x-portable-anymap", "Image"},
		{"note", "text/x-unknown", "Text file"},
		{"invite.ics", "text/calendar", "Calendar invitation"},
		{"forwarded", "message/rfc822", "Email message"},
		{"clip", "video/x-matroska", "Video"},
		// What the reader's computer does on opening goes by the name,
		// whatever the sender's program declared.
		{"invoice.pdf.exe", "application/pdf", "Windows program"},
		{"x.png.js", "image/png", "JavaScript file"},
		{"figures.bin", "application/octet-stream", "File"},
		{"noextension", "", "File"},
		{"weird.", "application/x-whatever", "File"},
		{"UPPER.ZIP", "APPLICATION/ZIP", "ZIP archive"},
	} {
		if got := fileKind(tc.name, tc.typ); got != tc.want {
			t.Errorf("fileKind(%q, %q) = %q, want %q", tc.name, tc.typ, got, tc.want)
		}
	}
}

// getWith GETs path with extra request headers.
func (b *browser) getWith(path string, hdr map[string]string) response {
	b.e.t.Helper()
	req, _ := http.NewRequest("GET", b.e.srv.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return b.do(req)
}

// The message page writes the date in words, in UTC said as such, or in
// the zone the browser's language names, or in the one the reader chose.
func TestReadPageDateInWords(t *testing.T) {
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, plainMessage) // Date: Sun, 29 Nov 2026 10:00:00 +0000
	b := e.browser()
	page := b.register(s, bob)
	u := "/m/" + b.token
	if !strings.Contains(page.body, "<dd>Sunday 29 November 2026, 10:00 (UTC)</dd>") || strings.Contains(page.body, "+0000") {
		t.Errorf("without a language the date is not in words in UTC:\n%s", page.body)
	}
	if !strings.Contains(page.body, `<option value="UTC" selected>`) || !strings.Contains(page.body, `action="`+u+`/timezone"`) {
		t.Errorf("the zone form does not offer UTC as the current zone:\n%s", page.body)
	}
	for _, tc := range []struct{ lang, want string }{
		{"de-DE,de;q=0.9,en;q=0.8", "Sonntag, 29. November 2026 um 11:00 (Ortszeit Berlin)"},
		{"en-DE,en;q=0.9", "Sunday 29 November 2026, 11:00 (Berlin time)"},
		{"ja-JP", "Sunday 29 November 2026, 19:00 (Tokyo time)"},
		{"en-US,en;q=0.9", "Sunday 29 November 2026, 10:00 (UTC)"},
		// Not in the offered list: shown, and selected in the form.
		{"ne-NP", "Sunday 29 November 2026, 15:45 (Kathmandu time)"},
	} {
		r := b.getWith(u, map[string]string{"Accept-Language": tc.lang})
		if r.status != http.StatusOK || !strings.Contains(r.body, "<dd>"+tc.want+"</dd>") {
			t.Errorf("Accept-Language %s: %d, want the date %q:\n%s", tc.lang, r.status, tc.want, r.body)
		}
	}
	if r := b.getWith(u, map[string]string{"Accept-Language": "ne-NP"}); !strings.Contains(r.body, `<option value="Asia/Kathmandu" selected>Kathmandu</option>`) {
		t.Errorf("a guessed zone outside the list is not selected in the form:\n%s", r.body)
	}

	// The reader chooses a zone; this device remembers it over the
	// language's guess.
	r := b.post(u+"/timezone", url.Values{"tz": {"America/New_York"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != u {
		t.Fatalf("choosing a zone: %d to %q, want 303 to %s", r.status, r.header.Get("Location"), u)
	}
	var zc *http.Cookie
	for _, c := range r.header.Values("Set-Cookie") {
		if hc, err := http.ParseSetCookie(c); err == nil && hc.Name == zoneCookie {
			zc = hc
		}
	}
	if zc == nil || zc.Value != "America/New_York" || !zc.HttpOnly || zc.SameSite != http.SameSiteLaxMode || zc.MaxAge <= 0 {
		t.Errorf("zone cookie %+v, want America/New_York, HttpOnly, Lax, remembered", zc)
	}
	r = b.getWith(u, map[string]string{"Accept-Language": "en-DE"})
	if !strings.Contains(r.body, "<dd>Sunday 29 November 2026, 05:00 (New York time)</dd>") ||
		!strings.Contains(r.body, `<option value="America/New_York" selected>`) || !strings.Contains(r.body, "remembers the zone you chose") {
		t.Errorf("the chosen zone is not used:\n%s", r.body)
	}
	r = b.getWith(u, map[string]string{"Accept-Language": "de-DE"})
	if !strings.Contains(r.body, "<dd>Sonntag, 29. November 2026 um 05:00 (Ortszeit New York)</dd>") ||
		!strings.Contains(r.body, "Dieses Gerät merkt sich die Zeitzone, die Sie gewählt haben.") {
		t.Errorf("the chosen zone is not used in German:\n%s", r.body)
	}
	// A zone the portal does not offer is refused, and changes nothing.
	for _, bad := range []string{"Mars/Base", "Local", "../../../etc/passwd", ""} {
		r := b.post(u+"/timezone", url.Values{"tz": {bad}})
		if r.status != http.StatusBadRequest || len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("zone %q: %d, cookies %q; want 400 and none", bad, r.status, r.header.Values("Set-Cookie"))
		}
	}
	// A message without a Date has no date row and no zone form.
	rich := e.seal(alice, []string{bob}, richMessage)
	b.follow(b.open(rich))
	r = b.get("/m/" + b.token)
	if strings.Contains(r.body, "<dt>Date</dt>") || strings.Contains(r.body, "/timezone") {
		t.Errorf("a message without a date shows one:\n%s", r.body)
	}
}

// An attachment's type is in words with its size.
func TestReadPageAttachmentTypeInWords(t *testing.T) {
	e := newTestEnv(t)
	s := e.seal(alice, []string{bob}, richMessage)
	page := e.browser().register(s, bob)
	if !strings.Contains(page.body, `plan.pdf</a> <span class="hint">PDF document, 21 bytes</span>`) || strings.Contains(page.body, "application/pdf") {
		t.Errorf("the attachment's type is not in words:\n%s", page.body)
	}
}

func TestReadableInGerman(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	vienna, _ := time.LoadLocation("Europe/Vienna")
	for _, tc := range []struct {
		loc  *time.Location
		want string
	}{
		{time.UTC, "Sonntag, 29. November 2026 um 10:00 (UTC)"},
		{berlin, "Sonntag, 29. November 2026 um 11:00 (Ortszeit Berlin)"},
		{vienna, "Sonntag, 29. November 2026 um 11:00 (Ortszeit Wien)"},
	} {
		if got := formatWhenIn(catalog.German, at, tc.loc); got != tc.want {
			t.Errorf("formatWhenIn(de, %v) = %q, want %q", tc.loc, got, tc.want)
		}
	}
	for n, want := range map[int64]string{1: "1 Byte", 21: "21 Bytes", 65_536: "66 KB", 1_550_000: "1,6 MB", 3_200_000_000: "3,2 GB"} {
		if got := humanSizeIn(catalog.German, n); got != want {
			t.Errorf("humanSizeIn(de, %d) = %q, want %q", n, got, want)
		}
	}
	for _, tc := range []struct{ name, typ, want string }{
		{"plan.pdf", "application/pdf", "PDF-Dokument"},
		{"sheet.xlsx", "", "Excel-Tabelle"},
		{"scan", "image/x-portable-anymap", "Bild"},
		{"figures.bin", "application/octet-stream", "Datei"},
	} {
		if got := fileKindIn(catalog.German, tc.name, tc.typ); got != tc.want {
			t.Errorf("fileKindIn(de, %q, %q) = %q, want %q", tc.name, tc.typ, got, tc.want)
		}
	}
	// The zone form's groups and cities are German too.
	v := newZoneView(catalog.German, vienna, true)
	if v.Groups[0].Label != "Europa" || v.Words != "Ortszeit Wien" {
		t.Errorf("German zone view: group %q, words %q", v.Groups[0].Label, v.Words)
	}
}

// Every kind a file can be named has an entry, in every language.
func TestEveryKindHasAnEntry(t *testing.T) {
	for _, m := range []map[string]string{kindByExtension, kindByType, kindByFamily, {"": "File"}} {
		for _, kind := range m {
			for _, l := range catalog.Languages {
				if catalog.Entry(l, kindKey(kind)) == "" {
					t.Errorf("%s has no entry %s for %q", l, kindKey(kind), kind)
				}
			}
			if got := catalog.Text(catalog.English, kindKey(kind)); got != kind {
				t.Errorf("English %s is %q, want %q", kindKey(kind), got, kind)
			}
		}
	}
}

const germanReadMessage = `From: Alice <alice@example.com>
To: bob@external.test
Subject: Vertrag
Date: Sun, 29 Nov 2026 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain; charset=utf-8

Anbei der Vertrag.
--b
Content-Type: application/pdf; name="vertrag.pdf"
Content-Disposition: attachment; filename="vertrag.pdf"

`

// The message page in German: the page's words, the date, the zone form
// and the attachment's kind and size.
func TestReadPageInGerman(t *testing.T) {
	e := newTestEnv(t)
	msg := germanReadMessage + strings.Repeat("x", 65_999) + "\n--b--\n"
	s := e.seal(alice, []string{bob}, msg)
	b := e.browser()
	b.register(s, bob)
	r := b.getWith("/m/"+b.token, map[string]string{"Accept-Language": "de"})
	for _, want := range []string{
		`<html lang="de">`,
		"<title>Ihre sichere Nachricht",
		"<dt>Von</dt>", "<dt>An</dt>", "<dt>Betreff</dt>",
		"<dt>Datum</dt><dd>Sonntag, 29. November 2026 um 10:00 (UTC)</dd>",
		"<summary>Zeitzone ändern</summary>", `<optgroup label="Europa">`, ">Wien</option>",
		"<h2>Anhänge</h2>", `vertrag.pdf</a> <span class="hint">PDF-Dokument, 66 KB</span>`,
		"<h2>Antworten</h2>", "Ihre Antwort an Alice &lt;alice@example.com&gt;", "Dateien anhängen (optional)",
		`<button type="submit">Antwort senden</button>`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the German message page lacks %q:\n%s", want, r.body)
		}
	}
	for _, english := range []string{"<dt>From</dt>", "Attachments", "Send reply", "Sunday", "PDF document"} {
		if strings.Contains(r.body, english) {
			t.Errorf("the German message page says %q", english)
		}
	}
	// The same page in English, for the same reader.
	r = b.getWith("/m/"+b.token, map[string]string{"Accept-Language": "en"})
	if !strings.Contains(r.body, "<dd>Sunday 29 November 2026, 10:00 (UTC)</dd>") || !strings.Contains(r.body, "PDF document, 66 KB") {
		t.Errorf("the English message page changed:\n%s", r.body)
	}
}
