package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/pgnode"
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
