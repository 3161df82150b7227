package e2e_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
)

// TestFailover_KillPrimaryHost: kill -9 of the primary's agent and
// postmaster. A new primary is assigned and takes writes; the old host,
// restarted, rewinds and follows the new primary with the row written after
// the failover; `ctl history` records the failover and its reason.
func TestFailover_KillPrimaryHost(t *testing.T) {
	c := e2e.New(t, e2e.Options{})
	old, epoch := c.WaitHealthy(60 * time.Second)
	ctx := testCtx(t)
	if err := c.Exec(ctx, old, "CREATE TABLE t (id bigint PRIMARY KEY); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	for _, id := range c.PostgresNodes() {
		waitIDs(t, c, id, 1)
	}

	killed := time.Now()
	c.KillHost(old)
	var primary string
	var newEpoch uint64
	e2e.Eventually(t, 60*time.Second, "a new writable primary", func() error {
		p, e, err := c.Primary()
		if err != nil {
			return err
		}
		if p == "" || p == old || e <= epoch {
			return fmt.Errorf("primary %q epoch %d", p, e)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := c.Exec(wctx, p, "INSERT INTO t VALUES (2)"); err != nil {
			return err
		}
		primary, newEpoch = p, e
		return nil
	})
	t.Logf("failover: first write on %s (epoch %d) %v after kill -9 of %s", primary, newEpoch, time.Since(killed).Round(time.Millisecond), old)

	st, err := c.State()
	if err != nil {
		t.Fatal(err)
	}
	last := st.History[len(st.History)-1]
	if last.OldMember != old || last.NewMember != primary || last.Epoch != newEpoch || !strings.Contains(last.Reason, "failover") {
		t.Errorf("last history entry = %v, want failover %s -> %s at epoch %d", last, old, primary, newEpoch)
	}
	out, err := c.Ctl("history")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, fmt.Sprintf("failover: lease of %s (epoch %d) expired", old, epoch)) {
		t.Errorf("ctl history lacks the failover:\n%s", out)
	}
	t.Logf("ctl history:\n%s", out)

	rejoin := time.Now()
	c.StartAgent(old)
	p, e := c.WaitHealthy(90 * time.Second)
	if p != primary || e != newEpoch {
		t.Fatalf("after rejoin: primary %s epoch %d, want %s epoch %d", p, e, primary, newEpoch)
	}
	waitIDs(t, c, old, 1, 2)
	t.Logf("rejoin: %s streams from %s %v after its agent restarted", old, primary, time.Since(rejoin).Round(time.Millisecond))
	log, _ := os.ReadFile(c.Node(old).LogPath)
	if !strings.Contains(string(log), "pg_rewind done") {
		t.Errorf("%s rejoined without pg_rewind (reinit or no rewind at all)", old)
	}
}

// TestFailover_KillPostmasterOnly: kill -9 of the primary's postmaster
// alone. Its agent restarts it in place: same member, same epoch.
func TestFailover_KillPostmasterOnly(t *testing.T) {
	c := e2e.New(t, e2e.Options{})
	primary, epoch := c.WaitHealthy(60 * time.Second)
	ctx := testCtx(t)
	if err := c.Exec(ctx, primary, "CREATE TABLE t (id bigint PRIMARY KEY); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	pid := c.KillPostmaster(primary)
	e2e.Eventually(t, 60*time.Second, "the postmaster restarted in place", func() error {
		if np := c.PostmasterPID(primary); np == 0 || np == pid {
			return fmt.Errorf("postmaster pid %d", np)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return c.Exec(wctx, primary, "INSERT INTO t VALUES (2)")
	})
	t.Logf("postmaster of %s back and writable %v after kill -9", primary, time.Since(killed).Round(time.Millisecond))
	p, e := c.WaitHealthy(60 * time.Second)
	if p != primary || e != epoch {
		t.Fatalf("after postmaster kill: primary %s epoch %d, want %s epoch %d (no failover)", p, e, primary, epoch)
	}
	for _, id := range c.PostgresNodes() {
		waitIDs(t, c, id, 1, 2)
	}
}
