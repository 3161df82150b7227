package pgnode

import (
	"testing"
	"time"
)

// TestNode_WriteProbeKeepsItsConnection: the agent probes the primary's
// writes every loop, so one backend serves them all; a failure drops it.
func TestNode_WriteProbeKeepsItsConnection(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	n, _ := bootstrapPrimary(t, ctx, reachableTempDir(t), "w")
	pid := func() uint32 {
		n.connMu.Lock()
		defer n.connMu.Unlock()
		if n.writeConn == nil {
			return 0
		}
		return n.writeConn.PgConn().PID()
	}
	before, err := n.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WriteProbe(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	first := pid()
	if first == 0 {
		t.Fatal("no connection kept after a write probe")
	}
	for range 3 {
		if err := n.WriteProbe(ctx, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if p := pid(); p != first {
		t.Fatalf("write probes used backends %d and %d, want one", first, p)
	}
	after, err := n.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.CurrentLSN <= before.CurrentLSN {
		t.Fatalf("write probes wrote no WAL: %s -> %s", before.CurrentLSN, after.CurrentLSN)
	}
	mustExec(t, ctx, n, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND query LIKE 'BEGIN; SET LOCAL synchronous_commit%'")
	if err := n.WriteProbe(ctx, 2*time.Second); err == nil {
		t.Log("the probe after its backend was terminated succeeded (pgx noticed the close first)")
	}
	if err := n.WriteProbe(ctx, 2*time.Second); err != nil {
		t.Fatalf("the probe after a failed one: %v", err)
	}
	if p := pid(); p == first || p == 0 {
		t.Fatalf("backend %d still used after it was terminated (now %d)", first, p)
	}
}
