package fsm

import (
	"fmt"
	"sort"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// The apply* functions are the bodies of the Apply switch. Each one checks
// the command against the state, mutates the state only when it accepts,
// and returns the visible change. None reads a clock or does I/O.

func clone[T proto.Message](m T) T { return proto.Clone(m).(T) }

func applyInitCluster(s *pb.ClusterState, c *pb.InitCluster) (*pb.StateDelta, error) {
	if s.Identity.GetUuid() != "" {
		return nil, ErrAlreadyInitialized
	}
	if c.Name == "" || c.Uuid == "" {
		return nil, fmt.Errorf("%w: init_cluster needs name and uuid", ErrBadCommand)
	}
	s.Identity = &pb.ClusterIdentity{Name: c.Name, Uuid: c.Uuid, CreatedAtUnixMs: c.AtUnixMs}
	cfg := &pb.DynamicConfig{}
	if c.InitialConfig != nil {
		cfg = clone(c.InitialConfig)
	}
	cfg.Version = 1
	s.Config = cfg
	return &pb.StateDelta{Identity: clone(s.Identity), Config: clone(s.Config)}, nil
}

func applyUpsertMember(s *pb.ClusterState, c *pb.UpsertMember) (*pb.StateDelta, error) {
	m := c.GetMember()
	if m.GetId() == "" {
		return nil, fmt.Errorf("%w: upsert_member needs member.id", ErrBadCommand)
	}
	if m.GetId() == s.Primary.GetMemberId() && m.GetRole() == pb.MemberRole_MEMBER_ROLE_WITNESS {
		return nil, fmt.Errorf("%w: %q is the primary and cannot become a witness", ErrNotEligible, m.GetId())
	}
	if tombstoneIndex(s, m.GetId()) >= 0 && !c.Readmit {
		return nil, fmt.Errorf("%w: %q was removed by an operator; only an explicit add brings it back", ErrMemberRemoved, m.GetId())
	}
	d := &pb.StateDelta{}
	if clearTombstone(s, m.GetId()) {
		d.TombstoneCleared = m.GetId()
	}
	m = clone(m)
	i := sort.Search(len(s.Members), func(i int) bool { return s.Members[i].Id >= m.Id })
	if i < len(s.Members) && s.Members[i].Id == m.Id {
		if proto.Equal(s.Members[i], m) {
			if d.TombstoneCleared != "" {
				return d, nil
			}
			return nil, nil
		}
		s.Members[i] = m
	} else {
		s.Members = append(s.Members, nil)
		copy(s.Members[i+1:], s.Members[i:])
		s.Members[i] = m
	}
	d.UpsertedMembers = []*pb.Member{clone(m)}
	return d, nil
}

// applyRemoveMember drops a member. With c.Tombstone (an operator's
// removal) it records a tombstone too, even for an id that has no member
// record (a node in the Raft configuration that never registered), so the
// node cannot register itself back.
func applyRemoveMember(s *pb.ClusterState, index uint64, c *pb.RemoveMember) (*pb.StateDelta, error) {
	if c.Id == "" {
		return nil, fmt.Errorf("%w: remove_member needs id", ErrMemberNotFound)
	}
	if s.Primary.GetMemberId() == c.Id {
		return nil, fmt.Errorf("%w: %q", ErrRemovePrimary, c.Id)
	}
	i := memberIndex(s, c.Id)
	if i < 0 && !c.Tombstone {
		return nil, fmt.Errorf("%w: %q", ErrMemberNotFound, c.Id)
	}
	d := &pb.StateDelta{}
	if i >= 0 {
		s.Members = append(s.Members[:i], s.Members[i+1:]...)
		d.RemovedMembers = []string{c.Id}
		if kept := without(s.Sync.GetMembers(), c.Id); len(kept) != len(s.Sync.GetMembers()) {
			s.Sync.Members = kept
			d.Sync = clone(s.Sync)
		}
	}
	if c.Tombstone && tombstoneIndex(s, c.Id) < 0 {
		t := &pb.Tombstone{Id: c.Id, Index: index}
		addTombstone(s, t)
		d.Tombstone = clone(t)
	}
	if len(d.RemovedMembers) == 0 && d.Tombstone == nil {
		return nil, nil
	}
	return d, nil
}

// TombstoneLimit bounds the tombstones kept in the state; the oldest goes
// first. A node removed that long ago and still running is the operator's
// to notice.
const TombstoneLimit = 64

func tombstoneIndex(s *pb.ClusterState, id string) int {
	for i, t := range s.Tombstones {
		if t.Id == id {
			return i
		}
	}
	return -1
}

// addTombstone appends t, dropping the oldest beyond TombstoneLimit.
func addTombstone(s *pb.ClusterState, t *pb.Tombstone) {
	s.Tombstones = append(s.Tombstones, t)
	if n := len(s.Tombstones) - TombstoneLimit; n > 0 {
		s.Tombstones = append([]*pb.Tombstone(nil), s.Tombstones[n:]...)
	}
}

// clearTombstone drops id's tombstone and reports whether there was one.
func clearTombstone(s *pb.ClusterState, id string) bool {
	i := tombstoneIndex(s, id)
	if i < 0 {
		return false
	}
	s.Tombstones = append(s.Tombstones[:i], s.Tombstones[i+1:]...)
	return true
}

// FindTombstone returns id's tombstone, or nil when an operator did not
// remove it (or added it back since).
func FindTombstone(s *pb.ClusterState, id string) *pb.Tombstone {
	if i := tombstoneIndex(s, id); i >= 0 {
		return s.Tombstones[i]
	}
	return nil
}

func applySetConfig(s *pb.ClusterState, c *pb.SetConfig) (*pb.StateDelta, error) {
	if c.Config == nil {
		return nil, fmt.Errorf("%w: set_config needs config", ErrBadCommand)
	}
	// Before InitCluster there is no config to edit, and InitCluster would
	// reset the version and let a stale compare-and-set succeed.
	if s.Identity.GetUuid() == "" {
		return nil, ErrNotInitialized
	}
	if c.ExpectedVersion != s.Config.GetVersion() {
		return nil, fmt.Errorf("%w: expected version %d, have %d", ErrConfigConflict, c.ExpectedVersion, s.Config.GetVersion())
	}
	cfg := clone(c.Config)
	cfg.Version = s.Config.GetVersion() + 1
	s.Config = cfg
	return &pb.StateDelta{Config: clone(cfg)}, nil
}

func applyAssignPrimary(s *pb.ClusterState, index uint64, c *pb.AssignPrimary) (*pb.StateDelta, error) {
	if s.Identity.GetUuid() == "" {
		return nil, ErrNotInitialized
	}
	if c.ExpectedEpoch != s.Primary.GetEpoch() {
		return nil, fmt.Errorf("%w: expected epoch %d, have %d", ErrStaleEpoch, c.ExpectedEpoch, s.Primary.GetEpoch())
	}
	i := memberIndex(s, c.MemberId)
	if i < 0 {
		return nil, fmt.Errorf("%w: %q", ErrMemberNotFound, c.MemberId)
	}
	if s.Members[i].Role == pb.MemberRole_MEMBER_ROLE_WITNESS {
		return nil, fmt.Errorf("%w: %q is a witness", ErrNotEligible, c.MemberId)
	}
	if c.ExpectedLeaseSeq != s.Primary.GetLeaseSeq() {
		return nil, fmt.Errorf("%w: lease renewed since the decision (seq %d, have %d)", ErrStaleEpoch, c.ExpectedLeaseSeq, s.Primary.GetLeaseSeq())
	}
	old := s.Primary.GetMemberId()
	epoch := s.Primary.GetEpoch() + 1
	s.Primary = &pb.PrimaryAssignment{
		MemberId:         c.MemberId,
		Epoch:            epoch,
		Timeline:         c.Timeline,
		AssignedAtUnixMs: c.AtUnixMs,
		Reason:           c.Reason,
	}
	// A new primary relies on no standby until the decider records one.
	s.Sync = &pb.SyncState{Epoch: epoch}
	h := &pb.HistoryEntry{
		Epoch: epoch, OldMember: old, NewMember: c.MemberId, Reason: c.Reason,
		AtUnixMs: c.AtUnixMs, Timeline: c.Timeline, Index: index,
	}
	s.History = append(s.History, h)
	if n := len(s.History) - HistoryLimit; n > 0 {
		s.History = append([]*pb.HistoryEntry(nil), s.History[n:]...)
	}
	d := &pb.StateDelta{Primary: clone(s.Primary), Sync: clone(s.Sync), History: clone(h)}
	// Any planned switchover was about the old epoch: it is done or void.
	if s.Switchover != nil {
		s.Switchover = nil
		d.SwitchoverCleared = true
	}
	return d, nil
}

// applyReleaseLease marks the lease given back, so the decider may assign
// the next primary at once.
func applyReleaseLease(s *pb.ClusterState, c *pb.ReleaseLease) (*pb.StateDelta, error) {
	if c.Epoch != s.Primary.GetEpoch() {
		return nil, fmt.Errorf("%w: release for epoch %d, have %d", ErrStaleEpoch, c.Epoch, s.Primary.GetEpoch())
	}
	if s.Primary.GetMemberId() == "" || c.MemberId != s.Primary.GetMemberId() {
		return nil, fmt.Errorf("%w: %q", ErrNotPrimary, c.MemberId)
	}
	if s.Primary.Released {
		return nil, nil
	}
	s.Primary.Released = true
	s.Primary.ReleasedLsn = c.Lsn
	return &pb.StateDelta{Primary: clone(s.Primary)}, nil
}

// applySetSwitchover records, updates or cancels the planned switchover.
func applySetSwitchover(s *pb.ClusterState, c *pb.SetSwitchover) (*pb.StateDelta, error) {
	sw := c.GetSwitchover()
	if sw == nil {
		if s.Switchover == nil {
			return nil, nil
		}
		s.Switchover = nil
		return &pb.StateDelta{SwitchoverCleared: true}, nil
	}
	if sw.Epoch != s.Primary.GetEpoch() || sw.From != s.Primary.GetMemberId() || sw.From == "" {
		return nil, fmt.Errorf("%w: switchover from %q at epoch %d, primary is %q at epoch %d",
			ErrStaleEpoch, sw.From, sw.Epoch, s.Primary.GetMemberId(), s.Primary.GetEpoch())
	}
	if sw.To != "" {
		i := memberIndex(s, sw.To)
		if i < 0 {
			return nil, fmt.Errorf("%w: candidate %q", ErrMemberNotFound, sw.To)
		}
		if s.Members[i].Role == pb.MemberRole_MEMBER_ROLE_WITNESS || sw.To == sw.From {
			return nil, fmt.Errorf("%w: %q cannot take over", ErrNotEligible, sw.To)
		}
	}
	s.Switchover = clone(sw)
	return &pb.StateDelta{Switchover: clone(sw)}, nil
}

// applyRenewLease counts a renewal. It publishes nothing: watchers care
// about who is primary, not about each renewal.
func applyRenewLease(s *pb.ClusterState, c *pb.RenewLease) (*pb.StateDelta, error) {
	if c.Epoch != s.Primary.GetEpoch() {
		return nil, fmt.Errorf("%w: renewal for epoch %d, have %d", ErrStaleEpoch, c.Epoch, s.Primary.GetEpoch())
	}
	if s.Primary.GetMemberId() == "" || c.MemberId != s.Primary.GetMemberId() {
		return nil, fmt.Errorf("%w: %q", ErrNotPrimary, c.MemberId)
	}
	// A released lease stays released for the rest of its epoch: the
	// decider may already be assigning the next primary without waiting.
	if s.Primary.GetReleased() {
		return nil, fmt.Errorf("%w: %q released its lease for epoch %d", ErrNotPrimary, c.MemberId, c.Epoch)
	}
	s.Primary.LeaseSeq++
	return nil, nil
}

func applySetSync(s *pb.ClusterState, c *pb.SetSync) (*pb.StateDelta, error) {
	if c.Epoch != s.Primary.GetEpoch() {
		return nil, fmt.Errorf("%w: sync set for epoch %d, have %d", ErrStaleEpoch, c.Epoch, s.Primary.GetEpoch())
	}
	if s.Primary.GetMemberId() == "" {
		return nil, fmt.Errorf("%w: no primary is assigned to rely on standbys", ErrNotPrimary)
	}
	next := &pb.SyncState{Epoch: c.Epoch, Members: append([]string(nil), c.Members...), Degraded: c.Degraded}
	sort.Strings(next.Members)
	for i, id := range next.Members {
		if i > 0 && next.Members[i-1] == id {
			return nil, fmt.Errorf("%w: sync standby %q listed twice", ErrBadCommand, id)
		}
		j := memberIndex(s, id)
		if j < 0 {
			return nil, fmt.Errorf("%w: sync standby %q", ErrMemberNotFound, id)
		}
		if id == s.Primary.GetMemberId() {
			return nil, fmt.Errorf("%w: the primary %q cannot be its own sync standby", ErrBadCommand, id)
		}
		if s.Members[j].Role == pb.MemberRole_MEMBER_ROLE_WITNESS {
			return nil, fmt.Errorf("%w: sync standby %q is a witness", ErrNotEligible, id)
		}
	}
	if proto.Equal(next, s.Sync) {
		return nil, nil
	}
	s.Sync = next
	return &pb.StateDelta{Sync: clone(next)}, nil
}

func applySetPaused(s *pb.ClusterState, c *pb.SetPaused) (*pb.StateDelta, error) {
	if s.Paused == c.Paused {
		return nil, nil
	}
	s.Paused = c.Paused
	p := c.Paused
	return &pb.StateDelta{Paused: &p}, nil
}

func applySetSystemID(s *pb.ClusterState, c *pb.SetSystemID) (*pb.StateDelta, error) {
	if c.SystemIdentifier == 0 {
		return nil, fmt.Errorf("%w: system identifier 0", ErrBadCommand)
	}
	// InitCluster replaces the identity, so an identifier recorded before
	// it would be lost.
	if s.Identity.GetUuid() == "" {
		return nil, ErrNotInitialized
	}
	switch have := s.Identity.GetSystemIdentifier(); have {
	case c.SystemIdentifier:
		return nil, nil
	case 0:
		s.Identity.SystemIdentifier = c.SystemIdentifier
		return &pb.StateDelta{Identity: clone(s.Identity)}, nil
	default:
		return nil, fmt.Errorf("%w: cluster has %d, got %d", ErrSystemIDMismatch, have, c.SystemIdentifier)
	}
}

func memberIndex(s *pb.ClusterState, id string) int {
	for i, m := range s.Members {
		if m.Id == id {
			return i
		}
	}
	return -1
}

func without(ids []string, id string) []string {
	out := make([]string, 0, len(ids))
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

// FindMember returns the member with id, or nil.
func FindMember(s *pb.ClusterState, id string) *pb.Member {
	if i := memberIndex(s, id); i >= 0 {
		return s.Members[i]
	}
	return nil
}

func applyRegisterBouncer(s *pb.ClusterState, c *pb.RegisterBouncer) (*pb.StateDelta, error) {
	a := c.GetAgent()
	if a.GetId() == "" || a.GetContactLeaseMs() <= 0 {
		return nil, fmt.Errorf("%w: register_bouncer needs agent.id and a positive contact_lease_ms", ErrBadCommand)
	}
	a = clone(a)
	i := sort.Search(len(s.Bouncers), func(i int) bool { return s.Bouncers[i].Id >= a.Id })
	if i < len(s.Bouncers) && s.Bouncers[i].Id == a.Id {
		old := clone(s.Bouncers[i])
		old.RegisteredAtUnixMs = a.RegisteredAtUnixMs
		if proto.Equal(old, a) {
			return nil, nil
		}
		s.Bouncers[i] = a
	} else {
		s.Bouncers = append(s.Bouncers, nil)
		copy(s.Bouncers[i+1:], s.Bouncers[i:])
		s.Bouncers[i] = a
	}
	return &pb.StateDelta{UpsertedBouncers: []*pb.BouncerAgent{clone(a)}}, nil
}

func applyUnregisterBouncer(s *pb.ClusterState, c *pb.UnregisterBouncer) (*pb.StateDelta, error) {
	for i, b := range s.Bouncers {
		if b.Id == c.Id {
			s.Bouncers = append(s.Bouncers[:i], s.Bouncers[i+1:]...)
			return &pb.StateDelta{RemovedBouncers: []string{c.Id}}, nil
		}
	}
	return nil, fmt.Errorf("%w: bouncer agent %q", ErrMemberNotFound, c.Id)
}

// applyExposePrimary lets agents route to the primary of the epoch.
func applyExposePrimary(s *pb.ClusterState, c *pb.ExposePrimary) (*pb.StateDelta, error) {
	if c.Epoch != s.Primary.GetEpoch() || s.Primary.GetMemberId() == "" {
		return nil, fmt.Errorf("%w: expose epoch %d, have %d", ErrStaleEpoch, c.Epoch, s.Primary.GetEpoch())
	}
	if s.Primary.Exposed {
		return nil, nil
	}
	s.Primary.Exposed = true
	return &pb.StateDelta{Primary: clone(s.Primary)}, nil
}
