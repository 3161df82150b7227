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

// replyTracker measures, per walsender, how long the standby's last reply
// has stayed the same, on this process's monotonic clock.
//
// pg_stat_replication.reply_time is stamped by the standby with its own
// wall clock, so now() - reply_time on the primary is off by the clock
// skew between the two hosts: a standby whose clock runs two seconds
// behind would always look two seconds silent, one running ahead would
// never look silent. Watching the value change instead needs no clock of
// the standby's and no agreement between hosts.
type replyTracker struct {
	mu   sync.Mutex
	seen map[int32]replySeen // by walsender PID
}

type replySeen struct {
	name  string
	reply time.Time // reply_time as last read
	at    time.Time // when this process first read that value
}

// age records the reply time read now for walsender pid and returns how
// long the same reply time has been seen: zero when it changed since the
// previous reading (or the walsender is new: a standby is given the
// benefit of the doubt at first sight, so an agent that starts next to a
// silent standby needs the full bound to notice it).
func (t *replyTracker) age(pid int32, name string, reply, now time.Time) time.Duration {
	old, ok := t.seen[pid]
	if ok && old.name == name && old.reply.Equal(reply) {
		return now.Sub(old.at)
	}
	t.seen[pid] = replySeen{name: name, reply: reply, at: now}
	return 0
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
}
