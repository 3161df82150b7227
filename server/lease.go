package server

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/fsm"
)

// leaseClock records, on this node's monotonic clock, when it stored (or,
// failing that, applied) the entry that set the current (epoch,
// lease_seq). The primary sent that renewal before any node stored it, so
// "stored at" is never earlier than "sent at": a lease counted from here
// ends no earlier than the primary's own count (DESIGN.md invariant 3). A
// new leader inherits correct times because it stored the same entries as
// a follower. Counting from the store rather than the apply matters on
// followers: they apply an entry only when they learn that it committed,
// which an idle leader tells them a Raft commit timeout later, or, if the
// leader dies first, only after the next election; a lease counted from
// then would make a failover wait that much longer.
type leaseClock struct {
	mu    sync.Mutex
	epoch uint64
	seq   uint64
	at    time.Time
}

// observe notes the current lease position; a change restarts the clock.
func (c *leaseClock) observe(epoch, seq uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch || seq != c.seq || c.at.IsZero() {
		c.epoch, c.seq, c.at = epoch, seq, now
	}
}

// age returns how long ago (epoch, seq) was observed. A position never
// observed through Apply (for example one restored from a snapshot) is
// counted from now, which only makes the lease look younger.
func (c *leaseClock) age(epoch, seq uint64, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch || seq != c.seq || c.at.IsZero() {
		c.epoch, c.seq, c.at = epoch, seq, now
	}
	return now.Sub(c.at)
}

// observingFSM is the FSM as Raft sees it: every Apply is followed by a
// look at the lease, timed here, outside the pure FSM.
type observingFSM struct {
	*fsm.FSM
	clock *leaseClock
	times *logTimes
}

func (o observingFSM) Apply(l *raft.Log) interface{} {
	res := o.FSM.Apply(l)
	now := time.Now()
	if at, ok := o.times.take(l.Index); ok && at.Before(now) {
		now = at
	}
	epoch, seq, _ := o.FSM.Lease()
	o.clock.observe(epoch, seq, now)
	return res
}

// maxLogTimes bounds logTimes; past it, the times are dropped and the
// lease is counted from the apply (later: never unsafe).
const maxLogTimes = 4096

// logTimes remembers when this node stored each log entry it has not
// applied yet, on its monotonic clock. Nil-safe.
type logTimes struct {
	mu sync.Mutex
	at map[uint64]time.Time
}

func newLogTimes() *logTimes { return &logTimes{at: map[uint64]time.Time{}} }

// stored notes that logs were stored at now. An entry stored again (a
// follower whose uncommitted tail a new leader replaced) gets the later
// time.
func (t *logTimes) stored(logs []*raft.Log, now time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.at)+len(logs) > maxLogTimes {
		clear(t.at)
	}
	for _, l := range logs {
		t.at[l.Index] = now
	}
}

// take returns when the entry at index was stored, and forgets it and
// every earlier entry.
func (t *logTimes) take(index uint64) (time.Time, bool) {
	if t == nil {
		return time.Time{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.at[index]
	for i := range t.at {
		if i <= index {
			delete(t.at, i)
		}
	}
	return at, ok
}

// timedLogStore is the Raft log store that notes when each entry was
// stored (see leaseClock).
type timedLogStore struct {
	raft.LogStore
	times *logTimes
}

func (s timedLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

func (s timedLogStore) StoreLogs(logs []*raft.Log) error {
	if err := s.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	s.times.stored(logs, time.Now())
	return nil
}
