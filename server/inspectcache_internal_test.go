package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// countingInspect counts Inspect calls of a recordingPG.
type countingInspect struct {
	*recordingPG
	n atomic.Int64
}

func (c *countingInspect) Inspect(ctx context.Context) (pgnode.DataDirInfo, error) {
	c.n.Add(1)
	return c.recordingPG.Inspect(ctx)
}

// TestProbe_RunningServerIsNotReinspectedEveryFewLoops: while this agent's
// postmaster runs and answers, the probe loop reuses the data directory
// inspection (a pg_controldata process per call) for far longer than a few
// loops; before, it ran one every 5 loop_waits, a tenth of an idle node's
// CPU. A server that stops answering is still inspected at once.
func TestProbe_RunningServerIsNotReinspectedEveryFewLoops(t *testing.T) {
	info := pgnode.DataDirInfo{Path: "/data", Exists: true, Initialized: true, Running: true, PostmasterPID: 42, Timeline: 1}
	a, rec := actuatorOn(t, info)
	a.s.opts.Timing.LoopWait = 20 * time.Millisecond
	rec.proc = pgnode.ProcessInfo{State: pgnode.ProcessRunning, PID: 42}
	rec.status = pgnode.Status{Up: true}
	pg := &countingInspect{recordingPG: rec}
	a.pg = changeTracker{Postgres: pg, changed: a.dropInfo}
	ctx := context.Background()
	loops := 12
	for range loops {
		a.probe(ctx)
		time.Sleep(a.s.opts.Timing.LoopWait)
	}
	if n := pg.n.Load(); n != 1 {
		t.Fatalf("%d inspections in %d probe loops of a running server, want 1", n, loops)
	}
	rec.status = pgnode.Status{} // stops answering
	a.probe(ctx)
	if n := pg.n.Load(); n != 2 {
		t.Fatalf("a server that stopped answering was not inspected again (%d inspections)", n)
	}
}

// countingProbe counts Probe calls of a recordingPG and runs during, if
// set, while it probes.
type countingProbe struct {
	*recordingPG
	n      atomic.Int64
	during func()
}

func (c *countingProbe) Probe(ctx context.Context) (pgnode.Status, error) {
	c.n.Add(1)
	if c.during != nil {
		c.during()
	}
	return c.recordingPG.Probe(ctx)
}

// TestActuator_PrimaryRoundTrustsARecentProbe: a primary's convergence
// round, which every commit starts, reuses a probe younger than a loop
// of the same running postmaster instead of probing again; a replaced
// postmaster or an older probe is probed again, a probe that raced a
// restart is not trusted, and a probe that finds the server down still
// leads to primaryDown.
func TestActuator_PrimaryRoundTrustsARecentProbe(t *testing.T) {
	running := pgnode.DataDirInfo{
		Path: "/data", Exists: true, Initialized: true, Version: "15", SystemIdentifier: 42,
		ClusterState: "in production", Running: true, PostmasterPID: 7, Timeline: 1,
	}
	a, rec := actuatorOn(t, running,
		&pb.InitCluster{Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1},
		&pb.UpsertMember{Member: member("n1")},
		&pb.UpsertMember{Member: member("n3")},
		&pb.AssignPrimary{MemberId: "n3", Timeline: 1, Reason: "bootstrap", AtUnixMs: 2},
		&pb.SetSystemID{SystemIdentifier: 42},
		&pb.SetConfig{ExpectedVersion: 1, Config: &pb.DynamicConfig{PrimaryStartTimeoutMs: 300000}},
	)
	a.s.opts.Timing.LoopWait = time.Hour
	rec.proc = pgnode.ProcessInfo{State: pgnode.ProcessRunning, PID: 7}
	rec.status = pgnode.Status{Up: true, Timeline: 1}
	pg := &countingProbe{recordingPG: rec}
	a.pg = pg
	ctx := context.Background()
	// The first round also reads the WAL position once, after it sets
	// synchronous_standby_names: count from after it.
	if err := a.converge(ctx); err != nil || pg.n.Load() == 0 {
		t.Fatalf("first round: %v, %d probes", err, pg.n.Load())
	}
	base := pg.n.Load() - 1
	round := func(wantProbes int64) {
		t.Helper()
		err := a.converge(ctx)
		if n := pg.n.Load() - base; n != wantProbes {
			t.Fatalf("%d probes after a round, want %d (converge: %v)", n, wantProbes, err)
		}
	}
	round(1)
	round(1)
	rec.proc.PID = 8 // another postmaster (a restart the reaper saw)
	round(2)
	round(2)
	a.mu.Lock()
	a.writableAt = time.Now().Add(-2 * time.Hour)
	a.mu.Unlock()
	pg.during = func() { rec.proc.PID = 9 } // replaced while it was probed
	round(3)
	pg.during = nil
	round(4) // the racing probe was not trusted
	round(4)
	base += 2
	a.mu.Lock()
	a.writableAt = time.Now().Add(-2 * time.Hour) // older than a loop
	a.mu.Unlock()
	rec.status = pgnode.Status{} // hung: no longer answers
	round(3)
	a.mu.Lock()
	down := !a.crashedAt.IsZero()
	a.mu.Unlock()
	if !down {
		t.Fatal("a primary whose probe failed was not treated as down")
	}
	round(4) // a failed probe is never trusted
}
