package main

// securemail accounts: the recipients' portal accounts.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/keystore"
)

func init() {
	registerAdminOp("accounts.list", adminOp{run: opAccountsList})
	registerAdminOp("accounts.show", adminOp{run: opAccountsShow})
	registerAdminOp("accounts.unlock", adminOp{run: opAccountsUnlock, writable: true})
	registerAdminOp("accounts.delete", adminOp{run: opAccountsDelete, writable: true})
	registerAdminOp("accounts.reset", adminOp{run: opAccountsReset, writable: true})
}

// accountView is an account as the commands print it; never a hash.
type accountView struct {
	Email         string    `json:"email"`
	Created       time.Time `json:"created"`
	VerifiedAt    time.Time `json:"verified_at"`
	PasswordSet   time.Time `json:"password_set"`
	ResetRequired bool      `json:"reset_required"`
	Failures      int       `json:"failures"` // consecutive failed sign-ins
	LastFailure   time.Time `json:"last_failure,omitzero"`
}

func viewAccount(ctx context.Context, store keystore.PortalStore, a keystore.Account) (accountView, error) {
	th, err := store.Throttle(ctx, "acct:"+a.Email)
	if err != nil {
		return accountView{}, err
	}
	return accountView{
		Email: a.Email, Created: a.Created, VerifiedAt: a.VerifiedAt, PasswordSet: a.PasswordSet,
		ResetRequired: a.PasswordHash == "", Failures: th.Consecutive, LastFailure: th.LastFailure,
	}, nil
}

func accountLine(v accountView) string {
	state := "ok"
	switch {
	case v.ResetRequired:
		state = "reset-required"
	case v.Failures > 0:
		state = fmt.Sprintf("failures=%d", v.Failures)
	}
	return fmt.Sprintf("%s  created %s  verified %s  %s\n", v.Email, fmtTime(v.Created), fmtTime(v.VerifiedAt), state)
}

type accountArgs struct {
	Email string `json:"email"`
	JSON  bool   `json:"json"`
}

func opAccountsList(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	var a accountArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	bw := bufio.NewWriter(out)
	list := &jsonList{w: bw}
	n := 0
	err := env.store.EachAccount(ctx, func(acct keystore.Account) error {
		n++
		v, err := viewAccount(ctx, env.store, acct)
		if err != nil {
			return err
		}
		if a.JSON {
			return list.add(v)
		}
		_, err = io.WriteString(bw, accountLine(v))
		return err
	})
	if err == nil && a.JSON {
		err = list.end()
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return countResult{Count: n}, err
}

func lookupAccount(ctx context.Context, store keystore.PortalStore, email string) (keystore.Account, error) {
	acct, err := store.Account(ctx, email)
	if errors.Is(err, keystore.ErrNotFound) {
		return acct, fmt.Errorf("no account for %s", strings.ToLower(email))
	}
	return acct, err
}

func opAccountsShow(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	var a accountArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	acct, err := lookupAccount(ctx, env.store, a.Email)
	if err != nil {
		return nil, err
	}
	v, err := viewAccount(ctx, env.store, acct)
	if err != nil {
		return nil, err
	}
	if a.JSON {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return nil, err
		}
		_, err = out.Write(append(b, '\n'))
		return nil, err
	}
	_, err = fmt.Fprintf(out, "account       %s\ncreated       %s\nverified      %s\npassword set  %s\nreset needed  %t\nfailures      %d (last %s)\n",
		v.Email, fmtTime(v.Created), fmtTime(v.VerifiedAt), fmtTime(v.PasswordSet), v.ResetRequired, v.Failures, fmtTime(v.LastFailure))
	return nil, err
}

func opAccountsUnlock(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	var a accountArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	acct, err := lookupAccount(ctx, env.store, a.Email)
	if err != nil {
		return nil, err
	}
	if err := env.store.DeleteThrottle(ctx, "acct:"+acct.Email); err != nil {
		return nil, err
	}
	// The portal's sign-in budget for the address (portal/limits.go)
	// goes too, or the owner would still wait out its window.
	if err := env.store.ResetHits(ctx, "signin-acct:"+acct.Email); err != nil {
		return nil, err
	}
	env.log.Info("admin: account unlocked", "who", env.who, "account", acct.Email)
	_, err = fmt.Fprintf(out, "unlocked %s: its failed sign-ins are forgotten\n", acct.Email)
	return nil, err
}

func opAccountsDelete(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	return endSessionsOp(ctx, env, raw, out, env.store.DeleteAccount, "admin: account deleted",
		"deleted %s: its password and answer hashes are erased and %d session(s) ended\n")
}

func opAccountsReset(ctx context.Context, env *adminEnv, raw json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	return endSessionsOp(ctx, env, raw, out, env.store.RequirePasswordReset, "admin: password reset required",
		"%s must reset the password at the next sign-in (\"Forgot your password?\"); %d session(s) ended\n")
}

// endSessionsOp runs one of the account changes that end the account's
// sessions (delete, reset), logs it under logMsg and prints format with
// the address and the number of sessions ended.
func endSessionsOp(ctx context.Context, env *adminEnv, raw json.RawMessage, out io.Writer,
	change func(context.Context, string) (int, error), logMsg, format string) (any, error) {
	var a accountArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	email := strings.ToLower(a.Email)
	ended, err := change(ctx, email)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("no account for %s", email)
	}
	if err != nil {
		return nil, err
	}
	env.log.Info(logMsg, "who", env.who, "account", email, "sessions_ended", ended)
	_, err = fmt.Fprintf(out, format, email, ended)
	return nil, err
}

func newAccountsCommand(load func() (*Config, error)) *cobra.Command {
	accounts := &cobra.Command{Use: "accounts", Short: "List, show, unlock, reset and delete recipients' portal accounts (works while serve runs)"}
	one := func(use, short, op string, withJSON bool) *cobra.Command {
		var asJSON bool
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cfg, err := load()
				if err != nil {
					return err
				}
				return runAdmin(adminContext(cmd), cfg, op, accountArgs{Email: args[0], JSON: asJSON}, nil, cmd.OutOrStdout(), nil)
			},
		}
		if withJSON {
			c.Flags().BoolVar(&asJSON, "json", false, "print JSON, for scripts")
		}
		return c
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List accounts: address, created, verified, state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			return runAdmin(adminContext(cmd), cfg, "accounts.list", accountArgs{JSON: asJSON}, nil, cmd.OutOrStdout(), nil)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array, for scripts")
	accounts.AddCommand(list,
		one("show ADDR", "Show one account (never its hashes)", "accounts.show", true),
		one("unlock ADDR", "Forget the account's failed sign-ins, so it may sign in at once", "accounts.unlock", false),
		one("reset ADDR", "Require a password reset at the next sign-in, and end the account's sessions", "accounts.reset", false),
		one("delete ADDR", "Erase the account: its hashes, sessions and codes (for a person's erasure request)", "accounts.delete", false),
	)
	return accounts
}
