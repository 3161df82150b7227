package httpapi

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// check is one health check; several paths may name the same check.
type check int

const (
	checkPrimary check = iota
	checkStandbyLeader
	checkReplica
	checkReadOnly
	checkReadOnlySync
	checkSync
	checkAsync
	checkHealth
	checkLiveness
	checkReadiness
)

// checkPaths maps Patroni's health check paths to the checks.
var checkPaths = map[string]check{
	"/":                      checkPrimary,
	"/primary":               checkPrimary,
	"/leader":                checkPrimary,
	"/master":                checkPrimary,
	"/read-write":            checkPrimary,
	"/standby-leader":        checkStandbyLeader,
	"/standby_leader":        checkStandbyLeader,
	"/replica":               checkReplica,
	"/read-only":             checkReadOnly,
	"/read-only-sync":        checkReadOnlySync,
	"/read-only-synchronous": checkReadOnlySync,
	"/sync":                  checkSync,
	"/synchronous":           checkSync,
	"/async":                 checkAsync,
	"/asynchronous":          checkAsync,
	"/health":                checkHealth,
	"/liveness":              checkLiveness,
	"/readiness":             checkReadiness,
}

// query is what a health check's query string asks for.
type query struct {
	// lag is the largest replication lag accepted, in bytes.
	lag    uint64
	hasLag bool
	// tags are tag_<key>=<value> filters, keyed without the prefix.
	tags map[string]string
	// replicationState filters on Patroni's replication_state.
	replicationState string
	// writeMode measures /readiness lag against received WAL (mode=write)
	// instead of replayed WAL.
	writeMode bool
}

func parseQuery(v url.Values) (query, error) {
	var q query
	if s := v.Get("lag"); s != "" {
		n, err := parseBytes(s)
		if err != nil {
			return q, fmt.Errorf("lag: %w", err)
		}
		q.lag, q.hasLag = n, true
	}
	q.replicationState = v.Get("replication_state")
	q.writeMode = v.Get("mode") == "write"
	for k, vals := range v {
		if key, ok := strings.CutPrefix(k, "tag_"); ok && len(vals) > 0 {
			if q.tags == nil {
				q.tags = map[string]string{}
			}
			q.tags[key] = vals[0]
		}
	}
	return q, nil
}

// evaluate runs check c and says why it failed.
func (h *Handler) evaluate(ctx context.Context, c check, f facts, q query) (bool, string) {
	var ok bool
	var why string
	switch c {
	case checkPrimary:
		return f.primary() // tags are ignored here, as in Patroni
	case checkStandbyLeader:
		return false, "pgquorum runs no standby clusters"
	case checkLiveness:
		return f.ns.GetRaftState() != "Shutdown", "raft is shut down"
	case checkReadiness:
		return h.ready(ctx, f, q)
	case checkReplica:
		ok, why = h.replicaCheck(ctx, f, q)
	case checkReadOnly:
		if ok, _ = f.primary(); !ok {
			ok, why = h.replicaCheck(ctx, f, q)
		}
	case checkReadOnlySync:
		if ok, _ = f.primary(); !ok {
			ok, why = h.syncCheck(ctx, f, q, true)
		}
	case checkSync:
		ok, why = h.syncCheck(ctx, f, q, true)
	case checkAsync:
		ok, why = h.syncCheck(ctx, f, q, false)
	case checkHealth:
		ok, why = f.running(), "postgres is "+pgState(f.pg)
		if f.witness {
			why = "this node is a witness"
		}
	}
	if ok {
		ok, why = tagsMatch(f.tags, q.tags)
	}
	return ok, why
}

// replicaCheck is Patroni's replica status: a running standby, not the
// primary, without noloadbalance, matching replication_state and lag.
func (h *Handler) replicaCheck(ctx context.Context, f facts, q query) (bool, string) {
	if ok, why := f.replica(); !ok {
		return ok, why
	}
	if f.tags.GetNoloadbalance() {
		return false, "the noloadbalance tag is set"
	}
	if q.replicationState != "" && q.replicationState != f.replicationState() {
		return false, fmt.Sprintf("replication state is %q, not %q", f.replicationState(), q.replicationState)
	}
	if q.hasLag {
		return h.lagWithin(ctx, f, q.lag, f.pg.GetReplayLsn(), true)
	}
	return true, ""
}

// syncCheck is /sync (wantSync) or /async: the replica check of a
// recorded synchronous standby, or of one that is not.
func (h *Handler) syncCheck(ctx context.Context, f facts, q query, wantSync bool) (bool, string) {
	switch sync := f.syncStandby(); {
	case wantSync && !sync:
		return false, "this node is not a recorded synchronous standby"
	case !wantSync && sync:
		return false, "this node is a recorded synchronous standby"
	}
	return h.replicaCheck(ctx, f, q)
}

// ready is /readiness: a leader is known, and this node is the primary,
// or a streaming standby within the lag limit (lag, else the cluster's
// maximum_lag_on_failover), or a witness.
func (h *Handler) ready(ctx context.Context, f facts, q query) (bool, string) {
	switch {
	case f.ns.GetLeaderId() == "":
		return false, "no raft leader is known"
	case f.witness:
		return true, ""
	case f.assigned():
		return f.primary()
	}
	if ok, why := f.replica(); !ok {
		return ok, why
	}
	if f.replicationState() != "streaming" {
		return false, "postgres is not streaming"
	}
	limit, strict := q.lag, q.hasLag
	if !strict {
		if f.maxLagOnFailover <= 0 {
			return true, ""
		}
		limit = uint64(f.maxLagOnFailover)
	}
	pos := f.pg.GetReplayLsn()
	if q.writeMode {
		pos = f.pg.GetReceiveLsn()
	}
	return h.lagWithin(ctx, f, limit, pos, strict)
}

// lagWithin compares the lag of pos behind the primary with limit. An
// unknown primary position fails when strict (the lag was asked for).
func (h *Handler) lagWithin(ctx context.Context, f facts, limit, pos uint64, strict bool) (bool, string) {
	primary, known := h.wal.get(ctx, f.st, h.now())
	if !known {
		return !strict, "the primary's WAL position is unknown"
	}
	if lag := lagBytes(primary, pos); lag > limit {
		return false, fmt.Sprintf("replication lag %d bytes exceeds %d", lag, limit)
	}
	return true, ""
}

// tagsMatch applies Patroni's tag_<key>=<value> filters. Boolean tags read
// "true" or "false", failover_priority its number; an unknown tag fails.
func tagsMatch(t *pb.Tags, want map[string]string) (bool, string) {
	for k, v := range want {
		have, ok := tagValue(t, k)
		if !ok {
			return false, fmt.Sprintf("tag %q is not set on this node", k)
		}
		if !strings.EqualFold(have, v) {
			return false, fmt.Sprintf("tag %s is %q, not %q", k, have, v)
		}
	}
	return true, ""
}

func tagValue(t *pb.Tags, key string) (string, bool) {
	switch key {
	case "nofailover":
		return strconv.FormatBool(t.GetNofailover()), true
	case "noloadbalance":
		return strconv.FormatBool(t.GetNoloadbalance()), true
	case "clonefrom":
		return strconv.FormatBool(t.GetClonefrom()), true
	case "failover_priority":
		return strconv.Itoa(int(t.GetFailoverPriority())), true
	}
	return "", false
}

// tagMap is the tags as Patroni shows them: only those set.
func tagMap(t *pb.Tags) map[string]any {
	m := map[string]any{}
	if t.GetNofailover() {
		m["nofailover"] = true
	}
	if t.GetNoloadbalance() {
		m["noloadbalance"] = true
	}
	if t.GetClonefrom() {
		m["clonefrom"] = true
	}
	if p := t.GetFailoverPriority(); p != 0 {
		m["failover_priority"] = p
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

func uitoa(v uint64) string { return strconv.FormatUint(v, 10) }
