package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
)

func init() {
	registerAdminOp("seal", adminOp{run: opSeal, writable: true})
	registerAdminOp("open", adminOp{run: opOpen})
}

type sealArgs struct {
	From  string   `json:"from"`
	Rcpts []string `json:"rcpts"`
}

func opSeal(ctx context.Context, env *adminEnv, raw json.RawMessage, in io.Reader, out io.Writer) (any, error) {
	var a sealArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	if a.From == "" || len(a.Rcpts) == 0 {
		return nil, errors.New("seal: --from and at least one --rcpt are required")
	}
	if err := env.filter.SealMessage(in, out, a.From, a.Rcpts); err != nil {
		return nil, err
	}
	env.log.Info("admin: message sealed", "who", env.who, "sender", a.From, "recipients", len(a.Rcpts))
	return nil, nil
}

func opOpen(ctx context.Context, env *adminEnv, _ json.RawMessage, in io.Reader, out io.Writer) (any, error) {
	plain, id, err := openSealed(ctx, in, env.store, env.mk, adminNow())
	if err != nil {
		if id != "" {
			env.log.Info("admin: open refused", "who", env.who, "key_id", id, "err", err)
		}
		return nil, err
	}
	env.log.Info("admin: message opened", "who", env.who, "key_id", id)
	_, err = out.Write(plain)
	return nil, err
}

func newSealCommand(load func() (*Config, error)) *cobra.Command {
	var from string
	var rcpts []string
	cmd := &cobra.Command{
		Use:   "seal --from SENDER --rcpt RECIPIENT [--rcpt ...] < message > sealed",
		Short: "Seal an RFC 5322 message from stdin as the milter would, and write the sealed message to stdout (works while serve runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			if from == "" {
				return errors.New("seal: --from SENDER is required")
			}
			if len(rcpts) == 0 {
				return errors.New("seal: give at least one --rcpt")
			}
			return runAdmin(adminContext(cmd), cfg, "seal", sealArgs{From: from, Rcpts: rcpts}, cmd.InOrStdin(), cmd.OutOrStdout(), nil)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "envelope sender (required)")
	cmd.Flags().StringArrayVar(&rcpts, "rcpt", nil, "envelope recipient (repeat for several)")
	return cmd
}

func newOpenCommand(load func() (*Config, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "open FILE|-",
		Short: "Print the original of a sealed message or SecureMessageATT.html (admin; works while serve runs)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			return runAdmin(adminContext(cmd), cfg, "open", nil, in, cmd.OutOrStdout(), nil)
		},
	}
}

// openSealed returns the original message of a sealed message or page. It
// returns nothing unless the whole envelope authenticated.
func openSealed(ctx context.Context, in io.Reader, store keystore.KeyStore, mk *keystore.MasterKey, now time.Time) (plain []byte, keyID string, err error) {
	page, err := envelope.FindPage(in)
	if err != nil {
		return nil, "", err
	}
	form, err := envelope.ParsePage(page)
	if err != nil {
		return nil, "", err
	}
	r := bytes.NewReader(form.Envelope)
	hdr, err := envelope.ReadHeader(r)
	if err != nil {
		return nil, "", err
	}
	if hdr.KeyID != form.KeyID {
		return nil, "", errors.New("open: the page's id does not match its envelope")
	}
	id := keystore.KeyID(hdr.KeyID)
	dek, _, err := mk.DataKey(ctx, store, id, now)
	if err != nil {
		return nil, id.String(), fmt.Errorf("open: key %s: %w", id, err)
	}
	payload, err := envelope.Open(r, dek, hdr)
	if err != nil {
		return nil, id.String(), err
	}
	plain, err = io.ReadAll(payload)
	return plain, id.String(), err
}
