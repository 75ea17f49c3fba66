package envelope

import (
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Brand is how the sender's organisation shows on the notice and on the
// page, so that a recipient knows who is writing. The zero Brand is the
// neutral look. Every field is public and shown as text; Check says what
// is allowed.
type Brand struct {
	// Organisation is the sender's organisation, e.g. "Example Bank".
	Organisation string
	// Accent is the colour of the page's button, "#rrggbb". It must keep
	// white text readable (contrast at least 4.5:1, WCAG AA).
	Accent string
	// Logo is the logo as a data: URI (LogoDataURI), put into the page
	// itself: the page works offline and tells no server when it is opened.
	Logo string
	// Support is one line that tells the recipient whom to ask, e.g.
	// "Questions? Call Example Bank on 0800 123 456".
	Support string
}

// The limits of a Brand's fields.
const (
	MaxOrganisation = 100      // characters
	MaxSupport      = 200      // characters
	MaxLogoBytes    = 48 << 10 // the logo file, before base64
)

// defaultAccent is the neutral page's button colour.
const defaultAccent = "#1a5fb4"

// ErrBadBrand is wrapped by Check's errors.
var ErrBadBrand = errors.New("envelope: bad brand")

// Check reports what of b cannot be shown.
func (b Brand) Check() error {
	for _, f := range []struct {
		name, v string
		max     int
	}{{"organisation", b.Organisation, MaxOrganisation}, {"support", b.Support, MaxSupport}} {
		if !utf8.ValidString(f.v) || utf8.RuneCountInString(f.v) > f.max {
			return fmt.Errorf("%w: %s must be valid UTF-8 of at most %d characters", ErrBadBrand, f.name, f.max)
		}
		if strings.IndexFunc(f.v, unicode.IsControl) >= 0 {
			return fmt.Errorf("%w: %s holds a control character or a line break", ErrBadBrand, f.name)
		}
	}
	if b.Accent != "" {
		l, ok := luminance(b.Accent)
		if !ok {
			return fmt.Errorf("%w: accent %q is not a colour of the form #1a5fb4", ErrBadBrand, b.Accent)
		}
		if c := (1 + 0.05) / (l + 0.05); c < 4.5 {
			return fmt.Errorf("%w: accent %s is too light for white text on it (contrast %.1f:1, at least 4.5:1 needed)", ErrBadBrand, b.Accent, c)
		}
	}
	if b.Logo != "" {
		ok := false
		for _, prefix := range []string{"data:image/png;base64,", "data:image/svg+xml;base64,"} {
			if rest, found := strings.CutPrefix(b.Logo, prefix); found {
				raw, err := base64.StdEncoding.DecodeString(rest)
				ok = err == nil && len(raw) <= MaxLogoBytes
			}
		}
		if !ok {
			return fmt.Errorf("%w: the logo must be a PNG or SVG of at most %d KiB (LogoDataURI)", ErrBadBrand, MaxLogoBytes>>10)
		}
	}
	return nil
}

// LogoDataURI returns a logo file's content as the data: URI Brand.Logo
// takes. It accepts PNG and SVG (without scripts or external references,
// which an <img> would not run or load anyway) up to MaxLogoBytes.
func LogoDataURI(data []byte) (string, error) {
	if len(data) > MaxLogoBytes {
		return "", fmt.Errorf("%w: the logo is %d bytes, more than %d KiB", ErrBadBrand, len(data), MaxLogoBytes>>10)
	}
	var mime string
	switch {
	case strings.HasPrefix(string(data), "\x89PNG\r\n\x1a\n"):
		mime = "image/png"
	case looksLikeSVG(data):
		mime = "image/svg+xml"
	default:
		return "", fmt.Errorf("%w: the logo is neither a PNG nor an SVG file", ErrBadBrand)
	}
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(data), nil
}

func looksLikeSVG(data []byte) bool {
	s := strings.ToLower(string(data[:min(len(data), 1024)]))
	return utf8.Valid(data) && strings.Contains(s, "<svg")
}

// luminance is the WCAG relative luminance of "#rrggbb".
func luminance(hex string) (float64, bool) {
	if len(hex) != 7 || hex[0] != '#' {
		return 0, false
	}
	var ch [3]float64
	for i := range ch {
		v, err := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		if err != nil {
			return 0, false
		}
		c := float64(v) / 255
		if c <= 0.03928 {
			ch[i] = c / 12.92
		} else {
			ch[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*ch[0] + 0.7152*ch[1] + 0.0722*ch[2], true
}

// brandData fills the brand's part of the template data.
func (b Brand) data(d *pageData) {
	d.Org, d.Support = b.Organisation, b.Support
	d.Accent = template.CSS(defaultAccent)
	if b.Accent != "" {
		d.Accent = template.CSS(strings.ToLower(b.Accent)) // Check has made it #rrggbb
	}
	// Check has made it a base64 PNG or SVG data: URI.
	d.Logo = template.URL(b.Logo) //nolint:gosec // checked above
}
