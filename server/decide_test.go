package server

import (
	"strings"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// Table tests of decide: each case builds a view and says which command
// (if any) is decided, for which member, or why the decider waits.

var testTiming = Timing{TTL: 10 * time.Second, LoopWait: time.Second, RetryTimeout: time.Second, SafetyMargin: time.Second}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// vb builds a view: three PostgreSQL members n1..n3 with priority 1,
// n1 primary at epoch 3 (timeline 2) with a fresh lease, n2 and n3
// streaming standbys at the primary's LSN.
type vb struct{ v view }

const baseLSN = 0x5000000

func newVB() *vb {
	st := &pb.ClusterState{
		Identity: &pb.ClusterIdentity{Name: "c", Uuid: "u", SystemIdentifier: 42},
		Config:   DefaultDynamicConfig(),
		Primary:  &pb.PrimaryAssignment{MemberId: "n1", Epoch: 3, Timeline: 2, LeaseSeq: 9},
	}
	b := &vb{v: view{st: st, health: map[string]memberHealth{}, leaseAge: time.Second, leaseSeq: 9, now: t0, timing: testTiming}}
	for _, id := range []string{"n1", "n2", "n3"} {
		st.Members = append(st.Members, &pb.Member{Id: id, Role: pb.MemberRole_MEMBER_ROLE_POSTGRES, Tags: &pb.Tags{FailoverPriority: 1}})
	}
	b.pg("n1", &pb.PostgresHealth{State: pb.PgState_PG_STATE_RUNNING, DataDir: pb.DataDirKind_DATA_DIR_PRIMARY, Timeline: 2, WalLsn: baseLSN, AppliedEpoch: 3, SystemIdentifier: 42})
	for _, id := range []string{"n2", "n3"} {
		b.pg(id, &pb.PostgresHealth{State: pb.PgState_PG_STATE_RUNNING, DataDir: pb.DataDirKind_DATA_DIR_STANDBY, InRecovery: true, Timeline: 2, WalLsn: baseLSN, AppliedEpoch: 3, SystemIdentifier: 42})
	}
	return b
}

func (b *vb) pg(id string, h *pb.PostgresHealth) *vb {
	b.v.health[id] = memberHealth{seen: true, age: 100 * time.Millisecond, pg: h}
	return b
}

func (b *vb) h(id string) *pb.PostgresHealth { return b.v.health[id].pg }

func (b *vb) member(id string) *pb.Member {
	for _, m := range b.v.st.Members {
		if m.Id == id {
			return m
		}
	}
	panic(id)
}

// expired makes the primary's lease run out (ttl + safety margin passed).
func (b *vb) expired() *vb {
	b.v.leaseAge = testTiming.TTL + testTiming.SafetyMargin + time.Millisecond
	return b
}

// empty turns the view into a new cluster: no primary, no system id,
// every member reporting an empty data directory.
func (b *vb) empty() *vb {
	b.v.st.Primary = nil
	b.v.st.Identity.SystemIdentifier = 0
	for id := range b.v.health {
		b.pg(id, &pb.PostgresHealth{State: pb.PgState_PG_STATE_STOPPED, DataDir: pb.DataDirKind_DATA_DIR_EMPTY})
	}
	return b
}

func (b *vb) with(f func(*vb)) *vb { f(b); return b }

func TestDecide(t *testing.T) {
	type want struct {
		cmd    pb.CommandType // COMMAND_TYPE_UNSPECIFIED: no command
		member string         // AssignPrimary's member
		wait   string         // substring of the wait reason
		reason string         // substring of the reason
	}
	const (
		assign = pb.CommandType_COMMAND_TYPE_ASSIGN_PRIMARY
		sysid  = pb.CommandType_COMMAND_TYPE_SET_SYSTEM_ID
		setSw  = pb.CommandType_COMMAND_TYPE_SET_SWITCHOVER
		expose = pb.CommandType_COMMAND_TYPE_EXPOSE_PRIMARY
	)
	exposed := func(b *vb) { b.v.st.Primary.Exposed = true }
	cases := []struct {
		name string
		b    *vb
		want want
	}{
		{"uninitialized cluster: nothing", newVB().with(func(b *vb) { b.v.st.Identity.Uuid = "" }), want{}},

		// Bootstrap.
		{"bootstrap initializes the lowest id", newVB().empty(), want{cmd: assign, member: "n1", reason: "bootstrap new cluster"}},
		{"bootstrap waits for a member that did not report", newVB().empty().with(func(b *vb) { delete(b.v.health, "n3") }),
			want{wait: "member n3 to report"}},
		{"bootstrap waits for a member whose agent is silent", newVB().empty().with(func(b *vb) {
			b.v.health["n2"] = memberHealth{seen: true, age: time.Minute, pg: b.h("n2")}
		}), want{wait: "member n2 to report"}},
		{"bootstrap waits for a member with unknown data dir", newVB().empty().with(func(b *vb) { b.h("n2").DataDir = pb.DataDirKind_DATA_DIR_UNKNOWN }),
			want{wait: "n2 does not know its data directory"}},
		{"bootstrap waits for a raft server not registered yet", newVB().empty().with(func(b *vb) { b.v.servers = []string{"n1", "n2", "n3", "n4"} }),
			want{wait: "server n4 to register"}},
		{"bootstrap ignores witnesses", newVB().empty().with(func(b *vb) {
			b.v.st.Members = append(b.v.st.Members, &pb.Member{Id: "w1", Role: pb.MemberRole_MEMBER_ROLE_WITNESS})
		}), want{cmd: assign, member: "n1"}},
		{"bootstrap adopts the single primary data dir", newVB().empty().with(func(b *vb) {
			b.pg("n3", &pb.PostgresHealth{State: pb.PgState_PG_STATE_RUNNING, DataDir: pb.DataDirKind_DATA_DIR_PRIMARY, Timeline: 4})
		}), want{cmd: assign, member: "n3", reason: "adopt existing primary"}},
		{"bootstrap adopts the primary beside its standbys", newVB().empty().with(func(b *vb) {
			b.h("n1").DataDir = pb.DataDirKind_DATA_DIR_STANDBY
			b.h("n2").DataDir = pb.DataDirKind_DATA_DIR_PRIMARY
		}), want{cmd: assign, member: "n2", reason: "adopt"}},
		{"bootstrap refuses two primary data dirs", newVB().empty().with(func(b *vb) {
			b.h("n1").DataDir = pb.DataDirKind_DATA_DIR_PRIMARY
			b.h("n3").DataDir = pb.DataDirKind_DATA_DIR_PRIMARY
		}), want{wait: "bootstrap refused: members [n1 n3]"}},
		{"bootstrap waits when only standby data dirs exist", newVB().empty().with(func(b *vb) { b.h("n2").DataDir = pb.DataDirKind_DATA_DIR_STANDBY }),
			want{wait: "hold standby data directories"}},
		{"bootstrap skips nofailover members", newVB().empty().with(func(b *vb) { b.member("n1").Tags.Nofailover = true }),
			want{cmd: assign, member: "n2"}},
		{"bootstrap waits when every member is nofailover", newVB().empty().with(func(b *vb) {
			for _, m := range b.v.st.Members {
				m.Tags.Nofailover = true
			}
		}), want{wait: "no PostgreSQL member may initialize"}},
		{"paused: no bootstrap", newVB().empty().with(func(b *vb) { b.v.st.Paused = true }), want{wait: "paused: no bootstrap"}},

		// System identifier.
		{"records the system identifier once the primary applied its epoch", newVB().with(func(b *vb) { b.v.st.Identity.SystemIdentifier = 0 }),
			want{cmd: sysid}},
		{"system identifier waits for the primary to converge", newVB().with(func(b *vb) {
			b.v.st.Identity.SystemIdentifier = 0
			b.h("n1").AppliedEpoch = 2
		}), want{}},

		// Lease.
		{"valid lease: nothing", newVB().with(exposed), want{}},
		{"lease past ttl but within the safety margin: nothing", newVB().with(exposed).with(func(b *vb) { b.v.leaseAge = testTiming.TTL + testTiming.SafetyMargin }), want{}},
		{"lease past ttl and margin: failover", newVB().expired(), want{cmd: assign, member: "n2", reason: "lease of n1 (epoch 3) expired"}},
		{"released lease: failover at once", newVB().with(func(b *vb) { b.v.st.Primary.Released = true }), want{cmd: assign, member: "n2", reason: "released its lease"}},
		{"paused: no failover", newVB().expired().with(func(b *vb) { b.v.st.Paused = true }), want{wait: "paused: no automatic failover"}},

		// Candidate order.
		{"higher priority wins", newVB().expired().with(func(b *vb) { b.member("n3").Tags.FailoverPriority = 2 }), want{cmd: assign, member: "n3"}},
		{"higher LSN wins at equal priority", newVB().expired().with(func(b *vb) { b.h("n2").WalLsn = baseLSN - 0x100 }), want{cmd: assign, member: "n3"}},
		{"priority beats LSN", newVB().expired().with(func(b *vb) {
			b.h("n3").WalLsn = baseLSN - 0x100
			b.member("n3").Tags.FailoverPriority = 2
		}), want{cmd: assign, member: "n3"}},
		{"lowest id breaks ties", newVB().expired(), want{cmd: assign, member: "n2"}},
		{"a candidate that did not answer the fresh probe is skipped", newVB().expired().with(func(b *vb) {
			b.h("n2").WalLsn = baseLSN + 0x100 // its last heartbeat says it is ahead
			b.v.unanswered = map[string]bool{"n2": true}
		}), want{cmd: assign, member: "n3"}},
		{"no candidate answered the fresh probe: wait", newVB().expired().with(func(b *vb) {
			b.v.unanswered = map[string]bool{"n2": true, "n3": true}
		}), want{wait: "did not answer the fresh probe"}},
		{"recorded sync standby beats priority in sync mode", newVB().expired().with(func(b *vb) {
			b.v.st.Config.SynchronousMode = pb.SynchronousMode_SYNCHRONOUS_MODE_ON
			b.v.st.Sync = &pb.SyncState{Epoch: 3, Members: []string{"n3"}}
			b.member("n2").Tags.FailoverPriority = 9
		}), want{cmd: assign, member: "n3"}},
		{"degraded sync mode: sync standby still ranks first", newVB().expired().with(func(b *vb) {
			b.v.st.Config.SynchronousMode = pb.SynchronousMode_SYNCHRONOUS_MODE_ON
			b.v.st.Sync = &pb.SyncState{Epoch: 3, Members: []string{"n3"}, Degraded: true}
		}), want{cmd: assign, member: "n3"}},
		{"degraded sync mode: any eligible standby may be promoted", newVB().expired().with(func(b *vb) {
			b.v.st.Config.SynchronousMode = pb.SynchronousMode_SYNCHRONOUS_MODE_ON
			b.v.st.Sync = &pb.SyncState{Epoch: 3, Degraded: true}
		}), want{cmd: assign, member: "n2"}},

		// Ineligibility, one reason each (n3 is made ineligible; n2 is
		// dropped so the reason shows).
		{"nofailover", ineligible(func(b *vb) { b.member("n3").Tags.Nofailover = true }), want{wait: "n3: nofailover"}},
		{"priority 0", ineligible(func(b *vb) { b.member("n3").Tags.FailoverPriority = 0 }), want{wait: "n3: nofailover"}},
		{"witness is never a candidate", ineligible(func(b *vb) { b.member("n3").Role = pb.MemberRole_MEMBER_ROLE_WITNESS }), want{wait: "no candidate: []"}},
		{"agent not reporting", ineligible(func(b *vb) {
			b.v.health["n3"] = memberHealth{seen: true, age: testTiming.TTL + time.Millisecond, pg: b.h("n3")}
		}),
			want{wait: "n3: agent not reporting"}},
		{"agent never seen", ineligible(func(b *vb) { delete(b.v.health, "n3") }), want{wait: "n3: agent not reporting"}},
		{"stopped standby", ineligible(func(b *vb) { b.h("n3").State = pb.PgState_PG_STATE_STOPPED }), want{wait: "n3: not a running standby"}},
		{"running but not in recovery", ineligible(func(b *vb) { b.h("n3").InRecovery = false }), want{wait: "n3: not a running standby"}},
		{"older timeline", ineligible(func(b *vb) {
			b.h("n3").Timeline = 1
			b.pg("n2", &pb.PostgresHealth{State: pb.PgState_PG_STATE_STOPPED, Timeline: 2})
		}), want{wait: "n3: on timeline 1, newest is 2"}},
		{"not a recorded sync standby (on)", ineligible(func(b *vb) {
			b.v.st.Config.SynchronousMode = pb.SynchronousMode_SYNCHRONOUS_MODE_ON
			b.v.st.Sync = &pb.SyncState{Epoch: 3, Members: []string{"n2"}}
		}), want{wait: "n3: not a recorded synchronous standby"}},
		{"not a recorded sync standby (strict, even degraded)", ineligible(func(b *vb) {
			b.v.st.Config.SynchronousMode = pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT
			b.v.st.Sync = &pb.SyncState{Epoch: 3, Degraded: true}
		}), want{wait: "n3: not a recorded synchronous standby"}},
		{"lag over maximum_lag_on_failover (async)", ineligible(func(b *vb) {
			b.h("n3").WalLsn = baseLSN - (1<<20 + 1)
		}), want{wait: "n3: 1048577 bytes behind"}},
		{"lag measured against the released LSN", ineligible(func(b *vb) {
			b.v.st.Primary.ReleasedLsn = baseLSN + 2<<20
		}), want{wait: "bytes behind"}},
		{"lag within maximum_lag_on_failover", ineligible(func(b *vb) { b.h("n3").WalLsn = baseLSN - 1<<20 }), want{cmd: assign, member: "n3"}},

		// Switchover.
		{"switchover scheduled in the future: nothing", newVB().with(exposed).with(func(b *vb) {
			b.v.st.Switchover = &pb.Switchover{From: "n1", To: "n3", Epoch: 3, ScheduledAtUnixMs: t0.Add(time.Minute).UnixMilli()}
		}), want{}},
		{"switchover due: primary steps down", newVB().with(exposed).with(func(b *vb) {
			b.v.st.Switchover = &pb.Switchover{From: "n1", To: "n3", Epoch: 3, ScheduledAtUnixMs: t0.Add(-time.Second).UnixMilli()}
		}), want{cmd: setSw, reason: "n1 steps down"}},
		{"switchover due with a bouncer agent: agents drain first", newVB().with(exposed).with(func(b *vb) {
			b.v.st.Switchover = &pb.Switchover{From: "n1", To: "n3", Epoch: 3}
			b.v.st.Bouncers = []*pb.BouncerAgent{{Id: "b1", ContactLeaseMs: 5000}}
			b.v.acks = map[string]bouncerAck{"b1": {epoch: 3, at: t0}}
		}), want{cmd: setSw, reason: "bouncer agents drain n1"}},
		{"draining: waits until the agent paused (acknowledged epoch+1)", newVB().with(exposed).with(func(b *vb) {
			b.v.st.Switchover = &pb.Switchover{From: "n1", To: "n3", Epoch: 3, Draining: true}
			b.v.st.Bouncers = []*pb.BouncerAgent{{Id: "b1", ContactLeaseMs: 5000}}
			b.v.acks = map[string]bouncerAck{"b1": {epoch: 3, at: t0}}
		}), want{wait: "to pause n1"}},
		{"draining done: primary steps down", newVB().with(exposed).with(func(b *vb) {
			b.v.st.Switchover = &pb.Switchover{From: "n1", To: "n3", Epoch: 3, Draining: true}
			b.v.st.Bouncers = []*pb.BouncerAgent{{Id: "b1", ContactLeaseMs: 5000}}
			b.v.acks = map[string]bouncerAck{"b1": {epoch: 4, at: t0}}
		}), want{cmd: setSw, reason: "n1 steps down"}},
		{"draining: a silent agent past its contact lease is not waited for", newVB().with(exposed).with(func(b *vb) {
			b.v.st.Switchover = &pb.Switchover{From: "n1", To: "n3", Epoch: 3, Draining: true}
			b.v.st.Bouncers = []*pb.BouncerAgent{{Id: "b1", ContactLeaseMs: 5000}}
			b.v.acks = map[string]bouncerAck{"b1": {epoch: 3, at: t0.Add(-7 * time.Second)}}
		}), want{cmd: setSw, reason: "n1 steps down"}},
		{"switchover of an older epoch: ignored", newVB().with(exposed).with(func(b *vb) {
			b.v.st.Switchover = &pb.Switchover{From: "n0", Epoch: 2}
		}), want{}},
		{"switchover to an ineligible candidate waits", newVB().with(exposed).with(func(b *vb) {
			b.v.st.Switchover = &pb.Switchover{From: "n1", To: "n3", Epoch: 3}
			b.h("n3").State = pb.PgState_PG_STATE_STOPPED
		}), want{wait: "switchover waits"}},
		{"after release: named candidate promoted once it replayed released_lsn", switched(baseLSN), want{cmd: assign, member: "n3", reason: "switchover from n1"}},
		{"after release: waits for the candidate to reach released_lsn", switched(baseLSN + 0x100), want{wait: "switchover waits for n3 to replay"}},
		{"after release: named candidate ineligible waits", switched(baseLSN).with(func(b *vb) { b.member("n3").Tags.Nofailover = true }),
			want{wait: "candidate n3 is not eligible"}},
		{"after release: a requested candidate gone for as long as a lost lease is replaced by one that replayed released_lsn",
			switched(baseLSN).expired().with(func(b *vb) { b.member("n3").Tags.Nofailover = true }),
			want{cmd: assign, member: "n2", reason: "n3, the requested candidate, did not take over"}},
		{"after release: a requested candidate still behind after that is replaced too",
			switched(baseLSN + 0x100).expired().with(func(b *vb) { b.h("n2").WalLsn = baseLSN + 0x100 }),
			want{cmd: assign, member: "n2", reason: "did not take over"}},
		{"after release: the requested candidate is kept when it is the one that caught up",
			switched(baseLSN + 0x100).expired().with(func(b *vb) { b.h("n3").WalLsn = baseLSN + 0x100 }),
			want{cmd: assign, member: "n3", reason: "switchover from n1"}},
		{"after release: past that time the requested candidate still goes first when it replayed released_lsn",
			switched(baseLSN).expired(), want{cmd: assign, member: "n3", reason: "switchover from n1"}},
		{"after release: the replacement is still only a recorded synchronous standby (strict)",
			switched(baseLSN).expired().with(func(b *vb) {
				b.v.st.Config.SynchronousMode = pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT
				b.v.st.Sync = &pb.SyncState{Epoch: 3, Members: []string{"n3"}}
				b.h("n3").State = pb.PgState_PG_STATE_STOPPED // the requested one died
			}), want{wait: "no candidate"}},
		{"after release: nobody replayed released_lsn: still waits, whatever the time",
			switched(baseLSN + 0x100).expired().with(func(b *vb) { b.member("n3").Tags.Nofailover = true }),
			want{wait: "no candidate has replayed n1's last WAL"}},

		// Expose (fence before expose).
		{"expose once the primary runs its epoch and no bouncer is registered", newVB(), want{cmd: expose}},
		{"expose waits for the primary to converge", newVB().with(func(b *vb) { b.h("n1").AppliedEpoch = 2 }), want{wait: "expose waits for n1"}},
		{"expose waits for a bouncer agent to fence", newVB().with(func(b *vb) {
			b.v.st.Bouncers = []*pb.BouncerAgent{{Id: "b1", ContactLeaseMs: 5000}}
			b.v.acks = map[string]bouncerAck{"b1": {epoch: 2, at: t0}}
		}), want{wait: "bouncer agents [b1]"}},
		{"expose after the bouncer acknowledged the epoch", newVB().with(func(b *vb) {
			b.v.st.Bouncers = []*pb.BouncerAgent{{Id: "b1", ContactLeaseMs: 5000}}
			b.v.acks = map[string]bouncerAck{"b1": {epoch: 3, at: t0}}
		}), want{cmd: expose}},
		{"expose after a silent bouncer's contact lease ran out", newVB().with(func(b *vb) {
			b.v.st.Bouncers = []*pb.BouncerAgent{{Id: "b1", ContactLeaseMs: 5000}}
			b.v.acks = map[string]bouncerAck{"b1": {epoch: 2, at: t0.Add(-7 * time.Second)}}
		}), want{cmd: expose}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.Clone(tc.b.v.st)
			d := decide(tc.b.v)
			if !proto.Equal(before, tc.b.v.st) {
				t.Fatal("decide changed its input state")
			}
			var got pb.CommandType
			if d.cmd != nil {
				got = fsm.TypeOf(d.cmd)
			}
			if got != tc.want.cmd {
				t.Fatalf("command = %v (%v), want %v; wait = %q", got, d.cmd, tc.want.cmd, d.wait)
			}
			if tc.want.wait != "" && !strings.Contains(d.wait, tc.want.wait) {
				t.Fatalf("wait = %q, want it to contain %q", d.wait, tc.want.wait)
			}
			if tc.want.reason != "" && !strings.Contains(d.reason, tc.want.reason) {
				t.Fatalf("reason = %q, want it to contain %q", d.reason, tc.want.reason)
			}
			if a, ok := d.cmd.(*pb.AssignPrimary); ok {
				checkAssign(t, tc.b.v, a, tc.want.member)
			}
		})
	}
}

// checkAssign checks an AssignPrimary: member, compare-and-set fields,
// timeline and stamp.
func checkAssign(t *testing.T, v view, a *pb.AssignPrimary, member string) {
	t.Helper()
	if a.MemberId != member {
		t.Fatalf("assigned %s, want %s", a.MemberId, member)
	}
	if a.ExpectedEpoch != v.st.Primary.GetEpoch() {
		t.Errorf("ExpectedEpoch = %d, want %d", a.ExpectedEpoch, v.st.Primary.GetEpoch())
	}
	if v.st.Primary.GetMemberId() != "" && a.ExpectedLeaseSeq != v.leaseSeq {
		t.Errorf("ExpectedLeaseSeq = %d, want the observed lease seq %d", a.ExpectedLeaseSeq, v.leaseSeq)
	}
	if want := v.health[member].pg.GetTimeline(); a.Timeline != want {
		t.Errorf("Timeline = %d, want %d", a.Timeline, want)
	}
	if a.AtUnixMs != v.now.UnixMilli() {
		t.Errorf("AtUnixMs = %d, want the view's now", a.AtUnixMs)
	}
}

// ineligible: lease expired, n2 down (so only n3 can be picked), and f
// applied to make n3 ineligible for one reason.
func ineligible(f func(*vb)) *vb {
	b := newVB().expired()
	delete(b.v.health, "n2")
	b.v.st.Members = b.v.st.Members[:1:1]
	b.v.st.Members = append(b.v.st.Members, &pb.Member{Id: "n3", Role: pb.MemberRole_MEMBER_ROLE_POSTGRES, Tags: &pb.Tags{FailoverPriority: 1}})
	return b.with(f)
}

// switched: n1 stepped down for a switchover to n3 and released its lease
// at releasedLSN.
func switched(releasedLSN uint64) *vb {
	return newVB().with(func(b *vb) {
		b.v.st.Switchover = &pb.Switchover{From: "n1", To: "n3", Epoch: 3, SteppingDown: true}
		b.v.st.Primary.Released = true
		b.v.st.Primary.ReleasedLsn = releasedLSN
		b.pg("n1", &pb.PostgresHealth{State: pb.PgState_PG_STATE_STOPPED, DataDir: pb.DataDirKind_DATA_DIR_PRIMARY, Timeline: 2})
	})
}

func TestDecide_FailoverProbesCandidates(t *testing.T) {
	d := decide(newVB().expired().v)
	if len(d.probe) != 2 || d.probe[0] != "n2" || d.probe[1] != "n3" {
		t.Fatalf("probe = %v, want the candidates best first", d.probe)
	}
}

func TestDecide_IsDeterministic(t *testing.T) {
	b := newVB().expired()
	first := decide(b.v)
	for i := 0; i < 20; i++ {
		if d := decide(b.v); !proto.Equal(d.cmd, first.cmd) {
			t.Fatalf("round %d decided %v, first %v", i, d.cmd, first.cmd)
		}
	}
}
