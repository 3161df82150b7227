package e2e_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
)

// TestAdopt_HandMadePair points pgquorum at a primary/standby pair an
// operator built by hand (initdb, pg_ctl, pg_basebackup -R) and left
// running. The standby's agent starts first, with the empty third node:
// neither may become primary. Then the primary's agent starts: the
// hand-made primary becomes the cluster's primary with its data and its
// postmaster untouched, the standby stays a standby, the third node clones.
func TestAdopt_HandMadePair(t *testing.T) {
	testAdoptHandMadePair(t, false)
}

// TestAdopt_HandMadePairPrimaryStopped: the same with the hand-made
// primary shut down cleanly before any agent runs: its agent starts it as
// the cluster's primary, with its data.
func TestAdopt_HandMadePairPrimaryStopped(t *testing.T) {
	testAdoptHandMadePair(t, true)
}

func testAdoptHandMadePair(t *testing.T, stopPrimary bool) {
	c := e2e.New(t, e2e.Options{DeferStart: true})
	c.HandMadePrimary("n1")
	c.Psql("n1", "CREATE TABLE handmade (id int); INSERT INTO handmade VALUES (1), (2), (3)")
	c.HandMadeStandby("n2", "n1")
	pid1, pid2 := c.PostmasterPID("n1"), c.PostmasterPID("n2")
	if stopPrimary {
		if err := syscall.Kill(pid1, syscall.SIGINT); err != nil { // fast shutdown
			t.Fatal(err)
		}
		e2e.Eventually(t, 30*time.Second, "the hand-made primary stopped", func() error {
			if c.PostmasterPID("n1") != 0 {
				return fmt.Errorf("still running")
			}
			return nil
		})
	}

	c.StartAgent("n2")
	c.StartAgent("n3")
	// Give the quorum of n2 and n3 time to decide; it must not pick a
	// primary while only a standby data directory is known.
	time.Sleep(5 * time.Second)
	if st, err := c.State(); err == nil && st.Primary.GetMemberId() != "" {
		t.Fatalf("a primary was assigned before the primary's agent ran: %v", st.Primary)
	}
	if got := strings.TrimSpace(c.Psql("n2", "SELECT pg_is_in_recovery()")); got != "t" {
		t.Fatalf("the hand-made standby is no longer in recovery: %q", got)
	}

	c.StartAgent("n1")
	primary, _ := c.WaitHealthy(120 * time.Second)
	if primary != "n1" {
		t.Fatalf("primary is %s, want the hand-made primary n1", primary)
	}
	if got := strings.TrimSpace(c.Psql("n1", "SELECT count(*) FROM handmade")); got != "3" {
		t.Fatalf("hand-made data on n1: count = %q, want 3", got)
	}
	if got := c.PostmasterPID("n1"); got != pid1 && !stopPrimary {
		t.Errorf("n1's postmaster was restarted: pid %d -> %d", pid1, got)
	}
	if got := c.PostmasterPID("n2"); got != pid2 {
		t.Errorf("n2's postmaster was restarted: pid %d -> %d", pid2, got)
	}
	c.Psql("n1", "INSERT INTO handmade VALUES (4)")
	for _, id := range []string{"n2", "n3"} {
		e2e.Eventually(t, 60*time.Second, id+" replicates the hand-made table", func() error {
			if got := strings.TrimSpace(c.Psql(id, "SELECT count(*) FROM handmade")); got != "4" {
				return fmt.Errorf("count = %q", got)
			}
			return nil
		})
	}
}
