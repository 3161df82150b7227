package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/internal/mtls"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/rpc"
	"github.com/pgquorum/pgquorum/rpc/httpapi"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/config"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
)

func serveCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a pgquorum node",
		Long: "Run a pgquorum node. Configuration comes from --config (YAML), PGQUORUM_* environment\n" +
			"variables and the flags below, flags first. See docs/configuration.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path, cmd.Flags(), os.Environ())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "YAML config file (default $PGQUORUM_CONFIG)")
	config.RegisterFlags(cmd.Flags())
	return cmd
}

func validateConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate-config FILE",
		Short: "Check a node config file without starting anything",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0], nil, os.Environ())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid (node %s of cluster %s, timing %s: ttl %v, loop_wait %v)\n",
				args[0], cfg.NodeID, cfg.ClusterName, cfg.Timing.Profile, cfg.Timing.TTL, cfg.Timing.LoopWait)
			return nil
		},
	}
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.SlogLevel()}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serverOptions maps the file configuration onto the server's options.
func serverOptions(cfg *config.Config, pool *rpc.Pool, log *slog.Logger) (server.Options, error) {
	rt := cfg.Timing.RaftTimeouts()
	o := server.Options{
		NodeID: cfg.NodeID, ClusterName: cfg.ClusterName, DataDir: cfg.DataDir,
		RaftBindAddr: cfg.Raft.BindAddr, RaftAdvertiseAddr: cfg.RaftAddr(),
		GRPCAddr: cfg.GRPCAddr(), HTTPAddr: cfg.HTTP.ListenAddr,
		Role: pb.MemberRole_MEMBER_ROLE_POSTGRES, NonVoter: !cfg.Voter,
		Tags: &pb.Tags{
			Nofailover: cfg.Tags.NoFailover, Noloadbalance: cfg.Tags.NoLoadBalance,
			Clonefrom: cfg.Tags.CloneFrom, FailoverPriority: int32(cfg.Tags.FailoverPriority),
		},
		Expect: cfg.Bootstrap.Expect, Join: cfg.Bootstrap.Join,
		Timing: server.Timing{
			TTL: cfg.Timing.TTL, LoopWait: cfg.Timing.LoopWait, RetryTimeout: cfg.Timing.RetryTimeout,
			SafetyMargin:  cfg.Timing.SafetyMargin,
			RaftHeartbeat: rt.HeartbeatTimeout, RaftElection: rt.ElectionTimeout,
			RaftLeaderLease: rt.LeaderLeaseTimeout, RaftCommit: rt.CommitTimeout,
		},
		SnapshotThreshold: uint64(cfg.Raft.SnapshotThreshold), SnapshotInterval: cfg.Raft.SnapshotInterval,
		SnapshotRetain: cfg.Raft.SnapshotRetain, TrailingLogs: uint64(cfg.Raft.TrailingLogs),
		Dial: pool.Client, Logger: log, Version: version,
		Callbacks: server.Callbacks{
			OnStart: cfg.Callbacks.OnStart, OnStop: cfg.Callbacks.OnStop, OnRestart: cfg.Callbacks.OnRestart,
			OnReload: cfg.Callbacks.OnReload, OnRoleChange: cfg.Callbacks.OnRoleChange, Timeout: cfg.Callbacks.Timeout,
		},
	}
	if cfg.Role == config.RoleWitness {
		o.Role = pb.MemberRole_MEMBER_ROLE_WITNESS
	} else {
		o.PGAddr = cfg.PGAddr()
		pg, err := newPostgres(cfg, log)
		if err != nil {
			return o, err
		}
		o.Postgres = pg
		o.Guard = newGuardClient(cfg.DataDir)
	}
	for _, entry := range cfg.Bootstrap.InitialCluster {
		id, addr, ok := strings.Cut(entry, "=")
		if !ok {
			return o, fmt.Errorf("bootstrap.initial_cluster: %q is not id=host:port", entry)
		}
		o.InitialCluster = append(o.InitialCluster, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr), Suffrage: raft.Voter})
	}
	return o, nil
}

// serve runs one node until ctx ends. The gRPC and HTTP ports are bound
// before Raft starts, so a node that cannot listen says so and exits at once.
func serve(ctx context.Context, cfg *config.Config, logOut io.Writer) error {
	log := newLogger(cfg.Log, logOut)
	bundle, err := loadTLS(cfg.TLS, mtls.RoleNode, log)
	if err != nil {
		return err
	}
	pool := rpc.NewPool(rpc.ClientCredentials(bundle))
	defer pool.Close()
	opts, err := serverOptions(cfg, pool, log)
	if err != nil {
		return err
	}
	opts.RaftTLS = raftTLS(bundle)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.GRPC.ListenAddr)
	if err != nil {
		return fmt.Errorf("grpc.listen_addr: cannot listen on %s: %w", cfg.GRPC.ListenAddr, err)
	}
	web, err := httpapi.Listen(cfg.HTTP.ListenAddr)
	if err != nil {
		_ = lis.Close()
		return fmt.Errorf("http.listen_addr: cannot listen on %s: %w", cfg.HTTP.ListenAddr, err)
	}
	srv, err := server.New(opts)
	if err != nil {
		_ = lis.Close()
		web.Stop(0)
		return err
	}
	g := grpc.NewServer(rpc.ServerOptions(bundle)...)
	rpc.NewAdmin(srv, pool, log).Register(g)
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	web.Start(httpapi.New(srv, httpapi.Config{Logger: log}))
	log.Info("pgquorum node started", "version", version, "cluster", cfg.ClusterName,
		"raft_addr", opts.RaftAdvertiseAddr, "grpc_addr", opts.GRPCAddr, "http_addr", cfg.HTTP.ListenAddr, "ttl", cfg.Timing.TTL, "tls", bundle != nil)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(runCtx) }()
	select {
	case err = <-runErr:
	case err = <-serveErr:
		err = fmt.Errorf("grpc server: %w", err)
		cancel()
		<-runErr
	case err = <-web.Err():
		err = fmt.Errorf("http server: %w", err)
		cancel()
		<-runErr
	}
	// Exit at once: watch streams (bouncer agents, ctl watch) never end
	// by themselves, and on the primary's host the fence guard stops
	// PostgreSQL ttl - safety_margin after the final renewal unless the
	// next agent renews first. Every moment spent exiting is taken from
	// a restarted agent (a 2 s grace here cost a failover per restart).
	var stopping sync.WaitGroup
	stopping.Go(func() { web.Stop(200 * time.Millisecond) })
	stopping.Go(func() { stopGRPC(g, 200*time.Millisecond) })
	stopping.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("pgquorum node stopped")
	return nil
}

// stopGRPC lets calls finish for a moment, then cuts the rest (watch
// streams never finish on their own).
func stopGRPC(g *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		g.Stop()
	}
}
