package main

// Failover through Postfix: the securemail milter behind a private
// Postfix on a PostgreSQL primary with a synchronous standby, reached
// through a two-host DSN with target_session_attrs=read-write. Eight SMTP
// sessions submit tagged messages for 20 s; half way the primary is killed
// with SIGKILL by its PID and the standby promoted. Every message Postfix
// accepted (250) must arrive sealed and open with the key on the new
// primary; every other one must have had a 4xx; none may leave in
// plaintext.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/smtp"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/securemail/securemail/cmd/securemail/internal/mtatest"
	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/internal/pgtest"
	"github.com/securemail/securemail/keystore"
	"github.com/securemail/securemail/keystore/pgstore"
)

func TestFailoverThroughPostfix(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs two PostgreSQL servers, Postfix and securemail for about 40 s")
	}
	mtatest.RequireTools(t, mtatest.PostfixTools...)
	mtatest.RequireRoot(t)
	primary := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"wal_level": "replica", "max_wal_senders": "4"}})
	db := primary.NewDatabase(t)
	ctx := context.Background()
	setup, err := pgstore.Open(ctx, pgstore.Options{DSN: primary.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	setup.Close()
	standby := primary.StartStandby(t, "standby1")
	primary.SetSynchronous(t, "standby1")
	dsn := fmt.Sprintf("host=%s,%s port=%d,%d user=postgres dbname=%s sslmode=disable target_session_attrs=read-write connect_timeout=1",
		primary.Socket, standby.Socket, primary.Port, standby.Port, db)

	bin := e2eBuild(t)
	sink := mtatest.StartSink(t)
	pf := e2eNewPostfix(t, sink, "")
	milterAddr := fmt.Sprintf("127.0.0.1:%d", mtatest.FreePort(t))
	pf.Postconf(t, "-e", "smtpd_milters=inet:"+milterAddr)
	// Postfix ends a session after smtpd_hard_error_limit refusals (20 by
	// default); a low limit makes every run end some sessions during the
	// failover, so the clients' new sessions are tested every time, not
	// only when a promotion is slow.
	pf.Postconf(t, "-e", "smtpd_hard_error_limit=5")
	config := e2eWriteConfigWith(t, milterAddr, pf.SMTPAddr(), e2eConfig{
		logLevel: "info", networks: "[]", maxSize: fmt.Sprint(1 << 20), internal: pbInternal,
	})
	srv := e2eStartServeAs(t, bin, config, "tcp", milterAddr, nil,
		"SECUREMAIL_KEYSTORE_BACKEND=postgres", "SECUREMAIL_KEYSTORE_POSTGRES_DSN="+dsn,
		"SECUREMAIL_KEYSTORE_POSTGRES_STATEMENT_TIMEOUT=2s", "SECUREMAIL_PORTAL_ENABLED=false")
	pf.Start(t)

	const sessions = 8
	const runFor = 20 * time.Second
	clients := make([]*smtp.Client, sessions)
	for i := range clients {
		clients[i] = mtatest.DialSubmission(t, pf)
	}
	var (
		seq        atomic.Int64
		reconnects atomic.Int64 // sessions Postfix ended after too many refusals
		stop       atomic.Bool
		mu         sync.Mutex
		accepted   = map[string]bool{} // marker -> accepted with 250
		refused    int                 // 4xx
		otherErrs  []error
		wg         sync.WaitGroup
	)
	subject := func(marker string) string { return "Failover " + marker }
	for i := range sessions {
		wg.Go(func() {
			c := clients[i]
			for !stop.Load() {
				marker := fmt.Sprintf("FAILOVER-%05d", seq.Add(1))
				msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s %s\r\n\r\nBody of %s.\r\n", pbSender, pbRecipient, subject(marker), e2eTag, marker)
				err := mtatest.SendOne(c, pbSender, []string{pbRecipient}, msg)
				var tp *textproto.Error
				mu.Lock()
				switch {
				case err == nil:
					accepted[marker] = true
				case errors.As(err, &tp) && tp.Code/100 == 4:
					refused++
				default:
					otherErrs = append(otherErrs, err)
				}
				mu.Unlock()
				if err == nil {
					continue
				}
				if !errors.As(err, &tp) {
					return // the session broke mid-message; the count says so
				}
				time.Sleep(50 * time.Millisecond) // as a client's retry would, only sooner
				if c.Reset() == nil {
					continue
				}
				// Postfix ended the session (smtpd_hard_error_limit,
				// announced with 421 to the next command): a client
				// opens a new one, and so does this one.
				c.Close()
				if c, err = mtatest.OpenSubmission(pf); err != nil {
					mu.Lock()
					otherErrs = append(otherErrs, fmt.Errorf("a new session after the server ended one: %w", err))
					mu.Unlock()
					return
				}
				clients[i] = c
				reconnects.Add(1)
			}
		})
	}
	began := time.Now()
	time.Sleep(runFor / 2)
	mu.Lock()
	beforeKill := len(accepted)
	mu.Unlock()
	primary.Kill(t)
	killed := time.Now()
	standby.Promote(t)
	promotedAfter := time.Since(killed)
	time.Sleep(time.Until(began.Add(runFor)))
	stop.Store(true)
	wg.Wait()
	for _, c := range clients {
		c.Close() // new sessions too
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("failover through Postfix: %d messages accepted with 250 (%d before the kill), %d refused with 4xx, %d other errors, %d sessions opened again after Postfix ended them; standby promoted %v after the kill",
		len(accepted), beforeKill, refused, len(otherErrs), reconnects.Load(), promotedAfter.Round(time.Millisecond))
	if len(otherErrs) > 0 {
		t.Errorf("%d submissions failed other than with 4xx, e.g. %v", len(otherErrs), otherErrs[0])
	}
	if beforeKill == 0 || len(accepted) == beforeKill {
		t.Fatalf("mail did not flow: %d accepted before the kill, %d in all", beforeKill, len(accepted))
	}

	// Every accepted message arrives, sealed; nothing else with our
	// subject arrives at all.
	deadline := time.Now().Add(60 * time.Second)
	var delivered []mtatest.Message
	for {
		delivered = delivered[:0]
		for _, m := range sink.Messages() {
			if strings.Contains(string(m.Data), "FAILOVER-") {
				delivered = append(delivered, m)
			}
		}
		if len(delivered) >= len(accepted) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(delivered) != len(accepted) {
		t.Fatalf("%d messages delivered, %d accepted", len(delivered), len(accepted))
	}
	check, err := pgstore.Open(ctx, pgstore.Options{DSN: standby.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	mk, err := keystore.LoadMasterKey(filepath.Join(filepath.Dir(config), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	for _, m := range delivered {
		subj := pbSubjectOf(m)
		marker := strings.TrimPrefix(subj, "Failover ")
		if !accepted[marker] {
			t.Errorf("%q was delivered but its submission was not accepted", subj)
			continue
		}
		e2eCheckSealed(t, m, marker+".", subj)
		page, err := envelope.FindPage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("%s: %v", marker, err)
		}
		form, err := envelope.ParsePage(page)
		if err != nil {
			t.Fatalf("%s: %v", marker, err)
		}
		r := bytes.NewReader(form.Envelope)
		hdr, err := envelope.ReadHeader(r)
		if err != nil {
			t.Fatalf("%s: %v", marker, err)
		}
		dek, _, err := mk.DataKey(ctx, check, keystore.KeyID(hdr.KeyID), time.Now())
		if err != nil {
			t.Errorf("%s: accepted with 250 but its key is not on the new primary: %v", marker, err)
			continue
		}
		er, err := envelope.Open(r, dek, hdr)
		if err != nil {
			t.Fatalf("%s: %v", marker, err)
		}
		plain, err := io.ReadAll(er)
		if err != nil || !bytes.Contains(plain, []byte("Body of "+marker+".")) {
			t.Errorf("%s does not open to its body: %v", marker, err)
			continue
		}
		opened++
	}
	t.Logf("failover through Postfix: %d of %d accepted messages open with the keys on the promoted standby", opened, len(accepted))
	if code, err := srv.stop(30 * time.Second); code != 0 || err != nil {
		t.Errorf("serve exited %d, %v", code, err)
	}
}
