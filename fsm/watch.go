package fsm

import (
	"sync"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// Hub fans committed changes out to subscribers. It keeps a bounded ring of
// recent events so that a subscriber can resume from an index without a
// full snapshot. Its methods run under the FSM's lock, which orders them
// with Apply.
type Hub struct {
	ring  []*pb.WatchEvent
	limit int
	// since is the index after which ring holds every published event.
	since uint64
	subs  map[*Subscription]struct{}
}

func newHub(limit int) *Hub {
	if limit < 1 {
		limit = 1
	}
	return &Hub{limit: limit, subs: map[*Subscription]struct{}{}}
}

// Subscription receives events on C until it is closed. When C is closed,
// Err says why: ErrResync if the subscriber fell behind or the state was
// restored, nil after Close.
type Subscription struct {
	C      <-chan *pb.WatchEvent
	ch     chan *pb.WatchEvent
	mu     sync.Mutex
	err    error
	closed bool
	cancel func()
}

// Err returns why the subscription ended.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the subscription. Safe to call more than once.
func (s *Subscription) Close() { s.cancel() }

func (s *Subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.err = err
	close(s.ch)
}

func (h *Hub) publish(ev *pb.WatchEvent) {
	h.ring = append(h.ring, ev)
	if len(h.ring) > h.limit {
		h.since = h.ring[0].Index
		h.ring = append([]*pb.WatchEvent(nil), h.ring[1:]...)
	}
	for s := range h.subs {
		select {
		case s.ch <- ev:
		default:
			delete(h.subs, s)
			s.end(ErrResync)
		}
	}
}

func (h *Hub) reset(index uint64) {
	h.ring = nil
	h.since = index
	for s := range h.subs {
		delete(h.subs, s)
		s.end(ErrResync)
	}
}

// Subscribe returns the events that bring a subscriber at fromIndex up to
// date, and a subscription for what follows; nothing is lost or repeated
// between the two. fromIndex 0, or one too old for the ring, gets a full
// snapshot. buffer bounds how far the subscriber may fall behind before it
// is cut off with ErrResync.
func (f *FSM) Subscribe(fromIndex uint64, buffer int) ([]*pb.WatchEvent, *Subscription) {
	if buffer < 1 {
		buffer = 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	h := f.hub
	var initial []*pb.WatchEvent
	if fromIndex == 0 || fromIndex < h.since || fromIndex > f.st.Index {
		initial = []*pb.WatchEvent{{
			Index: f.st.Index,
			Kind:  &pb.WatchEvent_Snapshot{Snapshot: proto.Clone(f.st).(*pb.ClusterState)},
		}}
	} else {
		for _, ev := range h.ring {
			if ev.Index > fromIndex {
				initial = append(initial, ev)
			}
		}
	}
	ch := make(chan *pb.WatchEvent, buffer)
	s := &Subscription{C: ch, ch: ch}
	s.cancel = func() {
		f.mu.Lock()
		delete(h.subs, s)
		f.mu.Unlock()
		s.end(nil)
	}
	h.subs[s] = struct{}{}
	return initial, s
}

// ApplyEvent folds a watch event into a subscriber's copy of the state and
// returns the result; a snapshot replaces it. Subscribers (bouncer agents,
// `ctl watch`) use it to keep a local view without running the FSM.
func ApplyEvent(st *pb.ClusterState, ev *pb.WatchEvent) *pb.ClusterState {
	if snap := ev.GetSnapshot(); snap != nil {
		st = proto.Clone(snap).(*pb.ClusterState)
		normalize(st)
		return st
	}
	if st == nil {
		st = emptyState()
	}
	d := ev.GetDelta()
	if id := d.GetTombstoneCleared(); id != "" {
		clearTombstone(st, id)
	}
	for _, m := range d.GetUpsertedMembers() {
		_, _ = applyUpsertMember(st, &pb.UpsertMember{Member: m, Readmit: true})
	}
	for _, id := range d.GetRemovedMembers() {
		if i := memberIndex(st, id); i >= 0 {
			st.Members = append(st.Members[:i], st.Members[i+1:]...)
		}
	}
	if t := d.GetTombstone(); t != nil && tombstoneIndex(st, t.Id) < 0 {
		addTombstone(st, clone(t))
	}
	if d.GetIdentity() != nil {
		st.Identity = clone(d.Identity)
	}
	if d.GetConfig() != nil {
		st.Config = clone(d.Config)
	}
	if d.GetPrimary() != nil {
		st.Primary = clone(d.Primary)
	}
	if d.GetSync() != nil {
		st.Sync = clone(d.Sync)
	}
	if d.Paused != nil {
		st.Paused = *d.Paused
	}
	if d.GetSwitchoverCleared() {
		st.Switchover = nil
	}
	if d.GetSwitchover() != nil {
		st.Switchover = clone(d.Switchover)
	}
	for _, b := range d.GetUpsertedBouncers() {
		_, _ = applyRegisterBouncer(st, &pb.RegisterBouncer{Agent: b})
	}
	for _, id := range d.GetRemovedBouncers() {
		_, _ = applyUnregisterBouncer(st, &pb.UnregisterBouncer{Id: id})
	}
	if h := d.GetHistory(); h != nil {
		st.History = append(st.History, clone(h))
		if n := len(st.History) - HistoryLimit; n > 0 {
			st.History = append([]*pb.HistoryEntry(nil), st.History[n:]...)
		}
	}
	st.Index = ev.Index
	return st
}
