package e2e_test

import (
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
)

// TestAgentRestart_KeepsPostgres: every agent is restarted in turn
// (SIGTERM, start, wait until healthy). No postmaster restarts and the
// epoch never changes (DESIGN.md invariant 8).
func TestAgentRestart_KeepsPostgres(t *testing.T) {
	// The default profile: an agent restart takes about a second on a busy
	// 2-core machine, as long as the fast profile's whole lease (1 s), and
	// invariant 8 holds for restarts within the ttl.
	c := e2e.New(t, e2e.Options{Profile: "default"})
	primary, epoch := c.WaitHealthy(60 * time.Second)
	pids := map[string]int{}
	for _, id := range c.PostgresNodes() {
		pids[id] = c.PostmasterPID(id)
	}
	for _, id := range c.PostgresNodes() {
		began := time.Now()
		c.Restart(id)
		p, e := c.WaitHealthy(60 * time.Second)
		t.Logf("agent %s restarted, cluster healthy %v later", id, time.Since(began).Round(time.Millisecond))
		if p != primary || e != epoch {
			t.Fatalf("after restarting agent %s: primary %s epoch %d, want %s epoch %d", id, p, e, primary, epoch)
		}
	}
	for _, id := range c.PostgresNodes() {
		if got := c.PostmasterPID(id); got != pids[id] {
			t.Errorf("postmaster of %s: pid %d -> %d (restarted)", id, pids[id], got)
		}
	}
	st, err := c.State()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.History) != 1 {
		t.Errorf("history has %d entries, want only the bootstrap: %v", len(st.History), st.History)
	}
}
