package main

import (
	"fmt"
	"log/slog"

	"github.com/pgquorum/pgquorum/internal/mtls"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/config"
	"google.golang.org/grpc/credentials"
)

// insecureWarning is logged at start-up by every process running with
// tls.insecure: true.
const insecureWarning = "running without TLS (tls.insecure: true): anyone who can reach this process's ports controls the database; use it on loopback only (see docs/security.md)"

// loadTLS reads the TLS files of cfg and checks that the certificate
// carries role. It returns nil with tls.insecure, after logging the warning.
func loadTLS(cfg config.TLS, role mtls.Role, log *slog.Logger) (*mtls.Bundle, error) {
	if cfg.Insecure {
		log.Warn(insecureWarning)
		return nil, nil
	}
	b, err := mtls.Load(cfg.CAFile, cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if !b.Identity.Roles.Has(role) {
		return nil, fmt.Errorf("tls.cert_file: %s is %s; this process needs a %s certificate (see scripts/gen-certs.sh)",
			cfg.CertFile, b.Identity, role)
	}
	log.Info("mutual TLS", "identity", b.Identity.Name, "roles", b.Identity.Roles.String(), "ca_file", cfg.CAFile)
	return b, nil
}

// raftTLS is the Raft transport's TLS of a node; nil without TLS.
func raftTLS(b *mtls.Bundle) *server.RaftTLS {
	if b == nil {
		return nil
	}
	return &server.RaftTLS{Server: b.ServerConfig(mtls.RoleNode), Client: b.ClientConfig()}
}

// bouncerCredentials are the gRPC client credentials of a bouncer agent:
// nil (plaintext) with tls.insecure.
func bouncerCredentials(cfg config.TLS, log *slog.Logger) (credentials.TransportCredentials, error) {
	b, err := loadTLS(cfg, mtls.RoleBouncer, log)
	if err != nil || b == nil {
		return nil, err
	}
	return credentials.NewTLS(b.ClientConfig()), nil
}
