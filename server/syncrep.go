package server

import (
	"context"
	"slices"
	"sort"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// manageSync keeps synchronous_standby_names and the FSM's record of
// synchronous standbys in step, on the primary, so that every member the
// FSM lists as synchronous has every acknowledged write (invariant 5):
//
//  1. members leaving the set leave the FSM first (they may no longer be
//     promoted automatically),
//  2. then PostgreSQL is told the new set,
//  3. members joining enter the FSM only once PostgreSQL reports them
//     'sync', that is, after the primary has started waiting for them.
//
// In mode "on" with no healthy standby the FSM records the fall back to
// async (degraded) before PostgreSQL stops waiting; mode "strict" never
// stops waiting.
func (a *actuator) manageSync(ctx context.Context, st *pb.ClusterState) error {
	cfg := st.Config
	epoch := st.Primary.Epoch
	recorded := st.Sync.GetMembers()
	health := a.Health()
	if cfg.GetSynchronousMode() == pb.SynchronousMode_SYNCHRONOUS_MODE_OFF {
		if len(recorded) > 0 || st.Sync.GetDegraded() {
			if err := a.recordSync(ctx, epoch, nil, false); err != nil {
				return err
			}
		}
		return a.setPGSync(ctx, nil, 0)
	}
	want := a.desiredSync(st, health)
	keep := intersect(recorded, want)
	if len(keep) != len(recorded) {
		if err := a.recordSync(ctx, epoch, keep, st.Sync.GetDegraded()); err != nil {
			return err
		}
	}
	if len(want) == 0 {
		if cfg.GetSynchronousMode() == pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT {
			// Never stop waiting: wait for any eligible member that
			// comes back (the inherited list may name dead ones).
			return a.setPGSync(ctx, a.eligibleSync(st), int(max(cfg.GetSynchronousNodeCount(), 1)))
		}
		if !st.Sync.GetDegraded() || len(keep) > 0 {
			if err := a.recordSync(ctx, epoch, nil, true); err != nil {
				return err
			}
		}
		return a.setPGSync(ctx, nil, 0)
	}
	if err := a.setPGSync(ctx, want, len(want)); err != nil {
		return err
	}
	added := keep
	for _, r := range health.GetReplicas() {
		if slices.Contains(want, r.ApplicationName) && r.SyncState == "sync" && !slices.Contains(added, r.ApplicationName) {
			added = append(added, r.ApplicationName)
		}
	}
	sort.Strings(added)
	if !slices.Equal(added, sortedCopy(recorded)) || (st.Sync.GetDegraded() && len(added) > 0) {
		return a.recordSync(ctx, epoch, added, false)
	}
	return nil
}

// desiredSync picks up to synchronous_node_count streaming standbys that
// may be promoted, keeping the ones already recorded first.
func (a *actuator) desiredSync(st *pb.ClusterState, h *pb.PostgresHealth) []string {
	n := int(max(st.Config.GetSynchronousNodeCount(), 1))
	streaming := map[string]bool{}
	for _, r := range h.GetReplicas() {
		if r.State == "streaming" {
			streaming[r.ApplicationName] = true
		}
	}
	var ids []string
	for _, m := range st.Members {
		if m.Id == st.Primary.MemberId || m.Role != pb.MemberRole_MEMBER_ROLE_POSTGRES || m.Tags.GetNofailover() {
			continue
		}
		if streaming[m.Id] {
			ids = append(ids, m.Id)
		}
	}
	recorded := st.Sync.GetMembers()
	sort.SliceStable(ids, func(i, j int) bool {
		ri, rj := slices.Contains(recorded, ids[i]), slices.Contains(recorded, ids[j])
		if ri != rj {
			return ri
		}
		return ids[i] < ids[j]
	})
	if len(ids) > n {
		ids = ids[:n]
	}
	sort.Strings(ids)
	return ids
}

func (a *actuator) recordSync(ctx context.Context, epoch uint64, members []string, degraded bool) error {
	req := &pb.SetSync{Epoch: epoch, Members: members, Degraded: degraded}
	return a.s.callLeader(ctx, func(ctx context.Context, c pb.AdminClient) error {
		_, err := c.SetSync(ctx, req)
		return err
	})
}

// eligibleSync lists every member that may serve as a synchronous standby.
func (a *actuator) eligibleSync(st *pb.ClusterState) []string {
	var ids []string
	for _, m := range st.Members {
		if m.Id != st.Primary.MemberId && m.Role == pb.MemberRole_MEMBER_ROLE_POSTGRES && !m.Tags.GetNofailover() {
			ids = append(ids, m.Id)
		}
	}
	return ids
}

// setPGSync sets synchronous_standby_names to FIRST count (names), or
// empty.
func (a *actuator) setPGSync(ctx context.Context, names []string, count int) error {
	count = min(count, len(names))
	a.mu.Lock()
	same := a.pgSyncSet && slices.Equal(a.pgSync, names)
	a.mu.Unlock()
	if same {
		return nil
	}
	if err := a.pg.SetSynchronousStandbys(ctx, names, count); err != nil {
		return err
	}
	a.mu.Lock()
	a.pgSync, a.pgSyncSet = slices.Clone(names), true
	a.mu.Unlock()
	a.log.Info("synchronous_standby_names set", "standbys", names)
	return nil
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

// promotionSync is what synchronous_standby_names must be the moment this
// node is promoted: in strict mode every member that may be a synchronous
// standby (writes wait until the FSM records one), otherwise nothing, so
// the new primary takes writes at once and manageSync adds the standbys
// it recorded.
func (a *actuator) promotionSync(st *pb.ClusterState) []string {
	if st.Config.GetSynchronousMode() != pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT {
		return nil
	}
	var ids []string
	for _, m := range st.Members {
		if m.Id != a.s.opts.NodeID && m.Role == pb.MemberRole_MEMBER_ROLE_POSTGRES && !m.Tags.GetNofailover() {
			ids = append(ids, m.Id)
		}
	}
	return ids
}

// presetPromotionSync writes promotionSync on a standby, where PostgreSQL
// ignores it, so a promotion does not wait for a configuration reload
// (a standby also inherits the old primary's value through
// pg_basebackup). Failures are only logged: the promotion path sets it
// again before it promotes.
func (a *actuator) presetPromotionSync(ctx context.Context, st *pb.ClusterState) {
	if err := a.setPGSync(ctx, a.promotionSync(st), int(max(st.Config.GetSynchronousNodeCount(), 1))); err != nil {
		a.log.Warn("preset synchronous_standby_names for a promotion", "err", err)
	}
}
