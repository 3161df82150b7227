package fsm

import (
	"bytes"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// snapshotMagic and snapshotVersion open every snapshot so that a reader can
// refuse a file that is not ours, or a format it does not know, by name.
var snapshotMagic = []byte("PGQS")

// snapshotVersion is the format EncodeSnapshot writes. Version 2 added
// tombstones: a build that reads only version 1 refuses such a snapshot
// instead of dropping them (and letting removed members back in).
// DecodeSnapshot reads both; a version 1 snapshot simply has none.
const (
	snapshotVersion   = 2
	snapshotVersionV1 = 1
)

// MaxSnapshotSize bounds what Restore reads; the state is small (members,
// config, bounded history), so anything larger is corrupt.
const MaxSnapshotSize = 64 << 20

type snapshot struct{ st *pb.ClusterState }

// Snapshot captures the state as an immutable copy; Persist may run while
// Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{st: f.State()}, nil
}

// EncodeSnapshot writes the versioned snapshot format of st.
func EncodeSnapshot(st *pb.ClusterState) ([]byte, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(snapshotMagic)+1+len(body))
	out = append(out, snapshotMagic...)
	out = append(out, snapshotVersion)
	return append(out, body...), nil
}

// DecodeSnapshot parses the format written by EncodeSnapshot.
func DecodeSnapshot(data []byte) (*pb.ClusterState, error) {
	if len(data) < len(snapshotMagic)+1 || !bytes.Equal(data[:len(snapshotMagic)], snapshotMagic) {
		return nil, fmt.Errorf("%w: missing header (not a pgquorum snapshot)", ErrBadSnapshot)
	}
	v := data[len(snapshotMagic)]
	if v != snapshotVersion && v != snapshotVersionV1 {
		return nil, fmt.Errorf("%w: format version %d, this build reads %d and %d", ErrBadSnapshot, v, snapshotVersionV1, snapshotVersion)
	}
	st := &pb.ClusterState{}
	if err := proto.Unmarshal(data[len(snapshotMagic)+1:], st); err != nil {
		return nil, fmt.Errorf("%w: body is not a cluster state: %v", ErrBadSnapshot, err)
	}
	if v == snapshotVersionV1 && len(st.Tombstones) > 0 {
		return nil, fmt.Errorf("%w: format version 1 with tombstones", ErrBadSnapshot)
	}
	normalize(st)
	for i := 1; i < len(st.Members); i++ {
		if st.Members[i-1].Id >= st.Members[i].Id {
			return nil, fmt.Errorf("%w: members not sorted or duplicated at %q", ErrBadSnapshot, st.Members[i].Id)
		}
	}
	for i := 1; i < len(st.Bouncers); i++ {
		if st.Bouncers[i-1].Id >= st.Bouncers[i].Id {
			return nil, fmt.Errorf("%w: bouncer agents not sorted or duplicated at %q", ErrBadSnapshot, st.Bouncers[i].Id)
		}
	}
	if len(st.Tombstones) > TombstoneLimit {
		return nil, fmt.Errorf("%w: %d tombstones, at most %d", ErrBadSnapshot, len(st.Tombstones), TombstoneLimit)
	}
	for i, t := range st.Tombstones {
		if t.Id == "" || tombstoneIndex(st, t.Id) != i {
			return nil, fmt.Errorf("%w: tombstone %d empty or duplicated (%q)", ErrBadSnapshot, i, t.Id)
		}
		if memberIndex(st, t.Id) >= 0 {
			return nil, fmt.Errorf("%w: %q is both a member and a tombstone", ErrBadSnapshot, t.Id)
		}
	}
	// Epochs only grow (invariant 2): a snapshot whose history goes back in
	// epoch, or is ahead of its primary, would let Apply reuse an epoch.
	for i, h := range st.History {
		if i > 0 && h.Epoch <= st.History[i-1].Epoch {
			return nil, fmt.Errorf("%w: history epochs not increasing at epoch %d", ErrBadSnapshot, h.Epoch)
		}
	}
	if n := len(st.History); n > 0 && st.History[n-1].Epoch > st.Primary.Epoch {
		return nil, fmt.Errorf("%w: history reaches epoch %d, beyond the primary's epoch %d", ErrBadSnapshot, st.History[n-1].Epoch, st.Primary.Epoch)
	}
	return st, nil
}

// normalize fills the sub-messages that Apply assumes present.
func normalize(st *pb.ClusterState) {
	if st.Identity == nil {
		st.Identity = &pb.ClusterIdentity{}
	}
	if st.Config == nil {
		st.Config = &pb.DynamicConfig{}
	}
	if st.Primary == nil {
		st.Primary = &pb.PrimaryAssignment{}
	}
	if st.Sync == nil {
		st.Sync = &pb.SyncState{}
	}
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	data, err := EncodeSnapshot(s.st)
	if err == nil {
		_, err = sink.Write(data)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

// Restore replaces the state with a snapshot. Watchers are told to resync,
// since the deltas they hold may not lead to the restored state.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, MaxSnapshotSize+1))
	if err != nil {
		return fmt.Errorf("%w: read: %v", ErrBadSnapshot, err)
	}
	if len(data) > MaxSnapshotSize {
		return fmt.Errorf("%w: larger than %d bytes", ErrBadSnapshot, MaxSnapshotSize)
	}
	st, err := DecodeSnapshot(data)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	f.hub.reset(st.Index)
	return nil
}
