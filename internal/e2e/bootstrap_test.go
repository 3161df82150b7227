package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// TestBootstrap_PrimaryAndTwoReplicas: three agents started through the
// binary make one primary and two streaming replicas; a row written on the
// primary is read on both replicas; `ctl list` agrees.
func TestBootstrap_PrimaryAndTwoReplicas(t *testing.T) {
	c := e2e.New(t, e2e.Options{})
	start := time.Now()
	primary, epoch := c.WaitHealthy(60 * time.Second)
	t.Logf("healthy after %v: primary %s, epoch %d", time.Since(start).Round(time.Millisecond), primary, epoch)
	if epoch != 1 {
		t.Errorf("epoch after bootstrap = %d, want 1", epoch)
	}
	ctx := testCtx(t)
	if err := c.Exec(ctx, primary, "CREATE TABLE t (id bigint PRIMARY KEY); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	for _, id := range c.PostgresNodes() {
		waitIDs(t, c, id, 1)
	}

	ms, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	var tl uint32
	replicas := 0
	for _, m := range ms {
		if m.Health == nil {
			t.Fatalf("%s: no health in ctl list", m.Id)
		}
		if m.Id == primary {
			tl = m.Health.Timeline
			continue
		}
		if m.Health.State == pb.PgState_PG_STATE_RUNNING && m.Health.InRecovery {
			replicas++
		}
	}
	for _, m := range ms {
		if m.Health.Timeline != tl {
			t.Errorf("%s on timeline %d, primary on %d", m.Id, m.Health.Timeline, tl)
		}
	}
	if replicas != 2 {
		t.Errorf("running replicas = %d, want 2", replicas)
	}
	out, err := c.Ctl("list")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, " primary "); n != 1 {
		t.Errorf("ctl list shows %d primaries:\n%s", n, out)
	}
	if n := strings.Count(out, " replica "); n != 2 {
		t.Errorf("ctl list shows %d replicas:\n%s", n, out)
	}
	t.Logf("ctl list:\n%s", out)
}
