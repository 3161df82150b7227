package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// setPaused switches maintenance mode and waits until every running node
// applied it (each actuator reads its own FSM).
func (f *fo) setPaused(paused bool) {
	f.t.Helper()
	if _, err := f.leader().Srv.SetPaused(ctx(f.t), paused); err != nil {
		f.t.Fatalf("set paused %v: %v", paused, err)
	}
	f.c.Eventually(failoverWait, "every node applied paused", func() bool {
		for _, n := range f.c.Nodes {
			if !n.Running() {
				continue
			}
			st, err := n.Srv.State(context.Background(), false)
			if err != nil || st.Paused != paused {
				return false
			}
		}
		return true
	})
}

// TestPause_NothingRestartsOrFailsOver: in maintenance mode the
// primary's PostgreSQL crashes and a replica's stops; for several ttl
// nothing is started again, the primary does not step down and nobody is
// promoted (the primary's agent keeps its lease). An operator's restart
// of the replica still works while paused. Once resumed, the primary
// restarts in place and both replicas stream from it.
func TestPause_NothingRestartsOrFailsOver(t *testing.T) {
	f := newFO(t)
	p := f.bootstrap()
	replica := f.others(p.MemberId)[0]
	f.setPaused(true)

	starts := map[string]int{}
	for _, n := range f.c.Nodes {
		starts[n.ID] = f.w.Starts(n.ID)
	}
	f.w.Crash(p.MemberId)
	f.w.Crash(replica)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(3 * tm.TTL); time.Now().Before(end); <-tick.C {
		for _, id := range []string{p.MemberId, replica} {
			if f.w.Running(id) || f.w.Starts(id) != starts[id] {
				t.Fatalf("paused: %s's PostgreSQL was started again", id)
			}
		}
		if got := f.state().Primary; got.MemberId != p.MemberId || got.Epoch != p.Epoch || got.Released {
			t.Fatalf("paused: the primary changed or stepped down: %v", got)
		}
		if acc := f.w.Accepting(); len(acc) > 0 {
			t.Fatalf("paused: %v accept writes, want nobody (the primary is down)", acc)
		}
	}

	// An operator's restart is not automatic: it runs while paused.
	rn := f.node(replica)
	res, err := rn.Srv.LocalAction(ctx(t), &pb.LocalActionRequest{Action: pb.LocalActionKind_LOCAL_ACTION_RESTART, Epoch: p.Epoch})
	if err != nil || !res.Done {
		t.Fatalf("operator's restart of %s while paused: %v, %v", replica, res, err)
	}
	if !f.w.Standby(replica) {
		t.Fatalf("%s is not a running standby after the operator's restart", replica)
	}
	if f.w.Running(p.MemberId) {
		t.Fatalf("the replica's restart started the primary %s too", p.MemberId)
	}

	f.setPaused(false)
	np := f.waitPrimary(p.Epoch, "")
	if np.MemberId != p.MemberId || np.Epoch != p.Epoch {
		t.Fatalf("resumed: primary %s at epoch %d, want %s restarted in place at %d", np.MemberId, np.Epoch, p.MemberId, p.Epoch)
	}
	f.waitStreaming(np.MemberId, f.others(np.MemberId)...)
	if !slices.Equal(f.w.Accepting(), []string{p.MemberId}) {
		t.Fatalf("accepting writes: %v", f.w.Accepting())
	}
}
