package server

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/pgquorum/pgquorum/pgnode"
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
//     'sync', that is, after the primary has started waiting for them,
//     and they have flushed every write acknowledged before (joinedSync).
//
// A healthy standby streams and has replied within replyStaleAfter: one
// whose connection died silently still shows "streaming" for up to
// wal_sender_timeout, and left in the set it would stall every write.
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
	want := desiredSync(st, health, replyStaleAfter(a.s.opts.Timing))
	keep := intersect(recorded, want)
	if len(keep) != len(recorded) {
		if err := a.recordSync(ctx, epoch, keep, st.Sync.GetDegraded()); err != nil {
			return err
		}
		recorded = keep
	}
	names, count := pgSyncFor(st, want)
	if len(want) == 0 {
		if count == 0 && (!st.Sync.GetDegraded() || len(keep) > 0) {
			if err := a.recordSync(ctx, epoch, nil, true); err != nil {
				return err
			}
		}
		return a.setPGSync(ctx, names, count)
	}
	if err := a.setPGSync(ctx, names, count); err != nil {
		return err
	}
	target, err := a.syncTarget(ctx)
	if err != nil {
		return err
	}
	added := joinedSync(keep, want, health, target)
	if !slices.Equal(added, sortedCopy(recorded)) || (st.Sync.GetDegraded() && len(added) > 0) {
		return a.recordSync(ctx, epoch, added, false)
	}
	return nil
}

// replyStaleAfter is how long a standby may go without replying to the
// primary and still count as streaming for the synchronous set: the ttl,
// but never less than two status intervals and a probe interval, so that
// an idle standby that is alive (it replies every
// pgnode.ReceiverStatusInterval; the probe sees it every loop_wait) is
// never taken for a silent one. A standby cut off without a reset keeps
// state "streaming" until wal_sender_timeout (60 s by default) and every
// write waits for it; with this bound another standby takes its place
// within about the ttl.
func replyStaleAfter(t Timing) time.Duration {
	return max(t.TTL, 2*pgnode.ReceiverStatusInterval+t.LoopWait)
}

// syncStandbyWentSilent reports whether h, this node's fresh health,
// shows a standby that PostgreSQL waits for crossing replyStaleAfter
// since the previous probe; the probe then wakes the convergence round,
// which replaces it, instead of leaving it to the round's next tick.
func (a *actuator) syncStandbyWentSilent(h *pb.PostgresHealth) bool {
	if h.GetInRecovery() || len(h.GetReplicas()) == 0 {
		return false
	}
	bound := replyStaleAfter(a.s.opts.Timing)
	probeEvery := max(a.s.opts.Timing.LoopWait, 100*time.Millisecond)
	a.mu.Lock()
	waitedFor := a.pgSync
	a.mu.Unlock()
	for _, r := range h.GetReplicas() {
		age := time.Duration(r.ReplyAgeMs) * time.Millisecond
		if slices.Contains(waitedFor, r.ApplicationName) && age > bound && age <= bound+probeEvery {
			return true
		}
	}
	return false
}

// desiredSync picks up to synchronous_node_count standbys that stream,
// replied within staleAfter and may be promoted, keeping the ones already
// recorded first.
func desiredSync(st *pb.ClusterState, h *pb.PostgresHealth, staleAfter time.Duration) []string {
	n := int(max(st.Config.GetSynchronousNodeCount(), 1))
	streaming := map[string]bool{}
	for _, r := range h.GetReplicas() {
		if r.State == "streaming" && time.Duration(r.ReplyAgeMs)*time.Millisecond <= staleAfter {
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

// joinedSync returns keep plus the members of want that may now enter the
// FSM's synchronous set (sorted): PostgreSQL reports them 'sync', so it
// waits for them, and they have flushed target, the primary's WAL
// position right after synchronous_standby_names last changed. Every
// write acknowledged before that change (by standbys that may have left
// the set) lies below target, every write after it waited for them; a
// standby that is 'sync' but still catching up would otherwise be
// recorded while it lacks writes the old set acknowledged.
func joinedSync(keep, want []string, h *pb.PostgresHealth, target uint64) []string {
	added := slices.Clone(keep)
	for _, r := range h.GetReplicas() {
		if slices.Contains(want, r.ApplicationName) && r.SyncState == "sync" && r.FlushLsn >= target &&
			!slices.Contains(added, r.ApplicationName) {
			added = append(added, r.ApplicationName)
		}
	}
	sort.Strings(added)
	return added
}

func (a *actuator) recordSync(ctx context.Context, epoch uint64, members []string, degraded bool) error {
	req := &pb.SetSync{Epoch: epoch, Members: members, Degraded: degraded}
	return a.s.callLeader(ctx, func(ctx context.Context, c pb.AdminClient) error {
		_, err := c.SetSync(ctx, req)
		return err
	})
}

// pgSyncFor returns what synchronous_standby_names must hold, as FIRST
// count (names), for want, the healthy standbys desiredSync picked: want,
// every one of them waited for. With none, mode "strict" waits for any
// eligible member that comes back (never stop waiting; the inherited list
// may name dead ones), mode "on" for nobody (the caller records the
// degradation first).
func pgSyncFor(st *pb.ClusterState, want []string) ([]string, int) {
	switch {
	case len(want) > 0:
		return want, len(want)
	case st.Config.GetSynchronousMode() == pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT:
		return eligibleSync(st), int(max(st.Config.GetSynchronousNodeCount(), 1))
	}
	return nil, 0
}

// eligibleSync lists every member that may serve as a synchronous standby.
func eligibleSync(st *pb.ClusterState) []string {
	var ids []string
	for _, m := range st.Members {
		if m.Id != st.Primary.MemberId && m.Role == pb.MemberRole_MEMBER_ROLE_POSTGRES && !m.Tags.GetNofailover() {
			ids = append(ids, m.Id)
		}
	}
	return ids
}

// setPGSync sets synchronous_standby_names to FIRST count (names), or
// empty. It skips the write when it set the same list last, unless an
// action may have replaced the files since (see pgSyncGen).
func (a *actuator) setPGSync(ctx context.Context, names []string, count int) error {
	count = min(count, len(names))
	a.mu.Lock()
	same := a.pgSyncSet && a.pgSyncGen == a.infoGen && slices.Equal(a.pgSync, names)
	a.mu.Unlock()
	if same {
		return nil
	}
	if err := a.pg.SetSynchronousStandbys(ctx, names, count); err != nil {
		return err
	}
	// The WAL position now bounds every write acknowledged under the old
	// setting (see joinedSync). Reading it must not fail a promotion:
	// without it nobody joins until syncTarget reads it.
	lsn := lsnUnknown
	if st, err := a.pg.Probe(ctx); err == nil {
		lsn = walPosition(st)
	} else {
		a.log.Warn("WAL position after setting synchronous_standby_names", "err", err)
	}
	a.mu.Lock()
	a.pgSync, a.pgSyncSet, a.pgSyncLSN, a.pgSyncGen = slices.Clone(names), true, lsn, a.infoGen
	a.mu.Unlock()
	a.log.Info("synchronous_standby_names set", "standbys", names, "lsn", pgnode.LSN(lsn))
	return nil
}

// lsnUnknown marks a WAL position not read yet.
const lsnUnknown = ^uint64(0)

// walPosition is a server's newest WAL position: the current one on a
// primary, the received or replayed one on a standby.
func walPosition(st pgnode.Status) uint64 {
	return uint64(max(st.CurrentLSN, st.ReceiveLSN, st.ReplayLSN))
}

// syncTarget returns the WAL position read right after
// synchronous_standby_names last changed, reading it now if setPGSync
// could not (a later position only makes joining stricter).
func (a *actuator) syncTarget(ctx context.Context) (uint64, error) {
	a.mu.Lock()
	t := a.pgSyncLSN
	a.mu.Unlock()
	if t != lsnUnknown {
		return t, nil
	}
	st, err := a.pg.Probe(ctx)
	if err != nil {
		return 0, fmt.Errorf("WAL position after setting synchronous standbys: %w", err)
	}
	t = walPosition(st)
	a.mu.Lock()
	if a.pgSyncLSN == lsnUnknown {
		a.pgSyncLSN = t
	}
	a.mu.Unlock()
	return t, nil
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
// node is promoted: in synchronous mode (on or strict) every member that
// may be a synchronous standby, so no write is acknowledged before a
// standby confirms it; manageSync then narrows the list to the standbys
// that stream, or, in mode on with none, records the fall back to async
// in the FSM before it empties the list (the only way to async, so the
// FSM never says "synchronous" while the primary acknowledges alone). In
// mode off, nothing: the new primary takes writes at once.
func (a *actuator) promotionSync(st *pb.ClusterState) []string {
	if st.Config.GetSynchronousMode() == pb.SynchronousMode_SYNCHRONOUS_MODE_OFF {
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
