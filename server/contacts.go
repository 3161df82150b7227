package server

import (
	"sync"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// contacts is the leader's memory of each member: when its agent last
// reported in and what it said of its PostgreSQL. It lives outside Raft:
// only decisions based on it go through the log (nomad's heartbeat model).
// Times are monotonic readings; only Sub is used on them.
type contacts struct {
	mu   sync.Mutex
	last map[string]contact
}

type contact struct {
	at     time.Time
	health *pb.PostgresHealth
}

func newContacts() *contacts { return &contacts{last: map[string]contact{}} }

func (c *contacts) touch(id string, now time.Time) {
	c.mu.Lock()
	e := c.last[id]
	e.at = now
	c.last[id] = e
	c.mu.Unlock()
}

// report records a heartbeat with the member's PostgreSQL health (nil for
// witnesses). It reports whether the member's applied epoch or role
// changed, which the decider may be waiting for.
func (c *contacts) report(id string, h *pb.PostgresHealth, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.last[id].health
	c.last[id] = contact{at: now, health: h}
	return prev.GetAppliedEpoch() != h.GetAppliedEpoch() || prev.GetInRecovery() != h.GetInRecovery() || prev.GetState() != h.GetState()
}

// since returns how long ago id reported, and false if never (in this
// leadership term).
func (c *contacts) since(id string, now time.Time) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.last[id]
	if !ok || e.at.IsZero() {
		return 0, false
	}
	return now.Sub(e.at), true
}

// snapshot copies what is known of every member.
func (c *contacts) snapshot(now time.Time) map[string]memberHealth {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]memberHealth, len(c.last))
	for id, e := range c.last {
		mh := memberHealth{age: now.Sub(e.at), seen: !e.at.IsZero()}
		if e.health != nil {
			mh.pg = proto.Clone(e.health).(*pb.PostgresHealth)
		}
		out[id] = mh
	}
	return out
}

func (c *contacts) reset() {
	c.mu.Lock()
	c.last = map[string]contact{}
	c.mu.Unlock()
}

// memberHealth is what the decider knows of one member.
type memberHealth struct {
	seen bool
	age  time.Duration
	pg   *pb.PostgresHealth
}
