package server

import (
	"sync"
	"time"
)

// contacts is the leader's memory of when each member's agent last
// reported in. It lives outside Raft: only decisions based on it go
// through the log. Times are monotonic (time.Now carries a monotonic
// reading; only Sub is used on them).
type contacts struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func newContacts() *contacts { return &contacts{last: map[string]time.Time{}} }

func (c *contacts) touch(id string, now time.Time) {
	c.mu.Lock()
	c.last[id] = now
	c.mu.Unlock()
}

// since returns how long ago id reported, and false if never (in this
// leadership term).
func (c *contacts) since(id string, now time.Time) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.last[id]
	if !ok {
		return 0, false
	}
	return now.Sub(t), true
}

func (c *contacts) reset() {
	c.mu.Lock()
	c.last = map[string]time.Time{}
	c.mu.Unlock()
}
