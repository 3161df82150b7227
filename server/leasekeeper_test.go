package server_test

import (
	"slices"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/servertest"
)

// TestLeaseKeeper_FencedPrimaryRenewsAgain: a primary that fenced itself
// because the quorum was gone renews its lease once the quorum is back and
// takes writes again, at the same epoch, when nobody else may be promoted.
// Before the fix every renewal after the fence point ran with a deadline
// already in the past, so the primary stayed fenced for good (found by
// internal/e2e: a Raft blip during a failover left the cluster without a
// writable primary).
func TestLeaseKeeper_FencedPrimaryRenewsAgain(t *testing.T) {
	f := newFO(t, func(o *server.Options) {
		if o.NodeID != "n1" {
			o.Tags = &pb.Tags{Nofailover: true}
		}
	})
	p := f.bootstrap()
	if p.MemberId != "n1" {
		t.Fatalf("bootstrap primary %s, want n1 (the others are nofailover)", p.MemberId)
	}
	down := []*servertest.Node{f.node("n2"), f.node("n3")}
	for _, n := range down {
		f.c.Kill(n)
	}
	f.c.Eventually(tm.TTL+5*time.Second, "the primary to fence itself", func() bool {
		return len(f.w.Accepting()) == 0
	})
	for _, n := range down {
		f.restart(n)
	}
	f.c.Eventually(failoverWait, "n1 to take writes again", func() bool {
		return slices.Equal(f.w.Accepting(), []string{"n1"})
	})
	if st := f.state(); st.Primary.GetMemberId() != "n1" || st.Primary.GetEpoch() != p.Epoch {
		t.Fatalf("primary %s epoch %d, want n1 epoch %d", st.Primary.GetMemberId(), st.Primary.GetEpoch(), p.Epoch)
	}
}
