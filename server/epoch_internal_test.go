package server

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// Stale epochs are ignored by the actuator (invariant 2): an assignment
// older than the newest it has seen starts and promotes nothing, and an
// operator's action decided under an older epoch is refused.

// epochCmds builds a cluster of n1..n3 whose data directories were
// initialized by n1 at epoch 1; upTo 1 ends with n3 assigned primary at
// epoch 1 (an old assignment), upTo 2 adds n1's assignment at epoch 2.
func epochCmds(upTo int) []proto.Message {
	cmds := []proto.Message{
		&pb.InitCluster{Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1},
		&pb.UpsertMember{Member: member("n1")},
		&pb.UpsertMember{Member: member("n2")},
		&pb.UpsertMember{Member: member("n3")},
		&pb.AssignPrimary{MemberId: "n3", Timeline: 1, Reason: "bootstrap", AtUnixMs: 2},
		&pb.SetSystemID{SystemIdentifier: 42},
	}
	if upTo >= 2 {
		cmds = append(cmds, &pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "n1", Timeline: 2, Reason: "failover", AtUnixMs: 3})
	}
	return cmds
}

func fsmOf(t *testing.T, cmds ...proto.Message) *fsm.FSM {
	t.Helper()
	f := fsm.New(16)
	for i, c := range cmds {
		if err := f.ApplyCommand(uint64(i+1), c); err != nil {
			t.Fatalf("apply %T: %v", c, err)
		}
	}
	return f
}

// TestActuator_ReplayedOldAssignmentActsOnNothing: n3's actuator has
// converged at epoch 2 (a standby of n1); its FSM then shows the older
// assignment of epoch 1, which names n3 primary (a log replayed after a
// restart, a restored snapshot). It must neither start its stopped
// standby as that primary nor promote it. A fresh actuator, which never
// saw epoch 2, does act on the same state (the control).
func TestActuator_ReplayedOldAssignmentActsOnNothing(t *testing.T) {
	stopped := pgnode.DataDirInfo{
		Path: "/data", Exists: true, Initialized: true, Version: "15", SystemIdentifier: 42,
		ClusterState: "shut down in recovery", Standby: true, CleanShutdown: true, Timeline: 1,
	}
	ctx := context.Background()

	// Once started, the server reports a standby ready to be promoted,
	// and n3 holds the lease of epoch 1.
	ready := pgnode.Status{Up: true, InRecovery: true, Timeline: 1}

	fresh, pg := actuatorOn(t, stopped, epochCmds(1)...)
	pg.status = ready
	fresh.noteLease(1, time.Now())
	_ = fresh.converge(ctx)
	if calls := pg.Calls(); !slices.Contains(calls, "start") || !slices.Contains(calls, "promote") {
		t.Fatalf("control: an actuator that never saw epoch 2 did not start and promote on the epoch 1 assignment: %v", calls)
	}

	a, pg := actuatorOn(t, stopped, epochCmds(2)...)
	pg.status = ready
	a.noteLease(1, time.Now())
	if err := a.converge(ctx); err != nil {
		t.Fatalf("converge at epoch 2: %v", err)
	}
	before := len(pg.Calls())
	a.s.fsm = fsmOf(t, epochCmds(1)...)
	for range 3 {
		if err := a.converge(ctx); err != nil {
			t.Fatalf("converge on the replayed epoch 1: %v", err)
		}
	}
	if calls := pg.Calls()[before:]; len(calls) > 0 {
		t.Fatalf("actuator acted on an assignment older than epoch 2: %v", calls)
	}
	a.mu.Lock()
	applied := a.appliedEpoch
	a.mu.Unlock()
	if applied != 2 {
		t.Fatalf("applied epoch %d, want 2", applied)
	}
}

// TestActuator_LocalActionOfAnOldEpochIsRefused: a restart or reinit that
// the leader decided at epoch 1 reaches n3 after the primary changed
// (epoch 2): it is refused and touches nothing.
func TestActuator_LocalActionOfAnOldEpochIsRefused(t *testing.T) {
	standby := pgnode.DataDirInfo{
		Path: "/data", Exists: true, Initialized: true, Version: "15", SystemIdentifier: 42,
		ClusterState: "in archive recovery", Running: true, Standby: true, Timeline: 2, PostmasterPID: 7,
	}
	for _, action := range []pb.LocalActionKind{
		pb.LocalActionKind_LOCAL_ACTION_RESTART,
		pb.LocalActionKind_LOCAL_ACTION_REINIT,
		pb.LocalActionKind_LOCAL_ACTION_RELOAD,
	} {
		t.Run(actionName(action), func(t *testing.T) {
			a, pg := actuatorOn(t, standby, epochCmds(2)...)
			pg.proc = pgnode.ProcessInfo{State: pgnode.ProcessRunning, PID: 7}
			r := &localRequest{req: &pb.LocalActionRequest{Action: action, Epoch: 1}, done: make(chan localResult, 1)}
			a.handle(context.Background(), r)
			res := <-r.done
			if !errors.Is(res.err, ErrPrecondition) {
				t.Fatalf("%s at epoch 1 while the primary is at epoch 2: err = %v, want ErrPrecondition", actionName(action), res.err)
			}
			if calls := pg.Calls(); len(calls) > 0 {
				t.Fatalf("%s of an old epoch acted: %v", actionName(action), calls)
			}
		})
	}
}
