package pgnode

import (
	"errors"
	"testing"
	"time"
)

var errNotYet = errors.New("not yet")

// TestNode_PrepareStop: it checkpoints (the checkpoint location moves
// past the WAL written just before) and ends the logical replication
// launcher, which a fast shutdown would otherwise wait for.
func TestNode_PrepareStop(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	n, _ := bootstrapPrimary(t, ctx, reachableTempDir(t), "p")
	c, err := n.connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(c)
	query := func(sql string) (v int64) {
		t.Helper()
		if err := c.QueryRow(ctx, sql).Scan(&v); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return v
	}
	const launchers = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'logical replication launcher'"
	eventually(t, 20*time.Second, "a logical replication launcher runs", func() error {
		if query(launchers) != 1 {
			return errNotYet
		}
		return nil
	})
	mustExec(t, ctx, n, "CREATE TABLE t (id int)")
	written := query("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
	if err := n.PrepareStop(ctx); err != nil {
		t.Fatal(err)
	}
	if at := query("SELECT checkpoint_lsn - '0/0'::pg_lsn FROM pg_control_checkpoint()"); at < written {
		t.Fatalf("checkpoint at %d, before the WAL written first (%d): no CHECKPOINT", at, written)
	}
	eventually(t, 20*time.Second, "the launcher has exited", func() error {
		if query(launchers) != 0 {
			return errNotYet
		}
		return nil
	})
}
