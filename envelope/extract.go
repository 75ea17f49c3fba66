package envelope

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode any charset a relay may have converted to
)

// ErrNoPage means no SecureMessageATT.html page was found.
var ErrNoPage = errors.New("envelope: no SecureMessageATT.html page found")

// maxPageSize bounds how much of a page or message the extractors read.
const maxPageSize = 64 << 20

// Form is what a page's form submits: the fields the portal's /open gets.
type Form struct {
	Version  int
	KeyID    KeyID
	Envelope []byte // binary envelope, base64 removed
}

const (
	textareaOpen  = `<textarea name="envelope"`
	textareaClose = `</textarea>`
)

var (
	inputRe = regexp.MustCompile(`<input type="hidden" name="(v|id)" value="([0-9a-f]{1,64})">`)
)

// ParsePage extracts the form from a SecureMessageATT.html page. It accepts
// exactly the markup WritePage produces (with any line ends), nothing
// looser: a page is data from the internet.
func ParsePage(page []byte) (Form, error) {
	var f Form
	var haveV, haveID bool
	for _, m := range inputRe.FindAllSubmatch(page, -1) {
		switch string(m[1]) {
		case "v":
			if haveV {
				return Form{}, fmt.Errorf("%w: two version fields", ErrNoPage)
			}
			v, err := strconv.Atoi(string(m[2]))
			if err != nil {
				return Form{}, fmt.Errorf("%w: bad version field", ErrNoPage)
			}
			f.Version, haveV = v, true
		case "id":
			if haveID {
				return Form{}, fmt.Errorf("%w: two id fields", ErrNoPage)
			}
			id, err := ParseKeyID(string(m[2]))
			if err != nil {
				return Form{}, fmt.Errorf("%w: %v", ErrNoPage, err)
			}
			f.KeyID, haveID = id, true
		}
	}
	armor, ok := envelopeArmor(page)
	if !haveV || !haveID || !ok {
		return Form{}, ErrNoPage
	}
	if f.Version != Version {
		return Form{}, ErrVersion
	}
	env, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(armor)))
	if err != nil {
		return Form{}, fmt.Errorf("%w: envelope is not base64", ErrNoPage)
	}
	f.Envelope = env
	return f, nil
}

// envelopeArmor returns the content of the page's one envelope textarea,
// which must be base64 in lines. It searches bytes, not a regular
// expression, because the page is as large as the message.
func envelopeArmor(page []byte) ([]byte, bool) {
	start := bytes.Index(page, []byte(textareaOpen))
	if start < 0 || bytes.Count(page, []byte(textareaOpen)) != 1 {
		return nil, false
	}
	gt := bytes.IndexByte(page[start:], '>')
	if gt < 0 {
		return nil, false
	}
	content := page[start+gt+1:]
	end := bytes.Index(content, []byte(textareaClose))
	if end < 0 {
		return nil, false
	}
	content = content[:end]
	for _, c := range content {
		if !isArmorByte(c) {
			return nil, false
		}
	}
	return content, true
}

func isArmorByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '+' || c == '/' || c == '=' || c == '\r' || c == '\n'
}

// FindPage returns the SecureMessageATT.html page from r, which holds either
// a whole sealed message (the page found as an attachment, whatever transfer
// encoding a relay gave it) or the page itself.
func FindPage(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPageSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPageSize {
		return nil, fmt.Errorf("envelope: input larger than %d bytes", maxPageSize)
	}
	if bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("<!DOCTYPE html")) {
		return data, nil
	}
	entity, err := message.Read(bytes.NewReader(data))
	if err != nil && !message.IsUnknownCharset(err) {
		return nil, fmt.Errorf("envelope: read message: %w", err)
	}
	var page []byte
	walkErr := entity.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		if page != nil || part.MultipartReader() != nil {
			return nil
		}
		_, params, _ := part.Header.ContentDisposition()
		_, ctParams, _ := part.Header.ContentType()
		if params["filename"] != PageFileName && ctParams["name"] != PageFileName {
			return nil
		}
		page, err = io.ReadAll(part.Body)
		return err
	})
	if walkErr != nil {
		return nil, fmt.Errorf("envelope: read message: %w", walkErr)
	}
	if page == nil {
		return nil, ErrNoPage
	}
	return page, nil
}
