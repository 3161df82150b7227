package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pgquorum/pgquorum/pgnode"
	"github.com/spf13/cobra"
)

// guardCmd is the fence guard process (see pgnode/guard.go). The node
// starts it by itself; operators never run it.
func guardCmd() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:    "fence-guard --socket PATH",
		Short:  "Kill the primary's postmaster when its agent stops renewing (started by serve)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)).With("component", "fence-guard")
			return pgnode.RunGuard(ctx, socket, log)
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "Unix socket to serve")
	_ = cmd.MarkFlagRequired("socket")
	return cmd
}

// newGuardClient returns the client of this node's fence guard, which it
// starts on first use as a detached process (its own session, so it
// outlives the agent), logging next to the data directory.
func newGuardClient(dataDir string) *pgnode.GuardClient {
	socket := filepath.Join(dataDir, "fence-guard.sock")
	spawn := func() error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		logf, err := os.OpenFile(filepath.Join(dataDir, "fence-guard.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer logf.Close()
		c := exec.Command(exe, "fence-guard", "--socket", socket)
		c.Env = guardEnv(os.Environ())
		c.Stdout, c.Stderr = logf, logf
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			return fmt.Errorf("start fence guard: %w", err)
		}
		pidFile := filepath.Join(dataDir, "fence-guard.pid")
		_ = os.WriteFile(pidFile, []byte(fmt.Sprintln(c.Process.Pid)), 0o600)
		return c.Process.Release()
	}
	return pgnode.NewGuardClient(socket, spawn)
}

// guardEnv is environ without the node's configuration variables and libpq's
// password variables. The guard needs none of them, and it outlives the agent:
// a PGQUORUM_POSTGRES_*_PASSWORD given to the agent must not stay readable in
// the guard's /proc/PID/environ for as long as the guard runs.
func guardEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PGQUORUM") || strings.HasPrefix(name, "PGPASS") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
