package boltstore

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
)

// recordSamples are records as encodeKeyRecord writes them (escapes
// included), then layouts only the slow path reads (another order,
// whitespace, a leading zero, trailing bytes).
func recordSamples(t testing.TB) [][]byte {
	t0 := time.Date(2026, 12, 4, 18, 30, 0, 123456789, time.UTC)
	var out [][]byte
	for _, r := range []keystore.KeyRecord{
		{WrappedDEK: []byte{1, 2, 3, 250}, MasterKeyID: "mk1", Sender: "alice@example.test", Recipients: []string{"bob@example.org", "carol@example.net"},
			Created: t0, Expires: t0.Add(2160 * time.Hour), MessageID: "<m1@example.test>", Size: 2048},
		{WrappedDEK: []byte{9}, MasterKeyID: "mk1", Sender: "a@example.test", Recipients: []string{"b@example.org"},
			Created: t0, Expires: t0.Add(2160 * time.Hour), MessageID: "<m2@example.test>", Size: 1, CopyUntil: t0.Add(720 * time.Hour)}, // server copy
		{MasterKeyID: "", Sender: "", Recipients: []string{}, Created: t0, Revoked: t0.Add(time.Hour)}, // shredded
		{WrappedDEK: []byte{}, Sender: "ünï@exämple.test", Recipients: nil, Size: -1},
		{Sender: `"quoted"@example.test`, Recipients: []string{"a\\b@example.test"}, MessageID: "tab\there \u2028 \x01 <>&"},
	} {
		b, err := encodeKeyRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out,
		[]byte(`{"sender":"x@example.test","wrapped_dek":null,"master_key_id":"","recipients":null,"created":"0001-01-01T00:00:00Z","expires":"0001-01-01T00:00:00Z","revoked":"0001-01-01T00:00:00Z","message_id":"","size":0}`),
		[]byte(`{ "wrapped_dek":null,"master_key_id":"","sender":"","recipients":null,"created":"0001-01-01T00:00:00Z","expires":"0001-01-01T00:00:00Z","revoked":"0001-01-01T00:00:00Z","message_id":"","size":0}`),
		[]byte(`{"wrapped_dek":"AQI=","master_key_id":"","sender":"","recipients":[],"created":"2026-12-04T18:30:00+01:00","expires":"0001-01-01T00:00:00Z","revoked":"0001-01-01T00:00:00Z","message_id":"","size":01}`),
		[]byte(`{"wrapped_dek":"AQI","master_key_id":"","sender":"","recipients":[],"created":"0001-01-01T00:00:00Z","expires":"0001-01-01T00:00:00Z","revoked":"0001-01-01T00:00:00Z","message_id":"","size":0}x`),
	)
}

// TestFastRecordDecodeTakesWhatEncodeWrites: every record encodeKeyRecord
// writes without escapes is read by the fast path, and to the same value
// as json.Unmarshal; the others fall back and still decode.
func TestFastRecordDecodeTakesWhatEncodeWrites(t *testing.T) {
	samples := recordSamples(t)
	for i, b := range samples {
		fast, ok := decodeBoltKeyRecordFast(b)
		if i < 5 && !ok {
			t.Errorf("sample %d: a record as encodeKeyRecord writes it took the slow path: %s", i, b)
		}
		if i >= 5 && ok {
			t.Errorf("sample %d: a record in another layout took the fast path: %s", i, b)
		}
		checkSameAsJSON(t, b, fast, ok)
	}
}

// FuzzDecodeKeyRecord: whatever the fast path accepts, json.Unmarshal
// accepts too, with the same result.
func FuzzDecodeKeyRecord(f *testing.F) {
	for _, b := range recordSamples(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeBoltKeyRecordFast(b)
		checkSameAsJSON(t, b, fast, ok)
	})
}

func checkSameAsJSON(t *testing.T, b []byte, fast boltKeyRecord, ok bool) {
	t.Helper()
	if !ok {
		return
	}
	var slow boltKeyRecord
	if err := json.Unmarshal(b, &slow); err != nil {
		t.Fatalf("fast path accepted what json.Unmarshal refuses (%v): %q", err, b)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("fast path read %+v, json.Unmarshal %+v, from %q", fast, slow, b)
	}
}

// BenchmarkDecodeKeyRecord: one listed record, decoded by json.Unmarshal
// (the baseline) and by decodeKeyRecord (fast path first).
func BenchmarkDecodeKeyRecord(b *testing.B) {
	t0 := time.Date(2026, 12, 4, 18, 30, 0, 123456789, time.UTC)
	val, err := encodeKeyRecord(keystore.KeyRecord{WrappedDEK: make([]byte, 60), MasterKeyID: "0123456789abcdef", Sender: "alice@example.test",
		Recipients: []string{"bob@example.org"}, Created: t0, Expires: t0.Add(2160 * time.Hour), MessageID: "<20261204183000.1234@example.test>", Size: 2048})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			var s boltKeyRecord
			if err := json.Unmarshal(val, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decodeKeyRecord", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeKeyRecord(keystore.KeyID{}, val); err != nil {
				b.Fatal(err)
			}
		}
	})
}
