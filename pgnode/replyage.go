package pgnode

import (
	"sync"
	"time"
)

// ReceiverStatusInterval is the wal_receiver_status_interval pgnode writes
// (a replication default, see conf.go): a standby that is alive replies to
// its primary at least this often, even when no WAL flows, so a primary
// can tell a silent standby from an idle one (ReplicaStatus.ReplyAge).
// One second is the smallest value PostgreSQL accepts above 0 (off).
const ReceiverStatusInterval = time.Second

// replyTracker measures, per walsender, how long ago the standby last
// replied, on this process's monotonic clock.
//
// pg_stat_replication.reply_time is stamped by the standby with its own
// wall clock, so now() - reply_time on the primary is off by the clock
// skew between the two hosts: a standby whose clock runs two seconds
// behind would always look two seconds silent, one running ahead would
// never look silent. The tracker counts from the probe that first saw
// the current reply_time instead, which needs no clock of the standby's.
// The wall clocks only place the reply inside the interval since the
// previous probe (it cannot be older than that, whatever they say), so a
// skew moves the estimate by at most one probe interval, and when the
// clocks agree the age is not one probe interval late.
type replyTracker struct {
	mu   sync.Mutex
	seen map[int32]replySeen // by walsender PID
	last time.Time           // the previous observation
}

type replySeen struct {
	name  string
	reply time.Time // reply_time as last read
	at    time.Time // when that reply was sent, by this process's clock
}

// age records the reply time read at now for walsender pid and returns
// how long ago that reply was sent. A walsender seen for the first time
// counts as having replied at now: a standby gets the benefit of the
// doubt at first sight, so an agent that starts next to a silent standby
// needs the full bound to notice it.
func (t *replyTracker) age(pid int32, name string, reply, now time.Time) time.Duration {
	old, ok := t.seen[pid]
	if ok && old.name == name && old.reply.Equal(reply) {
		return now.Sub(old.at)
	}
	at := now
	if ok && old.name == name && !reply.IsZero() && !t.last.IsZero() {
		// Sent after the previous probe; by the wall clocks (ours, and
		// the standby's stamp) this long ago.
		at = now.Add(-min(max(now.Sub(reply), 0), now.Sub(t.last)))
	}
	t.seen[pid] = replySeen{name: name, reply: reply, at: at}
	return now.Sub(at)
}

// observe fills ReplyAge of rows and forgets walsenders that are gone.
func (t *replyTracker) observe(rows []ReplicaStatus, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[int32]replySeen{}
	}
	live := make(map[int32]bool, len(rows))
	for i := range rows {
		r := &rows[i]
		live[r.PID] = true
		r.ReplyAge = t.age(r.PID, r.ApplicationName, r.ReplyTime, now)
	}
	for pid := range t.seen {
		if !live[pid] {
			delete(t.seen, pid)
		}
	}
	t.last = now
}
