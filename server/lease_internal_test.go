package server

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// leaseFixture is an observing FSM over a timed in-memory log store with
// a primary assigned at epoch 1.
type leaseFixture struct {
	t     *testing.T
	o     observingFSM
	store timedLogStore
	next  uint64
}

func newLeaseFixture(t *testing.T) *leaseFixture {
	times := newLogTimes()
	f := &leaseFixture{t: t, next: 1,
		o:     observingFSM{FSM: fsm.New(16), clock: &leaseClock{}, times: times},
		store: timedLogStore{LogStore: raft.NewInmemStore(), times: times}}
	for _, c := range []proto.Message{
		&pb.InitCluster{Name: "main", Uuid: "4f1c2d9e-0000-4000-8000-000000000001", AtUnixMs: 1},
		&pb.UpsertMember{Member: member("n1")},
		&pb.AssignPrimary{MemberId: "n1", Timeline: 1, Reason: "bootstrap", AtUnixMs: 2},
	} {
		f.apply(f.store1(c))
	}
	return f
}

// store1 stores cmd as the next log entry and returns it.
func (f *leaseFixture) store1(cmd proto.Message) *raft.Log {
	data, err := fsm.Encode(cmd)
	if err != nil {
		f.t.Fatal(err)
	}
	l := &raft.Log{Index: f.next, Term: 1, Type: raft.LogCommand, Data: data}
	f.next++
	if err := f.store.StoreLogs([]*raft.Log{l}); err != nil {
		f.t.Fatal(err)
	}
	return l
}

func (f *leaseFixture) apply(l *raft.Log) {
	if res := f.o.Apply(l).(fsm.Result); res.Err != nil {
		f.t.Fatalf("apply %d: %v", l.Index, res.Err)
	}
}

// age is the lease age the decider would see now.
func (f *leaseFixture) age() time.Duration {
	epoch, seq, _ := f.o.FSM.Lease()
	return f.o.clock.age(epoch, seq, time.Now())
}

// TestLeaseClock_CountsFromWhenTheRenewalWasStored: a follower learns that
// a renewal committed only from the leader's next AppendEntries (a commit
// timeout later when the cluster is idle), or, if the leader dies first,
// from the next leader. Its lease clock still starts when it stored the
// renewal, so a decider on it detects a lost primary within ttl +
// safety_margin of that, not of the late apply. And it never starts before
// the renewal was sent (DESIGN.md invariant 3).
func TestLeaseClock_CountsFromWhenTheRenewalWasStored(t *testing.T) {
	f := newLeaseFixture(t)
	epoch, _, _ := f.o.FSM.Lease()
	sent := time.Now()
	l := f.store1(&pb.RenewLease{MemberId: "n1", Epoch: epoch})
	const late = 150 * time.Millisecond
	time.Sleep(late) // the commit index arrives late
	f.apply(l)
	age := f.age()
	if age < late {
		t.Fatalf("lease age %v right after a renewal stored %v ago: counted from the apply, not the store", age, late)
	}
	if since := time.Since(sent); age > since {
		t.Fatalf("lease age %v is older than the renewal (sent %v ago): the lease would be counted from before it was sent", age, since)
	}
}

// TestLeaseClock_UnstoredEntryCountsFromTheApply: an entry this process did
// not store (replayed from disk at start-up, or stored before a restore)
// is counted from its apply, and a renewal stored again (a new leader
// replaced an uncommitted tail) from the later store: both only make the
// lease look younger.
func TestLeaseClock_UnstoredEntryCountsFromTheApply(t *testing.T) {
	f := newLeaseFixture(t)
	epoch, _, _ := f.o.FSM.Lease()
	data, _ := fsm.Encode(&pb.RenewLease{MemberId: "n1", Epoch: epoch})
	replayed := &raft.Log{Index: f.next, Term: 1, Type: raft.LogCommand, Data: data}
	f.next++
	time.Sleep(50 * time.Millisecond)
	f.apply(replayed)
	if age := f.age(); age > 20*time.Millisecond {
		t.Fatalf("an entry never stored by this process counted from %v before its apply", age)
	}

	l := f.store1(&pb.RenewLease{MemberId: "n1", Epoch: epoch})
	time.Sleep(100 * time.Millisecond)
	if err := f.store.StoreLogs([]*raft.Log{l}); err != nil { // stored again
		t.Fatal(err)
	}
	f.apply(l)
	if age := f.age(); age > 50*time.Millisecond {
		t.Fatalf("a renewal stored twice counted from its first store (%v ago), not the second", age)
	}
}
