// Command pgquorum is the whole product in one binary: the node (`serve`),
// the PgBouncer agent (`bouncer`) and the admin client (`ctl`).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pgquorum:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "pgquorum",
		Short:         "PostgreSQL high availability in one binary: an embedded Raft quorum, fencing, PgBouncer routing",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), validateConfigCmd(), ctlCmd(), versionCmd(), guardCmd(), bouncerCmd(), genConfigCmd())
	return root
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "pgquorum", version) },
	}
}
