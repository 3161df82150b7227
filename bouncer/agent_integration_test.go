package bouncer

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// scriptedServer serves a fakeQuorum over real gRPC: Watch from the
// quorum's event log, BouncerHeartbeat recorded. Every other method is
// unimplemented.
type scriptedServer struct {
	pb.UnimplementedAdminServer
	q  *fakeQuorum
	ep string
}

func (s *scriptedServer) Watch(req *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.WatchEvent]) error {
	in, err := s.q.client(s.ep).Watch(stream.Context(), req)
	if err != nil {
		return err
	}
	for {
		ev, err := in.Recv()
		if err != nil {
			return err
		}
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
}

func (s *scriptedServer) BouncerHeartbeat(ctx context.Context, req *pb.BouncerHeartbeatRequest) (*pb.BouncerHeartbeatResponse, error) {
	return s.q.client(s.ep).BouncerHeartbeat(ctx, req)
}

// serveQuorum starts a gRPC server for q and returns its address.
func serveQuorum(t *testing.T, q *fakeQuorum) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	pb.RegisterAdminServer(g, &scriptedServer{q: q, ep: lis.Addr().String()})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

func grpcDial(t *testing.T) func(string) (pb.AdminClient, error) {
	var mu sync.Mutex
	conns := map[string]*grpc.ClientConn{}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return func(addr string) (pb.AdminClient, error) {
		mu.Lock()
		defer mu.Unlock()
		c, ok := conns[addr]
		if !ok {
			var err error
			if c, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
				return nil, err
			}
			conns[addr] = c
		}
		return pb.NewAdminClient(c), nil
	}
}

// TestAgent_RealPgBouncer plays a planned switchover and an emergency
// failover through a scripted quorum over gRPC, a real PgBouncer and two
// real PostgreSQL servers (independent ones: routing, not replication, is
// under test), with 8 writers going through PgBouncer.
func TestAgent_RealPgBouncer(t *testing.T) {
	t.Run("stop_after_pause", func(t *testing.T) { realSwitchAndFailover(t, false) })
	// What the server does today: the old primary stops as soon as it sees
	// stepping_down, racing the agent's PAUSE. Measured, not asserted.
	t.Run("stop_races_pause", func(t *testing.T) { realSwitchAndFailover(t, true) })
}

func realSwitchAndFailover(t *testing.T, raceStop bool) {
	pgA, pgB := newPG(t), newPG(t)
	e := newEnv(t)
	j := &journal{}
	q := newFakeQuorum(t, "c1", j)
	ep := serveQuorum(t, q)
	q.member("m1", fmt.Sprintf("%s:%d", pgA.Host, pgA.Port))
	q.member("m2", fmt.Sprintf("%s:%d", pgB.Host, pgB.Port))
	q.assign("m1", "bootstrap new cluster")
	q.expose()

	a, err := NewAgent(AgentOptions{
		AgentID: "pgb1", ContactLease: 2 * time.Second, Router: e.router, Dial: grpcDial(t), Logger: testLogger(),
		Clusters: []ClusterSpec{{Name: "c1", Endpoints: []string{ep}, Databases: []DatabaseSpec{{Name: "app", DBName: "postgres"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	status := func() ClusterStatus { return a.Status()[0] }
	waitFor(t, 10*time.Second, "app exposed on A", func() bool { return status().Exposed == "m1" })
	if cfg, err := e.admin.Config(ctxT(t, 5*time.Second)); err != nil || cfg["server_login_retry"] != "0.1" {
		t.Errorf("server_login_retry = %q (%v), want 0.1 after Tune", cfg["server_login_retry"], err)
	}

	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	l := startLoad(loadCtx, e.pgb.DSN("app"), 8)
	waitFor(t, 5*time.Second, "writes on A", func() bool { ok, _ := l.counts(); return ok > 50 })

	// Planned switchover A → B, in the server's order: stepping down, the
	// old primary stops once the agent has paused, releases its lease; the
	// decider assigns B, waits for the agent's ack, exposes B.
	start := time.Now()
	q.steppingDown("m2")
	if raceStop {
		pgA.Stop()
	}
	// The agent's PAUSE has returned: no transaction runs on A any more.
	// (SHOW DATABASES says paused as soon as PAUSE starts waiting.)
	waitFor(t, 5*time.Second, "app paused", func() bool { return status().Fenced })
	paused := time.Now()
	if !raceStop {
		pgA.Stop()
	}
	q.release()
	q.assign("m2", "switchover from m1")
	waitFor(t, 5*time.Second, "ack of epoch 2", func() bool { return q.ackedBy("pgb1") >= 2 })
	acked := time.Now()
	q.expose()
	waitFor(t, 10*time.Second, "a write on B", func() bool { _, ok := l.firstSuccessOn(pgB.Port, start); return ok })
	firstB, _ := l.firstSuccessOn(pgB.Port, start)
	_, failed := l.counts()
	t.Logf("switchover: paused +%v, A stopped and epoch 2 acked +%v, first write on B +%v; write stall %v; %d client errors",
		paused.Sub(start), acked.Sub(start), firstB.Sub(start), l.maxGap(start, firstB), failed)
	if failed != 0 && !raceStop {
		t.Fatalf("%d client errors during the planned switchover; first: %v", failed, l.errors[0])
	}

	// Emergency failover B → A: kill -9 B, the decider assigns A once the
	// lease ran out (here: at once), the agent KILLs and acks, A is exposed.
	pgA.Start()
	waitFor(t, 10*time.Second, "status exposed m2", func() bool { return status().Exposed == "m2" })
	killed := time.Now()
	pgB.Kill9()
	q.assign("m1", "failover: lease of m2 (epoch 2) expired")
	waitFor(t, 5*time.Second, "ack of epoch 3", func() bool { return q.ackedBy("pgb1") >= 3 })
	acked = time.Now()
	q.expose()
	waitFor(t, 10*time.Second, "a write on A after the failover", func() bool { _, ok := l.firstSuccessOn(pgA.Port, killed); return ok })
	firstA, _ := l.firstSuccessOn(pgA.Port, killed)
	stopLoad()
	l.wait()
	ok, failed := l.counts()
	t.Logf("failover: epoch 3 acked +%v after kill -9, first write on A +%v (exposed at once after the ack); %d writes, %d client errors in total",
		acked.Sub(killed), firstA.Sub(killed), ok, failed)
	if rec := firstA.Sub(killed); rec > 3*time.Second {
		t.Fatalf("recovery after the failover took %v", rec)
	}
	if s := status(); s.Acked != 3 || s.Exposed != "m1" || s.Fenced {
		t.Fatalf("final status %+v", s)
	}
}
