package bouncer

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// opKind is one Router call the agent decided on.
type opKind int

const (
	opFence  opKind = iota + 1 // Router.Fence: stop routing to a primary older than epoch
	opHold                     // Router.Hold: stop routing to the primary of epoch itself
	opExpose                   // Router.Expose
	opStage                    // Router.Stage: load the next primary's route while paused
)

func (k opKind) String() string {
	switch k {
	case opFence:
		return "fence"
	case opHold:
		return "hold"
	case opExpose:
		return "expose"
	case opStage:
		return "stage"
	}
	return fmt.Sprintf("opKind(%d)", int(k))
}

// op is one step for one database.
type op struct {
	kind  opKind
	db    string
	epoch uint64
	mode  FenceMode // fence and hold
	route Route     // expose
	why   string
}

// planInput is everything a decision depends on. plan is a pure function
// of it, so the rules can be read, and tested, without goroutines.
type planInput struct {
	st *pb.ClusterState // local copy of the cluster state; nil before the first event
	// newest is the newest epoch seen anywhere: the local state and the
	// heartbeat answers of the leader. Nothing older is exposed.
	newest uint64
	// lagging: the leader reported newest for a while, but the local state
	// is still older (the watch is stuck on a lagging member).
	lagging bool
	// contact: a heartbeat sent less than the contact lease ago succeeded
	// (or the agent started less than a lease ago).
	contact bool
	// confirmed: a heartbeat has succeeded since the agent started. Until
	// then it exposes nothing new: its watch may come from a member cut off
	// from the quorum.
	confirmed bool
	dbs       []DatabaseSpec
	status    func(db string) (Status, bool)
}

// planOutput is what to do, and which epoch to acknowledge once done.
type planOutput struct {
	ops []op
	// epoch is the epoch the plan works towards. It may be acknowledged
	// once every database is fenced or exposed at epoch or newer.
	epoch uint64
	// expose is the member the plan routes to ("" when it fences).
	expose string
	// problem explains why nothing can be exposed although the state
	// asks for it (e.g. the member has no pg_addr).
	problem string
}

// plan decides the Router calls for one cluster. The rules, in order:
//
//   - No contact with the quorum for longer than the contact lease: hold
//     (PAUSE) every database that still routes anywhere (self-fence).
//   - The watch lags behind an epoch the leader reported (for longer than a
//     grace period): fence everything older than that epoch, expose nothing.
//     Within the grace period, and before the first heartbeat succeeded:
//     fence what is older than the local epoch, expose and hold nothing.
//   - The primary of the newest epoch E is exposed, running (not released,
//     not stepping down): fence what routes to an older epoch, then expose
//     E's member.
//   - Otherwise: fence what routes to an epoch older than E (PAUSE after a
//     planned switchover, pause without waiting after a failover), and hold (PAUSE) what
//     routes to E itself when E's primary is stepping down or released.
func plan(in planInput) planOutput {
	p := in.st.GetPrimary()
	epoch := p.GetEpoch()
	var out planOutput
	switch {
	case !in.contact:
		out.epoch = epoch
		for _, d := range in.dbs {
			s, ok := in.status(d.Name)
			if ok && !s.Fenced && s.ExposedAt != 0 {
				out.ops = append(out.ops, op{kind: opHold, db: d.Name, epoch: max(s.Seen, epoch), mode: FencePlanned, why: "no contact with the quorum"})
			}
		}
		return out
	case in.lagging && in.newest > epoch:
		// The heartbeat carries no reason. A newer epoch means the next
		// primary is assigned already: after a switchover the old one has
		// stopped (and this agent, still routing to it, was not waited for),
		// after a failover it may hang with a COMMIT that a PAUSE would wait
		// on for the whole PAUSE timeout. Emergency mode tries a short PAUSE
		// and then goes on without waiting.
		out.epoch = in.newest
		for _, d := range in.dbs {
			if s, ok := in.status(d.Name); ok && !s.Fenced && s.ExposedAt < in.newest {
				out.ops = append(out.ops, op{kind: opFence, db: d.Name, epoch: in.newest, mode: FenceEmergency,
					why: fmt.Sprintf("the leader reports epoch %d, the watch is still at %d", in.newest, epoch)})
			}
		}
		return out
	case epoch == 0 || p.GetMemberId() == "":
		return out // no primary assigned yet: nothing to route, nothing to fence
	}
	out.epoch = epoch
	sw := in.st.GetSwitchover()
	stepping := sw != nil && (sw.SteppingDown || sw.Draining) && sw.Epoch == epoch
	mode, why := fenceMode(in.st, epoch)
	var route Route
	want := p.Exposed && !p.Released && !stepping
	// A planned switchover assigned epoch's primary after the old one shut
	// down and gave its lease back: while it promotes, its route can be
	// loaded into the paused PgBouncer (Router.Stage), so that the
	// exposure only has to RESUME.
	stage := !p.Exposed && !p.Released && !stepping && mode == FencePlanned && in.confirmed
	if (want && !in.confirmed) || in.newest > epoch {
		// Not confirmed by the leader yet, or the leader already reported a
		// newer epoch that the watch has not delivered (usually a matter of
		// milliseconds; a lasting lag is handled above): keep what routes to
		// epoch, fence what is older, expose nothing.
		for _, d := range in.dbs {
			if s, ok := in.status(d.Name); ok && !s.Fenced && s.ExposedAt != 0 && s.ExposedAt < epoch {
				out.ops = append(out.ops, op{kind: opFence, db: d.Name, epoch: epoch, mode: mode, why: why})
			}
		}
		return out
	}
	if want || stage {
		var err error
		if route, err = memberRoute(in.st, p.MemberId); err != nil {
			out.problem = err.Error()
			want, stage = false, false
		}
	}
	for _, d := range in.dbs {
		s, known := in.status(d.Name)
		routing := known && !s.Fenced && s.ExposedAt != 0
		if want {
			r := d.route(route)
			if routing && s.ExposedAt == epoch && s.Route == r {
				continue
			}
			if routing && s.ExposedAt < epoch {
				out.ops = append(out.ops, op{kind: opFence, db: d.Name, epoch: epoch, mode: mode, why: why})
			}
			out.ops = append(out.ops, op{kind: opExpose, db: d.Name, epoch: epoch, route: r,
				why: fmt.Sprintf("%s is the exposed primary of epoch %d", p.MemberId, epoch)})
			continue
		}
		switch {
		case !routing:
			if stage && known && s.Fenced && s.FencedAt < epoch {
				out.ops = append(out.ops, op{kind: opStage, db: d.Name, epoch: epoch, route: d.route(route),
					why: fmt.Sprintf("%s takes over in a switchover (epoch %d)", p.MemberId, epoch)})
			}
		case s.ExposedAt < epoch:
			out.ops = append(out.ops, op{kind: opFence, db: d.Name, epoch: epoch, mode: mode, why: why})
		case s.ExposedAt == epoch:
			hold := "the primary is not exposed"
			switch {
			case stepping:
				hold = fmt.Sprintf("%s is stepping down (switchover)", p.MemberId)
			case p.Released:
				hold = fmt.Sprintf("%s released its lease", p.MemberId)
			case out.problem != "":
				hold = out.problem
			}
			out.ops = append(out.ops, op{kind: opHold, db: d.Name, epoch: epoch, mode: FencePlanned, why: hold})
		}
	}
	if want {
		out.expose = p.MemberId
	}
	if stepping && out.problem == "" {
		// Paused for a switchover: acknowledge the next epoch, which
		// tells the decider the old primary may stop without a client
		// seeing it (ackable holds once every database is held).
		out.epoch = epoch + 1
	}
	return out
}

// fenceMode is PAUSE when the primary of epoch took over in a planned
// switchover (clients wait, none fail), the emergency mode otherwise: a
// failed primary's connections may hang in a COMMIT that PAUSE would wait
// for, so the agent waits for it only briefly.
func fenceMode(st *pb.ClusterState, epoch uint64) (FenceMode, string) {
	for _, h := range st.GetHistory() {
		if h.Epoch == epoch && strings.HasPrefix(h.Reason, "switchover") {
			return FencePlanned, fmt.Sprintf("epoch %d: %s", epoch, h.Reason)
		}
	}
	if sw := st.GetSwitchover(); sw != nil && (sw.SteppingDown || sw.Draining) && sw.Epoch+1 == epoch {
		return FencePlanned, fmt.Sprintf("epoch %d: switchover from %s", epoch, sw.From)
	}
	reason := "failover"
	for _, h := range st.GetHistory() {
		if h.Epoch == epoch && h.Reason != "" {
			reason = h.Reason
		}
	}
	return FenceEmergency, fmt.Sprintf("epoch %d: %s", epoch, reason)
}

// memberRoute is the host and port of a member's PostgreSQL.
func memberRoute(st *pb.ClusterState, id string) (Route, error) {
	for _, m := range st.GetMembers() {
		if m.Id != id {
			continue
		}
		host, port, err := net.SplitHostPort(m.PgAddr)
		if err != nil {
			return Route{}, fmt.Errorf("member %s: pg_addr %q is not host:port", id, m.PgAddr)
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return Route{}, fmt.Errorf("member %s: pg_addr %q has no numeric port", id, m.PgAddr)
		}
		return Route{Host: host, Port: n}, nil
	}
	return Route{}, fmt.Errorf("primary %s is not a member", id)
}

// ackable says whether every database of dbs is fenced or exposed at
// epoch or newer: the agent routes to no primary older than epoch.
func ackable(epoch uint64, dbs []DatabaseSpec, status func(string) (Status, bool)) bool {
	for _, d := range dbs {
		s, ok := status(d.Name)
		if ok && !s.Fenced && s.ExposedAt != 0 && s.ExposedAt < epoch {
			return false
		}
	}
	return true
}
