package server

import (
	"context"
	"sync"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// decider is the leader-only loop state: what it last waited on, so a
// pending condition is logged once rather than every round.
type decider struct {
	lastWait string
}

// currentView assembles the decider's inputs.
func (s *Server) currentView() view {
	now := time.Now()
	st := s.fsm.State()
	acks, sinceLeader := s.bouncers.view(now)
	return view{
		acks:        acks,
		sinceLeader: sinceLeader,
		st:          st,
		health:      s.contacts.snapshot(now),
		leaseAge:    s.lease.age(st.Primary.GetEpoch(), st.Primary.GetLeaseSeq(), now),
		leaseSeq:    st.Primary.GetLeaseSeq(),
		now:         now,
		timing:      s.opts.Timing,
		servers:     s.raftServerIDs(),
	}
}

// raftServerIDs lists the servers of the Raft configuration (nil if it
// cannot be read).
func (s *Server) raftServerIDs() []string {
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return nil
	}
	var ids []string
	for _, srv := range cf.Configuration().Servers {
		ids = append(ids, string(srv.ID))
	}
	return ids
}

// decideOnce runs one round of the decider: decide, fetch fresh state of
// the candidates when a failover is due, decide again without those that
// did not answer, and commit.
func (s *Server) decideOnce(ctx context.Context, d *decider) {
	dec := decide(s.currentView())
	if dec.cmd == nil && len(dec.probe) > 0 {
		dec = decide(s.probedView(ctx, dec.probe))
		if dec.cmd == nil && len(dec.probe) > 0 {
			// Waiting on a member's progress (a switchover candidate
			// replaying the old primary's last WAL): look again soon
			// rather than at the next tick.
			time.AfterFunc(50*time.Millisecond, s.wakeLeader)
		}
	}
	if dec.cmd == nil {
		if dec.wait != d.lastWait && dec.wait != "" {
			s.log.Info("decider waiting", "why", dec.wait)
		}
		d.lastWait = dec.wait
		return
	}
	d.lastWait = ""
	if len(dec.probe) > 0 {
		// A failover waits (and retries next round) when no candidate
		// answers.
		if dec = decide(s.probedView(ctx, dec.probe)); dec.cmd == nil {
			if dec.wait != "" {
				s.log.Info("decider waiting", "why", dec.wait)
			}
			d.lastWait = dec.wait
			return
		}
	}
	if dec.checkpoint != "" {
		s.checkpointMember(ctx, dec.checkpoint)
	}
	index, err := s.propose(ctx, dec.cmd)
	if err != nil {
		s.log.Warn("decision not committed", "reason", dec.reason, "err", err)
		return
	}
	// Followers learn that an entry committed from the next append,
	// which hashicorp/raft sends only every CommitTimeout (randomised up
	// to twice that) when nothing new is logged: 50–100 ms by default
	// before a candidate sees its assignment or a bouncer agent watching
	// a follower sees an exposure. A barrier entry carries the commit
	// index to them at once; it costs one log entry per decision.
	s.raft.Barrier(0)
	st := s.fsm.State()
	s.log.Info("decision", "reason", dec.reason, "epoch", st.Primary.GetEpoch(),
		"primary", st.Primary.GetMemberId(), "command", fsm.TypeOf(dec.cmd).String(), "index", index)
}

// probedView probes ids afresh and returns the view after it, in which
// the members that did not answer are no candidates.
func (s *Server) probedView(ctx context.Context, ids []string) view {
	unanswered := s.probeMembers(ctx, ids)
	v := s.currentView()
	v.unanswered = unanswered
	return v
}

// probeMembers asks members for a fresh probe of their PostgreSQL, in
// parallel, each bounded by RetryTimeout, and records the answers. It
// returns the members that did not answer.
func (s *Server) probeMembers(ctx context.Context, ids []string) map[string]bool {
	st := s.fsm.State()
	var wg sync.WaitGroup
	var mu sync.Mutex
	unanswered := map[string]bool{}
	for _, id := range ids {
		m := fsm.FindMember(st, id)
		if m == nil || m.GrpcAddr == "" {
			unanswered[id] = true
			continue
		}
		wg.Add(1)
		go func(id, addr string) {
			defer wg.Done()
			var h *pb.PostgresHealth
			var err error
			if id == s.opts.NodeID && s.local != nil {
				h, err = s.local.Probe(ctx)
			} else {
				var c pb.AdminClient
				if c, err = s.opts.Dial(addr); err == nil {
					cctx, cancel := context.WithTimeout(ctx, s.opts.Timing.RetryTimeout)
					h, err = c.Probe(cctx, &pb.ProbeRequest{})
					cancel()
				}
			}
			if err != nil {
				s.log.Info("fresh probe failed", "member", id, "err", err)
				mu.Lock()
				unanswered[id] = true
				mu.Unlock()
				return
			}
			s.contacts.report(id, h, time.Now())
		}(id, m.GrpcAddr)
	}
	wg.Wait()
	return unanswered
}
