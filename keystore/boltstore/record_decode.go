package boltstore

import (
	"encoding/base64"
	"strconv"
	"strings"
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
//
// a, if not nil, holds the record's strings and slices (see recordArena).
func decodeBoltKeyRecordFast(b []byte, a *recordArena) (s boltKeyRecord, ok bool) {
	p := recordScanner{b: b, a: a}
	if !p.lit(`{"wrapped_dek":`) {
		return s, false
	}
	if !p.lit("null") {
		v, ok := p.raw()
		if !ok {
			return s, false
		}
		dek := a.bytes(base64.StdEncoding.DecodedLen(len(v)))
		n, err := base64.StdEncoding.Decode(dek, v)
		if err != nil {
			return s, false
		}
		s.WrappedDEK = dek[:n:n]
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
		list := a.listBuf()
		for i := 0; !p.lit("]"); i++ {
			if i > 0 && !p.lit(",") {
				return s, false
			}
			r, ok := p.str()
			if !ok {
				return s, false
			}
			list = append(list, r)
		}
		s.Recipients = a.listDone(list)
	}
	// Not a loop over pointers to s's fields: those would move s to the heap.
	if !p.lit(`,"created":`) {
		return s, false
	}
	if s.Created, ok = p.time(); !ok {
		return s, false
	}
	if !p.lit(`,"expires":`) {
		return s, false
	}
	if s.Expires, ok = p.time(); !ok {
		return s, false
	}
	if !p.lit(`,"revoked":`) {
		return s, false
	}
	if s.Revoked, ok = p.time(); !ok {
		return s, false
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
		if s.CopyUntil, ok = p.time(); !ok {
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
	a *recordArena
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
	run := start   // the bytes from run to p.i are not yet in buf
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c >= 0x20 && c != '"' && c != '\\' {
			p.i++
			continue
		}
		switch {
		case c == '"':
			raw := p.b[start:p.i]
			p.i++
			if !utf8.Valid(raw) {
				return "", false
			}
			if buf == nil {
				return p.a.str(raw), true
			}
			buf = append(buf, p.b[run:p.i-1]...)
			p.a.keepScratch(buf)
			return p.a.str(buf), true
		case c < 0x20:
			return "", false
		}
		if buf == nil {
			buf = p.a.scratch()
		}
		buf = append(buf, p.b[run:p.i]...)
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
		run = p.i
	}
	return "", false
}

// time reads a time as a JSON string.
func (p *recordScanner) time() (time.Time, bool) {
	v, ok := p.raw()
	if !ok {
		return time.Time{}, false
	}
	if t, ok := parseUTC(v); ok {
		return t, true
	}
	var t time.Time
	return t, t.UnmarshalText(v) == nil
}

// raw reads a JSON string without escapes and returns its bytes, which
// alias the record: for base64 and times, which never have escapes.
func (p *recordScanner) raw() ([]byte, bool) {
	if !p.lit(`"`) {
		return nil, false
	}
	start := p.i
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c < 0x20 || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

// parseUTC reads a time as time.Time's MarshalJSON writes one in UTC
// (2026-12-04T18:30:00.123456789Z, the fraction without trailing zeros or
// absent): time.Parse spent a third of a listing's decoding. It reports
// false for anything else (an offset, a leap second, a bad date), which
// UnmarshalText then reads or refuses.
func parseUTC(b []byte) (time.Time, bool) {
	if len(b) < len("2006-01-02T15:04:05Z") || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	if day > 28 && time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC).Day() != day {
		return time.Time{}, false // the 31st of a 30-day month, the 29th of February in a common year
	}
	nsec := 0
	switch frac := b[19 : len(b)-1]; {
	case len(frac) == 0:
	case len(frac) < 2 || len(frac) > 10 || frac[0] != '.':
		return time.Time{}, false
	default:
		n, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// recordArena holds the strings, recipient lists and wrapped keys of the
// records of one EachKey chunk in a few large blocks instead of about ten
// allocations per record, which were most of a listing's garbage. Every
// string and slice it hands out has its own bytes and a capacity of its
// own length, and nothing is written to a block twice, so a caller may
// keep or modify a record. A nil *recordArena allocates as usual.
type recordArena struct {
	strs  strings.Builder
	block []byte
	lists []string
	// unescaped is where str unescapes a string before copying it.
	unescaped []byte
}

// scratch returns an empty buffer to unescape a string into; keepScratch
// gives it back for the next string.
func (a *recordArena) scratch() []byte {
	if a == nil {
		return nil
	}
	return a.unescaped[:0]
}

func (a *recordArena) keepScratch(b []byte) {
	if a != nil {
		a.unescaped = b
	}
}

// arenaBlock is the size of a new block: 1024 records of about 250
// bytes each take a few.
const arenaBlock = 64 << 10

func (a *recordArena) str(b []byte) string {
	if a == nil {
		return string(b)
	}
	if a.strs.Cap()-a.strs.Len() < len(b) {
		// A new builder: strings handed out keep the old one's bytes.
		a.strs = strings.Builder{}
		a.strs.Grow(max(arenaBlock, len(b)))
	}
	start := a.strs.Len()
	a.strs.Write(b)
	return a.strs.String()[start:]
}

func (a *recordArena) bytes(n int) []byte {
	if a == nil {
		return make([]byte, n)
	}
	if a.block == nil || cap(a.block)-len(a.block) < n { // never nil: "" decodes to an empty, non-nil key
		a.block = make([]byte, 0, max(arenaBlock, n))
	}
	start := len(a.block)
	a.block = a.block[:start+n]
	return a.block[start : start+n : start+n]
}

// listBuf returns an empty list to append a record's recipients to, in
// the arena's free space; listDone takes the filled list back and returns
// it with a capacity of its own length. An empty list is not nil, as
// json.Unmarshal gives it.
func (a *recordArena) listBuf() []string {
	if a == nil {
		return []string{}
	}
	if cap(a.lists)-len(a.lists) < 8 {
		a.lists = make([]string, 0, 1024)
	}
	return a.lists[len(a.lists):len(a.lists)]
}

func (a *recordArena) listDone(l []string) []string {
	if a != nil {
		// A list that outgrew the free space was moved by append and
		// owns its array; the arena then starts a new one.
		if n := len(a.lists) + len(l); n <= cap(a.lists) {
			a.lists = a.lists[:n]
		} else {
			a.lists = nil
		}
	}
	return l[:len(l):len(l)]
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
