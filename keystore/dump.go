package keystore

import (
	"context"
	"encoding/json"
	"io"
	"time"
)

// A dump is a backend-neutral copy of a store: a stream of items, one
// record each. Backends that keep their data outside one file (PostgreSQL,
// memory) write it as their Backup, and `securemail migrate` reads one
// backend's dump into another.

// Limit is one window of PortalStore.Hit.
type Limit struct {
	Key   string
	Start time.Time
	End   time.Time
	Count int
}

// Item is one record of a dump; exactly one field is set.
type Item struct {
	Key      *KeyRecord `json:"key,omitempty"`
	Account  *Account   `json:"account,omitempty"`
	Code     *Code      `json:"code,omitempty"`
	Session  *Session   `json:"session,omitempty"`
	Throttle *Throttle  `json:"throttle,omitempty"`
	Limit    *Limit     `json:"limit,omitempty"`
	Read     *ReadEvent `json:"read,omitempty"`
	Copy     *CopyItem  `json:"copy,omitempty"`
}

// CopyItem is a server copy in a dump: its description and, unless it was
// deleted, its envelope.
type CopyItem struct {
	ServerCopy
	Envelope []byte `json:"envelope,omitempty"`
}

// Exporter is a store that can list everything it holds.
type Exporter interface {
	// Export calls fn for every record, as of one consistent view, until
	// fn returns an error, which Export returns.
	Export(ctx context.Context, fn func(Item) error) error
}

// Importer is a store that can take a dump.
type Importer interface {
	// Import stores items and is idempotent: a record that exists already
	// (same key id, address, session digest, ...) is left as it is, so an
	// interrupted import can run again from the start.
	Import(ctx context.Context, items []Item) error
}

// WriteDump writes what export lists to w as JSON lines and returns the
// bytes written.
func WriteDump(ctx context.Context, w io.Writer, export Exporter) (int64, error) {
	cw := &countingWriter{w: w}
	enc := json.NewEncoder(cw)
	err := export.Export(ctx, func(it Item) error { return enc.Encode(it) })
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
