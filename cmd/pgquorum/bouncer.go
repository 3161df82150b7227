package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pgquorum/pgquorum/bouncer"
	"github.com/pgquorum/pgquorum/rpc"
	"github.com/pgquorum/pgquorum/server/config"
	"github.com/spf13/cobra"
)

func bouncerCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "bouncer",
		Short: "Run the PgBouncer agent: route PgBouncer to each cluster's primary, fence old primaries",
		Long: "Run the agent beside a PgBouncer. It watches each configured cluster, rewrites the\n" +
			"[databases] include file, fences (PAUSE) old primaries before it acknowledges a new\n" +
			"epoch, and pauses a cluster's databases when it loses contact with its quorum.\n" +
			"Configuration comes from --config (YAML), PGQUORUM_BOUNCER_* variables and the flags below.\n" +
			"See docs/bouncer.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadBouncer(path, cmd.Flags(), os.Environ())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runBouncer(ctx, cfg, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "YAML config file (default $PGQUORUM_BOUNCER_CONFIG)")
	config.RegisterBouncerFlags(cmd.Flags())
	return cmd
}

// runBouncer wires the agent: admin console, router on the include file,
// one gRPC pool for every cluster's members.
func runBouncer(ctx context.Context, cfg *config.BouncerConfig, logOut io.Writer) error {
	log := newLogger(cfg.Log, logOut)
	cred := cfg.PgBouncer.AdminCredentials()
	password, err := cred.Resolve()
	if err != nil {
		return fmt.Errorf("pgbouncer: %w", err)
	}
	admin, err := bouncer.NewAdmin(adminDSN(cfg.PgBouncer.Host, cfg.PgBouncer.Port, cfg.PgBouncer.AdminUser, password), log)
	if err != nil {
		return err
	}
	defer admin.Close()
	router, err := bouncer.NewRouter(bouncer.RouterOptions{IncludePath: cfg.PgBouncer.IncludePath, Admin: admin, Logger: log})
	if err != nil {
		return fmt.Errorf("pgbouncer.include_path: %w", err)
	}
	creds, err := bouncerCredentials(cfg.TLS, log)
	if err != nil {
		return err
	}
	pool := rpc.NewPool(creds)
	defer pool.Close()
	opts := bouncer.AgentOptions{
		AgentID: cfg.AgentID, ContactLease: cfg.ContactLease, Router: router, Dial: pool.Client, Logger: log,
	}
	for _, c := range cfg.Clusters {
		spec := bouncer.ClusterSpec{Name: c.Name, Endpoints: c.Endpoints}
		for _, d := range c.Databases {
			spec.Databases = append(spec.Databases, bouncer.DatabaseSpec{
				Name: d.Name, DBName: d.DBName, User: d.User, Pool: bouncer.PoolOptions{Mode: d.PoolMode},
			})
		}
		opts.Clusters = append(opts.Clusters, spec)
	}
	agent, err := bouncer.NewAgent(opts)
	if err != nil {
		return err
	}
	log.Info("pgquorum bouncer agent started", "version", version, "agent_id", cfg.AgentID,
		"pgbouncer", fmt.Sprintf("%s:%d", cfg.PgBouncer.Host, cfg.PgBouncer.Port),
		"include_path", cfg.PgBouncer.IncludePath, "clusters", len(cfg.Clusters), "contact_lease", cfg.ContactLease)
	return agent.Run(ctx)
}

// adminDSN is a keyword/value connection string for PgBouncer's console,
// each value quoted (a password may hold spaces or quotes).
func adminDSN(host string, port int, user, password string) string {
	q := func(s string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=pgbouncer sslmode=disable connect_timeout=5", q(host), port, q(user))
	if password != "" {
		dsn += " password=" + q(password)
	}
	return dsn
}
