package boltstore

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// decodeBoltKeyRecordFast reads a key record written in exactly the layout
// encodeKeyRecord produces (json.Marshal of boltKeyRecord: every field, in
// order, copy_until only when set, no whitespace, strings without
// escapes). Listing 100 000 keys
// spent most of its CPU in encoding/json's reflection and validation, and
// that CPU is what the milter needs while an operator runs keys list. ok
// is false for anything else (an escaped character, another field order,
// a damaged record) and the caller decodes with json.Unmarshal, so the
// result is always what json.Unmarshal would give (FuzzDecodeKeyRecord).
func decodeBoltKeyRecordFast(b []byte) (s boltKeyRecord, ok bool) {
	p := recordScanner{b: b}
	if !p.lit(`{"wrapped_dek":`) {
		return s, false
	}
	if !p.lit("null") {
		v, ok := p.str()
		if !ok {
			return s, false
		}
		dek := make([]byte, base64.StdEncoding.DecodedLen(len(v)))
		n, err := base64.StdEncoding.Decode(dek, []byte(v))
		if err != nil {
			return s, false
		}
		s.WrappedDEK = dek[:n]
	}
	if !p.lit(`,"master_key_id":`) {
		return s, false
	}
	if s.MasterKeyID, ok = p.str(); !ok {
		return s, false
	}
	if !p.lit(`,"sender":`) {
		return s, false
	}
	if s.Sender, ok = p.str(); !ok {
		return s, false
	}
	if !p.lit(`,"recipients":`) {
		return s, false
	}
	if !p.lit("null") {
		if !p.lit("[") {
			return s, false
		}
		s.Recipients = []string{}
		for i := 0; !p.lit("]"); i++ {
			if i > 0 && !p.lit(",") {
				return s, false
			}
			r, ok := p.str()
			if !ok {
				return s, false
			}
			s.Recipients = append(s.Recipients, r)
		}
	}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{`,"created":`, &s.Created}, {`,"expires":`, &s.Expires}, {`,"revoked":`, &s.Revoked}} {
		if !p.lit(f.name) {
			return s, false
		}
		v, ok := p.str()
		if !ok || f.t.UnmarshalText([]byte(v)) != nil {
			return s, false
		}
	}
	if !p.lit(`,"message_id":`) {
		return s, false
	}
	if s.MessageID, ok = p.str(); !ok {
		return s, false
	}
	if !p.lit(`,"size":`) {
		return s, false
	}
	if s.Size, ok = p.integer(); !ok {
		return s, false
	}
	if p.lit(`,"copy_until":`) {
		v, ok := p.str()
		if !ok || s.CopyUntil.UnmarshalText([]byte(v)) != nil {
			return s, false
		}
	}
	if !p.lit("}") || p.i != len(p.b) {
		return s, false
	}
	return s, true
}

// recordScanner walks a record's bytes for decodeBoltKeyRecordFast.
type recordScanner struct {
	b []byte
	i int
}

// lit consumes s if the input continues with it.
func (p *recordScanner) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// str reads a JSON string: valid UTF-8 (json.Unmarshal would replace
// invalid bytes, so those take the slow path), no control character, and
// only the escapes json.Marshal writes (\u003c for the < of every
// Message-ID, \" and \\, \n ...), surrogate pairs excepted.
func (p *recordScanner) str() (string, bool) {
	if !p.lit(`"`) {
		return "", false
	}
	start := p.i
	var buf []byte // only when the string has escapes
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			raw := p.b[start:p.i]
			p.i++
			if !utf8.Valid(raw) {
				return "", false
			}
			if buf == nil {
				return string(raw), true
			}
			return string(buf), true
		case c < 0x20:
			return "", false
		case c != '\\':
			if buf != nil {
				buf = append(buf, c)
			}
			p.i++
			continue
		}
		if buf == nil {
			buf = append(make([]byte, 0, 2*(p.i-start)+16), p.b[start:p.i]...)
		}
		if p.i+1 >= len(p.b) {
			return "", false
		}
		switch e := p.b[p.i+1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			if p.i+6 > len(p.b) {
				return "", false
			}
			r, err := strconv.ParseUint(string(p.b[p.i+2:p.i+6]), 16, 32)
			if err != nil || (r >= 0xd800 && r <= 0xdfff) {
				return "", false
			}
			buf = utf8.AppendRune(buf, rune(r))
			p.i += 4
		default:
			return "", false
		}
		p.i += 2
	}
	return "", false
}

// integer reads a JSON integer (no fraction, no exponent, no leading zero).
func (p *recordScanner) integer() (int64, bool) {
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || (p.b[digits] == '0' && p.i-digits > 1) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
	return n, err == nil
}
