package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/securemail/securemail/envelope"
	"github.com/securemail/securemail/keystore"
)

func newSealCommand(load func() (*Config, error)) *cobra.Command {
	var from string
	var rcpts []string
	cmd := &cobra.Command{
		Use:   "seal --from SENDER --rcpt RECIPIENT [--rcpt ...] < message > sealed",
		Short: "Seal an RFC 5322 message from stdin as the milter would, and write the sealed message to stdout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			if len(rcpts) == 0 {
				return errors.New("seal: give at least one --rcpt")
			}
			log := newLogger(cfg)
			mk, store, err := openKeys(cfg, log, true)
			if err != nil {
				return err
			}
			filter, err := newFilter(cfg, store, mk, log)
			if err != nil {
				store.Close()
				return err
			}
			err = filter.SealMessage(os.Stdin, os.Stdout, from, rcpts)
			if cerr := store.Close(); err == nil {
				err = cerr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "envelope sender")
	cmd.Flags().StringArrayVar(&rcpts, "rcpt", nil, "envelope recipient (repeat for several)")
	return cmd
}

func newOpenCommand(load func() (*Config, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "open [FILE]",
		Short: "Print the original of a sealed message or SecureMessageATT.html (admin; needs the keystore, so stop serve first)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			in := io.Reader(os.Stdin)
			if len(args) == 1 {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			mk, store, err := openKeys(cfg, newLogger(cfg), false)
			if err != nil {
				return err
			}
			defer store.Close()
			plain, err := openSealed(in, store, mk, time.Now())
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(plain)
			return err
		},
	}
}

// openSealed returns the original message of a sealed message or page. It
// returns nothing unless the whole envelope authenticated.
func openSealed(in io.Reader, store keystore.KeyStore, mk *keystore.MasterKey, now time.Time) ([]byte, error) {
	page, err := envelope.FindPage(in)
	if err != nil {
		return nil, err
	}
	form, err := envelope.ParsePage(page)
	if err != nil {
		return nil, err
	}
	r := bytes.NewReader(form.Envelope)
	hdr, err := envelope.ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if hdr.KeyID != form.KeyID {
		return nil, errors.New("open: the page's id does not match its envelope")
	}
	dek, _, err := mk.DataKey(context.Background(), store, keystore.KeyID(hdr.KeyID), now)
	if err != nil {
		return nil, fmt.Errorf("open: key %s: %w", hdr.KeyID, err)
	}
	payload, err := envelope.Open(r, dek, hdr)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(payload)
}
