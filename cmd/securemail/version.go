package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set with -ldflags "-X main.version=... -X main.commit=... -X main.buildDate=..."
// only when the build carries no module or VCS information (a build
// outside a module, or with -buildvcs=false).
var (
	version   = ""
	commit    = ""
	buildDate = ""
)

// versionInfo is what version prints: from debug.ReadBuildInfo, with the
// -ldflags values as the fallback.
type versionInfo struct {
	Version   string
	Commit    string
	BuildDate string
	Modified  bool
	Go        string
}

func readVersion() versionInfo {
	v := versionInfo{Version: version, Commit: commit, BuildDate: buildDate, Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v.orUnknown()
	}
	if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
		v.Version = mv
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.BuildDate = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v.orUnknown()
}

func (v versionInfo) orUnknown() versionInfo {
	if v.Version == "" {
		v.Version = "(devel)"
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	if v.BuildDate == "" {
		v.BuildDate = "unknown"
	}
	return v
}

func (v versionInfo) String() string {
	c := v.Commit
	if v.Modified {
		c += "+modified"
	}
	return fmt.Sprintf("securemail %s (commit %s, built %s, %s)", v.Version, c, v.BuildDate, v.Go)
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), readVersion())
			return err
		},
	}
}
