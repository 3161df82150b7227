package bouncer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/pgtest"
)

// The agent's fencing rules against a real PgBouncer and real PostgreSQL
// servers, driven by a scripted quorum over gRPC (see
// agent_integration_test.go). The servers are independent: routing and
// fencing, not replication, are under test.

// runAgent starts an agent for one cluster on e's PgBouncer until the test
// ends, and returns a function reading its status.
func runAgent(t *testing.T, id string, e *env, lease time.Duration, eps ...string) func() ClusterStatus {
	t.Helper()
	a, err := NewAgent(AgentOptions{
		AgentID: id, ContactLease: lease, Router: e.router, Dial: grpcDial(t), Logger: testLogger(),
		Clusters: []ClusterSpec{{Name: "c1", Endpoints: eps, Databases: []DatabaseSpec{{Name: "app", DBName: "postgres"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return func() ClusterStatus { return a.Status()[0] }
}

func pgAddr(pg *pgtest.Postgres) string { return fmt.Sprintf("%s:%d", pg.Host, pg.Port) }

// TestAgent_RealTwoAgentsBothFence: two PgBouncers, each with its agent,
// front one cluster. When the primary dies, both fence it and acknowledge
// the new epoch before anything is routed to the new primary, and after
// the exposure both route there.
func TestAgent_RealTwoAgentsBothFence(t *testing.T) {
	pgA, pgB := newPG(t), newPG(t)
	e1, e2 := newEnv(t), newEnv(t)
	q := newFakeQuorum(t, "c1", &journal{})
	ep := serveQuorum(t, q)
	q.member("m1", pgAddr(pgA))
	q.member("m2", pgAddr(pgB))
	q.assign("m1", "bootstrap new cluster")
	q.expose()
	st1 := runAgent(t, "pgb1", e1, 2*time.Second, ep)
	st2 := runAgent(t, "pgb2", e2, 2*time.Second, ep)
	waitFor(t, 10*time.Second, "both agents route to m1", func() bool { return st1().Exposed == "m1" && st2().Exposed == "m1" })

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	l1, l2 := startLoad(ctx, e1.pgb.DSN("app"), 3), startLoad(ctx, e2.pgb.DSN("app"), 3)
	waitFor(t, 10*time.Second, "writes through both", func() bool {
		ok1, _ := l1.counts()
		ok2, _ := l2.counts()
		return ok1 > 20 && ok2 > 20
	})

	killed := time.Now()
	pgA.Kill9()
	q.assign("m2", "failover: lease of m1 (epoch 1) expired")
	waitFor(t, 10*time.Second, "both agents acknowledge epoch 2", func() bool { return q.ackedBy("pgb1") >= 2 && q.ackedBy("pgb2") >= 2 })
	for i, st := range []func() ClusterStatus{st1, st2} {
		s := st()
		if db := s.Databases["app"]; !db.Fenced || db.FencedAt < 2 {
			t.Errorf("agent %d acknowledged epoch 2 but app is not fenced at it: %+v", i+1, db)
		}
	}
	for i, l := range []*load{l1, l2} {
		if _, ok := l.firstSuccessOn(pgB.Port, killed); ok {
			t.Errorf("PgBouncer %d sent a write to m2 before it was exposed", i+1)
		}
	}

	q.expose()
	waitFor(t, 10*time.Second, "writes on m2 through both", func() bool {
		_, ok1 := l1.firstSuccessOn(pgB.Port, killed)
		_, ok2 := l2.firstSuccessOn(pgB.Port, killed)
		return ok1 && ok2
	})
	stop()
	l1.wait()
	l2.wait()
	if s1, s2 := st1(), st2(); s1.Exposed != "m2" || s2.Exposed != "m2" || s1.Fenced || s2.Fenced {
		t.Fatalf("final status: %+v / %+v", s1, s2)
	}
}

// TestAgent_RealContactLossPauses: an agent that hears from no member for
// longer than its contact lease pauses the cluster's databases itself:
// clients wait instead of writing to a primary the quorum may have
// replaced. When contact returns with the same primary, writes go on.
func TestAgent_RealContactLossPauses(t *testing.T) {
	const lease = 500 * time.Millisecond
	pgA := newPG(t)
	e := newEnv(t)
	q := newFakeQuorum(t, "c1", &journal{})
	ep := serveQuorum(t, q)
	q.member("m1", pgAddr(pgA))
	q.assign("m1", "bootstrap new cluster")
	q.expose()
	status := runAgent(t, "pgb1", e, lease, ep)
	waitFor(t, 10*time.Second, "app routed to m1", func() bool { return status().Exposed == "m1" })

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	l := startLoad(ctx, e.pgb.DSN("app"), 2)
	waitFor(t, 10*time.Second, "writes", func() bool { ok, _ := l.counts(); return ok > 20 })

	cut := time.Now()
	q.setDown(ep, true)
	waitFor(t, 10*time.Second, "self-fence", func() bool { s := status(); return s.SelfFenced && s.Fenced })
	fenced := time.Now()
	t.Logf("self-fenced %v after contact was cut (lease %v)", fenced.Sub(cut).Round(time.Millisecond), lease)
	// The lease counts from the last answered heartbeat, sent up to
	// lease/4 before the cut.
	if d := fenced.Sub(cut); d < lease/2 {
		t.Errorf("self-fenced after %v, before the contact lease (%v) could have run out", d, lease)
	}
	// Writes that were in flight when PAUSE returned are done; from here
	// on nothing reaches the server while contact is lost.
	okFenced, _ := l.counts()
	time.Sleep(time.Second)
	if ok, _ := l.counts(); ok != okFenced {
		t.Errorf("%d writes went through while the agent had no contact", ok-okFenced)
	}

	q.setDown(ep, false)
	waitFor(t, 10*time.Second, "writes again after contact returned", func() bool { ok, _ := l.counts(); return ok > okFenced+10 })
	stop()
	l.wait()
	if _, failed := l.counts(); failed != 0 {
		t.Errorf("%d client errors: clients should have waited, first: %v", failed, l.errors[0])
	}
}

// TestAgent_RealStaleEpochIgnored: after routing to the primary of epoch
// 3, the agent's stream moves to a member that lags at epochs 1 and 2
// (another primary exposed at each). PgBouncer keeps routing to the
// epoch 3 primary; no write reaches the stale one.
func TestAgent_RealStaleEpochIgnored(t *testing.T) {
	pgOld, pgNew := newPG(t), newPG(t)
	e := newEnv(t)
	cur := newFakeQuorum(t, "c1", &journal{})
	old := newFakeQuorum(t, "c1", &journal{})
	epCur, epOld := serveQuorum(t, cur), serveQuorum(t, old)
	for _, q := range []*fakeQuorum{cur, old} {
		q.member("m1", pgAddr(pgOld))
		q.member("m2", pgAddr(pgOld))
		q.member("m3", pgAddr(pgNew))
		q.assign("m1", "bootstrap new cluster")
		q.expose()
	}
	cur.assign("m2", "failover")
	cur.expose()
	cur.assign("m3", "failover")
	cur.expose()
	old.setDown(epOld, true)
	status := runAgent(t, "pgb1", e, 2*time.Second, epCur, epOld)
	waitFor(t, 10*time.Second, "app routed to m3 (epoch 3)", func() bool { s := status(); return s.Exposed == "m3" && s.Acked == 3 })

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	l := startLoad(ctx, e.pgb.DSN("app"), 2)
	waitFor(t, 10*time.Second, "writes on m3", func() bool { _, ok := l.firstSuccessOn(pgNew.Port, time.Time{}); return ok })

	moved := time.Now()
	cur.setDown(epCur, true)
	old.setDown(epOld, false)
	waitFor(t, 10*time.Second, "watch on the lagging member", func() bool { return status().WatchEndpoint == epOld })
	old.assign("m2", "failover") // epoch 2: still older than 3
	old.expose()
	time.Sleep(time.Second)
	stop()
	l.wait()
	if at, ok := l.firstSuccessOn(pgOld.Port, moved); ok {
		t.Fatalf("a write reached the stale primary at +%v", at.Sub(moved))
	}
	if s := status(); s.Exposed != "m3" || s.Acked != 3 {
		t.Fatalf("status after stale events: %+v", s)
	}
	if ok, failed := l.counts(); ok == 0 || failed != 0 {
		t.Fatalf("%d writes, %d client errors", ok, failed)
	}
}
