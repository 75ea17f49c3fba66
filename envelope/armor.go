package envelope

import (
	"encoding/base64"
	"encoding/binary"
)

// The armor is standard base64 (RFC 4648 section 4) in lines of 76
// characters. appendArmorLines writes it with a table of character pairs
// (12 bits of input at a time) and 8-byte loads and stores, because the
// encoding is the largest cost of sealing a large message (see
// BENCHMARKS.md, section "Issue 5: profiled fixes"); its output matches
// encoding/base64's byte for byte (TestArmorLinesMatchBase64,
// FuzzArmorLines).

const (
	armorLineChars = 76
	base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// base64Pairs[v] is the two characters of the 12-bit value v, the first in
// the low byte.
var base64Pairs = func() (t [4096]uint16) {
	for v := range t {
		t[v] = uint16(base64Alphabet[v>>6]) | uint16(base64Alphabet[v&63])<<8
	}
	return t
}()

// appendArmorLines appends src as base64 lines of 76 characters (57 bytes
// of src each, the last line shorter), each followed by eol.
func appendArmorLines(dst, src []byte, eol string) []byte {
	for len(src) >= armorLineBytes {
		n := len(dst)
		dst = append(dst, make([]byte, armorLineChars)...)
		encodeArmorLine((*[armorLineChars]byte)(dst[n:]), (*[armorLineBytes]byte)(src))
		dst = append(dst, eol...)
		src = src[armorLineBytes:]
	}
	if len(src) > 0 {
		dst = base64.StdEncoding.AppendEncode(dst, src)
		dst = append(dst, eol...)
	}
	return dst
}

// encodeArmorLine encodes one full line: 57 bytes are 9 groups of 6 bytes
// (8 characters each) and one of 3 bytes (4 characters).
func encodeArmorLine(out *[armorLineChars]byte, in *[armorLineBytes]byte) {
	for g := range 9 {
		// An 8-byte load of which the top 48 bits are the group; the last
		// group's load ends at byte 55, inside the line.
		v := binary.BigEndian.Uint64(in[6*g:])
		w := uint64(base64Pairs[v>>52&0xfff]) | uint64(base64Pairs[v>>40&0xfff])<<16 |
			uint64(base64Pairs[v>>28&0xfff])<<32 | uint64(base64Pairs[v>>16&0xfff])<<48
		binary.LittleEndian.PutUint64(out[8*g:], w)
	}
	v := uint32(in[54])<<16 | uint32(in[55])<<8 | uint32(in[56])
	binary.LittleEndian.PutUint32(out[72:], uint32(base64Pairs[v>>12&0xfff])|uint32(base64Pairs[v&0xfff])<<16)
}
