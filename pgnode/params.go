package pgnode

import (
	"maps"
	"strings"
)

// ValidateParameters checks PostgreSQL parameters as SetParameters and
// UseParameters do before writing any: every name must be a valid GUC name
// (an optional "prefix." for extensions), not one pgnode manages itself
// (listen_addresses, port, cluster_name, hot_standby, the include
// directives, ...; matched case-insensitively, as PostgreSQL does), and no
// value may hold a newline or NUL. It returns ErrInvalidParameter naming
// the first offending parameter. Callers that accept parameters for later
// (the dynamic configuration) use it to refuse them up front.
func ValidateParameters(params map[string]string) error {
	return validateParams(params)
}

// mergeParams returns the parameters pgquorum.conf is written with for the
// dynamic params: params with lower-cased names, overridden by the
// node-local Config.Parameters (as in SetParameters).
func (n *Node) mergeParams(params map[string]string) map[string]string {
	out := make(map[string]string, len(params)+len(n.cfg.Parameters))
	for k, v := range params {
		out[strings.ToLower(k)] = v
	}
	for k, v := range n.cfg.Parameters {
		out[strings.ToLower(k)] = v
	}
	return out
}

// UseParameters sets the dynamic parameters (merged with the node-local
// Config.Parameters, which win) that the next write of the managed
// configuration uses: the next Start, Reload, Reinit or Rewind. It touches
// no file and signals no server; SetParameters applies them to a running
// server. It exists because a server must start with the cluster's
// parameters: a freshly cloned standby whose max_connections (or
// max_worker_processes, max_wal_senders, max_prepared_transactions,
// max_locks_per_transaction) is below its primary's refuses to start, and
// an agent that restarts would otherwise rewrite and reload its running
// server without them until SetParameters runs. A set that SetParameters
// found PostgreSQL rejecting on this node is not used again: the files
// keep the last accepted one, so a start does not fail on it.
func (n *Node) UseParameters(params map[string]string) error {
	if err := validateParams(params); err != nil {
		return err
	}
	merged := n.mergeParams(params)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rejected != nil && maps.Equal(merged, n.rejected) {
		n.params = n.accepted
		return nil
	}
	n.params = merged
	return nil
}

// acceptParams records p as a set a server started with.
func (n *Node) acceptParams(p map[string]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.accepted = p
}

// rejectParams records p, a set the running server rejected, and goes
// back to the last accepted set for the next write of the configuration.
func (n *Node) rejectParams(p map[string]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rejected = p
	n.params = n.accepted
}
