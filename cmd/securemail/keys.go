package main

// securemail keys: list, show, revoke, expire and sweep key records, in
// the running service or, when it is down, on the store directly.

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/milter"
)

// adminNow is the clock of the admin operations; tests override it.
var adminNow = time.Now

func init() {
	registerAdminOp("keys.list", adminOp{run: opKeysList})
	registerAdminOp("keys.show", adminOp{run: opKeysShow})
	registerAdminOp("keys.revoke", adminOp{run: opKeysRevoke, writable: true})
	registerAdminOp("keys.expire", adminOp{run: opKeysExpire, writable: true})
	registerAdminOp("keys.sweep", adminOp{run: opKeysSweep, writable: true})
}

// keySelection is how the commands name key records.
type keySelection struct {
	IDs       []string  `json:"ids,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	Sender    string    `json:"sender,omitempty"`
	Recipient string    `json:"recipient,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Before    time.Time `json:"before,omitzero"`
	Expired   bool      `json:"expired,omitempty"`
}

func (s keySelection) filter(at time.Time) keystore.KeyFilter {
	f := keystore.KeyFilter{Sender: s.Sender, Recipient: s.Recipient, MessageID: s.MessageID, Since: s.Since, Before: s.Before}
	if s.Expired {
		f.ExpiredAt = at
	}
	return f
}

// each calls fn for every selected record: the named ids (each must
// exist), or the records the filter selects, paced by a listPacer so a
// long walk yields to the mail serve handles.
func (s keySelection) each(ctx context.Context, env *adminEnv, fn func(keystore.KeyRecord) error) error {
	keys := env.store
	if len(s.IDs) == 0 {
		pace := newListPacer(env.mail)
		return env.store.EachKey(ctx, s.filter(adminNow()), func(rec keystore.KeyRecord) error {
			if err := pace.tick(ctx); err != nil {
				return err
			}
			return fn(rec)
		})
	}
	for _, raw := range s.IDs {
		id, err := parseKeyID(raw)
		if err != nil {
			return err
		}
		rec, err := keys.Key(ctx, id)
		if errors.Is(err, keystore.ErrNotFound) {
			return fmt.Errorf("no key %s", id)
		}
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

func parseKeyID(s string) (keystore.KeyID, error) {
	var id keystore.KeyID
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%q is not a key id (32 hex digits, as keys list prints them)", s)
	}
	copy(id[:], b)
	return id, nil
}

// parseWhen reads a point in time: RFC 3339, a date (2026-12-01, UTC), or
// a duration back from now (36h, 7d).
func parseWhen(s string, at time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return at.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return at.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: give 2026-12-01, 2026-12-01T15:04:05Z, or an age such as 36h or 7d", s)
}

// keyView is a key record as the commands print it; its JSON field names
// are the --json output format.
type keyView struct {
	ID          string     `json:"id"`
	Sender      string     `json:"sender"`
	Recipients  []string   `json:"recipients"`
	MessageID   string     `json:"message_id"`
	Size        int64      `json:"size"`
	Created     time.Time  `json:"created"`
	Expires     time.Time  `json:"expires"`
	Revoked     *time.Time `json:"revoked,omitempty"`
	State       string     `json:"state"`
	MasterKeyID string     `json:"master_key_id,omitempty"`
	Shredded    bool       `json:"shredded"`
	// ServerCopy is keys show's: the envelope kept for the phone link.
	ServerCopy *copyView  `json:"server_copy,omitempty"`
	Reads      []readView `json:"reads,omitempty"`
}

// copyView is a key's server copy as keys show prints it. State is "kept"
// (the link works), "deleted" (with the time) or "missing" (the record
// says a copy was kept, and the store has none: restored from a dump
// without it).
type copyView struct {
	State   string     `json:"state"`
	Until   time.Time  `json:"until"`
	Size    int64      `json:"size,omitempty"`
	Deleted *time.Time `json:"deleted,omitempty"`
}

// viewCopy looks up rec's server copy, if its record says it had one.
func viewCopy(ctx context.Context, store keystore.CopyStore, rec keystore.KeyRecord, at time.Time) (*copyView, error) {
	if rec.CopyUntil.IsZero() {
		return nil, nil
	}
	c, err := store.CopyOf(ctx, rec.ID)
	if errors.Is(err, keystore.ErrNotFound) {
		return &copyView{State: "missing", Until: rec.CopyUntil}, nil
	}
	if err != nil {
		return nil, err
	}
	v := &copyView{State: "kept", Until: c.Until, Size: c.Size}
	switch {
	case !c.Deleted.IsZero():
		d := c.Deleted
		v.State, v.Deleted = "deleted", &d
	case !c.Kept(at) || rec.Usable(at) != nil:
		// Past its end, waiting for the sweep: the portal serves it no
		// more.
		v.State = "ended"
	}
	return v, nil
}

type readView struct {
	Reader string    `json:"reader"`
	At     time.Time `json:"at"`
	Remote string    `json:"remote"`
}

func viewKey(rec keystore.KeyRecord, at time.Time) keyView {
	v := keyView{
		ID: rec.ID.String(), Sender: rec.Sender, Recipients: rec.Recipients, MessageID: rec.MessageID,
		Size: rec.Size, Created: rec.Created, Expires: rec.Expires, State: "live",
		MasterKeyID: rec.MasterKeyID, Shredded: len(rec.WrappedDEK) == 0,
	}
	if !rec.Revoked.IsZero() {
		r := rec.Revoked
		v.Revoked = &r
	}
	v.State = keyState(rec, at)
	if v.Shredded {
		v.MasterKeyID = ""
	}
	return v
}

// keyState is a record's state at at: live, revoked or expired.
func keyState(rec keystore.KeyRecord, at time.Time) string {
	switch err := rec.Usable(at); {
	case errors.Is(err, keystore.ErrRevoked):
		return "revoked"
	case errors.Is(err, keystore.ErrExpired):
		return "expired"
	}
	return "live"
}

const timeFmt = "2006-01-02T15:04:05Z"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeFmt)
}

// keyLine is one line of keys list: id, created, expires, state, sender,
// recipients, message-id.
func keyLine(v keyView) string { return string(appendKeyLine(nil, v)) }

// appendKeyLine appends keyLine's line to buf without fmt.
func appendKeyLine(buf []byte, v keyView) []byte {
	buf = append(buf, v.ID...)
	return appendLineRest(buf, v.Created, v.Expires, v.State, v.Sender, v.Recipients, v.MessageID)
}

// appendRecordLine appends rec's line of keys list, as keyLine(viewKey(rec,
// at)) gives it, without the view's allocations: a listing of 100 000
// keys formats into one reused buffer.
func appendRecordLine(buf []byte, rec keystore.KeyRecord, at time.Time) []byte {
	buf = hex.AppendEncode(buf, rec.ID[:])
	return appendLineRest(buf, rec.Created, rec.Expires, keyState(rec, at), rec.Sender, rec.Recipients, rec.MessageID)
}

// appendLineRest appends what follows the id on a line of keys list.
func appendLineRest(buf []byte, created, expires time.Time, state, sender string, recipients []string, messageID string) []byte {
	buf = append(buf, "  "...)
	buf = appendListTime(buf, created)
	buf = append(buf, "  "...)
	buf = appendListTime(buf, expires)
	buf = append(buf, "  "...)
	buf = append(buf, state...)
	for i := len(state); i < 7; i++ {
		buf = append(buf, ' ')
	}
	buf = append(buf, "  "...)
	buf = append(buf, orDash(sender)...)
	buf = append(buf, " -> "...)
	for i, r := range recipients {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, r...)
	}
	buf = append(buf, "  "...)
	buf = append(buf, orDash(messageID)...)
	return append(buf, '\n')
}

// appendListTime appends t as fmtTime writes it, in UTC to the second.
func appendListTime(buf []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(buf, '-')
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return t.AppendFormat(buf, timeFmt)
	}
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	two := func(buf []byte, n int) []byte { return append(buf, byte('0'+n/10), byte('0'+n%10)) }
	buf = two(two(buf, year/100), year%100)
	buf = two(append(buf, '-'), int(month))
	buf = two(append(buf, '-'), day)
	buf = two(append(buf, 'T'), hour)
	buf = two(append(buf, ':'), minute)
	buf = two(append(buf, ':'), sec)
	return append(buf, 'Z')
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type listArgs struct {
	Select keySelection `json:"select"`
	JSON   bool         `json:"json"`
}

// jsonList writes a JSON array one element at a time.
type jsonList struct {
	w io.Writer
	n int
}

func (l *jsonList) add(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sep := ",\n"
	if l.n == 0 {
		sep = "[\n"
	}
	l.n++
	if _, err := io.WriteString(l.w, sep); err != nil {
		return err
	}
	_, err = l.w.Write(b)
	return err
}

func (l *jsonList) end() error {
	if l.n == 0 {
		_, err := io.WriteString(l.w, "[]\n")
		return err
	}
	_, err := io.WriteString(l.w, "\n]\n")
	return err
}

// listPaceEvery is how many listed records a listPacer lets through
// between looks at the mail.
const listPaceEvery = 1024

// listBusyRest is how many times as long as it worked a listing rests
// while mail flows: it then takes at most a tenth of one core. Serve and
// the MTA need the CPU more than the operator needs the listing at once
// (BENCHMARKS.md, "Issue 10: admin commands on the live service").
const listBusyRest = 9

// listPacer makes a long walk over the key records yield to mail: after
// every listPaceEvery records it asks whether mail is flowing, and if so
// sleeps listBusyRest times as long as it worked since its last look;
// when none flows it goes on at once.
type listPacer struct {
	mail  *mailActivity // nil: nothing to yield to (the command runs on the store itself)
	seen  uint64        // mail.done at the last look
	n     int
	since time.Time
	sleep func(ctx context.Context, d time.Duration) error // sleepCtx; tests record instead
}

func newListPacer(mail *mailActivity) *listPacer {
	p := &listPacer{mail: mail, since: time.Now(), sleep: sleepCtx}
	if mail != nil {
		p.seen = mail.done.Load()
	}
	return p
}

func (p *listPacer) tick(ctx context.Context) error {
	p.n++
	if p.n%listPaceEvery != 0 || p.mail == nil {
		return nil
	}
	done := p.mail.done.Load()
	busy := p.mail.sessions.Load() > 0 || done != p.seen
	p.seen = done
	if busy {
		if err := p.sleep(ctx, time.Duration(listBusyRest)*time.Since(p.since)); err != nil {
			return err
		}
	}
	p.since = time.Now()
	return nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// mailActivity is the milter's events as serve reports them, counted for
// listPacer: MTA connections open now, and messages done so far.
type mailActivity struct {
	milter.Events
	sessions atomic.Int64
	done     atomic.Uint64
}

func (a *mailActivity) SessionOpened() {
	a.sessions.Add(1)
	a.Events.SessionOpened()
}

func (a *mailActivity) SessionClosed() {
	a.sessions.Add(-1)
	a.Events.SessionClosed()
}

func (a *mailActivity) MessageDone(verdict, reason string) {
	a.done.Add(1)
	a.Events.MessageDone(verdict, reason)
}

type countResult struct {
	Count int      `json:"count"`
	IDs   []string `json:"ids,omitempty"`
}

func opKeysList(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	var a listArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	at := adminNow()
	bw := bufio.NewWriterSize(out, 64<<10)
	list := &jsonList{w: bw}
	n := 0
	var line []byte
	err := a.Select.each(ctx, env, func(rec keystore.KeyRecord) error {
		n++
		if a.JSON {
			return list.add(viewKey(rec, at))
		}
		line = appendRecordLine(line[:0], rec, at)
		_, err := bw.Write(line)
		return err
	})
	if err != nil {
		return nil, err
	}
	if a.JSON {
		if err := list.end(); err != nil {
			return nil, err
		}
	}
	return countResult{Count: n}, bw.Flush()
}

type showArgs struct {
	ID        string `json:"id"`
	MessageID string `json:"message_id"`
	JSON      bool   `json:"json"`
}

func opKeysShow(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	var a showArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	sel := keySelection{MessageID: a.MessageID}
	if a.ID != "" {
		sel = keySelection{IDs: []string{a.ID}}
	}
	at := adminNow()
	var views []keyView
	err := sel.each(ctx, env, func(rec keystore.KeyRecord) error {
		reads, err := env.store.Reads(ctx, rec.ID)
		if err != nil {
			return err
		}
		v := viewKey(rec, at)
		if v.ServerCopy, err = viewCopy(ctx, env.store, rec, at); err != nil {
			return err
		}
		v.Reads = []readView{}
		for _, r := range reads {
			v.Reads = append(v.Reads, readView{Reader: r.Reader, At: r.At, Remote: r.Remote})
		}
		views = append(views, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(views) == 0 {
		return nil, fmt.Errorf("no key with message-id %s", a.MessageID)
	}
	if a.JSON {
		list := &jsonList{w: out}
		for _, v := range views {
			if err := list.add(v); err != nil {
				return nil, err
			}
		}
		return countResult{Count: len(views)}, list.end()
	}
	var b strings.Builder
	for i, v := range views {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "key         %s\n", v.ID)
		fmt.Fprintf(&b, "sender      %s\n", orDash(v.Sender))
		fmt.Fprintf(&b, "recipients  %s\n", strings.Join(v.Recipients, ", "))
		fmt.Fprintf(&b, "message-id  %s\n", orDash(v.MessageID))
		fmt.Fprintf(&b, "size        %d\n", v.Size)
		fmt.Fprintf(&b, "created     %s\n", fmtTime(v.Created))
		fmt.Fprintf(&b, "expires     %s\n", fmtTime(v.Expires))
		state := v.State
		if v.Revoked != nil {
			state += " at " + fmtTime(*v.Revoked)
		}
		fmt.Fprintf(&b, "state       %s\n", state)
		if v.Shredded {
			fmt.Fprintf(&b, "data key    deleted (no copy of the message can be opened)\n")
		} else {
			fmt.Fprintf(&b, "data key    wrapped by master key %s\n", v.MasterKeyID)
		}
		fmt.Fprintf(&b, "server copy %s\n", copyLine(v.ServerCopy))
		fmt.Fprintf(&b, "reads       %d\n", len(v.Reads))
		for _, r := range v.Reads {
			fmt.Fprintf(&b, "  %s  %s  from %s\n", fmtTime(r.At), r.Reader, orDash(r.Remote))
		}
	}
	_, err = io.WriteString(out, b.String())
	return countResult{Count: len(views)}, err
}

// copyLine says in words whether the server keeps a copy for the link.
func copyLine(c *copyView) string {
	switch {
	case c == nil:
		return "none (sealed without the phone link)"
	case c.State == "kept":
		return fmt.Sprintf("kept until %s (%d bytes of ciphertext), for the link in the notice", fmtTime(c.Until), c.Size)
	case c.State == "deleted":
		return "deleted at " + fmtTime(*c.Deleted) + "; the link no longer opens the message"
	case c.State == "ended":
		return "ended " + fmtTime(c.Until) + "; the link no longer opens the message, the next sweep deletes the copy"
	}
	return "missing: the record says one was kept until " + fmtTime(c.Until) + ", and the store has none"
}

type revokeArgs struct {
	Select keySelection `json:"select"`
	DryRun bool         `json:"dry_run"`
}

// opKeysRevoke crypto-shreds the selected keys; a dry run lists them and
// returns their ids, so the confirmed run revokes exactly those.
func opKeysRevoke(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	var a revokeArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	at := adminNow()
	res := countResult{IDs: []string{}}
	bw := bufio.NewWriter(out)
	err := a.Select.each(ctx, env, func(rec keystore.KeyRecord) error {
		res.IDs = append(res.IDs, rec.ID.String())
		if a.DryRun {
			_, err := io.WriteString(bw, keyLine(viewKey(rec, at)))
			return err
		}
		if err := env.store.ShredKey(ctx, rec.ID, at); err != nil {
			return err
		}
		env.log.Info("admin: key revoked, its data key deleted", "who", env.who, "key_id", rec.ID.String(), "sender", rec.Sender)
		if !rec.CopyUntil.IsZero() {
			// ShredKey deleted the server copy in the same transaction.
			_, err := fmt.Fprintf(bw, "revoked %s; its server copy is deleted\n", rec.ID)
			return err
		}
		_, err := fmt.Fprintf(bw, "revoked %s\n", rec.ID)
		return err
	})
	res.Count = len(res.IDs)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	if a.DryRun {
		return res, nil
	}
	_, err = fmt.Fprintf(out, "revoked %d key(s): their messages can no longer be opened\n", res.Count)
	return res, err
}

type expireArgs struct {
	Before time.Time `json:"before"`
}

func opKeysExpire(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	var a expireArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	at := adminNow()
	var ids []keystore.KeyID
	err := env.store.EachKey(ctx, keystore.KeyFilter{Before: a.Before}, func(rec keystore.KeyRecord) error {
		if rec.Usable(at) == nil {
			ids = append(ids, rec.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	n := 0
	for _, id := range ids {
		changed, err := env.store.ExpireKey(ctx, id, at)
		if err != nil && !errors.Is(err, keystore.ErrNotFound) {
			return nil, err
		}
		if changed {
			n++
			// An expired key's server copy goes now, not at the next
			// sweep.
			if _, err := env.store.DeleteCopy(ctx, id, at); err != nil {
				return nil, err
			}
		}
	}
	env.log.Info("admin: keys expired", "who", env.who, "created_before", a.Before.UTC().Format(timeFmt), "count", n)
	_, err = fmt.Fprintf(out, "expired %d key(s) created before %s\n", n, fmtTime(a.Before))
	return countResult{Count: n}, err
}

type sweepArgs struct {
	Grace time.Duration `json:"grace"`
}

func opKeysSweep(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	var a sweepArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	now := adminNow()
	n, err := env.store.SweepKeys(ctx, now.Add(-a.Grace))
	if err != nil {
		return nil, err
	}
	copies, err := env.store.SweepCopies(ctx, now)
	if err != nil {
		return nil, err
	}
	env.log.Info("admin: expired keys swept", "who", env.who, "deleted", n, "grace", a.Grace.String(), "server_copies_deleted", copies)
	_, err = fmt.Fprintf(out, "swept %d key(s) that expired more than %s ago\n", n, a.Grace)
	if err == nil && copies > 0 {
		what := "server copies"
		if copies == 1 {
			what = "server copy"
		}
		_, err = fmt.Fprintf(out, "deleted %d %s whose time or key had ended\n", copies, what)
	}
	return countResult{Count: n}, err
}

// adminContext ends when the command is interrupted.
func adminContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

func newKeysCommand(load func() (*Config, error)) *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "List, show, revoke, expire and sweep the keys of sealed messages (works while serve runs)"}

	var sel keySelection
	var since, before string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--sender A] [--recipient A] [--since D] [--expired] [--json]",
		Short: "List key records: id, created, expires, state, sender -> recipients, message-id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			if err := parseWhenFlags(&sel, since, before); err != nil {
				return err
			}
			return runAdmin(adminContext(cmd), cfg, "keys.list", listArgs{Select: sel, JSON: asJSON}, nil, cmd.OutOrStdout(), nil)
		},
	}
	addSelectFlags(list, &sel, &since, &before)
	list.Flags().BoolVar(&sel.Expired, "expired", false, "only keys that are expired or revoked")
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, for scripts")

	var showMID string
	var showJSON bool
	show := &cobra.Command{
		Use:   "show ID | --message-id ID",
		Short: "Show one key: sender, recipients, created, expires, revoked, whether the server keeps a copy for the phone link, and every read (who, when, from which address)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			a := showArgs{MessageID: showMID, JSON: showJSON}
			if len(args) == 1 {
				a.ID = args[0]
			}
			if (a.ID == "") == (a.MessageID == "") {
				return errors.New("keys show: give a key id or --message-id, not both")
			}
			return runAdmin(adminContext(cmd), cfg, "keys.show", a, nil, cmd.OutOrStdout(), nil)
		},
	}
	show.Flags().StringVar(&showMID, "message-id", "", "the Message-ID header of the sealed message, with its angle brackets")
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON, for scripts")

	var rsel keySelection
	var rsince string
	var yes bool
	revoke := &cobra.Command{
		Use:   "revoke ID... | --message-id ID | --sender A [--since D]",
		Short: "Revoke keys for good: the data key and the server copy are deleted, every copy of the message becomes unreadable and the portal says the sender withdrew it",
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			rsel.IDs = args
			if err := parseWhenFlags(&rsel, rsince, ""); err != nil {
				return err
			}
			if len(args) == 0 && rsel.MessageID == "" && rsel.Sender == "" {
				return errors.New("keys revoke: name the keys: ids, --message-id or --sender")
			}
			if len(args) > 0 && (rsel.MessageID != "" || rsel.Sender != "") {
				return errors.New("keys revoke: give ids or a selection (--message-id, --sender), not both")
			}
			ctx := adminContext(cmd)
			if !yes {
				var dry countResult
				if err := runAdmin(ctx, cfg, "keys.revoke", revokeArgs{Select: rsel, DryRun: true}, nil, cmd.ErrOrStderr(), &dry); err != nil {
					return err
				}
				if dry.Count == 0 {
					return errors.New("keys revoke: no key matches")
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Revoke these %d key(s)? Their messages can never be opened again. [y/N] ", dry.Count)
				answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return errors.New("keys revoke: nothing revoked")
				}
				rsel = keySelection{IDs: dry.IDs}
			}
			return runAdmin(ctx, cfg, "keys.revoke", revokeArgs{Select: rsel}, nil, cmd.OutOrStdout(), nil)
		},
	}
	revoke.Flags().StringVar(&rsel.MessageID, "message-id", "", "revoke the key of the message with this Message-ID")
	revoke.Flags().StringVar(&rsel.Sender, "sender", "", "revoke every key of this sender")
	revoke.Flags().StringVar(&rsince, "since", "", "with --sender: only keys created since (2026-12-01, 36h, 7d)")
	revoke.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")

	var expireBefore string
	expire := &cobra.Command{
		Use:   "expire --before D",
		Short: "Expire now every live key created before D (2026-12-01, 2026-12-01T15:04:05Z, or an age such as 90d)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			if expireBefore == "" {
				return errors.New("keys expire: --before is required")
			}
			b, err := parseWhen(expireBefore, adminNow())
			if err != nil {
				return fmt.Errorf("keys expire: --before: %w", err)
			}
			return runAdmin(adminContext(cmd), cfg, "keys.expire", expireArgs{Before: b}, nil, cmd.OutOrStdout(), nil)
		},
	}
	expire.Flags().StringVar(&expireBefore, "before", "", "expire keys created before this time")

	var grace time.Duration
	sweep := &cobra.Command{
		Use:   "sweep [--grace 720h]",
		Short: "Delete now the keys that expired more than --grace ago, and the server copies whose time or key has ended (serve does this every hour)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			if grace < 0 {
				return errors.New("keys sweep: --grace must not be negative")
			}
			return runAdmin(adminContext(cmd), cfg, "keys.sweep", sweepArgs{Grace: grace}, nil, cmd.OutOrStdout(), nil)
		},
	}
	sweep.Flags().DurationVar(&grace, "grace", sweepGrace, "keep expired keys this long, so the portal can say \"expired\" rather than \"unknown\"")

	keys.AddCommand(list, show, revoke, expire, sweep)
	return keys
}

func addSelectFlags(cmd *cobra.Command, sel *keySelection, since, before *string) {
	cmd.Flags().StringVar(&sel.Sender, "sender", "", "only keys of this envelope sender")
	cmd.Flags().StringVar(&sel.Recipient, "recipient", "", "only keys with this envelope recipient")
	cmd.Flags().StringVar(since, "since", "", "only keys created since (2026-12-01, 2026-12-01T15:04:05Z, 36h, 7d)")
	cmd.Flags().StringVar(before, "before", "", "only keys created before (same forms as --since)")
}

func parseWhenFlags(sel *keySelection, since, before string) error {
	at := adminNow()
	if since != "" {
		t, err := parseWhen(since, at)
		if err != nil {
			return fmt.Errorf("--since: %w", err)
		}
		sel.Since = t
	}
	if before != "" {
		t, err := parseWhen(before, at)
		if err != nil {
			return fmt.Errorf("--before: %w", err)
		}
		sel.Before = t
	}
	return nil
}
