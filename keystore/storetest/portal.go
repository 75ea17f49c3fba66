package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/securemail/securemail/keystore"
)

// PortalOpener returns a fresh, empty portal store and arranges for it to
// be closed when the test ends (t.Cleanup): PortalStore has no Close.
type PortalOpener func(t *testing.T) keystore.PortalStore

// Digest returns the SHA-256 of s, as the portal computes for codes and
// session cookies.
func Digest(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}

// Account returns a valid account for email.
func Account(email string) keystore.Account {
	return keystore.Account{
		Email:        email,
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
		Questions: []keystore.SecurityAnswer{
			{Question: 2, AnswerHash: "$argon2id$v=19$m=65536,t=3,p=4$YQ$YW5zd2VyMg"},
			{Question: 5, AnswerHash: "$argon2id$v=19$m=65536,t=3,p=4$Yg$YW5zd2VyNQ"},
		},
		Created:     base,
		VerifiedAt:  base.Add(time.Minute),
		PasswordSet: base.Add(2 * time.Minute),
	}
}

// RunPortal runs the portal store suite. Every time in it is fixed; no
// test reads the clock.
func RunPortal(t *testing.T, open PortalOpener) {
	ctx := context.Background()

	t.Run("AccountCreateThenRead", func(t *testing.T) {
		s := open(t)
		want := Account("Bob@Example.TEST")
		if err := s.CreateAccount(ctx, want); err != nil {
			t.Fatal(err)
		}
		for _, email := range []string{"bob@example.test", "BOB@EXAMPLE.TEST", "Bob@Example.TEST"} {
			got, err := s.Account(ctx, email)
			if err != nil {
				t.Fatalf("Account(%q): %v", email, err)
			}
			if got.Email != "bob@example.test" {
				t.Fatalf("email %q, want it lowercased", got.Email)
			}
			if got.PasswordHash != want.PasswordHash || fmt.Sprint(got.Questions) != fmt.Sprint(want.Questions) ||
				!got.Created.Equal(want.Created) || !got.VerifiedAt.Equal(want.VerifiedAt) ||
				!got.PasswordSet.Equal(want.PasswordSet) {
				t.Fatalf("read back %+v, stored %+v", got, want)
			}
		}
	})
	t.Run("AccountExistsIgnoringCase", func(t *testing.T) {
		s := open(t)
		if err := s.CreateAccount(ctx, Account("Bob@X.test")); err != nil {
			t.Fatal(err)
		}
		again := Account("bob@x.test")
		again.PasswordHash = "$argon2id$another"
		if err := s.CreateAccount(ctx, again); !errors.Is(err, keystore.ErrAccountExists) {
			t.Fatalf("second account for the address: %v, want ErrAccountExists", err)
		}
		got, err := s.Account(ctx, "bob@x.test")
		if err != nil || got.PasswordHash != Account("").PasswordHash {
			t.Fatalf("refused create changed the account: %v %q", err, got.PasswordHash)
		}
	})
	t.Run("AccountNotFound", func(t *testing.T) {
		s := open(t)
		if _, err := s.Account(ctx, "nobody@example.test"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		if err := s.SetPassword(ctx, "nobody@example.test", "$argon2id$new", base); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("SetPassword on a missing account: %v, want ErrNotFound", err)
		}
		if _, err := s.Account(ctx, "nobody@example.test"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("SetPassword created an account: %v", err)
		}
	})
	t.Run("SetPassword", func(t *testing.T) {
		s := open(t)
		orig := Account("carol@example.test")
		if err := s.CreateAccount(ctx, orig); err != nil {
			t.Fatal(err)
		}
		at := base.Add(48 * time.Hour)
		if err := s.SetPassword(ctx, "Carol@Example.test", "$argon2id$new", at); err != nil {
			t.Fatal(err)
		}
		got, err := s.Account(ctx, "carol@example.test")
		if err != nil {
			t.Fatal(err)
		}
		if got.PasswordHash != "$argon2id$new" || !got.PasswordSet.Equal(at) {
			t.Fatalf("after SetPassword: hash %q set %v, want %q %v", got.PasswordHash, got.PasswordSet, "$argon2id$new", at)
		}
		if !got.Created.Equal(orig.Created) || !got.VerifiedAt.Equal(orig.VerifiedAt) ||
			fmt.Sprint(got.Questions) != fmt.Sprint(orig.Questions) {
			t.Fatalf("SetPassword changed more than the password: %+v", got)
		}
	})

	code := func(purpose keystore.CodePurpose, email, value string, tries int) keystore.Code {
		return keystore.Code{Purpose: purpose, Email: email, Digest: Digest(value), Expires: base.Add(15 * time.Minute), TriesLeft: tries}
	}
	consume := func(s keystore.PortalStore, purpose keystore.CodePurpose, email, value string, now time.Time) error {
		return s.ConsumeCode(ctx, purpose, email, Digest(value), now)
	}
	t.Run("CodeRightOnce", func(t *testing.T) {
		s := open(t)
		if err := s.PutCode(ctx, code(keystore.CodeRegister, "Dave@Example.test", "123456", 5)); err != nil {
			t.Fatal(err)
		}
		if err := consume(s, keystore.CodeRegister, "dave@EXAMPLE.test", "123456", base); err != nil {
			t.Fatalf("right code: %v", err)
		}
		if err := consume(s, keystore.CodeRegister, "dave@example.test", "123456", base); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("right code twice: %v, want ErrNotFound", err)
		}
	})
	t.Run("CodeWrongThenRight", func(t *testing.T) {
		s := open(t)
		if err := s.PutCode(ctx, code(keystore.CodeReset, "erin@example.test", "111111", 3)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if err := consume(s, keystore.CodeReset, "erin@example.test", "999999", base); !errors.Is(err, keystore.ErrCodeMismatch) {
				t.Fatalf("wrong code #%d: %v, want ErrCodeMismatch", i+1, err)
			}
		}
		if err := consume(s, keystore.CodeReset, "erin@example.test", "111111", base); err != nil {
			t.Fatalf("right code with a try left: %v", err)
		}
	})
	t.Run("CodeExpired", func(t *testing.T) {
		s := open(t)
		c := code(keystore.CodeRegister, "frank@example.test", "222222", 5)
		if err := s.PutCode(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := consume(s, keystore.CodeRegister, "frank@example.test", "222222", c.Expires); !errors.Is(err, keystore.ErrExpired) {
			t.Fatalf("right code at Expires: %v, want ErrExpired", err)
		}
		if err := consume(s, keystore.CodeRegister, "frank@example.test", "222222", c.Expires.Add(-time.Second)); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("expired code was not deleted: %v, want ErrNotFound", err)
		}
		if err := s.PutCode(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := consume(s, keystore.CodeRegister, "frank@example.test", "222222", c.Expires.Add(-time.Second)); err != nil {
			t.Fatalf("right code a second before Expires: %v", err)
		}
	})
	t.Run("CodeTriesExhausted", func(t *testing.T) {
		s := open(t)
		c := code(keystore.CodeRegister, "gina@example.test", "333333", 3)
		if err := s.PutCode(ctx, c); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if err := consume(s, keystore.CodeRegister, "gina@example.test", fmt.Sprint("wrong", i), base); !errors.Is(err, keystore.ErrCodeMismatch) {
				t.Fatalf("wrong code #%d: %v, want ErrCodeMismatch", i+1, err)
			}
		}
		for _, v := range []string{"333333", "wrong", "333333"} {
			if err := consume(s, keystore.CodeRegister, "gina@example.test", v, base); !errors.Is(err, keystore.ErrTooManyAttempts) {
				t.Fatalf("%q after the last try: %v, want ErrTooManyAttempts", v, err)
			}
		}
		if err := consume(s, keystore.CodeRegister, "gina@example.test", "333333", c.Expires); !errors.Is(err, keystore.ErrExpired) {
			t.Fatalf("dead code at Expires: %v, want ErrExpired", err)
		}
		if err := consume(s, keystore.CodeRegister, "gina@example.test", "333333", base); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("dead code after expiry: %v, want ErrNotFound", err)
		}
	})
	t.Run("CodeReplaced", func(t *testing.T) {
		s := open(t)
		if err := s.PutCode(ctx, code(keystore.CodeReset, "hal@example.test", "first1", 2)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if err := consume(s, keystore.CodeReset, "hal@example.test", "nope", base); !errors.Is(err, keystore.ErrCodeMismatch) {
				t.Fatal(err)
			}
		}
		if err := s.PutCode(ctx, code(keystore.CodeReset, "HAL@example.test", "second", 2)); err != nil {
			t.Fatal(err)
		}
		if err := consume(s, keystore.CodeReset, "hal@example.test", "first1", base); !errors.Is(err, keystore.ErrCodeMismatch) {
			t.Fatalf("replaced code: %v, want ErrCodeMismatch (a new code brings new tries)", err)
		}
		if err := consume(s, keystore.CodeReset, "hal@example.test", "second", base); err != nil {
			t.Fatalf("new code: %v", err)
		}
	})
	t.Run("CodePurposeAndEmailSeparate", func(t *testing.T) {
		s := open(t)
		if err := s.PutCode(ctx, code(keystore.CodeRegister, "ivy@example.test", "444444", 5)); err != nil {
			t.Fatal(err)
		}
		if err := consume(s, keystore.CodeReset, "ivy@example.test", "444444", base); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("register code used for reset: %v, want ErrNotFound", err)
		}
		if err := consume(s, keystore.CodeRegister, "ivy@other.test", "444444", base); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("code used for another address: %v, want ErrNotFound", err)
		}
		if err := s.PutCode(ctx, code(keystore.CodeReset, "ivy@example.test", "555555", 5)); err != nil {
			t.Fatal(err)
		}
		if err := consume(s, keystore.CodeRegister, "ivy@example.test", "444444", base); err != nil {
			t.Fatalf("register code after a reset code was put: %v", err)
		}
		if err := consume(s, keystore.CodeReset, "ivy@example.test", "555555", base); err != nil {
			t.Fatalf("reset code: %v", err)
		}
	})
	t.Run("CodeConcurrentRight", func(t *testing.T) {
		s := open(t)
		if err := s.PutCode(ctx, code(keystore.CodeRegister, "jay@example.test", "666666", 5)); err != nil {
			t.Fatal(err)
		}
		errs := race(20, func(int) error {
			return consume(s, keystore.CodeRegister, "jay@example.test", "666666", base)
		})
		if n := count(errs, nil); n != 1 {
			t.Fatalf("%d of 20 concurrent right codes succeeded, want exactly 1: %v", n, errs)
		}
		if n := count(errs, keystore.ErrNotFound); n != 19 {
			t.Fatalf("%d of 19 losers said ErrNotFound: %v", n, errs)
		}
	})
	t.Run("CodeConcurrentWrong", func(t *testing.T) {
		s := open(t)
		if err := s.PutCode(ctx, code(keystore.CodeRegister, "kim@example.test", "777777", 5)); err != nil {
			t.Fatal(err)
		}
		errs := race(20, func(i int) error {
			return consume(s, keystore.CodeRegister, "kim@example.test", fmt.Sprint("guess", i), base)
		})
		if n, m := count(errs, keystore.ErrCodeMismatch), count(errs, keystore.ErrTooManyAttempts); n != 5 || m != 15 {
			t.Fatalf("20 concurrent wrong guesses at 5 tries: %d mismatches, %d too many, want 5 and 15: %v", n, m, errs)
		}
		if err := consume(s, keystore.CodeRegister, "kim@example.test", "777777", base); !errors.Is(err, keystore.ErrTooManyAttempts) {
			t.Fatalf("right code after the tries are spent: %v, want ErrTooManyAttempts", err)
		}
	})

	session := func(id, email string) keystore.Session {
		return keystore.Session{
			Digest: Digest(id), Email: email, Stage: "authenticated", Token: "tok-" + id,
			Created: base, LastSeen: base.Add(time.Minute), Expires: base.Add(8 * time.Hour),
		}
	}
	t.Run("NotFoundNamesWhat", func(t *testing.T) {
		s := open(t)
		_, err := s.Account(ctx, "Nobody@Example.test")
		checkNotFound(t, "Account", err, []string{"account nobody@example.test"}, nil)
		err = s.SetPassword(ctx, "nobody@example.test", "$argon2id$new", base)
		checkNotFound(t, "SetPassword", err, []string{"account nobody@example.test"}, []string{"$argon2id$new"})
		// A code for another purpose exists: the miss still names the
		// purpose asked for, and never the guessed code or its digest.
		if err := s.PutCode(ctx, code(keystore.CodeReset, "nobody@example.test", "615243", 5)); err != nil {
			t.Fatal(err)
		}
		err = consume(s, keystore.CodeRegister, "nobody@example.test", "615243", base)
		checkNotFound(t, "ConsumeCode", err, []string{"register code for nobody@example.test"},
			append(digestSecrets("615243"), "reset"))
		// The cookie and its digest grant nothing in a log line only if
		// they are not in it: the session is named by a fingerprint.
		_, err = s.Session(ctx, Digest("cookie-value-4f1d"))
		checkNotFound(t, "Session", err, []string{"session " + keystore.Fingerprint(Digest("cookie-value-4f1d"))},
			digestSecrets("cookie-value-4f1d"))
	})
	t.Run("SessionPutGetDelete", func(t *testing.T) {
		s := open(t)
		if _, err := s.Session(ctx, Digest("none")); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("missing session: %v, want ErrNotFound", err)
		}
		want := session("a", "Lee@Example.test")
		if err := s.PutSession(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.Session(ctx, Digest("a"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Digest) != string(want.Digest) || got.Email != "lee@example.test" || got.Stage != want.Stage ||
			got.Token != want.Token || !got.Created.Equal(want.Created) || !got.LastSeen.Equal(want.LastSeen) ||
			!got.Expires.Equal(want.Expires) {
			t.Fatalf("read back %+v, stored %+v (email lowercased)", got, want)
		}
		want.Stage, want.LastSeen, want.Expires = "reset-answers", base.Add(time.Hour), base // ended
		if err := s.PutSession(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err = s.Session(ctx, Digest("a"))
		if err != nil {
			t.Fatalf("a session past its end must still be returned: %v", err)
		}
		if got.Stage != "reset-answers" || !got.LastSeen.Equal(want.LastSeen) || !got.Expires.Equal(base) {
			t.Fatalf("replaced session reads %+v", got)
		}
		if err := s.DeleteSession(ctx, Digest("a")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(ctx, Digest("a")); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("deleted session: %v, want ErrNotFound", err)
		}
		if err := s.DeleteSession(ctx, Digest("a")); err != nil {
			t.Fatalf("deleting a missing session: %v", err)
		}
	})
	t.Run("DeleteSessionsFor", func(t *testing.T) {
		s := open(t)
		for _, ss := range []keystore.Session{
			session("m1", "mia@example.test"), session("m2", "MIA@example.test"), session("m3", "mia@example.test"),
			session("n1", "ned@example.test"), session("anon", ""),
		} {
			if err := s.PutSession(ctx, ss); err != nil {
				t.Fatal(err)
			}
		}
		n, err := s.DeleteSessionsFor(ctx, "Mia@Example.test", Digest("m2"))
		if err != nil || n != 2 {
			t.Fatalf("DeleteSessionsFor except m2: %d %v, want 2", n, err)
		}
		for id, live := range map[string]bool{"m1": false, "m2": true, "m3": false, "n1": true, "anon": true} {
			_, err := s.Session(ctx, Digest(id))
			if live && err != nil || !live && !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("session %s: %v, want live=%v", id, err, live)
			}
		}
		n, err = s.DeleteSessionsFor(ctx, "mia@example.test", nil)
		if err != nil || n != 1 {
			t.Fatalf("DeleteSessionsFor all: %d %v, want 1", n, err)
		}
		if _, err := s.Session(ctx, Digest("m2")); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("m2 after DeleteSessionsFor all: %v", err)
		}
		n, err = s.DeleteSessionsFor(ctx, "mia@example.test", nil)
		if err != nil || n != 0 {
			t.Fatalf("DeleteSessionsFor with none left: %d %v, want 0", n, err)
		}
		for _, id := range []string{"n1", "anon"} {
			if _, err := s.Session(ctx, Digest(id)); err != nil {
				t.Errorf("another address's session %s: %v", id, err)
			}
		}
	})

	t.Run("ThrottleWindows", func(t *testing.T) {
		s := open(t)
		const window = 24 * time.Hour
		key := "acct:olga@example.test"
		got, err := s.Throttle(ctx, key)
		if err != nil || got != (keystore.Throttle{Key: key}) {
			t.Fatalf("no failures yet: %+v %v, want the zero state with Key", got, err)
		}
		check := func(step string, got keystore.Throttle, consecutive, inWindow int, last, start time.Time) {
			t.Helper()
			if got.Key != key || got.Consecutive != consecutive || got.InWindow != inWindow ||
				!got.LastFailure.Equal(last) || !got.WindowStart.Equal(start) {
				t.Fatalf("%s: %+v, want consecutive %d, in window %d, last %v, window start %v",
					step, got, consecutive, inWindow, last, start)
			}
			again, err := s.Throttle(ctx, key)
			if err != nil || again.Consecutive != got.Consecutive || again.InWindow != got.InWindow ||
				!again.LastFailure.Equal(got.LastFailure) || !again.WindowStart.Equal(got.WindowStart) {
				t.Fatalf("%s: Throttle reads %+v %v, AddFailure returned %+v", step, again, err, got)
			}
		}
		add := func(at time.Time) keystore.Throttle {
			t.Helper()
			got, err := s.AddFailure(ctx, key, at, window)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		t1 := base
		check("first", add(t1), 1, 1, t1, t1)
		t2 := base.Add(10 * time.Minute)
		check("second", add(t2), 2, 2, t2, t1)
		if err := s.ClearFailures(ctx, key); err != nil {
			t.Fatal(err)
		}
		got, err = s.Throttle(ctx, key)
		if err != nil || got.Consecutive != 0 || got.InWindow != 2 || !got.LastFailure.Equal(t2) || !got.WindowStart.Equal(t1) {
			t.Fatalf("after ClearFailures: %+v %v, want consecutive 0 and the rest kept", got, err)
		}
		t3 := base.Add(window - time.Second)
		check("last second of the window", add(t3), 1, 3, t3, t1)
		t4 := base.Add(window)
		check("window's end", add(t4), 2, 1, t4, t4)
		t5 := t4.Add(3 * window)
		check("long after", add(t5), 3, 1, t5, t5)

		other, err := s.Throttle(ctx, "ip:192.0.2.1")
		if err != nil || other != (keystore.Throttle{Key: "ip:192.0.2.1"}) {
			t.Fatalf("another key: %+v %v", other, err)
		}
		if err := s.ClearFailures(ctx, "ip:192.0.2.1"); err != nil {
			t.Fatalf("ClearFailures with no failures: %v", err)
		}
		if other, err := s.Throttle(ctx, "ip:192.0.2.1"); err != nil || other != (keystore.Throttle{Key: "ip:192.0.2.1"}) {
			t.Fatalf("ClearFailures created state: %+v %v", other, err)
		}
	})

	t.Run("ReadsOldestFirst", func(t *testing.T) {
		s := open(t)
		id, other := Record(1).ID, Record(2).ID
		got, err := s.Reads(ctx, id)
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("no reads: %#v %v, want an empty slice", got, err)
		}
		events := []keystore.ReadEvent{
			{KeyID: id, Reader: "Pat@Example.test", At: base.Add(2 * time.Hour), Remote: "192.0.2.2"},
			{KeyID: other, Reader: "quinn@example.test", At: base.Add(time.Hour), Remote: "192.0.2.9"},
			{KeyID: id, Reader: "pat@example.test", At: base.Add(3 * time.Hour), Remote: "192.0.2.3"},
			{KeyID: id, Reader: "pat@example.test", At: base.Add(time.Hour), Remote: "192.0.2.1"},     // recorded late
			{KeyID: id, Reader: "pat@example.test", At: base.Add(3 * time.Hour), Remote: "192.0.2.4"}, // same At as the third
		}
		for _, ev := range events {
			if err := s.RecordRead(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		got, err = s.Reads(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wantRemote := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}
		if len(got) != len(wantRemote) {
			t.Fatalf("%d reads, want %d: %+v", len(got), len(wantRemote), got)
		}
		for i, ev := range got {
			if ev.Remote != wantRemote[i] || ev.KeyID != id || ev.Reader != "pat@example.test" {
				t.Fatalf("read %d is %+v, want remote %s, key %s, reader lowercased", i, ev, wantRemote[i], id)
			}
		}
		if !got[0].At.Equal(base.Add(time.Hour)) || !got[3].At.Equal(base.Add(3*time.Hour)) {
			t.Fatalf("times %v .. %v", got[0].At, got[3].At)
		}
		got, err = s.Reads(ctx, other)
		if err != nil || len(got) != 1 || got[0].Reader != "quinn@example.test" {
			t.Fatalf("the other key's trail: %+v %v", got, err)
		}
	})

	t.Run("Sweep", func(t *testing.T) {
		s := open(t)
		const window = 24 * time.Hour
		now := base.Add(30 * 24 * time.Hour)
		for i, exp := range []time.Time{now.Add(-time.Hour), now.Add(-time.Nanosecond), now, now.Add(time.Hour)} {
			c := code(keystore.CodeRegister, fmt.Sprintf("c%d@example.test", i), "888888", 5)
			c.Expires = exp
			if err := s.PutCode(ctx, c); err != nil {
				t.Fatal(err)
			}
			ss := session(fmt.Sprint("s", i), "rita@example.test")
			ss.Expires = exp
			if err := s.PutSession(ctx, ss); err != nil {
				t.Fatal(err)
			}
		}
		for i, last := range []time.Time{now.Add(-window - time.Second), now.Add(-window), now.Add(-time.Minute)} {
			if _, err := s.AddFailure(ctx, fmt.Sprint("ip:192.0.2.", i), last, window); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateAccount(ctx, Account("rita@example.test")); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordRead(ctx, keystore.ReadEvent{KeyID: Record(3).ID, Reader: "rita@example.test", At: base}); err != nil {
			t.Fatal(err)
		}

		n, err := s.SweepPortal(ctx, now, window)
		if err != nil || n != 5 {
			t.Fatalf("SweepPortal: %d %v, want 5 (2 codes, 2 sessions, 1 throttle entry)", n, err)
		}
		for i := 0; i < 4; i++ {
			_, err := s.Session(ctx, Digest(fmt.Sprint("s", i)))
			if gone := errors.Is(err, keystore.ErrNotFound); gone != (i < 2) {
				t.Errorf("session %d: %v after sweep", i, err)
			}
			// A code that ended at or before now says ErrExpired if it is
			// still there, ErrNotFound if it was swept.
			err = consume(s, keystore.CodeRegister, fmt.Sprintf("c%d@example.test", i), "888888", now.Add(-2*time.Hour))
			if gone := errors.Is(err, keystore.ErrNotFound); gone != (i < 2) || !gone && err != nil {
				t.Errorf("code %d: %v after sweep", i, err)
			}
		}
		for i := 0; i < 3; i++ {
			th, err := s.Throttle(ctx, fmt.Sprint("ip:192.0.2.", i))
			if gone := th.Consecutive == 0; err != nil || gone != (i == 0) {
				t.Errorf("throttle %d: %+v %v after sweep", i, th, err)
			}
		}
		if _, err := s.Account(ctx, "rita@example.test"); err != nil {
			t.Errorf("sweep touched an account: %v", err)
		}
		if evs, err := s.Reads(ctx, Record(3).ID); err != nil || len(evs) != 1 {
			t.Errorf("SweepPortal touched the read trail: %v %v", evs, err)
		}
		if n, err := s.SweepPortal(ctx, now, window); err != nil || n != 0 {
			t.Fatalf("second sweep: %d %v, want 0", n, err)
		}
	})

	t.Run("HitConcurrentExactlyLimit", func(t *testing.T) {
		s := open(t)
		const n, limit = 40, 7
		results := make([]keystore.HitResult, n)
		errs := race(n, func(i int) error {
			var err error
			results[i], err = s.Hit(ctx, "signin-acct:uma@example.test", base, time.Hour, limit)
			return err
		})
		if c := count(errs, nil); c != n {
			t.Fatalf("%d of %d Hits failed: %v", n-c, n, errs)
		}
		allowed, counts := 0, map[int]bool{}
		for _, r := range results {
			if r.Allowed {
				allowed++
				counts[r.Count] = true
			} else if r.RetryAfter != time.Hour || r.Count != limit {
				t.Errorf("refused hit: %+v, want RetryAfter 1h and Count %d", r, limit)
			}
		}
		if allowed != limit || len(counts) != limit {
			t.Fatalf("%d of %d concurrent hits allowed with counts %v, want exactly %d with counts 1..%d", allowed, n, counts, limit, limit)
		}
		// Another key has its own count.
		if r, err := s.Hit(ctx, "signin-acct:vic@example.test", base, time.Hour, limit); err != nil || !r.Allowed || r.Count != 1 {
			t.Fatalf("another key: %+v %v", r, err)
		}
	})
	t.Run("HitWindows", func(t *testing.T) {
		s := open(t)
		const key, window = "send:register:wes@example.test", time.Hour
		hit := func(at time.Time, limit int) keystore.HitResult {
			t.Helper()
			r, err := s.Hit(ctx, key, at, window, limit)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		for i := 1; i <= 3; i++ {
			if r := hit(base.Add(time.Duration(i)*time.Minute), 3); !r.Allowed || r.Count != i {
				t.Fatalf("hit %d: %+v", i, r)
			}
		}
		// The window started at the first hit (base+1m) and is not moved
		// by refused hits.
		for range 5 {
			if r := hit(base.Add(31*time.Minute), 3); r.Allowed || r.RetryAfter != 30*time.Minute {
				t.Fatalf("hit past the limit: %+v, want refused for 30m", r)
			}
		}
		if r := hit(base.Add(61*time.Minute-time.Nanosecond), 3); r.Allowed {
			t.Fatalf("hit just before the window ends: %+v", r)
		}
		if r := hit(base.Add(61*time.Minute), 3); !r.Allowed || r.Count != 1 {
			t.Fatalf("hit when the window ends: %+v, want a fresh window", r)
		}
		if err := s.ResetHits(ctx, key); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			if r := hit(base.Add(62*time.Minute), 3); !r.Allowed || r.Count != i {
				t.Fatalf("hit %d after ResetHits: %+v", i, r)
			}
		}
		if err := s.ResetHits(ctx, "no such key"); err != nil {
			t.Fatalf("ResetHits of a missing key: %v", err)
		}
		if r := hit(base.Add(100*time.Minute), 0); r.Allowed {
			t.Fatalf("limit 0 allowed a hit: %+v", r)
		}
	})
	t.Run("HitSwept", func(t *testing.T) {
		s := open(t)
		if _, err := s.Hit(ctx, "old", base, time.Hour, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Hit(ctx, "new", base.Add(2*time.Hour), time.Hour, 1); err != nil {
			t.Fatal(err)
		}
		n, err := s.SweepPortal(ctx, base.Add(2*time.Hour+time.Minute), 24*time.Hour)
		if err != nil || n != 1 {
			t.Fatalf("SweepPortal: %d %v, want 1 ended limit window", n, err)
		}
		if r, err := s.Hit(ctx, "new", base.Add(2*time.Hour+2*time.Minute), time.Hour, 1); err != nil || r.Allowed {
			t.Fatalf("the live window was swept: %+v %v", r, err)
		}
	})

	t.Run("CanceledContext", func(t *testing.T) {
		s := open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		for name, call := range map[string]func() error{
			"CreateAccount": func() error { return s.CreateAccount(cctx, Account("sam@example.test")) },
			"Account":       func() error { _, err := s.Account(cctx, "sam@example.test"); return err },
			"SetPassword":   func() error { return s.SetPassword(cctx, "sam@example.test", "x", base) },
			"PutCode":       func() error { return s.PutCode(cctx, code(keystore.CodeRegister, "sam@example.test", "1", 5)) },
			"ConsumeCode": func() error {
				return s.ConsumeCode(cctx, keystore.CodeRegister, "sam@example.test", Digest("1"), base)
			},
			"PutSession":    func() error { return s.PutSession(cctx, session("x", "sam@example.test")) },
			"Session":       func() error { _, err := s.Session(cctx, Digest("x")); return err },
			"DeleteSession": func() error { return s.DeleteSession(cctx, Digest("x")) },
			"DeleteSessionsFor": func() error {
				_, err := s.DeleteSessionsFor(cctx, "sam@example.test", nil)
				return err
			},
			"AddFailure":    func() error { _, err := s.AddFailure(cctx, "ip:x", base, time.Hour); return err },
			"Throttle":      func() error { _, err := s.Throttle(cctx, "ip:x"); return err },
			"ClearFailures": func() error { return s.ClearFailures(cctx, "ip:x") },
			"RecordRead":    func() error { return s.RecordRead(cctx, keystore.ReadEvent{KeyID: Record(1).ID, At: base}) },
			"Reads":         func() error { _, err := s.Reads(cctx, Record(1).ID); return err },
			"SweepPortal":   func() error { _, err := s.SweepPortal(cctx, base, time.Hour); return err },
			"Hit":           func() error { _, err := s.Hit(cctx, "k", base, time.Hour, 1); return err },
			"ResetHits":     func() error { return s.ResetHits(cctx, "k") },
		} {
			if err := call(); !errors.Is(err, context.Canceled) {
				t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
			}
		}
		if _, err := s.Account(ctx, "sam@example.test"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("a canceled CreateAccount wrote: %v", err)
		}
		if _, err := s.Session(ctx, Digest("x")); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("a canceled PutSession wrote: %v", err)
		}
	})
}

// race runs f(0..n-1) in n goroutines released together and returns
// their results.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}(i)
	}
	close(start)
	wg.Wait()
	return errs
}

// count returns how many of errs are target (nil counts nils).
func count(errs []error, target error) int {
	n := 0
	for _, err := range errs {
		if target == nil && err == nil || target != nil && errors.Is(err, target) {
			n++
		}
	}
	return n
}
