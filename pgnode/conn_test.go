package pgnode

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// backendPID returns the PID of the backend withConn ran on.
func backendPID(t *testing.T, ctx context.Context, n *Node) int {
	t.Helper()
	var pid int
	if err := n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid)
	}); err != nil {
		t.Fatalf("withConn: %v", err)
	}
	return pid
}

// TestNode_LocalConnectionReused: probes reuse one local session instead
// of a fork and a SCRAM handshake each, and the first probe after the
// server died and came back works at once (the stale session is noticed
// by a ping and replaced, not handed out).
func TestNode_LocalConnectionReused(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	n, _ := bootstrapPrimary(t, ctx, reachableTempDir(t), "c1")
	first := backendPID(t, ctx, n)
	if _, err := n.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	if again := backendPID(t, ctx, n); again != first {
		t.Fatalf("backend %d then %d: the local connection was not reused", first, again)
	}

	pid := n.Process().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "postmaster seen as crashed", func() error {
		if pi := n.Process(); pi.State != ProcessCrashed {
			return context.DeadlineExceeded
		}
		return nil
	})
	if err := n.Start(ctx, StartOptions{Role: RoleAsIs}); err != nil {
		t.Fatalf("restart after kill -9: %v", err)
	}
	st, err := n.Probe(ctx)
	if err != nil || !st.Up {
		t.Fatalf("first probe after the restart: %+v, %v", st, err)
	}
	if after := backendPID(t, ctx, n); after == first {
		t.Fatalf("backend %d survived a kill -9 of its postmaster", after)
	}
}
