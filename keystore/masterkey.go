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
type MasterKey struct {
	id   string
	aead cipher.AEAD
}

func newMasterKey(secret []byte) (*MasterKey, error) {
	if len(secret) != MasterKeySize {
		return nil, fmt.Errorf("keystore: master key must be %d bytes, got %d", MasterKeySize, len(secret))
	}
	wrapKey, err := hkdf.Key(sha256.New, secret, nil, wrapLabel, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(wrapKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(keyIDLabel))
	return &MasterKey{id: hex.EncodeToString(mac.Sum(nil)[:8]), aead: aead}, nil
}

// ID names the master key without revealing it; records carry it so a
// rotation knows what to rewrap.
func (m *MasterKey) ID() string { return m.id }

// Wrap encrypts dek for the record id. The result is nonce || ciphertext.
func (m *MasterKey) Wrap(id KeyID, dek []byte, rand io.Reader) ([]byte, error) {
	out := make([]byte, wrapNonce, wrapNonce+len(dek)+m.aead.Overhead())
	if _, err := io.ReadFull(rand, out); err != nil {
		return nil, fmt.Errorf("keystore: wrap nonce: %w", err)
	}
	return m.aead.Seal(out, out[:wrapNonce], dek, id[:]), nil
}

// Unwrap returns the data key of rec.
func (m *MasterKey) Unwrap(rec KeyRecord) ([]byte, error) {
	if rec.MasterKeyID != m.id {
		return nil, ErrWrongMasterKey
	}
	if len(rec.WrappedDEK) < wrapNonce+m.aead.Overhead() {
		return nil, errors.New("keystore: wrapped key too short")
	}
	dek, err := m.aead.Open(nil, rec.WrappedDEK[:wrapNonce], rec.WrappedDEK[wrapNonce:], rec.ID[:])
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
