package metrics

import (
	"context"

	"github.com/securemail/securemail/keystore"
)

// PortalStore wraps the portal's store and counts what only the store
// sees for sure: an account created (a registration), a one-time code
// stored (a code sent), a read recorded in the audit trail (a read).
func (m *Metrics) PortalStore(s keystore.PortalStore) keystore.PortalStore {
	return countingStore{PortalStore: s, m: m}
}

type countingStore struct {
	keystore.PortalStore
	m *Metrics
}

func (c countingStore) CreateAccount(ctx context.Context, a keystore.Account) error {
	err := c.PortalStore.CreateAccount(ctx, a)
	if err == nil {
		c.m.registrations.Inc()
	}
	return err
}

func (c countingStore) PutCode(ctx context.Context, code keystore.Code) error {
	err := c.PortalStore.PutCode(ctx, code)
	if err == nil {
		c.m.codeRequests.WithLabelValues("sent").Inc()
	}
	return err
}

func (c countingStore) RecordRead(ctx context.Context, ev keystore.ReadEvent) error {
	err := c.PortalStore.RecordRead(ctx, ev)
	if err == nil {
		c.m.reads.Inc()
	}
	return err
}
