package keystore

import "errors"

// Master-key rotation, as the admin command runs it:
//
//  1. A new key file is written next to the old one.
//  2. StartRotation: new data keys are wrapped under the new key; records
//     wrapped under either key unwrap.
//  3. Store.RewrapKeys rewraps every record still under the old key, in
//     small transactions, while mail flows. Interrupted, it resumes: each
//     record names the key that wraps it.
//  4. When no record is left under the old key, FinishRotation drops it,
//     and the command retires the old file.

// StartRotation makes next the key that wraps new data keys and keeps the
// current one for unwrapping. Starting again with the same next key is a
// no-op; next must hold exactly one key.
func (m *MasterKey) StartRotation(next *MasterKey) error {
	nr := next.ring.Load()
	if nr.previous != nil {
		return errors.New("keystore: the next master key is itself rotating")
	}
	for {
		old := m.ring.Load()
		if old.current.id == nr.current.id {
			return nil
		}
		if old.previous != nil {
			return errors.New("keystore: a rotation to another master key is under way")
		}
		if m.ring.CompareAndSwap(old, &keyRing{current: nr.current, previous: old.current}) {
			return nil
		}
	}
}

// FinishRotation forgets the previous key; records still wrapped under it
// no longer unwrap.
func (m *MasterKey) FinishRotation() {
	for {
		old := m.ring.Load()
		if old.previous == nil || m.ring.CompareAndSwap(old, &keyRing{current: old.current}) {
			return
		}
	}
}

// PreviousID is the id of the key being rotated away from, or "" when no
// rotation is under way.
func (m *MasterKey) PreviousID() string {
	if p := m.ring.Load().previous; p != nil {
		return p.id
	}
	return ""
}
