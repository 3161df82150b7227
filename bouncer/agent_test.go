package bouncer

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func spec(name string, eps []string, dbs ...string) ClusterSpec {
	c := ClusterSpec{Name: name, Endpoints: eps}
	for _, d := range dbs {
		c.Databases = append(c.Databases, DatabaseSpec{Name: d, DBName: "postgres"})
	}
	return c
}

// exposedCluster starts a harness whose cluster "c1" (members m1, m2 on
// endpoints e1, e2) has m1 exposed at epoch 1 and routed by the agent.
func exposedCluster(t *testing.T, lease time.Duration, dbs ...string) (*agentHarness, *fakeQuorum) {
	h := newAgentHarness(t)
	q := h.quorum("c1", "e1", "e2")
	q.member("m1", "10.0.0.1:5432")
	q.member("m2", "10.0.0.2:5432")
	q.assign("m1", "bootstrap new cluster")
	q.expose()
	h.start(lease, spec("c1", []string{"e1", "e2"}, dbs...))
	for _, db := range dbs {
		h.waitJournal(fmt.Sprintf("expose %s 1 10.0.0.1:5432", db))
	}
	return h, q
}

// TestAgent_WatchFollowsTheLeader: the leader applies a decision before any
// follower, so the agent moves its watch to the endpoint the heartbeat
// answers name as the leader's, and keeps routing from there.
func TestAgent_WatchFollowsTheLeader(t *testing.T) {
	h, q := exposedCluster(t, time.Second, "app")
	status := func() ClusterStatus { return h.status("c1") }
	waitFor(t, 5*time.Second, "watch on e1", func() bool { return status().WatchEndpoint == "e1" })
	q.setLeader("e2")
	waitFor(t, 5*time.Second, "watch moved to the leader e2", func() bool { return status().WatchEndpoint == "e2" })
	q.assign("m2", "failover: lease of m1 (epoch 1) expired")
	q.expose()
	h.waitJournal("expose app 2 10.0.0.2:5432")
	q.setLeader("e1")
	waitFor(t, 5*time.Second, "watch back on e1", func() bool { return status().WatchEndpoint == "e1" })
	// An address the agent does not list changes nothing.
	q.setLeader("10.9.9.9:7000")
	time.Sleep(600 * time.Millisecond)
	if ep := status().WatchEndpoint; ep != "e1" {
		t.Fatalf("watch moved to %q for a leader it does not list", ep)
	}
}

func TestAgent_NoExposeBeforeExposed(t *testing.T) {
	h := newAgentHarness(t)
	q := h.quorum("c1", "e1")
	q.member("m1", "10.0.0.1:5432")
	q.assign("m1", "bootstrap new cluster")
	h.start(time.Second, spec("c1", []string{"e1"}, "app"))

	// Nothing routes yet, so the new epoch is acknowledged at once...
	waitFor(t, 5*time.Second, "ack of epoch 1", func() bool { return q.ackedBy("agent1") == 1 })
	// ...but nothing is exposed until the quorum says so.
	if n := h.j.count("expose"); n != 0 {
		t.Fatalf("exposed before the primary was exposed: %v", h.j.snapshot())
	}
	q.expose()
	h.waitJournal("expose app 1 10.0.0.1:5432")
	waitFor(t, 5*time.Second, "status shows m1 exposed", func() bool { return h.status("c1").Exposed == "m1" })
	if h.router.tuned == 0 {
		t.Error("Tune was not called")
	}
}

func TestAgent_FailoverFencesBeforeAck(t *testing.T) {
	h, q := exposedCluster(t, time.Second, "app", "app2")
	q.assign("m2", "failover: lease of m1 (epoch 1) expired")

	ack := h.waitJournal("ack c1 2")
	for _, db := range []string{"app", "app2"} {
		i := h.j.index(fmt.Sprintf("fence %s 2 ", db))
		if i < 0 || i > ack {
			t.Fatalf("%s: want a fence at epoch 2 before the ack; journal %v", db, h.j.snapshot())
		}
	}
	// Fenced and acknowledged, but not exposed: the quorum has not exposed m2.
	time.Sleep(100 * time.Millisecond) // a window for a wrong expose to show
	if h.j.index("expose app 2") >= 0 {
		t.Fatalf("exposed epoch 2 before the quorum exposed it: %v", h.j.snapshot())
	}
	// After a failover the old primary may still run: its successor's
	// route is not loaded into PgBouncer before the exposure.
	if h.j.index("stage ") >= 0 {
		t.Fatalf("staged a route after a failover: %v", h.j.snapshot())
	}
	if s := h.status("c1"); !s.Fenced || s.Acked != 2 || s.Exposed != "" {
		t.Fatalf("status %+v", s)
	}
	q.expose()
	h.waitJournal("expose app 2 10.0.0.2:5432")
	h.waitJournal("expose app2 2 10.0.0.2:5432")
	waitFor(t, 5*time.Second, "status shows m2 exposed", func() bool { return h.status("c1").Exposed == "m2" })
}

func TestAgent_SwitchoverPausesOnSteppingDown(t *testing.T) {
	h, q := exposedCluster(t, time.Second, "app")
	q.steppingDown("m2")
	h.waitJournal("hold app 1 planned")
	// Held for the switchover: the agent tells the decider the old primary
	// may stop by acknowledging the next epoch.
	h.waitJournal("ack c1 2")
	if s := h.status("c1"); !s.Fenced || s.Acked != 2 {
		t.Fatalf("status after stepping down: %+v", s)
	}
	q.release()
	q.assign("m2", "switchover from m1")
	h.waitJournal("ack c1 2")
	// While m2 promotes, its route is loaded into the paused PgBouncer.
	h.waitJournal("stage app 2 10.0.0.2:5432")
	q.expose()
	h.waitJournal("expose app 2 10.0.0.2:5432")
	if h.j.index("stage app 2") > h.j.index("expose app 2") {
		t.Fatalf("staged after the exposure: %v", h.j.snapshot())
	}
	for _, l := range h.j.snapshot() {
		if strings.Contains(l, "emergency") {
			t.Fatalf("a planned switchover used KILL: %v", h.j.snapshot())
		}
	}
}

func TestAgent_SwitchoverWithoutSteppingDownSeenUsesPause(t *testing.T) {
	// The agent missed the stepping-down event (it came up after it): the
	// history reason still makes the fence a PAUSE.
	h, q := exposedCluster(t, time.Second, "app")
	q.assign("m2", "switchover from m1")
	h.waitJournal("fence app 2 planned")
	h.waitJournal("ack c1 2")
}

func TestAgent_IgnoresStaleEpochs(t *testing.T) {
	h := newAgentHarness(t)
	// Two members of c1 that disagree: e1 is current (epoch 3), e2 lags
	// behind at epoch 2 with m1 still exposed.
	cur := h.quorum("c1", "e1")
	old := newFakeQuorum(t, "c1", h.j)
	h.qs["e2"] = old
	for _, q := range []*fakeQuorum{cur, old} {
		q.member("m1", "10.0.0.1:5432")
		q.member("m2", "10.0.0.2:5432")
		q.member("m3", "10.0.0.3:5432")
		q.assign("m1", "bootstrap")
		q.expose()
	}
	old.setDown("e2", true)
	cur.assign("m2", "failover")
	cur.expose()
	cur.assign("m3", "failover")
	cur.expose()
	h.start(time.Second, spec("c1", []string{"e1", "e2"}, "app"))
	h.waitJournal("expose app 3 10.0.0.3:5432")

	// e1 goes away; the watch moves to e2, which serves its older state
	// (epoch 1, m1 exposed). Heartbeats keep working through e2 but answer
	// with the stale member's epoch, so only the local state can keep the
	// agent right.
	cur.setDown("e1", true)
	old.setDown("e2", false)
	waitFor(t, 5*time.Second, "watch on e2", func() bool { return h.status("c1").WatchEndpoint == "e2" })
	old.assign("m2", "failover") // still older than 3
	old.expose()
	time.Sleep(200 * time.Millisecond)
	if n := h.j.count("expose") + h.j.count("fence") + h.j.count("hold"); n != 1 {
		t.Fatalf("acted on a stale epoch: %v", h.j.snapshot())
	}
	if s := h.status("c1"); s.Epoch != 3 || s.Exposed != "m3" || s.Fenced {
		t.Fatalf("status after stale events: %+v", s)
	}
}

func TestAgent_SelfFenceAfterContactLoss(t *testing.T) {
	const lease = 400 * time.Millisecond
	h, q := exposedCluster(t, lease, "app")
	waitFor(t, 5*time.Second, "a heartbeat", func() bool { n, _ := q.heartbeats(); return n > 0 })

	q.setDown("e1", true)
	q.setDown("e2", true)
	_, lastHB := q.heartbeats()
	h.waitJournal("hold app 1 planned")
	held := time.Now()
	if d := held.Sub(lastHB); d < lease-50*time.Millisecond {
		t.Fatalf("self-fenced %v after the last answered heartbeat, before the lease (%v) ran out", d, lease)
	}
	if d := held.Sub(lastHB); d > lease+300*time.Millisecond {
		t.Errorf("self-fence took %v after the last answered heartbeat (lease %v)", d, lease)
	}
	if s := h.status("c1"); !s.SelfFenced || !s.Fenced {
		t.Fatalf("status %+v", s)
	}
	t.Logf("self-fenced %v after the last answered heartbeat (lease %v)", held.Sub(lastHB), lease)

	// Contact returns with the same primary still exposed: resume.
	q.setDown("e2", false)
	waitFor(t, 5*time.Second, "resume", func() bool { return h.j.count("expose app 1") == 2 })
	if s := h.status("c1"); s.SelfFenced || s.Fenced || s.Exposed != "m1" {
		t.Fatalf("status after contact returned: %+v", s)
	}
}

func TestAgent_ContactLossThenNewPrimary(t *testing.T) {
	const lease = 300 * time.Millisecond
	h, q := exposedCluster(t, lease, "app")
	q.setDown("e1", true)
	q.setDown("e2", true)
	h.waitJournal("hold app 1 planned")
	// Meanwhile the quorum gave up on this agent and moved on.
	q.assign("m2", "failover")
	q.expose()
	time.Sleep(100 * time.Millisecond)
	if h.j.index("expose app 2") >= 0 {
		t.Fatal("exposed without contact")
	}
	q.setDown("e1", false)
	h.waitJournal("expose app 2 10.0.0.2:5432")
	if h.j.count("expose app 1") != 1 {
		t.Fatalf("the old primary was exposed again: %v", h.j.snapshot())
	}
}

func TestAgent_PlannedFenceEscalatesToKill(t *testing.T) {
	h, q := exposedCluster(t, time.Second, "app")
	h.router.mu.Lock()
	h.router.pauseCh = make(chan struct{}) // PAUSE never finishes
	h.router.mu.Unlock()
	q.steppingDown("m2")
	h.waitJournal("hold app 1 emergency")
}

func TestAgent_FailoverFenceKillsWhenPauseHangs(t *testing.T) {
	h, q := exposedCluster(t, time.Second, "app")
	h.router.mu.Lock()
	h.router.pauseCh = make(chan struct{}) // a COMMIT stuck on the dead primary
	h.router.mu.Unlock()
	start := time.Now()
	q.assign("m2", "failover: lease of m1 (epoch 1) expired")
	ack := h.waitJournal("ack c1 2")
	if i := h.j.index("fence app 2 emergency"); i < 0 || i > ack {
		t.Fatalf("want KILL at epoch 2 before the ack: %v", h.j.snapshot())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("fence took %v", d)
	}
}

func TestAgent_ClustersAreIndependent(t *testing.T) {
	const lease = 400 * time.Millisecond
	h := newAgentHarness(t)
	a := h.quorum("a", "a1")
	b := h.quorum("b", "b1")
	for i, q := range []*fakeQuorum{a, b} {
		q.member("p", fmt.Sprintf("10.0.%d.1:5432", i))
		q.member("r", fmt.Sprintf("10.0.%d.2:5432", i))
		q.assign("p", "bootstrap")
		q.expose()
	}
	h.start(lease, spec("a", []string{"a1"}, "a_db"), spec("b", []string{"b1"}, "b_db1", "b_db2"))
	h.waitJournal("expose a_db 1")
	h.waitJournal("expose b_db2 1")

	// Failover in a: only a's database is fenced.
	a.assign("r", "failover")
	h.waitJournal("ack a 2")
	if h.j.index("fence b_") >= 0 {
		t.Fatalf("a failover in cluster a fenced b: %v", h.j.snapshot())
	}
	a.expose()
	h.waitJournal("expose a_db 2 10.0.0.2:5432")

	// b loses contact: only b's databases are self-fenced.
	b.setDown("b1", true)
	h.waitJournal("hold b_db1 1")
	h.waitJournal("hold b_db2 1")
	if s := h.status("a"); s.SelfFenced || s.Fenced || s.Exposed != "r" {
		t.Fatalf("cluster a was affected by b's contact loss: %+v", s)
	}
	if h.j.index("hold a_db") >= 0 {
		t.Fatalf("a was held: %v", h.j.snapshot())
	}
}

func TestAgent_LaggingWatchIsFencedByHeartbeatEpoch(t *testing.T) {
	const lease = 400 * time.Millisecond
	h := newAgentHarness(t)
	q := h.quorum("c1", "e1", "e2")
	q.member("m1", "10.0.0.1:5432")
	q.member("m2", "10.0.0.2:5432")
	q.assign("m1", "bootstrap")
	q.expose()
	h.start(lease, spec("c1", []string{"e1", "e2"}, "app"))
	h.waitJournal("expose app 1")
	// The watch stream stops delivering (a member cut off from the quorum
	// keeps its stream open), while heartbeats reach the leader.
	q.mu.Lock()
	for ch := range q.subs {
		delete(q.subs, ch)
	}
	q.mu.Unlock()
	q.assign("m2", "failover")
	// The heartbeat answer says epoch 2: after a grace period the agent
	// fences, acknowledges, and moves its watch, which then sees m2.
	h.waitJournal("ack c1 2")
	if i := h.j.index("fence app 2"); i < 0 || i > h.j.index("ack c1 2") {
		t.Fatalf("want a fence at epoch 2 before the ack: %v", h.j.snapshot())
	}
	q.expose()
	h.waitJournal("expose app 2 10.0.0.2:5432")
}

func TestNewAgent_RejectsBadOptions(t *testing.T) {
	r := newFakeRouter(&journal{})
	_, err := NewAgent(AgentOptions{AgentID: "a", ContactLease: time.Second, Router: r,
		Clusters: []ClusterSpec{spec("c1", nil, "app"), spec("c2", []string{"x"}, "app", "pgbouncer")}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"Dial", "no endpoints", `routed by clusters "c1" and "c2"`, "reserved"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestAgent_RefusesAnotherClustersMember(t *testing.T) {
	h := newAgentHarness(t)
	q := h.quorum("other", "e1")
	q.member("m1", "10.0.0.1:5432")
	q.assign("m1", "bootstrap")
	q.expose()
	h.start(time.Second, spec("c1", []string{"e1"}, "app"))
	waitFor(t, 5*time.Second, "an error in the status", func() bool { return h.status("c1").Err != "" })
	time.Sleep(100 * time.Millisecond)
	if n := h.j.count("expose"); n != 0 {
		t.Fatalf("routed to another cluster's primary: %v", h.j.snapshot())
	}
	if s := h.status("c1"); s.Primary != "" || !s.LastContact.IsZero() {
		t.Fatalf("status %+v", s)
	}
}
