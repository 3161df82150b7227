package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// agentOwned are PostgreSQL parameters the agent sets itself; the dynamic
// configuration may not override them (in any case). pgnode refuses the
// ones it writes and the include directives too (ValidateParameters).
var agentOwned = map[string]bool{
	"listen_addresses": true, "port": true, "cluster_name": true, "hot_standby": true,
	"unix_socket_directories": true, "data_directory": true, "primary_conninfo": true,
	"primary_slot_name": true, "synchronous_standby_names": true, "hba_file": true,
	"config_file": true, "ident_file": true, "restore_command": true, "recovery_target_timeline": true,
}

// ValidateDynamicConfig checks a dynamic configuration before it is
// committed, naming the field and the rule of every problem.
func ValidateDynamicConfig(c *pb.DynamicConfig) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c == nil {
		return fmt.Errorf("%w: config is empty", ErrInvalid)
	}
	if _, ok := pb.SynchronousMode_name[int32(c.SynchronousMode)]; !ok {
		bad("synchronous_mode: %d is not off, on or strict", c.SynchronousMode)
	}
	if c.SynchronousNodeCount < 1 {
		bad("synchronous_node_count: %d, must be >= 1", c.SynchronousNodeCount)
	}
	if c.MaximumLagOnFailoverBytes < 0 {
		bad("maximum_lag_on_failover: %d, must be >= 0", c.MaximumLagOnFailoverBytes)
	}
	if c.PrimaryStartTimeoutMs < 0 {
		bad("primary_start_timeout: %dms, must be >= 0", c.PrimaryStartTimeoutMs)
	}
	names := make([]string, 0, len(c.PostgresParameters))
	for k := range c.PostgresParameters {
		names = append(names, k)
	}
	slices.Sort(names)
	seen := map[string]string{}
	for _, k := range names {
		// PostgreSQL matches parameter names case-insensitively: so
		// does the agent (pgnode writes them lower-cased).
		lower := strings.ToLower(k)
		if other, dup := seen[lower]; dup {
			bad("postgresql.parameters: %s and %s name the same parameter", other, k)
		}
		seen[lower] = k
		switch err := pgnode.ValidateParameters(map[string]string{k: c.PostgresParameters[k]}); {
		case agentOwned[lower]:
			bad("postgresql.parameters.%s: owned by the agent, cannot be set in the dynamic config", k)
		case err != nil:
			bad("postgresql.parameters.%s: %w", k, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// SetConfig replaces the dynamic configuration if expectedVersion is
// still current; it runs on the leader.
func (s *Server) SetConfig(ctx context.Context, req *pb.SetConfig) (*pb.SetConfigResponse, error) {
	if err := ValidateDynamicConfig(req.GetConfig()); err != nil {
		return nil, err
	}
	index, err := s.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	st := s.fsm.State()
	s.log.Info("dynamic config changed", "version", st.Config.Version, "index", index)
	return &pb.SetConfigResponse{Index: index, Config: st.Config}, nil
}
