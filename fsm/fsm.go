package fsm

import (
	"sync"

	"github.com/hashicorp/raft"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// HistoryLimit bounds the number of primary changes kept in the state.
const HistoryLimit = 100

// Result is what Apply returns to the proposer through raft's
// ApplyFuture.Response: the index the entry was applied at, and the error
// if the state refused the command.
type Result struct {
	Index uint64
	Err   error
}

// FSM is the replicated state machine. It implements raft.FSM.
type FSM struct {
	mu  sync.RWMutex
	st  *pb.ClusterState
	hub *Hub
}

var _ raft.FSM = (*FSM)(nil)

// New returns an empty FSM whose changes are published to a hub that keeps
// the last historyEvents events for resuming watchers.
func New(historyEvents int) *FSM {
	return &FSM{st: emptyState(), hub: newHub(historyEvents)}
}

func emptyState() *pb.ClusterState {
	return &pb.ClusterState{
		Identity: &pb.ClusterIdentity{},
		Config:   &pb.DynamicConfig{},
		Primary:  &pb.PrimaryAssignment{},
		Sync:     &pb.SyncState{},
	}
}

// State returns a copy of the current state.
func (f *FSM) State() *pb.ClusterState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return proto.Clone(f.st).(*pb.ClusterState)
}

// Apply executes one committed log entry. Only LogCommand entries change
// the state; every entry advances the applied index.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.Index = l.Index
	if l.Type != raft.LogCommand {
		return Result{Index: l.Index}
	}
	cmd, err := Decode(l.Data)
	if err != nil {
		return Result{Index: l.Index, Err: err}
	}
	delta, err := f.apply(l.Index, cmd)
	if err == nil && delta != nil {
		f.hub.publish(&pb.WatchEvent{Index: l.Index, Kind: &pb.WatchEvent_Delta{Delta: delta}})
	}
	return Result{Index: l.Index, Err: err}
}

// ApplyCommand runs a command outside Raft, for tests and tools that replay
// a log. It behaves exactly like Apply of an entry at index.
func (f *FSM) ApplyCommand(index uint64, cmd proto.Message) error {
	data, err := Encode(cmd)
	if err != nil {
		return err
	}
	return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(Result).Err
}

// apply is the one switch over every command. Each case returns the delta
// to publish (nil when nothing visible changed) or the refusal.
func (f *FSM) apply(index uint64, cmd proto.Message) (*pb.StateDelta, error) {
	s := f.st
	switch c := cmd.(type) {
	case *pb.InitCluster:
		return applyInitCluster(s, c)
	case *pb.UpsertMember:
		return applyUpsertMember(s, c)
	case *pb.RemoveMember:
		return applyRemoveMember(s, index, c)
	case *pb.SetConfig:
		return applySetConfig(s, c)
	case *pb.AssignPrimary:
		return applyAssignPrimary(s, index, c)
	case *pb.RenewLease:
		return applyRenewLease(s, c)
	case *pb.SetSync:
		return applySetSync(s, c)
	case *pb.SetPaused:
		return applySetPaused(s, c)
	case *pb.SetSystemID:
		return applySetSystemID(s, c)
	case *pb.ReleaseLease:
		return applyReleaseLease(s, c)
	case *pb.SetSwitchover:
		return applySetSwitchover(s, c)
	case *pb.RegisterBouncer:
		return applyRegisterBouncer(s, c)
	case *pb.UnregisterBouncer:
		return applyUnregisterBouncer(s, c)
	case *pb.ExposePrimary:
		return applyExposePrimary(s, c)
	}
	return nil, ErrUnknownCommand
}

// Lease returns the primary assignment's epoch, lease sequence and whether
// it was released, without copying the whole state. The server reads it
// after every Apply to time lease renewals on its own clock.
func (f *FSM) Lease() (epoch, seq uint64, released bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p := f.st.Primary
	return p.GetEpoch(), p.GetLeaseSeq(), p.GetReleased()
}
