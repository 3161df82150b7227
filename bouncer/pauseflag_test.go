package bouncer

import (
	"context"
	"testing"
	"time"
)

// TestAdmin_PauseFlagDoesNotWaitForStuckTransactions: the emergency fence
// must not wait for a transaction that does not end, and the pause it leaves
// behind must hold new transactions while the open one may still finish.
func TestAdmin_PauseFlagDoesNotWaitForStuckTransactions(t *testing.T) {
	a := newPG(t)
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	if err := e.router.Expose(ctx, "app", 1, routeTo(a)); err != nil {
		t.Fatal(err)
	}
	open, err := connect(ctx, e.pgb.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(context.Background())
	tx, err := open.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT txid_current()"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := e.router.Fence(ctx, "app", 2, FenceEmergency); err != nil {
		t.Fatalf("emergency fence with a transaction open: %v", err)
	}
	t.Logf("emergency fence took %v with a transaction open", time.Since(start))
	time.Sleep(300 * time.Millisecond) // the cut-short PAUSE must stay in effect
	if d, err := e.admin.Database(ctx, "app"); err != nil || !d.Paused || d.Disabled {
		t.Fatalf("after the emergency fence: %+v, %v; want paused", d, err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = serverPort(short, e.pgb.DSN("app"))
	cancel()
	if err == nil {
		t.Fatal("a new transaction got through the fenced database")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the transaction in flight could not finish: %v", err)
	}
	if err := e.router.Expose(ctx, "app", 2, routeTo(a)); err != nil {
		t.Fatal(err)
	}
	if port, err := serverPort(ctx, e.pgb.DSN("app")); err != nil || port != a.Port {
		t.Fatalf("after the exposure: port %d, %v", port, err)
	}
}
