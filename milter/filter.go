// Package milter is securemail's mail filter: it decides, per message, whether
// a message is passed, sealed or refused, and seals it through package
// envelope with a key committed to package keystore.
//
// # Policy
//
//	situation                                          action
//	submission: {auth_authen} set, or client in
//	  Policy.TrustedNetworks                           policy applies
//	not a submission (mail from the internet)          accept untouched, no key
//	submission without TLS ({tls_version} empty),
//	  client not in Policy.TLSExemptNetworks           530 5.7.0 at MAIL FROM
//	body bytes pass Policy.MaxMessageSize              552 5.3.4 at once
//	subject carries Policy.SubjectTag (any Subject,
//	  any case, unfolded, RFC 2047 decoded), or
//	  Policy.TriggerHeader is yes/true/1               triggered
//	triggered, sender not in Policy.Senders (when
//	  RestrictSenders is set)                          550 5.7.1 at end of headers
//	triggered, every recipient internal                deliver, tag stripped
//	triggered, some recipient external                 seal for all recipients
//	any internal error while handling a triggered
//	  message (keystore, disk, master key, panic,
//	  timeout)                                         451 4.3.0
//
// A triggered message is answered only after its key record is committed;
// a triggered message never leaves in plaintext. With Config.LinkFallback
// the envelope's server copy is stored in the same transaction as the key,
// behind a random 128-bit link token that the notice carries (the store
// keeps only its digest); a copy that cannot be stored refuses the message
// with 451 4.3.0 and commits no key.
//
// # What the MTA must send
//
// Decisions use only what arrives with the message itself, because
// go-milter starts a fresh backend after every final reply: the macros
// {auth_authen}, {tls_version}, {client_addr} and i are asked for at MAIL
// FROM (SMFIC_OPTNEG symbol list, and the MTA's milter_mail_macros or
// confMILTER_MACROS_ENVFROM), and headers are kept per message from the
// Header callback.
//
// # Entitlement
//
// A host that sells encryption as a feature sets Policy.RestrictSenders and
// lists who has it in Policy.Senders. The sender checked is the SMTP AUTH
// identity ({auth_authen}) when there is one, so a forged From or envelope
// sender gains nothing; otherwise (a client of Policy.TrustedNetworks) the
// envelope sender. A triggered message from anyone else is refused with
// 550 5.7.1 and a sentence that tells the user what to do: it is neither
// sealed nor delivered in plaintext. Untriggered mail is not looked at.
//
// # Reload
//
// The policy is an immutable snapshot that SetPolicy swaps atomically. A
// message takes the snapshot in force at its MAIL FROM and is decided under
// it to the end, whatever reloads happen meanwhile.
package milter

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/securemail/securemail/keystore"
)

// Policy is the operator's policy; see the package doc.
type Policy struct {
	// InternalDomains are the host's own domains: "example.com", and
	// ".example.com" for every subdomain (see ReadList).
	InternalDomains []string
	// RestrictSenders limits sealing to Senders; unset, every submitter
	// may seal (and Senders is ignored).
	RestrictSenders bool
	// Senders are who may send encrypted mail when RestrictSenders is
	// set: addresses or login names, "@example.com" and ".example.com"
	// (see ReadList).
	Senders []string
	// Brands maps a sender domain to how its sealed messages look and
	// which reading site they name; the entry "" applies to every other
	// domain. Without an entry: the neutral look and Config.PortalURL.
	Brands            map[string]Branding
	TrustedNetworks   []netip.Prefix
	TLSExemptNetworks []netip.Prefix
	RequireTLS        bool
	MaxMessageSize    int64
	SubjectTag        string
	TriggerHeader     string
}

// Config is everything a Filter needs.
type Config struct {
	Policy    Policy
	PortalURL string
	// KeyLifetime is how long a sealed message stays readable.
	KeyLifetime time.Duration
	// LinkFallback keeps a copy of every sealed envelope in Copies for
	// LinkRetention (never past the key's expiry) and puts a link to it
	// in the notice, for recipients whose phone cannot post the
	// attachment's form. Copies must be the store Store is: the key
	// record is committed through Copies, with its copy, in one
	// transaction; when that fails the message is refused with 451 4.3.0
	// like any other store failure.
	LinkFallback  bool
	LinkRetention time.Duration
	Copies        keystore.CopyStore
	// SpoolDir receives envelopes larger than SpoolMemory while in flight.
	SpoolDir    string
	SpoolMemory int
	// KeystoreTimeout bounds a key commit; past it the message is refused
	// with a temporary failure.
	KeystoreTimeout time.Duration
	// PeerTimeout is how long the MTA may stay silent while a message is
	// in flight before the filter takes it for gone (see conn.go).
	// Default DefaultPeerTimeout.
	PeerTimeout time.Duration

	Store     keystore.KeyStore
	MasterKey *keystore.MasterKey
	Logger    *slog.Logger
	// Events, if set, is told what the filter does, for metrics.
	Events Events

	// Now and Rand default to the clock and crypto/rand; tests pin them.
	Now  func() time.Time
	Rand io.Reader
}

// Filter holds what lives longer than a message. It is safe for
// concurrent use by many sessions.
type Filter struct {
	cfg    Config
	policy atomic.Pointer[policySnapshot]

	mu        sync.Mutex
	inflight  int
	draining  bool
	idle      chan struct{} // closed when draining and inflight reaches 0
	conns     map[*trackedConn]struct{}
	listeners []net.Listener
}

// NewFilter checks cfg and returns a Filter.
func NewFilter(cfg Config) (*Filter, error) {
	if cfg.Store == nil || cfg.MasterKey == nil {
		return nil, errors.New("milter: a key store and a master key are required")
	}
	pol, err := compilePolicy(cfg.Policy)
	if err != nil {
		return nil, err
	}
	if cfg.KeyLifetime <= 0 {
		return nil, errors.New("milter: key lifetime must be positive")
	}
	if cfg.SpoolDir == "" {
		return nil, errors.New("milter: spool directory is required")
	}
	if cfg.LinkFallback && (cfg.Copies == nil || cfg.LinkRetention <= 0) {
		return nil, errors.New("milter: the link fallback needs a copy store and a positive retention")
	}
	if cfg.SpoolMemory <= 0 {
		cfg.SpoolMemory = 256 << 10
	}
	if cfg.KeystoreTimeout <= 0 {
		cfg.KeystoreTimeout = 15 * time.Second
	}
	if cfg.PeerTimeout <= 0 {
		cfg.PeerTimeout = DefaultPeerTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Events == nil {
		cfg.Events = noEvents{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	f := &Filter{cfg: cfg, conns: map[*trackedConn]struct{}{}}
	f.policy.Store(pol)
	return f, nil
}

func inPrefixes(addr netip.Addr, prefixes []netip.Prefix) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseClientAddr reads the {client_addr} macro; Sendmail writes IPv6
// addresses as "IPv6:...".
func parseClientAddr(s string) netip.Addr {
	s = strings.TrimPrefix(strings.TrimSpace(s), "IPv6:")
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// MacroNeed is a macro the filter reads at MAIL FROM and what goes wrong
// when the MTA does not send it (empty: nothing, it is only logged).
type MacroNeed struct {
	Name    string
	Without string
}

// MailMacros are the macros the filter asks the MTA for at MAIL FROM (in
// the milter handshake's symbol list). check-config compares the MTA's own
// macro settings with this list.
var MailMacros = []MacroNeed{
	{"{auth_authen}", "authenticated submissions look like mail from the internet and pass unencrypted"},
	{"{tls_version}", "every submission counts as plaintext and policy.require_tls refuses it"},
	{"{cipher}", ""},
	{"{client_addr}", "policy.trusted_networks and policy.tls_exempt_networks never match"},
	{"i", "log lines carry no queue id"},
}

// Macros the filter asks the MTA for at MAIL FROM and at end of message.
var (
	mailMacros = macroNames(MailMacros)
	eomMacros  = []string{"i"}
)

func macroNames(needs []MacroNeed) []string {
	names := make([]string, len(needs))
	for i, n := range needs {
		names[i] = n.Name
	}
	return names
}

// Server returns a go-milter server whose sessions use f.
func (f *Filter) Server() *gomilter.Server {
	return &gomilter.Server{
		NewMilter: func() gomilter.Milter { return &session{f: f} },
		Actions:   gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptChangeBody | gomilter.OptSetSymList,
		Protocol:  gomilter.OptNoUnknown,
		SymList: map[gomilter.Stage][]string{
			gomilter.StageMailFrom: mailMacros,
			gomilter.StageEOM:      eomMacros,
		},
	}
}

// Serve runs sessions for connections from ln until Shutdown, which closes
// ln. Each connection gets its own go-milter server (see serveConn), so the
// filter knows which connection a message came on and can end it when the
// MTA goes away. (go-milter's Server.Close is not safe to call while Serve
// runs, so the filter closes its listeners itself.)
func (f *Filter) Serve(srv *gomilter.Server, ln net.Listener) error {
	f.mu.Lock()
	if f.draining {
		f.mu.Unlock()
		return ln.Close()
	}
	f.listeners = append(f.listeners, ln)
	f.mu.Unlock()
	defer ln.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.isDraining() && errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go f.serveConn(srv, c)
	}
}

// Shutdown closes the listeners, refuses new messages (451 4.3.2), waits
// until the messages in flight are answered or ctx ends, then ends every
// connection: after its pending reply, or at once when ctx ended first.
func (f *Filter) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.draining = true
	if f.idle == nil {
		f.idle = make(chan struct{})
		if f.inflight == 0 {
			close(f.idle)
		}
	}
	idle := f.idle
	listeners := f.listeners
	f.listeners = nil
	f.mu.Unlock()
	for _, ln := range listeners {
		ln.Close()
	}

	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = fmt.Errorf("milter: %d message(s) still in flight at shutdown: %w", f.inFlight(), ctx.Err())
	}
	f.mu.Lock()
	open := make([]*trackedConn, 0, len(f.conns))
	for c := range f.conns {
		open = append(open, c)
	}
	f.mu.Unlock()
	for _, c := range open {
		if err != nil {
			c.forceClose()
			continue
		}
		// The last message's final reply may still be on its way out: a
		// read deadline in the past ends the session at its next read,
		// after that reply is written, and frees idle connections at once.
		c.expire()
	}
	return err
}

func (f *Filter) isDraining() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.draining
}

func (f *Filter) inFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inflight
}

// beginMessage counts a message in; it fails while shutting down.
func (f *Filter) beginMessage() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.draining {
		return false
	}
	f.inflight++
	return true
}

func (f *Filter) endMessage() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight--
	if f.inflight == 0 && f.idle != nil {
		select {
		case <-f.idle:
		default:
			close(f.idle)
		}
	}
}

// commitKey stores rec durably within the keystore timeout.
func (f *Filter) commitKey(rec keystore.KeyRecord) error {
	start := time.Now()
	defer func() { f.cfg.Events.KeyCommitted(time.Since(start)) }()
	return f.storeCall("key commit", func(ctx context.Context) error { return f.cfg.Store.CreateKey(ctx, rec) })
}

// commitKeyWithCopy stores rec and its server copy in one transaction
// within the keystore timeout.
func (f *Filter) commitKeyWithCopy(rec keystore.KeyRecord, c keystore.ServerCopy, env io.Reader) error {
	start := time.Now()
	defer func() { f.cfg.Events.KeyCommitted(time.Since(start)) }()
	return f.storeCall("key commit with server copy", func(ctx context.Context) error {
		return f.cfg.Copies.CreateKeyWithCopy(ctx, rec, c, env)
	})
}

// storeCall runs one store write within the keystore timeout.
func (f *Filter) storeCall(what string, call func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.KeystoreTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// This goroutine is outside the session's guard: a panicking store
		// must still end as an error, not take the daemon down.
		defer func() {
			if v := recover(); v != nil {
				done <- fmt.Errorf("%s: store panicked: %v", what, v)
			}
		}()
		done <- call(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
}
