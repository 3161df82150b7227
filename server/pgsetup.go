package server

import (
	"context"
	"fmt"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// useParameters hands the committed dynamic PostgreSQL parameters to
// pgnode whenever their version changes, for the next start or rewrite of
// the managed configuration. applyParameters runs only once the server is
// up, and a server must start with them: a fresh clone whose
// max_connections (or max_locks_per_transaction, ...) is below its
// primary's refuses to start, and a restarted agent would otherwise
// rewrite its running server's configuration without them.
func (a *actuator) useParameters(st *pb.ClusterState) {
	v := st.Config.GetVersion()
	a.mu.Lock()
	same := a.paramsUsed == v
	a.paramsUsed = v
	a.mu.Unlock()
	if same {
		return
	}
	if err := a.pg.UseParameters(st.Config.GetPostgresParameters()); err != nil {
		a.log.Warn("dynamic PostgreSQL parameters refused; starts go without them", "version", v, "err", err)
	}
}

// ensureRoles makes the replication and rewind roles on this node's
// primary, once per agent lifetime (pgnode writes only what is missing or
// changed): an adopted primary has none, and a Bootstrap that failed after
// initdb is finished through a plain start, which does not make them.
func (a *actuator) ensureRoles(ctx context.Context) error {
	a.mu.Lock()
	done := a.rolesEnsured
	a.mu.Unlock()
	if done {
		return nil
	}
	if err := a.pg.EnsureRoles(ctx); err != nil {
		return fmt.Errorf("replication and rewind roles: %w", err)
	}
	a.mu.Lock()
	a.rolesEnsured = true
	a.mu.Unlock()
	return nil
}
