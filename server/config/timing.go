package config

import (
	"fmt"
	"time"
)

// Profile names a set of timing defaults.
type Profile string

const (
	// ProfileFast suits a quiet LAN: ttl 1s, loop_wait 250ms, retry_timeout 500ms, safety_margin 200ms.
	ProfileFast Profile = "fast"
	// ProfileDefault is the built-in profile: ttl 2s, loop_wait 500ms, retry_timeout 1s, safety_margin 300ms.
	ProfileDefault Profile = "default"
	// ProfileConservative suits slow or WAN links: ttl 10s, loop_wait 2s, retry_timeout 4s, safety_margin 1s.
	ProfileConservative Profile = "conservative"
)

// Profiles lists the timing profiles, fastest first.
var Profiles = []Profile{ProfileFast, ProfileDefault, ProfileConservative}

// Timing holds the knobs that decide how fast a dead primary is replaced.
// They are validated together (see Validate and the package documentation);
// Raft's timeouts are derived from them by RaftTimeouts.
type Timing struct {
	Profile      Profile       `mapstructure:"profile" doc:"fast, default or conservative: sets the defaults of the four keys below; keys set explicitly override the profile."`
	TTL          time.Duration `mapstructure:"ttl" doc:"Primary lease. The primary counts it from sending the renewal that got committed. >= 500ms."`
	LoopWait     time.Duration `mapstructure:"loop_wait" doc:"Lease renewal interval and decider tick. >= 50ms; loop_wait * 3 <= ttl."`
	RetryTimeout time.Duration `mapstructure:"retry_timeout" doc:"Timeout of one quorum operation, e.g. one lease renewal attempt. >= 50ms; retry_timeout + loop_wait + safety_margin <= ttl."`
	SafetyMargin time.Duration `mapstructure:"safety_margin" doc:"The decider waits this much beyond a lost lease before assigning a new primary; the primary fences itself this much before its lease ends. >= 50ms; <= ttl / 2."`
}

// Lower bounds of the timing knobs.
const (
	// MinTTL is the shortest primary lease.
	MinTTL = 500 * time.Millisecond
	// MinLoopWait is the shortest renewal interval and decider tick.
	MinLoopWait = 50 * time.Millisecond
	// MinRetryTimeout is the shortest timeout of one quorum operation.
	MinRetryTimeout = 50 * time.Millisecond
	// MinSafetyMargin is the smallest safety margin.
	MinSafetyMargin = 50 * time.Millisecond
	// MinRaftHeartbeat is the floor of the derived Raft heartbeat and election timeouts.
	MinRaftHeartbeat = 100 * time.Millisecond
)

// ProfileTiming returns the timing of profile p.
func ProfileTiming(p Profile) (Timing, error) {
	switch p {
	case ProfileFast:
		return Timing{Profile: p, TTL: time.Second, LoopWait: 250 * time.Millisecond, RetryTimeout: 500 * time.Millisecond, SafetyMargin: 200 * time.Millisecond}, nil
	case ProfileDefault:
		return Timing{Profile: p, TTL: 2 * time.Second, LoopWait: 500 * time.Millisecond, RetryTimeout: time.Second, SafetyMargin: 300 * time.Millisecond}, nil
	case ProfileConservative:
		return Timing{Profile: p, TTL: 10 * time.Second, LoopWait: 2 * time.Second, RetryTimeout: 4 * time.Second, SafetyMargin: time.Second}, nil
	}
	return Timing{}, &KeyError{Key: "timing.profile", Problem: fmt.Sprintf("%q is not one of fast|default|conservative", string(p)), err: ErrInvalid}
}

// RaftTimeouts are the hashicorp/raft timeouts derived from Timing.
type RaftTimeouts struct {
	// HeartbeatTimeout is how long a follower waits without contact from the leader before it starts an election.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits without winning before it starts a new election.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without contact from a quorum.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is the longest a follower waits for a heartbeat that carries the commit index.
	CommitTimeout time.Duration
}

// RaftTimeouts derives the Raft timeouts:
//
//	HeartbeatTimeout   = max(ttl / 4, 100ms)
//	ElectionTimeout    = HeartbeatTimeout
//	LeaderLeaseTimeout = HeartbeatTimeout / 2
//	CommitTimeout      = loop_wait / 2
//
// hashicorp/raft randomises its timeouts between the value and twice the
// value, so a new Raft leader is normally elected within about ttl / 2: a
// leader change does not by itself cost a healthy primary its lease, and the
// decider runs again well before a dead primary's lease plus safety_margin
// has passed. LeaderLeaseTimeout <= HeartbeatTimeout and ElectionTimeout >=
// HeartbeatTimeout, as hashicorp/raft requires.
//
// CommitTimeout only says how soon followers learn that an entry
// committed when nothing else is logged: hashicorp/raft then sends an
// AppendEntries every CommitTimeout (randomised up to twice that). The
// decider pushes each decision to followers at once with a barrier, and
// nodes count a lease renewal from when they stored it, not from when
// they learnt it committed, so a short one buys nothing; at 50 ms it was
// most of an idle cluster's Raft traffic (about 13 AppendEntries a second
// to each follower, besides the heartbeats).
func (t Timing) RaftTimeouts() RaftTimeouts {
	hb := max(t.TTL/4, MinRaftHeartbeat)
	return RaftTimeouts{
		HeartbeatTimeout:   hb,
		ElectionTimeout:    hb,
		LeaderLeaseTimeout: hb / 2,
		CommitTimeout:      max(t.LoopWait/2, time.Millisecond),
	}
}

// FenceAfter returns how long after sending its last committed renewal the
// primary stops taking writes if it has not renewed again: ttl - safety_margin.
func (t Timing) FenceAfter() time.Duration { return t.TTL - t.SafetyMargin }

// TakeoverAfter returns how long after observing the primary's last renewal
// the decider waits before it may assign a new primary: ttl + safety_margin.
func (t Timing) TakeoverAfter() time.Duration { return t.TTL + t.SafetyMargin }

// Validate checks the timing rules together and returns every violation,
// each naming the keys, their values and the rule.
func (t Timing) Validate() error {
	var v problems
	t.validate(&v)
	return v.err()
}

func (t Timing) validate(v *problems) {
	ok := true
	atLeast := func(key string, d, lo time.Duration) {
		if d < lo {
			ok = false
			v.addf("timing."+key, "%s is below the minimum of %s", d, lo)
		}
	}
	atLeast("ttl", t.TTL, MinTTL)
	atLeast("loop_wait", t.LoopWait, MinLoopWait)
	atLeast("retry_timeout", t.RetryTimeout, MinRetryTimeout)
	atLeast("safety_margin", t.SafetyMargin, MinSafetyMargin)
	if !ok {
		return
	}
	if t.LoopWait*3 > t.TTL {
		v.addf("timing", "loop_wait (%s) * 3 > ttl (%s): at least three lease renewals must fit in one ttl", t.LoopWait, t.TTL)
	}
	if sum := t.RetryTimeout + t.LoopWait + t.SafetyMargin; sum > t.TTL {
		v.addf("timing", "retry_timeout (%s) + loop_wait (%s) + safety_margin (%s) = %s > ttl (%s): a renewal attempt must time out, and the next one start, before the primary has to fence itself",
			t.RetryTimeout, t.LoopWait, t.SafetyMargin, sum, t.TTL)
	}
	if t.SafetyMargin*2 > t.TTL {
		v.addf("timing", "safety_margin (%s) > ttl (%s) / 2: the primary would fence itself for more than half of every lease", t.SafetyMargin, t.TTL)
	}
}
