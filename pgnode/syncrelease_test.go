package pgnode

import (
	"context"
	"testing"
	"time"
)

// TestSetSynchronousStandbys_ReleasesWaitingCommitsAtOnce: a commit
// waits for a synchronous standby that does not reply (here one that
// does not exist); the set is changed to a standby that streams and
// already has the commit's WAL. PostgreSQL releases the commit only at
// that standby's next reply; with no new WAL that is
// wal_receiver_status_interval away (10 s on this standby), so
// SetSynchronousStandbys writes a little WAL to make it reply now.
func TestSetSynchronousStandbys_ReleasesWaitingCommitsAtOnce(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)

	a, sysid := bootstrapPrimary(t, ctx, base, "a")
	streamingStandby(t, ctx, a, base, "b", sysid, func(c *Config) { c.Parameters["wal_receiver_status_interval"] = "10s" })
	mustExec(t, ctx, a, "CREATE TABLE t (id int PRIMARY KEY)")

	if err := a.SetSynchronousStandbys(ctx, []string{"nobody"}, 1); err != nil {
		t.Fatal(err)
	}
	committed := make(chan error, 1)
	conn := sqlConn(t, ctx, a)
	go func() {
		_, err := conn.Exec(ctx, "INSERT INTO t VALUES (1)")
		committed <- err
	}()
	// The commit waits (its WAL reaches b, which confirms nothing that
	// counts yet); b's reply for it comes and goes.
	select {
	case err := <-committed:
		t.Fatalf("commit returned while waiting for a standby that does not exist: %v", err)
	case <-time.After(time.Second):
	}

	switched := time.Now()
	if err := a.SetSynchronousStandbys(ctx, []string{"b"}, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-committed:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("waiting commit released %v after the switch to b", time.Since(switched).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatal("the waiting commit was not released within 3 s of making b, which has its WAL, synchronous")
	}
	if err := a.SetSynchronousStandbys(context.Background(), nil, 0); err != nil {
		t.Fatal(err)
	}
}
