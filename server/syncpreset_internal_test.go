package server

import (
	"context"
	"slices"
	"testing"

	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// TestPresetPromotionSync_WrittenAgainAfterARewind: a standby keeps
// synchronous_standby_names ready for its promotion and does not write it
// again every round; but pg_rewind copies the source's value over it, so
// after a rewind it is written again (otherwise a promotion in mode on
// could start out async with nothing recorded in the FSM).
func TestPresetPromotionSync_WrittenAgainAfterARewind(t *testing.T) {
	standby := pgnode.DataDirInfo{
		Path: "/data", Exists: true, Initialized: true, Version: "15", SystemIdentifier: 42,
		ClusterState: "in archive recovery", Running: true, Standby: true, Timeline: 2, PostmasterPID: 7,
	}
	cfg := DefaultDynamicConfig()
	cfg.SynchronousMode = pb.SynchronousMode_SYNCHRONOUS_MODE_ON
	cmds := append(epochCmds(2), &pb.SetConfig{Config: cfg, ExpectedVersion: 1})
	a, pg := actuatorOn(t, standby, cmds...)
	pg.proc = pgnode.ProcessInfo{State: pgnode.ProcessRunning, PID: 7}
	pg.status = pgnode.Status{Up: true, InRecovery: true, WALReceiver: "streaming", Timeline: 2}
	ctx := context.Background()
	writes := func() int {
		n := 0
		for _, c := range pg.Calls() {
			if c == "sync" {
				n++
			}
		}
		return n
	}
	for range 3 {
		if err := a.converge(ctx); err != nil {
			t.Fatalf("converge: %v", err)
		}
	}
	if n := writes(); n != 1 {
		t.Fatalf("synchronous_standby_names written %d times in three rounds, want once (calls %v)", n, pg.Calls())
	}
	a.mu.Lock()
	preset := slices.Clone(a.pgSync)
	a.mu.Unlock()
	if !slices.Equal(preset, []string{"n1", "n2"}) {
		t.Fatalf("preset %v, want every other member [n1 n2]", preset)
	}
	up, err := upstreamOf(member("n1"), "n3")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.pg.Rewind(ctx, up); err != nil { // through the actuator's tracker, as rejoin does
		t.Fatal(err)
	}
	if err := a.converge(ctx); err != nil {
		t.Fatalf("converge after the rewind: %v", err)
	}
	if n := writes(); n != 2 {
		t.Fatalf("synchronous_standby_names written %d times, want again after the rewind (calls %v)", n, pg.Calls())
	}
}
