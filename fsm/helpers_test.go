package fsm

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math/rand"
	"sort"
	"testing"

	"github.com/hashicorp/raft"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// seedFlag overrides the fixed seeds of the randomized tests, to replay a
// failure: go test ./fsm/ -run TestProperty -fsm.seed=N
var seedFlag = flag.Int64("fsm.seed", 0, "seed for the randomized fsm tests (0: the fixed seeds)")

// seeds returns the seeds a randomized test runs with, and logs them.
func seeds(t *testing.T) []int64 {
	t.Helper()
	s := []int64{1, 42, 20240229, 7777777}
	if *seedFlag != 0 {
		s = []int64{*seedFlag}
	}
	t.Logf("seeds %v (replay one with -fsm.seed=N)", s)
	return s
}

func pgMember(id string) *pb.Member {
	return &pb.Member{
		Id: id, RaftAddr: id + ":7000", GrpcAddr: id + ":7001", PgAddr: id + ":5432",
		Role: pb.MemberRole_MEMBER_ROLE_POSTGRES, Suffrage: pb.Suffrage_SUFFRAGE_VOTER,
	}
}

func witness(id string) *pb.Member {
	return &pb.Member{
		Id: id, RaftAddr: id + ":7000", GrpcAddr: id + ":7001",
		Role: pb.MemberRole_MEMBER_ROLE_WITNESS, Suffrage: pb.Suffrage_SUFFRAGE_VOTER,
	}
}

var testInit = &pb.InitCluster{
	Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1000,
	InitialConfig: &pb.DynamicConfig{
		SynchronousMode:           pb.SynchronousMode_SYNCHRONOUS_MODE_ON,
		SynchronousNodeCount:      1,
		MaximumLagOnFailoverBytes: 1 << 20,
		PostgresParameters:        map[string]string{"max_connections": "100"},
	},
}

// run applies cmd at the next index and returns the delta Apply published
// (nil when it published nothing) and Apply's error.
func run(t testing.TB, f *FSM, cmd proto.Message) (*pb.StateDelta, error) {
	t.Helper()
	data, err := Encode(cmd)
	if err != nil {
		t.Fatalf("Encode(%T): %v", cmd, err)
	}
	return runEntry(t, f, &raft.Log{Type: raft.LogCommand, Data: data})
}

// runEntry applies l at the next index (it sets l.Index) and returns the
// delta published, if any, and the Result's error.
func runEntry(t testing.TB, f *FSM, l *raft.Log) (*pb.StateDelta, error) {
	t.Helper()
	l.Index = f.State().Index + 1
	_, sub := f.Subscribe(l.Index-1, 4)
	defer sub.Close()
	r := f.Apply(l)
	res, ok := r.(Result)
	if !ok {
		t.Fatalf("Apply returned %T, want Result", r)
	}
	if res.Index != l.Index {
		t.Fatalf("Result.Index = %d, want %d", res.Index, l.Index)
	}
	select {
	case ev, ok := <-sub.C:
		if !ok {
			t.Fatalf("subscription closed: %v", sub.Err())
		}
		if ev.Index != l.Index {
			t.Fatalf("event index %d, want %d", ev.Index, l.Index)
		}
		if ev.GetDelta() == nil {
			t.Fatalf("event at %d is not a delta: %v", ev.Index, ev)
		}
		select {
		case extra := <-sub.C:
			t.Fatalf("one entry published two events; second: %v", extra)
		default:
		}
		return ev.GetDelta(), res.Err
	default:
		return nil, res.Err
	}
}

// mustRun applies commands that must be accepted.
func mustRun(t testing.TB, f *FSM, cmds ...proto.Message) {
	t.Helper()
	for _, c := range cmds {
		if _, err := run(t, f, c); err != nil {
			t.Fatalf("apply %T %v: %v", c, c, err)
		}
	}
}

// newInitialized returns an FSM with the cluster identity set and no
// members.
func newInitialized(t testing.TB) *FSM {
	f := New(64)
	mustRun(t, f, testInit)
	return f
}

// newCluster returns an initialized FSM with members a, b, c (Postgres) and
// w (witness), and a primary at epoch 1.
func newCluster(t testing.TB) *FSM {
	f := newInitialized(t)
	mustRun(t, f,
		&pb.UpsertMember{Member: pgMember("a")},
		&pb.UpsertMember{Member: pgMember("b")},
		&pb.UpsertMember{Member: pgMember("c")},
		&pb.UpsertMember{Member: witness("w")},
		&pb.AssignPrimary{ExpectedEpoch: 0, MemberId: "a", Timeline: 1, Reason: "bootstrap", AtUnixMs: 2000},
	)
	return f
}

// checkInvariants fails when st breaks a rule that every reachable state
// keeps: members sorted and unique, history bounded and ordered by epoch
// and ending at the primary's epoch.
func checkInvariants(t testing.TB, st *pb.ClusterState) {
	t.Helper()
	for i := 1; i < len(st.Members); i++ {
		if st.Members[i-1].Id >= st.Members[i].Id {
			t.Fatalf("members not sorted and unique at %d: %q, %q", i, st.Members[i-1].Id, st.Members[i].Id)
		}
	}
	for i := 1; i < len(st.Bouncers); i++ {
		if st.Bouncers[i-1].Id >= st.Bouncers[i].Id {
			t.Fatalf("bouncers not sorted and unique at %d: %q, %q", i, st.Bouncers[i-1].Id, st.Bouncers[i].Id)
		}
	}
	if len(st.History) > HistoryLimit {
		t.Fatalf("history has %d entries, limit %d", len(st.History), HistoryLimit)
	}
	for i := 1; i < len(st.History); i++ {
		if st.History[i].Epoch != st.History[i-1].Epoch+1 {
			t.Fatalf("history epochs %d then %d", st.History[i-1].Epoch, st.History[i].Epoch)
		}
	}
	if n := len(st.History); n > 0 && st.History[n-1].Epoch != st.Primary.Epoch {
		t.Fatalf("last history epoch %d, primary epoch %d", st.History[n-1].Epoch, st.Primary.Epoch)
	}
	if st.Primary.Epoch > 0 && st.Sync.Epoch != st.Primary.Epoch {
		t.Fatalf("sync epoch %d, primary epoch %d", st.Sync.Epoch, st.Primary.Epoch)
	}
	if !sort.StringsAreSorted(st.Sync.Members) {
		t.Fatalf("sync members not sorted: %v", st.Sync.Members)
	}
	if len(st.Tombstones) > TombstoneLimit {
		t.Fatalf("%d tombstones, limit %d", len(st.Tombstones), TombstoneLimit)
	}
	for i, ts := range st.Tombstones {
		if tombstoneIndex(st, ts.Id) != i || FindMember(st, ts.Id) != nil {
			t.Fatalf("tombstone %q duplicated or also a member", ts.Id)
		}
	}
}

// memSink is a raft.SnapshotSink that keeps the snapshot in memory.
type memSink struct {
	bytes.Buffer
	writeErr  error
	closed    bool
	cancelled bool
}

func (s *memSink) ID() string { return "mem" }

func (s *memSink) Write(p []byte) (int, error) {
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	return s.Buffer.Write(p)
}

func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// persist runs Snapshot and Persist into a memSink and returns the bytes.
func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("Persist left sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// restored returns a fresh FSM restored from data.
func restored(t testing.TB, data []byte) *FSM {
	t.Helper()
	f := New(64)
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return f
}

func encodedState(t testing.TB, f *FSM) []byte {
	t.Helper()
	b, err := EncodeSnapshot(f.State())
	if err != nil {
		t.Fatalf("EncodeSnapshot: %v", err)
	}
	return b
}

// genLog makes a random log of n entries from seed. It aims most commands
// at the current state of a shadow FSM, so that most are accepted, and
// perturbs the rest (stale epochs, unknown members, witnesses, garbage
// bytes, non-command entries) so that every refusal is exercised.
func genLog(seed int64, n int) []*raft.Log {
	rng := rand.New(rand.NewSource(seed))
	shadow := New(1)
	ids := []string{"m0", "m1", "m2", "m3", "m4", "m5"}
	pick := func() string { return ids[rng.Intn(len(ids))] }
	log := make([]*raft.Log, 0, n)
	for i := 1; i <= n; i++ {
		st := shadow.st        // read only, single goroutine: no copy needed
		off := func() uint64 { // usually 0, sometimes a wrong value
			if rng.Intn(8) == 0 {
				return uint64(rng.Intn(3)) + 1
			}
			return 0
		}
		epochOff := func(e uint64) uint64 {
			if o := off(); o != 0 {
				if rng.Intn(2) == 0 && e >= o {
					return e - o
				}
				return e + o
			}
			return e
		}
		var cmd proto.Message
		l := &raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand}
		switch r := rng.Intn(100); {
		case r < 3:
			cmd = &pb.InitCluster{Name: "c", Uuid: []string{"u1", "u2", ""}[rng.Intn(3)], AtUnixMs: int64(i)}
		case r < 20:
			m := pgMember(pick())
			if rng.Intn(5) == 0 {
				m.Role = pb.MemberRole_MEMBER_ROLE_WITNESS
				m.PgAddr = ""
			}
			if rng.Intn(3) == 0 {
				m.Tags = &pb.Tags{Nofailover: rng.Intn(2) == 0, FailoverPriority: int32(rng.Intn(3))}
			}
			if old := FindMember(st, m.Id); old != nil && rng.Intn(3) == 0 {
				m = old // identical upsert: publishes nothing
			}
			// Half the upserts are explicit adds, so a tombstone is
			// sometimes cleared and sometimes refuses the upsert.
			cmd = &pb.UpsertMember{Member: m, Readmit: rng.Intn(2) == 0}
		case r < 27:
			cmd = &pb.RemoveMember{Id: pick(), Tombstone: rng.Intn(2) == 0}
		case r < 33:
			cmd = &pb.SetConfig{
				ExpectedVersion: epochOff(st.Config.Version),
				Config: &pb.DynamicConfig{
					SynchronousMode:      pb.SynchronousMode(rng.Intn(3)),
					SynchronousNodeCount: int32(rng.Intn(3)),
					PostgresParameters:   map[string]string{"work_mem": []string{"4MB", "8MB"}[rng.Intn(2)], "shared_buffers": "1GB"},
				},
			}
		case r < 55:
			cmd = &pb.AssignPrimary{
				ExpectedEpoch: epochOff(st.Primary.Epoch), ExpectedLeaseSeq: epochOff(st.Primary.LeaseSeq),
				MemberId: pick(), Timeline: uint32(rng.Intn(5)), Reason: "random", AtUnixMs: int64(i),
			}
		case r < 58:
			id := st.Primary.MemberId
			if rng.Intn(6) == 0 {
				id = pick()
			}
			cmd = &pb.ReleaseLease{MemberId: id, Epoch: epochOff(st.Primary.Epoch), Lsn: uint64(rng.Intn(1000))}
		case r < 61:
			var sw *pb.Switchover
			if rng.Intn(4) != 0 {
				sw = &pb.Switchover{
					From: st.Primary.MemberId, To: []string{"", pick()}[rng.Intn(2)], Epoch: epochOff(st.Primary.Epoch),
					RequestedAtUnixMs: int64(i), SteppingDown: rng.Intn(2) == 0,
				}
				if rng.Intn(8) == 0 {
					sw.From = pick()
				}
			}
			cmd = &pb.SetSwitchover{Switchover: sw}
		case r < 73:
			id := st.Primary.MemberId
			if rng.Intn(6) == 0 {
				id = pick()
			}
			cmd = &pb.RenewLease{MemberId: id, Epoch: epochOff(st.Primary.Epoch)}
		case r < 83:
			var ms []string
			for _, id := range ids {
				if rng.Intn(3) == 0 {
					ms = append(ms, id)
				}
			}
			cmd = &pb.SetSync{Epoch: epochOff(st.Primary.Epoch), Members: ms, Degraded: rng.Intn(4) == 0}
		case r < 85:
			cmd = &pb.SetPaused{Paused: rng.Intn(2) == 0}
		case r < 87:
			cmd = &pb.RegisterBouncer{Agent: &pb.BouncerAgent{
				Id: []string{"pgb1", "pgb2", "pgb3"}[rng.Intn(3)], ContactLeaseMs: int64(rng.Intn(3) * 1000),
				RegisteredAtUnixMs: int64(i), Databases: []string{"app", "other"}[:1+rng.Intn(2)],
			}}
		case r < 88:
			cmd = &pb.UnregisterBouncer{Id: []string{"pgb1", "pgb2", "pgb3"}[rng.Intn(3)]}
		case r < 90:
			cmd = &pb.ExposePrimary{Epoch: epochOff(st.Primary.Epoch)}
		case r < 92:
			cmd = &pb.SetSystemID{SystemIdentifier: uint64(rng.Intn(3))}
		case r < 95:
			l.Type = raft.LogNoop
		default:
			// Garbage: random bytes, or a valid command cut short.
			b := make([]byte, rng.Intn(12))
			rng.Read(b)
			if len(b) > 0 && rng.Intn(2) == 0 {
				b[0] = byte(rng.Intn(11))
			}
			l.Data = b
		}
		if cmd != nil {
			data, err := Encode(cmd)
			if err != nil {
				panic(err)
			}
			l.Data = data
		}
		shadow.Apply(l)
		log = append(log, l)
	}
	return log
}

// applyAll applies log to f and returns the Results.
func applyAll(f *FSM, log []*raft.Log) []Result {
	out := make([]Result, len(log))
	for i, l := range log {
		out[i] = f.Apply(l).(Result)
	}
	return out
}

func isErr(err, target error) bool {
	if target == nil {
		return err == nil
	}
	return errors.Is(err, target)
}
