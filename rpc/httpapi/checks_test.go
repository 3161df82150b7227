package httpapi

import (
	"net/http"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// codes maps a check target to the status code wanted.
type codes map[string]int

const (
	ok   = http.StatusOK
	down = http.StatusServiceUnavailable
)

// allDown is every check answering 503 but /liveness.
func allDown() codes {
	c := codes{}
	for p := range checkPaths {
		c[p] = down
	}
	c["/liveness"] = ok
	return c
}

func with(base codes, over codes) codes {
	out := codes{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

func TestChecks_Scenarios(t *testing.T) {
	primaryOK := with(allDown(), codes{"/": ok, "/primary": ok, "/leader": ok, "/master": ok, "/read-write": ok,
		"/read-only": ok, "/read-only-sync": ok, "/read-only-synchronous": ok, "/health": ok, "/readiness": ok,
		"/primary?tag_nofailover=true": ok, "/read-only?tag_nofailover=true": down})
	asyncOK := with(allDown(), codes{"/replica": ok, "/read-only": ok, "/async": ok, "/asynchronous": ok,
		"/health": ok, "/readiness": ok, "/replica?lag=1MB": ok, "/replica?lag=0": down, "/replica?lag=4096": ok,
		"/replica?tag_failover_priority=0": ok, "/replica?tag_nofailover=false": ok, "/replica?tag_nofailover=true": down,
		"/replica?tag_foo=bar": down, "/replica?replication_state=streaming": ok, "/replica?replication_state=stopped": down})
	tests := []struct {
		name  string
		id    string
		setup func(n *fakeNode, p *fakeProbe)
		want  codes
	}{
		{name: "primary", id: "n1", want: primaryOK},
		{name: "sync standby", id: "n2", want: with(allDown(), codes{"/replica": ok, "/read-only": ok, "/sync": ok, "/synchronous": ok,
			"/read-only-sync": ok, "/read-only-synchronous": ok, "/health": ok, "/readiness": ok, "/replica?lag=0": ok})},
		{name: "async standby", id: "n3", want: asyncOK},
		{name: "lagging replica", id: "n3", setup: func(n *fakeNode, _ *fakeProbe) {
			n.health = standbyHealth(primaryWAL - 3*mib)
		}, want: with(asyncOK, codes{"/replica?lag=1MB": down, "/replica?lag=16MB": ok, "/replica?lag=4096": down,
			"/read-only?lag=1MB": down, "/async?lag=1MB": down, "/async?lag=3MB": ok, "/readiness": down,
			"/readiness?lag=16MB": ok})},
		{name: "replica receives but replays late", id: "n3", setup: func(n *fakeNode, _ *fakeProbe) {
			n.health.ReceiveLsn = primaryWAL
			n.health.ReplayLsn = primaryWAL - 2*mib
		}, want: codes{"/replica?lag=1MB": down, "/readiness": down, "/readiness?mode=write": ok}},
		{name: "primary position unknown", id: "n3", setup: func(_ *fakeNode, p *fakeProbe) {
			delete(p.health, "n1:7101")
		}, want: codes{"/replica": ok, "/replica?lag=16MB": down, "/readiness": ok, "/readiness?lag=16MB": down}},
		{name: "primary released its lease at a known position", id: "n3", setup: func(n *fakeNode, p *fakeProbe) {
			delete(p.health, "n1:7101")
			n.state.Primary.Released, n.state.Primary.ReleasedLsn = true, primaryWAL
		}, want: codes{"/replica?lag=1MB": ok}},
		{name: "stopped postgres", id: "n3", setup: func(n *fakeNode, _ *fakeProbe) {
			n.health = &pb.PostgresHealth{State: pb.PgState_PG_STATE_STOPPED, Timeline: 2}
		}, want: allDown()},
		{name: "not probed yet", id: "n3", setup: func(n *fakeNode, _ *fakeProbe) { n.health = nil }, want: allDown()},
		{name: "stopped primary", id: "n1", setup: func(n *fakeNode, _ *fakeProbe) {
			n.health = &pb.PostgresHealth{State: pb.PgState_PG_STATE_CRASHED}
		}, want: allDown()},
		{name: "fenced primary", id: "n1", setup: func(n *fakeNode, _ *fakeProbe) {
			n.health.State = pb.PgState_PG_STATE_FENCED
		}, want: allDown()},
		{name: "primary whose lease is about to run out", id: "n1", setup: func(n *fakeNode, _ *fakeProbe) {
			n.leaseAge = 8 * time.Second // ttl 10s - safety margin 2s
		}, want: with(allDown(), codes{"/health": ok})},
		{name: "primary not converged to the epoch", id: "n1", setup: func(n *fakeNode, _ *fakeProbe) {
			n.health.AppliedEpoch = epoch - 1
		}, want: with(allDown(), codes{"/health": ok})},
		{name: "primary that released its lease", id: "n1", setup: func(n *fakeNode, _ *fakeProbe) {
			n.state.Primary.Released = true
		}, want: with(allDown(), codes{"/health": ok})},
		{name: "deposed primary still running", id: "n1", setup: func(n *fakeNode, _ *fakeProbe) {
			n.state.Primary = &pb.PrimaryAssignment{MemberId: "n2", Epoch: epoch + 1}
		}, want: with(allDown(), codes{"/health": ok})},
		{name: "primary still promoting", id: "n1", setup: func(n *fakeNode, _ *fakeProbe) {
			n.health = standbyHealth(primaryWAL)
		}, want: with(allDown(), codes{"/health": ok})},
		{name: "witness", id: "w1", want: with(allDown(), codes{"/readiness": ok})},
		{name: "witness without leader", id: "w1", setup: func(n *fakeNode, _ *fakeProbe) {
			n.status.LeaderId = ""
		}, want: allDown()},
		{name: "noloadbalance replica", id: "n3", setup: func(n *fakeNode, _ *fakeProbe) {
			n.opts.Tags = &pb.Tags{Noloadbalance: true}
		}, want: with(allDown(), codes{"/health": ok, "/readiness": ok, "/health?tag_noloadbalance=true": ok})},
		{name: "noloadbalance primary", id: "n1", setup: func(n *fakeNode, _ *fakeProbe) {
			n.opts.Tags = &pb.Tags{Noloadbalance: true}
		}, want: codes{"/primary": ok, "/read-only": ok}},
		{name: "sync set of an older epoch", id: "n2", setup: func(n *fakeNode, _ *fakeProbe) {
			n.state.Sync.Epoch = epoch - 1
		}, want: codes{"/sync": down, "/async": ok, "/read-only-sync": down}},
		{name: "replica without leader", id: "n3", setup: func(n *fakeNode, _ *fakeProbe) {
			n.status.LeaderId = ""
		}, want: codes{"/replica": ok, "/readiness": down, "/liveness": ok}},
		{name: "replica not streaming", id: "n3", setup: func(n *fakeNode, _ *fakeProbe) {
			n.health.ReceiveLsn = 0
		}, want: codes{"/replica": ok, "/readiness": down, "/replica?replication_state=streaming": down}},
		{name: "raft shut down", id: "n3", setup: func(n *fakeNode, _ *fakeProbe) {
			n.status.RaftState = "Shutdown"
		}, want: codes{"/liveness": down, "/health": ok}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h *pb.PostgresHealth
			switch tt.id {
			case "n1":
				h = primaryHealth()
			case "n2":
				h = standbyHealth(primaryWAL)
			case "n3":
				h = standbyHealth(primaryWAL - 4096)
			}
			n, p := newFake(tt.id, h), newProbe()
			if tt.setup != nil {
				tt.setup(n, p)
			}
			for target, want := range tt.want {
				// A fresh handler per target: no cached primary position
				// leaks from one check to the next.
				hd := newHandler(t, n, p)
				for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
					rec := do(t, hd, method, target)
					if rec.Code != want {
						t.Errorf("%s %s = %d, want %d (%s)", method, target, rec.Code, want, rec.Body.String())
					}
					if method != http.MethodGet && rec.Body.Len() != 0 {
						t.Errorf("%s %s wrote a body: %q", method, target, rec.Body.String())
					}
				}
			}
		})
	}
}

func TestParseBytes_Units(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  bool
	}{
		{in: "0", want: 0},
		{in: "1048576", want: mib},
		{in: "16kB", want: 16 << 10},
		{in: "1MB", want: mib},
		{in: "1 MB", want: mib},
		{in: "1mb", want: mib},
		{in: "1.5GB", want: 3 << 29},
		{in: "2TB", want: 2 << 40},
		{in: "10B", want: 10},
		{in: "", err: true},
		{in: "MB", err: true},
		{in: "ten", err: true},
		{in: "1PB", err: true},
		{in: "-1", err: true},
		{in: "1e30TB", err: true},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestChecks_BadLagIs400(t *testing.T) {
	n := newFake("n3", standbyHealth(primaryWAL))
	if rec := do(t, newHandler(t, n, nil), http.MethodGet, "/replica?lag=lots"); rec.Code != http.StatusBadRequest {
		t.Fatalf("got %d, want 400", rec.Code)
	}
}

func TestWALCache_ProbesOncePerLoopWait(t *testing.T) {
	n, p := newFake("n3", standbyHealth(primaryWAL)), newProbe()
	now := time.Unix(1000, 0)
	h := New(n, Config{Probe: p.probe, Now: func() time.Time { return now }})
	for range 5 {
		if rec := do(t, h, http.MethodGet, "/replica?lag=1MB"); rec.Code != ok {
			t.Fatalf("got %d", rec.Code)
		}
	}
	if c := p.count(); c != 1 {
		t.Fatalf("%d probes within one loop_wait, want 1", c)
	}
	// The primary becomes unreachable: the last position of the epoch
	// still counts.
	delete(p.health, "n1:7101")
	now = now.Add(2 * time.Second)
	if rec := do(t, h, http.MethodGet, "/replica?lag=1MB"); rec.Code != ok {
		t.Fatalf("stale position: got %d", rec.Code)
	}
	if c := p.count(); c != 2 {
		t.Fatalf("%d probes, want 2", c)
	}
	// A new epoch forgets it.
	n.state.Primary = &pb.PrimaryAssignment{MemberId: "n1", Epoch: epoch + 1}
	now = now.Add(2 * time.Second)
	if rec := do(t, h, http.MethodGet, "/replica?lag=1MB"); rec.Code != down {
		t.Fatalf("new epoch, primary unreachable: got %d", rec.Code)
	}
}
