package fsm

import (
	"bytes"
	"fmt"
	"testing"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

const randomLogLen = 2000

// TestProperty_EpochsOnlyGrow applies random logs and checks invariant 2
// after every entry: the epoch never goes down, an accepted AssignPrimary
// raises it by exactly one and nothing else changes it; history stays
// bounded and ordered; members stay sorted and unique.
func TestProperty_EpochsOnlyGrow(t *testing.T) {
	for _, seed := range seeds(t) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			f := New(16)
			var assigned, refused int
			var prevEpoch uint64
			for _, l := range genLog(seed, randomLogLen) {
				res := f.Apply(l).(Result)
				st := f.State()
				if st.Index != l.Index {
					t.Fatalf("index %d after applying %d", st.Index, l.Index)
				}
				cmd, _ := Decode(l.Data)
				_, isAssign := cmd.(*pb.AssignPrimary)
				want := prevEpoch
				if isAssign && res.Err == nil {
					want++
					assigned++
				}
				if res.Err != nil {
					refused++
				}
				if st.Primary.Epoch != want {
					t.Fatalf("entry %d (%T, err %v): epoch %d -> %d, want %d", l.Index, cmd, res.Err, prevEpoch, st.Primary.Epoch, want)
				}
				prevEpoch = st.Primary.Epoch
				checkInvariants(t, st)
			}
			t.Logf("%d entries: %d assignments, %d refusals", randomLogLen, assigned, refused)
			if assigned <= HistoryLimit {
				t.Fatalf("only %d assignments: the history bound was not exercised", assigned)
			}
		})
	}
}

// TestProperty_Determinism applies the same random log to two fresh FSMs:
// same results, byte-identical snapshots.
func TestProperty_Determinism(t *testing.T) {
	for _, seed := range seeds(t) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			log := genLog(seed, randomLogLen)
			a, b := New(8), New(1000)
			ra, rb := applyAll(a, log), applyAll(b, log)
			for i := range ra {
				if fmt.Sprint(ra[i]) != fmt.Sprint(rb[i]) {
					t.Fatalf("entry %d: results %v and %v", log[i].Index, ra[i], rb[i])
				}
			}
			if ea, eb := encodedState(t, a), encodedState(t, b); !bytes.Equal(ea, eb) {
				t.Fatalf("snapshots differ (%d and %d bytes)", len(ea), len(eb))
			}
		})
	}
}

// TestProperty_SnapshotReplay snapshots an FSM part-way through a log,
// restores it into a fresh FSM, applies the rest there, and expects the
// same bytes as the FSM that applied everything.
func TestProperty_SnapshotReplay(t *testing.T) {
	for _, seed := range seeds(t) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			log := genLog(seed, randomLogLen)
			full := New(8)
			applyAll(full, log)
			want := encodedState(t, full)
			for _, mid := range []int{0, len(log) / 3, len(log) - 1} {
				part := New(8)
				applyAll(part, log[:mid])
				resumed := restored(t, persist(t, part))
				if !proto.Equal(resumed.State(), part.State()) {
					t.Fatalf("mid %d: restored state differs from the snapshotted one", mid)
				}
				applyAll(resumed, log[mid:])
				if got := encodedState(t, resumed); !bytes.Equal(got, want) {
					t.Fatalf("mid %d: replay after restore differs from full apply", mid)
				}
			}
		})
	}
}

// TestApplyEvent_FoldsToState follows a random log with a watcher that
// folds every event into its own copy, and expects the FSM's state.
//
// Two fields are not published and are left out of the comparison:
// primary.lease_seq (RenewLease publishes nothing by design), and index,
// which for the watcher is that of the last event that changed something
// and for the FSM that of the last entry applied.
func TestApplyEvent_FoldsToState(t *testing.T) {
	for _, seed := range seeds(t) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			log := genLog(seed, randomLogLen)
			f := New(randomLogLen)
			initial, sub := f.Subscribe(0, randomLogLen+1)
			if len(initial) != 1 || initial[0].GetSnapshot() == nil {
				t.Fatalf("Subscribe(0) initial = %v, want one snapshot", initial)
			}
			var view *pb.ClusterState
			for _, ev := range initial {
				view = ApplyEvent(view, ev)
			}
			// Half-way, the watcher disconnects and resumes from its index.
			mid := len(log) / 2
			var lastEvent uint64
			drain := func(sub *Subscription) {
				sub.Close()
				for ev := range sub.C {
					lastEvent = ev.Index
					view = ApplyEvent(view, ev)
				}
				if err := sub.Err(); err != nil {
					t.Fatalf("subscription ended with %v", err)
				}
			}
			applyAll(f, log[:mid])
			drain(sub)
			initial, sub = f.Subscribe(view.Index, randomLogLen+1)
			for _, ev := range initial {
				if ev.GetSnapshot() != nil {
					t.Fatalf("resume from %d got a snapshot", view.Index)
				}
				lastEvent = ev.Index
				view = ApplyEvent(view, ev)
			}
			applyAll(f, log[mid:])
			drain(sub)

			st := f.State()
			if view.Index != lastEvent || view.Index > st.Index {
				t.Fatalf("view index %d, last event %d, fsm index %d", view.Index, lastEvent, st.Index)
			}
			view.Index, st.Index = 0, 0
			view.Primary.LeaseSeq, st.Primary.LeaseSeq = 0, 0
			if !proto.Equal(view, st) {
				t.Fatalf("folded view differs from the state:\n view %v\nstate %v", view, st)
			}
		})
	}
}

func TestApplyEvent_Snapshot(t *testing.T) {
	f := newCluster(t)
	initial, sub := f.Subscribe(0, 1)
	sub.Close()
	old := &pb.ClusterState{Paused: true, Members: []*pb.Member{pgMember("zz")}}
	got := ApplyEvent(old, initial[0])
	if !proto.Equal(got, f.State()) {
		t.Fatalf("snapshot event: got %v, want %v", got, f.State())
	}
	got.Members[0].Id = "changed"
	if initial[0].GetSnapshot().Members[0].Id == "changed" {
		t.Fatalf("ApplyEvent shares the snapshot's messages with the event")
	}
	// A partial snapshot is normalized so that later deltas can apply.
	got = ApplyEvent(nil, &pb.WatchEvent{Index: 3, Kind: &pb.WatchEvent_Snapshot{Snapshot: &pb.ClusterState{Index: 3}}})
	got = ApplyEvent(got, &pb.WatchEvent{Index: 4, Kind: &pb.WatchEvent_Delta{Delta: &pb.StateDelta{RemovedMembers: []string{"x"}}}})
	if got.Identity == nil || got.Config == nil || got.Primary == nil || got.Sync == nil || got.Index != 4 {
		t.Fatalf("not normalized: %v", got)
	}
}
