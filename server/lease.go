package server

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/fsm"
)

// leaseClock records, on this node's monotonic clock, when it applied the
// entry that set the current (epoch, lease_seq). The primary sent that
// renewal before any node applied it, so "applied at" is never earlier
// than "sent at": a lease counted from here ends no earlier than the
// primary's own count (DESIGN.md invariant 3). A new leader inherits
// correct times because it applied the same entries as a follower.
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
}

func (o observingFSM) Apply(l *raft.Log) interface{} {
	res := o.FSM.Apply(l)
	epoch, seq, _ := o.FSM.Lease()
	o.clock.observe(epoch, seq, time.Now())
	return res
}
