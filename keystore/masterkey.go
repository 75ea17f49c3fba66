package keystore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// MasterKeySize is the size of the master key file's content.
const MasterKeySize = 32

const (
	wrapLabel  = "securemail/v1 wrap data key"
	keyIDLabel = "securemail/v1 master key id"
	wrapNonce  = 12
)

// ErrWrongMasterKey means a record was wrapped under another master key.
var ErrWrongMasterKey = errors.New("keystore: record was wrapped under a different master key")

// MasterKey wraps and unwraps data keys. It never leaves memory.
//
// During a master-key rotation it holds two keys: new data keys are wrapped
// under the next key, and records wrapped under either key unwrap, so mail
// and the portal go on while the records are rewrapped (see StartRotation).
type MasterKey struct {
	ring atomic.Pointer[keyRing]
}

// keyRing is replaced as a whole, so a reader sees one consistent pair.
type keyRing struct {
	current  *wrapKey
	previous *wrapKey // nil unless a rotation is under way
}

type wrapKey struct {
	id   string
	aead cipher.AEAD
}

func newMasterKey(secret []byte) (*MasterKey, error) {
	k, err := newWrapKey(secret)
	if err != nil {
		return nil, err
	}
	m := &MasterKey{}
	m.ring.Store(&keyRing{current: k})
	return m, nil
}

func newWrapKey(secret []byte) (*wrapKey, error) {
	if len(secret) != MasterKeySize {
		return nil, fmt.Errorf("keystore: master key must be %d bytes, got %d", MasterKeySize, len(secret))
	}
	wrapSecret, err := hkdf.Key(sha256.New, secret, nil, wrapLabel, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(wrapSecret)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(keyIDLabel))
	return &wrapKey{id: hex.EncodeToString(mac.Sum(nil)[:8]), aead: aead}, nil
}

// ID names the master key that wraps new data keys, without revealing it;
// records carry it so a rotation knows what to rewrap.
func (m *MasterKey) ID() string { return m.ring.Load().current.id }

// Wrap encrypts dek for the record id under the current key. The result is
// nonce || ciphertext. Use WrapKey when the record is being built: it
// names the key that wrapped, even if a rotation starts meanwhile.
func (m *MasterKey) Wrap(id KeyID, dek []byte, rand io.Reader) ([]byte, error) {
	wrapped, _, err := m.WrapKey(id, dek, rand)
	return wrapped, err
}

// WrapKey encrypts dek for the record id and returns the wrapped key and
// the id of the master key that wrapped it.
func (m *MasterKey) WrapKey(id KeyID, dek []byte, rand io.Reader) (wrapped []byte, masterKeyID string, err error) {
	k := m.ring.Load().current
	out := make([]byte, wrapNonce, wrapNonce+len(dek)+k.aead.Overhead())
	if _, err := io.ReadFull(rand, out); err != nil {
		return nil, "", fmt.Errorf("keystore: wrap nonce: %w", err)
	}
	return k.aead.Seal(out, out[:wrapNonce], dek, id[:]), k.id, nil
}

// Unwrap returns the data key of rec, wrapped under the current key or,
// during a rotation, the previous one.
func (m *MasterKey) Unwrap(rec KeyRecord) ([]byte, error) {
	ring := m.ring.Load()
	k := ring.current
	if rec.MasterKeyID != k.id {
		if ring.previous == nil || rec.MasterKeyID != ring.previous.id {
			return nil, ErrWrongMasterKey
		}
		k = ring.previous
	}
	if len(rec.WrappedDEK) < wrapNonce+k.aead.Overhead() {
		return nil, errors.New("keystore: wrapped key too short")
	}
	dek, err := k.aead.Open(nil, rec.WrappedDEK[:wrapNonce], rec.WrappedDEK[wrapNonce:], rec.ID[:])
	if err != nil {
		return nil, errors.New("keystore: wrapped key does not authenticate")
	}
	return dek, nil
}

// LoadMasterKey reads the master key file at path. It refuses a file that
// group or others may access.
func LoadMasterKey(path string) (*MasterKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keystore: master key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keystore: master key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keystore: master key file %s has mode %04o; it must not be readable by group or others (chmod 600)", path, perm)
	}
	secret, err := io.ReadAll(io.LimitReader(f, MasterKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("keystore: master key: %w", err)
	}
	if len(secret) != MasterKeySize {
		return nil, fmt.Errorf("keystore: master key file %s must hold exactly %d bytes", path, MasterKeySize)
	}
	return newMasterKey(secret)
}

// CreateMasterKey writes a new random master key to path, which must not
// exist, with mode 0600, and syncs it before returning.
func CreateMasterKey(path string, rand io.Reader) (*MasterKey, error) {
	secret := make([]byte, MasterKeySize)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return nil, fmt.Errorf("keystore: create master key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keystore: create master key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: create master key: %w", err)
	}
	_, err = f.Write(secret)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("keystore: create master key: %w", err)
	}
	return newMasterKey(secret)
}

// DataKey looks up the record id in store and returns its unwrapped data
// key, refusing records that are revoked or expired at now.
func (m *MasterKey) DataKey(ctx context.Context, store KeyStore, id KeyID, now time.Time) ([]byte, KeyRecord, error) {
	rec, err := store.Key(ctx, id)
	if err != nil {
		return nil, KeyRecord{}, err
	}
	if err := rec.Usable(now); err != nil {
		return nil, rec, err
	}
	dek, err := m.Unwrap(rec)
	return dek, rec, err
}
