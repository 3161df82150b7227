package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/rpc"
)

// watchEveryNode keeps a Watch stream open on every node, as bouncer
// agents do, reconnecting to a restarted node, until the test ends.
func watchEveryNode(t *testing.T, c *e2e.Cluster) {
	ctx, cancel := context.WithCancel(context.Background())
	pool := rpc.NewPool(nil)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; pool.Close() })
	remaining := len(c.Nodes)
	fin := make(chan struct{}, remaining)
	for _, n := range c.Nodes {
		go func(addr string) {
			defer func() { fin <- struct{}{} }()
			for ctx.Err() == nil {
				if cl, err := pool.Client(addr); err == nil {
					if stream, err := cl.Watch(ctx, &pb.WatchRequest{}); err == nil {
						for {
							if _, err := stream.Recv(); err != nil {
								break
							}
						}
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}(n.GRPCAddr)
	}
	go func() {
		for range remaining {
			<-fin
		}
		close(done)
	}()
}

// TestAgentRestart_KeepsPostgres: every agent is restarted in turn
// (SIGTERM, start, wait until healthy). No postmaster restarts and the
// epoch never changes (DESIGN.md invariant 8).
func TestAgentRestart_KeepsPostgres(t *testing.T) {
	// The default profile: an agent restart takes about a second on a busy
	// 2-core machine, as long as the fast profile's whole lease (1 s), and
	// invariant 8 holds for restarts within the ttl.
	c := e2e.New(t, e2e.Options{Profile: "default"})
	primary, epoch := c.WaitHealthy(60 * time.Second)
	// Open watch streams used to hold an agent's exit for the gRPC
	// server's whole grace (2 s): the primary's fence guard stopped
	// PostgreSQL before the next agent renewed, and the cluster failed
	// over (found with the network-namespace cluster).
	watchEveryNode(t, c)
	pids := map[string]int{}
	for _, id := range c.PostgresNodes() {
		pids[id] = c.PostmasterPID(id)
	}
	for _, id := range c.PostgresNodes() {
		began := time.Now()
		c.StopAgent(id)
		stopped := time.Since(began)
		c.StartAgent(id)
		p, e := c.WaitHealthy(60 * time.Second)
		t.Logf("agent %s exited %v after SIGTERM; restarted, cluster healthy %v after it", id, stopped.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
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
