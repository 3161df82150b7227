package pgnode

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestNode_PromoteRightAfterPrimaryStopped: PostgreSQL 15's startup
// process can notice a promotion while it waits for streamed WAL and then
// sleep out the rest of wal_retrieve_retry_interval before it ends
// recovery. A standby promoted right after its primary shut down, which is
// what every switchover does, hit that in two of three tries (5 s with the
// default interval). Promote signals again while recovery goes on. The
// interval is 60 s here so that a missed wake-up cannot hide in the
// deadline; two promotions in a row make a miss by luck unlikely.
func TestNode_PromoteRightAfterPrimaryStopped(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)

	primary, sysid := bootstrapPrimary(t, ctx, base, "a")
	for _, name := range []string{"b", "c"} {
		standby := streamingStandby(t, ctx, primary, base, name, sysid, func(c *Config) {
			c.Parameters["wal_retrieve_retry_interval"] = "60s"
		})
		if err := primary.Stop(ctx, StopFast); err != nil {
			t.Fatal(err)
		}

		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := standby.Promote(pctx)
		cancel()
		if err != nil {
			t.Fatalf("promote %s right after its primary stopped: %v (after %v)", name, err, time.Since(start).Round(time.Millisecond))
		}
		t.Logf("%s promoted in %v", name, time.Since(start).Round(time.Millisecond))
		if st, err := standby.Probe(ctx); err != nil || st.InRecovery {
			t.Fatalf("%s after Promote: %+v, %v", name, st, err)
		}
		// A repeated signal must not leave a promote file behind: a later
		// start of this data directory as a standby would promote at once.
		if _, err := os.Stat(filepath.Join(standby.Config().DataDir, "promote")); !os.IsNotExist(err) {
			t.Fatalf("promote signal file left in %s: %v", standby.Config().DataDir, err)
		}
		primary = standby
	}
}
