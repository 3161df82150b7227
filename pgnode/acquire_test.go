package pgnode

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestNode_AcquireWaitsForAKeptConnection: with maxIdle connections in use,
// a third caller waits for one to come back instead of paying a new login
// (and later a backend exit), and opens its own only after keptWait.
func TestNode_AcquireWaitsForAKeptConnection(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	n, _ := bootstrapPrimary(t, ctx, reachableTempDir(t), "a")
	var held []uint32
	var conns []*pgx.Conn
	for range maxIdle {
		c, _, err := n.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		held = append(held, c.PgConn().PID())
	}

	// One comes back while the third caller waits: it gets that one.
	go func() {
		time.Sleep(keptWait / 5)
		n.release(conns[0], nil)
	}()
	c, kept, err := n.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !kept || c.PgConn().PID() != held[0] {
		t.Fatalf("third acquire got backend %d (kept %v), want the released %d", c.PgConn().PID(), kept, held[0])
	}

	// Nothing comes back: after keptWait it opens its own.
	start := time.Now()
	c2, kept, err := n.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kept || time.Since(start) < keptWait {
		t.Fatalf("acquire with every connection held: kept %v after %v, want a new one after %v", kept, time.Since(start), keptWait)
	}
	for _, c := range []*pgx.Conn{c, c2, conns[1]} {
		n.release(c, nil)
	}
	n.connMu.Lock()
	busy, idle := n.busy, len(n.idle)
	n.connMu.Unlock()
	if busy != 0 || idle != maxIdle {
		t.Fatalf("after releasing all: busy %d, idle %d; want 0 and %d", busy, idle, maxIdle)
	}
}
