package portal

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zones work on hosts without /usr/share/zoneinfo

	"golang.org/x/text/language"

	"github.com/securemail/securemail/internal/catalog"
)

// Dates, file types and sizes in words, for the pages a recipient reads.

// formatWhen writes t in loc in English: "Friday 4 December 2026, 14:05
// (UTC)" or "Friday 4 December 2026, 15:05 (Berlin time)".
func formatWhen(t time.Time, loc *time.Location) string {
	return formatWhenIn(catalog.English, t, loc)
}

// formatWhenIn writes t in loc as l writes a date and time, with the zone
// said: "Friday 4 December 2026, 15:05 (Berlin time)", "Freitag, 4.
// Dezember 2026 um 15:05 (Ortszeit Berlin)".
func formatWhenIn(l catalog.Lang, t time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	return catalog.Text(l, "read.when",
		"Weekday", catalog.Text(l, "read.weekday."+strings.ToLower(t.Weekday().String())),
		"Day", t.Day(), "Month", catalog.Text(l, "read.month."+strings.ToLower(t.Month().String())),
		"Year", t.Year(), "Time", t.Format("15:04"), "Zone", zoneWords(l, loc))
}

// zoneWords names a zone for a reader: "UTC", or its city and "time".
func zoneWords(l catalog.Lang, loc *time.Location) string {
	name := loc.String()
	if loc == time.UTC || name == "UTC" || name == "" {
		return catalog.Text(l, "read.zone.utc")
	}
	return catalog.Text(l, "read.zone.city", "City", zoneCityIn(l, name))
}

// zoneCity is the last element of an IANA name with spaces for
// underscores: "America/Argentina/Buenos_Aires" is "Buenos Aires".
func zoneCity(name string) string {
	return strings.ReplaceAll(path.Base(name), "_", " ")
}

// zoneCityIn is zoneCity as l names the city: German readers look for
// Wien, not Vienna.
func zoneCityIn(l catalog.Lang, name string) string {
	if l == catalog.German {
		if c, ok := germanCities[name]; ok {
			return c
		}
	}
	return zoneCity(name)
}

// germanCities are the German names of the offered cities whose German
// name differs from the zone's; proper names, so kept here rather than
// as catalogue entries every language must give.
var germanCities = map[string]string{
	"Europe/Lisbon": "Lissabon", "Europe/Rome": "Rom", "Europe/Brussels": "Brüssel", "Europe/Zurich": "Zürich",
	"Europe/Vienna": "Wien", "Europe/Copenhagen": "Kopenhagen", "Europe/Warsaw": "Warschau", "Europe/Prague": "Prag",
	"Europe/Athens": "Athen", "Europe/Kyiv": "Kiew", "Europe/Bucharest": "Bukarest", "Europe/Moscow": "Moskau",
	"Atlantic/Canary": "Kanaren", "Atlantic/Azores": "Azoren", "Africa/Cairo": "Kairo", "Asia/Tehran": "Teheran",
	"Asia/Kolkata": "Kalkutta", "Asia/Singapore": "Singapur", "Asia/Tokyo": "Tokio", "Asia/Riyadh": "Riad",
	"America/Mexico_City": "Mexiko-Stadt", "America/Bogota": "Bogotá", "America/Sao_Paulo": "São Paulo",
	"America/St_Johns": "St. John’s", "Europe/Belgrade": "Belgrad", "Europe/Sofia": "Sofia",
	"Europe/Luxembourg": "Luxemburg", "Europe/Vilnius": "Wilna", "Europe/Tirane": "Tirana",
	"Africa/Algiers": "Algier", "Asia/Damascus": "Damaskus", "Asia/Baghdad": "Bagdad", "Asia/Nicosia": "Nikosia",
	"America/Havana": "Havanna",
}

// zoneCookie holds the zone a reader chose on the message page: a
// preference for this device, not a secret, set only when the reader
// chooses.
const zoneCookie = "securemail_tz"

// zoneCookieAge is how long a chosen zone is remembered on the device.
const zoneCookieAge = 365 * 24 * time.Hour

// readerZone is the zone a page writes times in for r, and where it came
// from: the zone the reader chose (a cookie), else the one zone of the
// country named by the reader's preferred language with a region
// (Accept-Language "de-DE" is Berlin time, "en-US" spans several zones and
// gives UTC), else UTC. A browser says nothing else about its zone without
// JavaScript.
func (h *handler) readerZone(r *http.Request) (loc *time.Location, chosen bool) {
	if c, err := r.Cookie(h.zoneCookieName()); err == nil {
		if loc, ok := loadZone(c.Value); ok {
			return loc, true
		}
	}
	if name := zoneFromLanguage(r.Header.Get("Accept-Language")); name != "" {
		if loc, ok := loadZone(name); ok {
			return loc, false
		}
	}
	return time.UTC, false
}

func (h *handler) zoneCookieName() string {
	if h.secure {
		return "__Host-" + zoneCookie
	}
	return zoneCookie
}

// setZoneCookie remembers name (a zone from zoneChoices) on this device.
func (h *handler) setZoneCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: h.zoneCookieName(), Value: name, Path: "/",
		MaxAge: int(zoneCookieAge / time.Second), Secure: h.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// POST /m/{token}/timezone: the reader chooses the zone the message
// page writes times in. It needs no session: the choice is a cookie on
// this device and shows nothing by itself.
func (h *handler) chooseZone(w http.ResponseWriter, r *http.Request) {
	if !h.parseForm(w, r) {
		return
	}
	name := r.PostForm.Get("tz")
	if _, ok := loadZone(name); !ok {
		h.fail(w, r, pageFormUnreadable(errors.New("time zone not offered")))
		return
	}
	h.setZoneCookie(w, name)
	http.Redirect(w, r, "/m/"+url.PathEscape(r.PathValue("token")), http.StatusSeeOther)
}

// loadZone loads a zone the portal knows by name (zoneChoices and
// countryZones); any other name, from a cookie or a form, is refused.
func loadZone(name string) (*time.Location, bool) {
	if name == "UTC" {
		return time.UTC, true
	}
	if !knownZones[name] {
		return nil, false
	}
	loc, err := time.LoadLocation(name)
	return loc, err == nil
}

// zoneFromLanguage returns the zone of the region of the first language
// in an Accept-Language header that names one, when that country has one
// zone; "" otherwise.
func zoneFromLanguage(header string) string {
	if header == "" || len(header) > 512 {
		return ""
	}
	tags, _, err := language.ParseAcceptLanguage(header)
	if err != nil {
		return ""
	}
	for _, t := range tags {
		if reg, conf := t.Region(); conf == language.Exact {
			return countryZones[reg.String()]
		}
	}
	return ""
}

// zoneGroup is one <optgroup> of the zone select.
type zoneGroup struct {
	Label string
	Zones []zoneOption
}

type zoneOption struct {
	Name, Label string
}

// zoneChoices are the zones offered on the message page: a city for each
// clock most readers live by, grouped by part of the world. A reader whose
// city is missing picks one with the same clock.
var zoneChoices = zoneChoicesIn(catalog.English)

// zoneChoicesByLang are zoneChoices with the labels of each language.
var zoneChoicesByLang = func() map[catalog.Lang][]zoneGroup {
	m := map[catalog.Lang][]zoneGroup{}
	for _, l := range catalog.Languages {
		m[l] = zoneChoicesIn(l)
	}
	return m
}()

func zoneChoicesIn(l catalog.Lang) []zoneGroup {
	groups := []struct {
		key   string
		names []string
	}{
		{"europe", []string{"Europe/London", "Europe/Dublin", "Europe/Lisbon", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Rome",
			"Europe/Amsterdam", "Europe/Brussels", "Europe/Zurich", "Europe/Vienna", "Europe/Stockholm", "Europe/Oslo", "Europe/Copenhagen",
			"Europe/Warsaw", "Europe/Prague", "Europe/Budapest", "Europe/Athens", "Europe/Helsinki", "Europe/Kyiv", "Europe/Bucharest",
			"Europe/Istanbul", "Europe/Moscow", "Atlantic/Canary", "Atlantic/Azores", "Atlantic/Reykjavik"}},
		{"africa", []string{"Africa/Casablanca", "Africa/Lagos", "Africa/Cairo", "Africa/Johannesburg", "Africa/Nairobi"}},
		{"asia", []string{"Asia/Dubai", "Asia/Tehran", "Asia/Karachi", "Asia/Kolkata", "Asia/Dhaka", "Asia/Bangkok", "Asia/Jakarta",
			"Asia/Singapore", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Manila", "Asia/Seoul", "Asia/Tokyo", "Asia/Jerusalem",
			"Asia/Riyadh"}},
		{"oceania", []string{"Australia/Perth", "Australia/Adelaide", "Australia/Brisbane", "Australia/Sydney", "Pacific/Auckland",
			"Pacific/Honolulu"}},
		{"americas", []string{"America/Anchorage", "America/Los_Angeles", "America/Denver", "America/Phoenix", "America/Chicago",
			"America/Mexico_City", "America/New_York", "America/Toronto", "America/Halifax", "America/Bogota", "America/Lima",
			"America/Santiago", "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "America/St_Johns"}},
	}
	out := make([]zoneGroup, 0, len(groups))
	for _, g := range groups {
		zg := zoneGroup{Label: catalog.Text(l, "read.tz."+g.key)}
		for _, n := range g.names {
			zg.Zones = append(zg.Zones, zoneOption{Name: n, Label: zoneCityIn(l, n)})
		}
		out = append(out, zg)
	}
	return out
}

// knownZones are the names loadZone accepts.
var knownZones = func() map[string]bool {
	m := map[string]bool{}
	for _, g := range zoneChoices {
		for _, z := range g.Zones {
			m[z.Name] = true
		}
	}
	for _, z := range countryZones {
		m[z] = true
	}
	return m
}()

// zoneView is what the message page's zone form shows.
type zoneView struct {
	Current string // the IANA name, or "UTC"
	Words   string // "UTC", "Berlin time"
	Chosen  bool   // the reader chose it (else it was guessed or is UTC)
	Guessed bool   // not chosen and not UTC: guessed from the language
	Groups  []zoneGroup
	// Extra is the current zone when zoneChoices lacks it (guessed from
	// the language), so the select can show it.
	Extra *zoneOption
}

func newZoneView(l catalog.Lang, loc *time.Location, chosen bool) zoneView {
	v := zoneView{Current: loc.String(), Words: zoneWords(l, loc), Chosen: chosen, Groups: zoneChoicesByLang[l]}
	if v.Current == "" {
		v.Current = "UTC"
	}
	v.Guessed = !chosen && v.Current != "UTC"
	if v.Groups == nil {
		v.Groups = zoneChoices
	}
	if v.Current != "UTC" {
		found := false
		for _, g := range zoneChoices {
			for _, z := range g.Zones {
				found = found || z.Name == v.Current
			}
		}
		if !found {
			v.Extra = &zoneOption{Name: v.Current, Label: zoneCityIn(l, v.Current)}
		}
	}
	return v
}

// humanSize writes a size in bytes, kilobytes and megabytes of 1000 (SI),
// as file managers on phones and macOS do: "66 KB", "1.5 MB". Every
// size a recipient reads is written by it or humanSizeIn.
func humanSize(n int64) string { return humanSizeIn(catalog.English, n) }

// humanSizeIn is humanSize as l writes it: "1,5 MB" in German.
func humanSizeIn(l catalog.Lang, n int64) string {
	switch {
	case n == 1:
		return catalog.Text(l, "read.size.byte")
	case n < 1000:
		return catalog.Text(l, "read.size.bytes", "N", n)
	case n < 999_500:
		return catalog.Text(l, "read.size.kb", "N", (n+500)/1000)
	case n < 999_950_000:
		return catalog.Text(l, "read.size.mb", "N", decimal(l, float64(n)/1e6))
	default:
		return catalog.Text(l, "read.size.gb", "N", decimal(l, float64(n)/1e9))
	}
}

// decimal writes x with one decimal, with l's decimal mark.
func decimal(l catalog.Lang, x float64) string {
	s := strconv.FormatFloat(x, 'f', 1, 64)
	if l == catalog.German {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s
}

// kindByExtension and kindByType name file types in English words, which
// also name their catalogue entries (kindKey): "PDF document" is
// read.kind.pdf_document. The extension
// is asked first: it decides what the reader's computer does with the
// file when it is opened, whatever the sender's mail program declared.
var kindByExtension = map[string]string{
	".pdf": "PDF document",
	".doc": "Word document", ".docx": "Word document", ".dot": "Word template", ".dotx": "Word template",
	".xls": "Excel spreadsheet", ".xlsx": "Excel spreadsheet", ".xlsm": "Excel spreadsheet with macros",
	".ppt": "PowerPoint presentation", ".pptx": "PowerPoint presentation",
	".odt": "OpenDocument text", ".ods": "OpenDocument spreadsheet", ".odp": "OpenDocument presentation",
	".pages": "Pages document", ".numbers": "Numbers spreadsheet", ".key": "Keynote presentation",
	".rtf": "Rich text document", ".txt": "Text file", ".md": "Text file", ".log": "Text file",
	".csv": "CSV table", ".tsv": "Table (tab-separated)",
	".htm": "Web page", ".html": "Web page", ".xml": "XML file", ".json": "JSON file",
	".ics": "Calendar invitation", ".vcf": "Contact card",
	".eml": "Email message", ".msg": "Outlook message",
	".zip": "ZIP archive", ".7z": "7-Zip archive", ".rar": "RAR archive", ".gz": "Gzip archive", ".tgz": "Gzip archive",
	".tar": "Tar archive",
	".jpg": "JPEG image", ".jpeg": "JPEG image", ".png": "PNG image", ".gif": "GIF image", ".webp": "WebP image",
	".heic": "HEIC photo", ".heif": "HEIF photo", ".tif": "TIFF image", ".tiff": "TIFF image", ".bmp": "Bitmap image",
	".svg": "SVG image",
	".mp3": "MP3 audio", ".m4a": "M4A audio", ".wav": "WAV audio", ".ogg": "Ogg audio",
	".mp4": "MP4 video", ".mov": "QuickTime video", ".avi": "AVI video", ".webm": "WebM video",
	".exe": "Windows program", ".msi": "Windows installer", ".bat": "Windows script", ".cmd": "Windows script",
	".ps1": "PowerShell script", ".vbs": "Windows script", ".js": "JavaScript file", ".jar": "Java program",
	".apk": "Android app", ".dmg": "Mac disk image", ".pkg": "Mac installer", ".sh": "Shell script",
	".p7s": "Digital signature", ".asc": "PGP text", ".pgp": "PGP file", ".gpg": "PGP file",
}

var kindByType = map[string]string{
	"application/pdf":    "PDF document",
	"application/msword": "Word document",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word document",
	"application/vnd.ms-excel": "Excel spreadsheet",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         "Excel spreadsheet",
	"application/vnd.ms-powerpoint":                                             "PowerPoint presentation",
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": "PowerPoint presentation",
	"application/vnd.oasis.opendocument.text":                                   "OpenDocument text",
	"application/vnd.oasis.opendocument.spreadsheet":                            "OpenDocument spreadsheet",
	"application/vnd.oasis.opendocument.presentation":                           "OpenDocument presentation",
	"application/rtf": "Rich text document", "text/rtf": "Rich text document",
	"text/plain": "Text file", "text/csv": "CSV table", "text/html": "Web page",
	"application/xml": "XML file", "text/xml": "XML file", "application/json": "JSON file",
	"text/calendar": "Calendar invitation", "text/vcard": "Contact card", "text/x-vcard": "Contact card",
	"message/rfc822":  "Email message",
	"application/zip": "ZIP archive", "application/x-zip-compressed": "ZIP archive",
	"application/x-7z-compressed": "7-Zip archive", "application/vnd.rar": "RAR archive", "application/x-rar-compressed": "RAR archive",
	"application/gzip": "Gzip archive", "application/x-gzip": "Gzip archive", "application/x-tar": "Tar archive",
	"image/jpeg": "JPEG image", "image/png": "PNG image", "image/gif": "GIF image", "image/webp": "WebP image",
	"image/heic": "HEIC photo", "image/heif": "HEIF photo", "image/tiff": "TIFF image", "image/bmp": "Bitmap image",
	"image/svg+xml": "SVG image",
	"audio/mpeg":    "MP3 audio", "audio/mp4": "M4A audio", "audio/wav": "WAV audio", "audio/ogg": "Ogg audio",
	"video/mp4": "MP4 video", "video/quicktime": "QuickTime video", "video/webm": "WebM video",
	"application/pkcs7-signature": "Digital signature", "application/pgp-signature": "PGP signature",
	"application/pgp-encrypted": "PGP file",
}

// kindByFamily names what is left by the first half of its media type.
var kindByFamily = map[string]string{"image": "Image", "audio": "Audio", "video": "Video", "text": "Text file"}

// fileKind names an attachment's type in English words (fileKindIn).
func fileKind(name, mediaType string) string {
	return fileKindIn(catalog.English, name, mediaType)
}

// fileKindIn names an attachment's type in l's words, from its file name
// first, then its declared media type; "File" when neither says.
func fileKindIn(l catalog.Lang, name, mediaType string) string {
	return catalog.Text(l, kindKey(englishKind(name, mediaType)))
}

func englishKind(name, mediaType string) string {
	if ext := strings.ToLower(path.Ext(name)); ext != "" {
		if k, ok := kindByExtension[ext]; ok {
			return k
		}
	}
	mediaType = strings.ToLower(mediaType)
	if k, ok := kindByType[mediaType]; ok {
		return k
	}
	family, _, _ := strings.Cut(mediaType, "/")
	if k, ok := kindByFamily[family]; ok {
		return k
	}
	return "File"
}

// kindKey is the catalogue key of an English kind: lower case, every run
// of other characters one underscore.
func kindKey(kind string) string {
	var b strings.Builder
	b.WriteString("read.kind.")
	under := false
	for _, r := range strings.ToLower(kind) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if under && b.Len() > len("read.kind.") {
				b.WriteByte('_')
			}
			under = false
			b.WriteRune(r)
		} else {
			under = true
		}
	}
	return b.String()
}
