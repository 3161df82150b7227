package bouncer

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// planState builds a state with members m1..m3 and primary id at epoch.
func planState(id string, epoch uint64, edit func(*pb.ClusterState)) *pb.ClusterState {
	st := &pb.ClusterState{Primary: &pb.PrimaryAssignment{MemberId: id, Epoch: epoch}}
	for i := 1; i <= 3; i++ {
		st.Members = append(st.Members, &pb.Member{Id: fmt.Sprintf("m%d", i), PgAddr: fmt.Sprintf("10.0.0.%d:5432", i)})
	}
	if edit != nil {
		edit(st)
	}
	return st
}

func exposedAt(epoch uint64, m int) Status {
	return Status{Seen: epoch, ExposedAt: epoch, Route: Route{Host: fmt.Sprintf("10.0.0.%d", m), Port: 5432}}
}

func fencedAt(epoch uint64) Status { return Status{Seen: epoch, Fenced: true, FencedAt: epoch} }

// opsString renders ops as "kind db epoch mode/host" for comparison.
func opsString(ops []op) []string {
	var out []string
	for _, o := range ops {
		s := fmt.Sprintf("%s %s %d", o.kind, o.db, o.epoch)
		if o.kind == opExpose {
			s += " " + o.route.Host
		} else {
			s += " " + o.mode.String()
		}
		out = append(out, s)
	}
	return out
}

func TestPlan_Rules(t *testing.T) {
	exposed := func(st *pb.ClusterState) { st.Primary.Exposed = true }
	history := func(reason string) func(*pb.ClusterState) {
		return func(st *pb.ClusterState) {
			st.History = append(st.History, &pb.HistoryEntry{Epoch: st.Primary.Epoch, NewMember: st.Primary.MemberId, Reason: reason})
		}
	}
	both := func(fs ...func(*pb.ClusterState)) func(*pb.ClusterState) {
		return func(st *pb.ClusterState) {
			for _, f := range fs {
				f(st)
			}
		}
	}
	tests := []struct {
		name        string
		st          *pb.ClusterState
		newest      uint64
		lagging     bool
		noContact   bool
		unconfirmed bool
		dbs         map[string]Status // missing: unknown to the router
		want        []string
		wantEpoch   uint64
	}{
		{name: "no state: nothing", st: nil, want: nil},
		{name: "new epoch, not exposed: nothing to fence, nothing exposed",
			st: planState("m1", 1, nil), want: nil, wantEpoch: 1},
		{name: "exposed: expose unknown db",
			st: planState("m1", 1, exposed), want: []string{"expose app 1 10.0.0.1"}, wantEpoch: 1},
		{name: "exposed and routed: nothing",
			st: planState("m1", 1, exposed), dbs: map[string]Status{"app": exposedAt(1, 1)}, want: nil, wantEpoch: 1},
		{name: "failover: KILL the old route, wait for expose",
			st: planState("m2", 2, history("failover: lease of m1 (epoch 1) expired")), dbs: map[string]Status{"app": exposedAt(1, 1)},
			want: []string{"fence app 2 emergency"}, wantEpoch: 2},
		{name: "switchover: PAUSE the old route",
			st: planState("m2", 2, history("switchover from m1")), dbs: map[string]Status{"app": exposedAt(1, 1)},
			want: []string{"fence app 2 planned"}, wantEpoch: 2},
		{name: "already held: no KILL on top of the PAUSE",
			st: planState("m2", 2, history("failover")), dbs: map[string]Status{"app": fencedAt(1)}, want: nil, wantEpoch: 2},
		{name: "exposed at a new epoch while routed to the old: fence, then expose",
			st: planState("m2", 2, both(exposed, history("failover"))), dbs: map[string]Status{"app": exposedAt(1, 1)},
			want: []string{"fence app 2 emergency", "expose app 2 10.0.0.2"}, wantEpoch: 2},
		{name: "stepping down: hold at the current epoch, then acknowledge the next",
			st: planState("m1", 1, both(exposed, func(st *pb.ClusterState) {
				st.Switchover = &pb.Switchover{From: "m1", Epoch: 1, SteppingDown: true}
			})), dbs: map[string]Status{"app": exposedAt(1, 1)}, want: []string{"hold app 1 planned"}, wantEpoch: 2},
		{name: "draining for a switchover: hold, then acknowledge the next epoch",
			st: planState("m1", 1, both(exposed, func(st *pb.ClusterState) {
				st.Switchover = &pb.Switchover{From: "m1", Epoch: 1, Draining: true}
			})), dbs: map[string]Status{"app": exposedAt(1, 1)}, want: []string{"hold app 1 planned"}, wantEpoch: 2},
		{name: "switchover requested, not stepping down yet: nothing",
			st: planState("m1", 1, both(exposed, func(st *pb.ClusterState) {
				st.Switchover = &pb.Switchover{From: "m1", Epoch: 1}
			})), dbs: map[string]Status{"app": exposedAt(1, 1)}, want: nil, wantEpoch: 1},
		{name: "released: hold",
			st:  planState("m1", 1, both(exposed, func(st *pb.ClusterState) { st.Primary.Released = true })),
			dbs: map[string]Status{"app": exposedAt(1, 1)}, want: []string{"hold app 1 planned"}, wantEpoch: 1},
		{name: "fenced at the epoch, primary exposed again (self-fence over): expose",
			st: planState("m1", 1, exposed), dbs: map[string]Status{"app": fencedAt(1)}, want: []string{"expose app 1 10.0.0.1"}, wantEpoch: 1},
		{name: "no contact: hold what routes, leave the rest",
			st: planState("m1", 1, exposed), noContact: true,
			dbs:  map[string]Status{"app": exposedAt(1, 1), "other": fencedAt(1)},
			want: []string{"hold app 1 planned"}, wantEpoch: 1},
		{name: "leader reported a newer epoch: expose nothing, hold nothing yet",
			st: planState("m1", 1, exposed), newest: 2, dbs: map[string]Status{"app": exposedAt(1, 1)}, want: nil, wantEpoch: 1},
		{name: "lagging behind the leader: fence at its epoch, emergency (the old primary may hang in a COMMIT)",
			st: planState("m1", 1, exposed), newest: 2, lagging: true, dbs: map[string]Status{"app": exposedAt(1, 1)},
			want: []string{"fence app 2 emergency"}, wantEpoch: 2},
		{name: "unconfirmed: keep the current route, expose nothing new",
			st: planState("m2", 2, exposed), unconfirmed: true, dbs: map[string]Status{"app": exposedAt(2, 2)}, want: nil, wantEpoch: 2},
		{name: "unconfirmed: still fence what is older",
			st: planState("m2", 2, exposed), unconfirmed: true, dbs: map[string]Status{"app": exposedAt(1, 1)},
			want: []string{"fence app 2 emergency"}, wantEpoch: 2},
		{name: "primary without pg_addr: hold, report",
			st: planState("m9", 1, exposed), dbs: map[string]Status{"app": exposedAt(1, 1)}, want: []string{"hold app 1 planned"}, wantEpoch: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := planInput{st: tc.st, newest: max(tc.newest, tc.st.GetPrimary().GetEpoch()), lagging: tc.lagging,
				contact: !tc.noContact, confirmed: !tc.unconfirmed, dbs: []DatabaseSpec{{Name: "app"}},
				status: func(db string) (Status, bool) { s, ok := tc.dbs[db]; return s, ok }}
			if _, ok := tc.dbs["other"]; ok {
				in.dbs = append(in.dbs, DatabaseSpec{Name: "other"})
			}
			out := plan(in)
			if got := opsString(out.ops); !slices.Equal(got, tc.want) {
				t.Fatalf("ops = %q, want %q", got, tc.want)
			}
			if out.epoch != tc.wantEpoch {
				t.Fatalf("epoch = %d, want %d", out.epoch, tc.wantEpoch)
			}
		})
	}
}

func TestPlan_RouteKeepsDatabaseSettings(t *testing.T) {
	st := planState("m1", 1, func(st *pb.ClusterState) { st.Primary.Exposed = true })
	out := plan(planInput{st: st, newest: 1, contact: true, confirmed: true,
		dbs:    []DatabaseSpec{{Name: "app", DBName: "appdb", User: "u", Pool: PoolOptions{Mode: "session"}}},
		status: func(string) (Status, bool) { return Status{}, false }})
	want := Route{Host: "10.0.0.1", Port: 5432, DBName: "appdb", User: "u", Pool: PoolOptions{Mode: "session"}}
	if len(out.ops) != 1 || out.ops[0].route != want || out.expose != "m1" {
		t.Fatalf("plan = %+v", out)
	}
}

func TestPlan_BadPgAddrIsReported(t *testing.T) {
	st := planState("m1", 1, func(st *pb.ClusterState) { st.Primary.Exposed = true; st.Members[0].PgAddr = "nohostport" })
	out := plan(planInput{st: st, newest: 1, contact: true, confirmed: true, dbs: []DatabaseSpec{{Name: "app"}},
		status: func(string) (Status, bool) { return Status{}, false }})
	if len(out.ops) != 0 || !strings.Contains(out.problem, "not host:port") {
		t.Fatalf("plan = %+v", out)
	}
}

func TestAckable(t *testing.T) {
	dbs := []DatabaseSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	st := map[string]Status{"a": fencedAt(1), "b": exposedAt(2, 2)}
	get := func(db string) (Status, bool) { s, ok := st[db]; return s, ok }
	if !ackable(2, dbs, get) {
		t.Error("fenced, exposed at 2 and unknown: want ackable at 2")
	}
	if ackable(3, dbs, get) {
		t.Error("b routes to epoch 2: not ackable at 3")
	}
}
