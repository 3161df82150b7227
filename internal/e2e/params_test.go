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

// TestParameters_FreshReplicaStartsWithDynamicConfig: edit-config raises
// max_locks_per_transaction, which a hot standby must have at least as
// high as its primary (PostgreSQL refuses to start it otherwise, as for
// max_connections, which the harness sets per node and so cannot raise
// through the dynamic config), and `restart --pending` puts it in force.
// A replica whose data directory is lost, under an agent that starts
// afresh, clones again and starts with the dynamic value, and `ctl reinit`
// of a replica does too: both start and stream.
func TestParameters_FreshReplicaStartsWithDynamicConfig(t *testing.T) {
	c := e2e.New(t, e2e.Options{})
	primary, epoch := c.WaitHealthy(120 * time.Second)
	if _, err := c.Ctl("edit-config", "--pg", "max_locks_per_transaction=128"); err != nil {
		t.Fatal(err)
	}
	e2e.Eventually(t, 60*time.Second, "pending restart on every member", func() error {
		ids, err := pendingOn(c)
		if err != nil {
			return err
		}
		if len(ids) != len(c.PostgresNodes()) {
			return fmt.Errorf("pending restart on %v only", ids)
		}
		return nil
	})
	ctlLong(t, c, "restart", "--pending")
	c.WaitHealthy(120 * time.Second)

	var replicas []string
	for _, id := range c.PostgresNodes() {
		if id != primary {
			replicas = append(replicas, id)
		}
	}
	show := func(id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		v, err := c.QueryStrings(ctx, id, "SELECT current_setting('max_locks_per_transaction') || ' ' || pg_is_in_recovery()")
		if err != nil {
			return err
		}
		if len(v) != 1 || v[0] != "128 true" {
			return fmt.Errorf("%s: max_locks_per_transaction, in recovery = %v", id, v)
		}
		return nil
	}

	lost := c.Node(replicas[0])
	c.StopAgent(lost.ID)
	if _, err := e2e.StopPostmaster(lost.PGDataDir, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(lost.PGDataDir); err != nil {
		t.Fatal(err)
	}
	c.StartAgent(lost.ID)
	if p, e := c.WaitHealthy(180 * time.Second); p != primary || e != epoch {
		t.Fatalf("after the fresh clone of %s: primary %s epoch %d, want %s epoch %d", lost.ID, p, e, primary, epoch)
	}
	if err := show(lost.ID); err != nil {
		t.Fatal(err)
	}

	out := ctlLong(t, c, "reinit", replicas[1])
	if !strings.Contains(out, "cloned again") {
		t.Errorf("reinit %s:\n%s", replicas[1], out)
	}
	if p, e := c.WaitHealthy(120 * time.Second); p != primary || e != epoch {
		t.Fatalf("after reinit of %s: primary %s epoch %d, want %s epoch %d", replicas[1], p, e, primary, epoch)
	}
	if err := show(replicas[1]); err != nil {
		t.Fatal(err)
	}
}
