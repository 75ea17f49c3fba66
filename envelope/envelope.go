// Package envelope defines the securemail envelope: the encrypted form of one
// message, the SecureMessageATT.html page that carries it, and the MIME body
// that replaces the original message. The package is pure: no network, no
// database, no clock or randomness of its own (callers pass them in).
//
// # Envelope format, version 1
//
// An envelope is a header followed by a payload:
//
//	header  = magic version key-id salt
//	magic   = "SMENV"                 5 bytes
//	version = 0x01                    1 byte
//	key-id  = 16 bytes                names the key record that holds the data key
//	salt    = 16 random bytes
//	payload = 1*chunk
//
// The payload is the original message exactly as received (header fields and
// body, CRLF line ends as the MTA handed them over), encrypted with a STREAM
// construction modelled on age's (C2SP age, "payload"):
//
//   - The data key (DEK) is 32 random bytes, one per message. It is never
//     written into the envelope; the keystore keeps it, wrapped.
//   - The chunk key is HKDF-SHA-256(ikm = DEK, salt = salt,
//     info = "securemail/v1 payload"), 32 bytes, used with AES-256-GCM.
//   - The plaintext is cut into chunks of 64 KiB; only the last may be
//     shorter, and it may be empty only when it is the only chunk.
//   - Chunk i is sealed with nonce = 11-byte big-endian i || flag, where flag
//     is 0x01 for the last chunk and 0x00 otherwise, and with the whole
//     header as additional data, so a changed header fails every chunk.
//   - A reader releases a chunk's plaintext only after its tag verified, and
//     reports the end only after a chunk flagged last verified and no byte
//     follows it. Truncation, reordering, duplication, extension, trailing
//     data, a changed header and a wrong key are all errors.
//
// # Transport
//
// The envelope travels as standard base64 (RFC 4648 section 4) in lines of 76
// characters, ended by CRLF, inside the textarea named "envelope" of the page
// SecureMessageATT.html. The page's form posts multipart/form-data with the
// fields v ("1"), id (the key id, 32 lowercase hex digits) and envelope to
// the portal's /open. The page is 7-bit ASCII (every other character is a
// numeric character reference) with lines well under 998 octets, so the
// attachment goes out with Content-Transfer-Encoding: 7bit: the base64 inside
// is the only encoding layer. The page works without JavaScript and never
// contains a password field.
//
// # Replacement body
//
// The sealed message is multipart/mixed: first a multipart/alternative notice
// (text/plain and text/html, quoted-printable UTF-8) naming the sender and the
// portal address and telling mobile users what to do, then the page as an
// attachment named SecureMessageATT.html. When the sender's service keeps a
// copy of the envelope (Notice.Link), the notice gives the link to it and
// explains the two ways in: the attachment, or the link from a phone. The
// notice and the page speak Notice.Lang, with their sentences from
// internal/catalog; the form (field names, action) is the same in every
// language.
//
// # Backwards compatibility
//
// Readers must refuse versions they do not know. A new version gets a new
// version byte and a new HKDF label; version 1 envelopes stay readable as long
// as their key records live.
package envelope

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

const (
	// Version is the envelope format version this package writes.
	Version = 1
	// DataKeySize is the size of a message's data key.
	DataKeySize = 32
	// KeyIDSize is the size of a key record id.
	KeyIDSize = 16

	magic      = "SMENV"
	saltSize   = 16
	headerSize = len(magic) + 1 + KeyIDSize + saltSize
)

// Header errors.
var (
	ErrNotEnvelope = errors.New("envelope: not a securemail envelope")
	ErrVersion     = errors.New("envelope: unsupported envelope version")
)

// KeyID names the key record that holds an envelope's data key.
type KeyID [KeyIDSize]byte

// String returns the id as 32 lowercase hex digits, the form used in pages,
// logs and the keystore's API.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// ParseKeyID parses the form String returns.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	if len(s) != 2*KeyIDSize {
		return id, fmt.Errorf("envelope: key id must be %d hex digits", 2*KeyIDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("envelope: key id is not hex")
	}
	return id, nil
}

// Header is the clear part of an envelope.
type Header struct {
	KeyID KeyID
	Salt  [saltSize]byte
}

// NewHeader returns a header for keyID with a salt read from rand.
func NewHeader(keyID KeyID, rand io.Reader) (Header, error) {
	h := Header{KeyID: keyID}
	if _, err := io.ReadFull(rand, h.Salt[:]); err != nil {
		return Header{}, fmt.Errorf("envelope: read salt: %w", err)
	}
	return h, nil
}

// Marshal returns the header's wire form.
func (h Header) Marshal() []byte {
	b := make([]byte, 0, headerSize)
	b = append(b, magic...)
	b = append(b, Version)
	b = append(b, h.KeyID[:]...)
	return append(b, h.Salt[:]...)
}

// ReadHeader reads and checks an envelope's header from r, leaving r at the
// payload.
func ReadHeader(r io.Reader) (Header, error) {
	var b [headerSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Header{}, ErrNotEnvelope
		}
		return Header{}, err
	}
	if !bytes.Equal(b[:len(magic)], []byte(magic)) {
		return Header{}, ErrNotEnvelope
	}
	if b[len(magic)] != Version {
		return Header{}, ErrVersion
	}
	var h Header
	copy(h.KeyID[:], b[len(magic)+1:])
	copy(h.Salt[:], b[len(magic)+1+KeyIDSize:])
	return h, nil
}

// Seal writes h to dst and returns a writer that encrypts the payload into
// dst under dek. The caller must Close it to write the last chunk.
func Seal(dst io.Writer, dek []byte, h Header) (*Writer, error) {
	w, err := newWriter(dst, dek, h)
	if err != nil {
		return nil, err
	}
	if _, err := dst.Write(h.Marshal()); err != nil {
		return nil, err
	}
	return w, nil
}

// Open returns a reader of the payload that follows h in src, decrypted under
// dek. Read errors other than io.EOF mean the envelope is not authentic or
// not whole; plaintext already returned was authentic chunk by chunk, but
// the message as a whole is not until Read returns io.EOF.
func Open(src io.Reader, dek []byte, h Header) (*Reader, error) {
	return newReader(src, dek, h)
}
