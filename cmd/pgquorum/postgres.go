package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/pgquorum/pgquorum/pgnode"
	"github.com/pgquorum/pgquorum/server/config"
)

// newPostgres builds the local PostgreSQL driver from the node config.
func newPostgres(cfg *config.Config, log *slog.Logger) (*pgnode.Node, error) {
	pc := cfg.Postgres
	host, portStr, err := net.SplitHostPort(cfg.PGAddr())
	if err != nil {
		return nil, fmt.Errorf("postgres.connect_address: %w", err)
	}
	port, _ := strconv.Atoi(portStr)
	if port != pc.Port {
		return nil, fmt.Errorf("postgres.connect_address %q: port must equal postgres.port (%d)", cfg.PGAddr(), pc.Port)
	}
	creds := func(key string, c config.Credentials) (pgnode.Credentials, error) {
		pw, err := c.Resolve()
		if err != nil {
			return pgnode.Credentials{}, fmt.Errorf("postgres.%s: %w", key, err)
		}
		return pgnode.Credentials{Username: c.Username, Password: pw}, nil
	}
	su, err := creds("superuser", pc.Superuser)
	if err != nil {
		return nil, err
	}
	repl, err := creds("replication", pc.Replication)
	if err != nil {
		return nil, err
	}
	rew, err := creds("rewind", pc.Rewind)
	if err != nil {
		return nil, err
	}
	return pgnode.New(pgnode.Config{
		Name:                 cfg.NodeID,
		BinDir:               pc.BinDir,
		DataDir:              pc.DataDir,
		ListenAddresses:      strings.TrimSpace(pc.ListenAddresses),
		Host:                 host,
		Port:                 pc.Port,
		SocketDir:            pc.SocketDirectory(),
		OSUser:               pc.OSUser,
		ClusterName:          cfg.ClusterName,
		Superuser:            su,
		Replication:          repl,
		Rewind:               rew,
		InitdbArgs:           pc.Initdb,
		Parameters:           pc.Parameters,
		CreateReplicaCommand: pc.CreateReplicaCommand,
		SlotPrefix:           "pgq_",
	}, log.With("component", "pgnode"))
}
