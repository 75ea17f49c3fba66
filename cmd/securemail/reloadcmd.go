package main

// securemail reload: the SIGHUP reload, asked for through the admin socket,
// with its outcome printed instead of only logged.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func init() {
	registerAdminOp("reload", adminOp{run: opReload})
}

// errNothingToReload is the answer when serve is not running: the command
// then runs in-process, where there is no configuration in force.
var errNothingToReload = errors.New("securemail serve is not running, so there is nothing to reload: its next start reads the configuration")

func opReload(_ context.Context, env *adminEnv, _ json.RawMessage, _ io.Reader, out io.Writer) (any, error) {
	if env.reload == nil {
		return nil, errNothingToReload
	}
	res, err := env.reload.reloadAndLog("admin " + env.who)
	if err != nil {
		return nil, fmt.Errorf("reload refused, the configuration in force stays: %w", err)
	}
	senders := "everyone may send encrypted"
	if res.Policy.Senders >= 0 {
		senders = fmt.Sprintf("%d sender entries", res.Policy.Senders)
	}
	if _, err := fmt.Fprintf(out, "reloaded: %d internal domain entries, %s\n", res.Policy.InternalDomains, senders); err != nil {
		return nil, err
	}
	if len(res.NeedRestart) > 0 {
		_, err = fmt.Fprintf(out, "not applied until a restart: %s\n", strings.Join(res.NeedRestart, ", "))
	}
	return res, err
}

func newReloadCommand(load func() (*Config, error)) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make the running serve read its configuration and list files again (as SIGHUP does)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load()
			if err != nil {
				return err
			}
			return runAdmin(adminContext(cmd), cfg, "reload", struct{}{}, nil, cmd.OutOrStdout(), nil)
		},
	}
}
