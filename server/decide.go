package server

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// view is everything the decider looks at in one round. decide is a pure
// function of it, so every decision path is a table test.
type view struct {
	st     *pb.ClusterState
	health map[string]memberHealth
	// leaseAge is how long ago this node observed the current
	// (epoch, lease_seq); leaseSeq is that seq.
	leaseAge time.Duration
	leaseSeq uint64
	// now is the leader's wall clock, used only for scheduled switchovers
	// (an operator's time of day) and for stamping commands.
	now    time.Time
	timing Timing
	// acks is what each bouncer agent acknowledged; sinceLeader is how
	// long this node has led (the baseline for agents never heard of).
	acks        map[string]bouncerAck
	sinceLeader time.Duration
	// servers lists the IDs in the Raft configuration: bootstrap waits
	// until each has registered as a member.
	servers []string
	// unanswered lists the members that did not answer this round's fresh
	// probe: their last heartbeat may describe a server that is gone or
	// hung, so they are not candidates this round.
	unanswered map[string]bool
}

// decision is what the decider wants committed next, with why.
type decision struct {
	cmd    proto.Message
	reason string
	// probe lists members whose fresh state must be fetched before cmd
	// is proposed (candidates of a failover).
	probe []string
	// wait explains why nothing is done although something is pending.
	wait string
	// checkpoint names the primary to checkpoint before cmd is proposed
	// (a switchover's first step; see prepare.go).
	checkpoint string
}

func (v *view) alive(id string) bool {
	h, ok := v.health[id]
	return ok && h.seen && h.age <= v.timing.TTL
}

func (v *view) pg(id string) *pb.PostgresHealth {
	if h, ok := v.health[id]; ok {
		return h.pg
	}
	return nil
}

func (v *view) leaseExpired() bool {
	p := v.st.Primary
	return p.GetReleased() || v.leaseAge > v.timing.TTL+v.timing.SafetyMargin
}

// decide is the decider's one rule book, in priority order.
func decide(v view) decision {
	st := v.st
	if st.Identity.GetUuid() == "" {
		return decision{}
	}
	if st.Primary.GetMemberId() == "" {
		return decideBootstrap(v)
	}
	if d := decideSystemID(v); d.cmd != nil {
		return d
	}
	if v.leaseExpired() {
		return decideFailover(v)
	}
	expose := decideExpose(v)
	if expose.cmd != nil {
		return expose
	}
	if d := decideSwitchover(v); d.cmd != nil || d.wait != "" {
		return d
	}
	return expose
}

// decideExpose lets bouncer agents route to the primary once it runs as
// primary of its epoch and every registered agent has fenced older
// primaries, or has been out of contact for longer than its contact lease
// plus the safety margin (it paused itself by then). Fence before expose:
// invariant 4.
func decideExpose(v view) decision {
	p := v.st.Primary
	if p.GetExposed() {
		return decision{}
	}
	h := v.pg(p.MemberId)
	if h == nil || h.AppliedEpoch != p.Epoch || h.State != pb.PgState_PG_STATE_RUNNING || h.InRecovery {
		return decision{wait: fmt.Sprintf("expose waits for %s to run as primary of epoch %d", p.MemberId, p.Epoch)}
	}
	if waiting := v.bouncersBehind(p.Epoch); len(waiting) > 0 {
		return decision{wait: fmt.Sprintf("expose of %s (epoch %d) waits for bouncer agents %v to fence", p.MemberId, p.Epoch, waiting)}
	}
	return decision{cmd: &pb.ExposePrimary{Epoch: p.Epoch}, reason: fmt.Sprintf("expose %s (epoch %d): every bouncer agent fenced", p.MemberId, p.Epoch)}
}

// decideBootstrap picks the first primary. An existing primary data
// directory is adopted; a new cluster is initialized only when every
// server of the Raft configuration registered and every PostgreSQL member
// reported an empty data directory, so an agent that starts before its
// neighbours can never make a second primary.
func decideBootstrap(v view) decision {
	if v.st.Paused {
		return decision{wait: "paused: no bootstrap"}
	}
	for _, id := range v.servers {
		if fsm.FindMember(v.st, id) == nil {
			return decision{wait: fmt.Sprintf("bootstrap waits for server %s to register as a member", id)}
		}
	}
	var primaries, standbys, empty []string
	for _, m := range v.st.Members {
		if m.Role != pb.MemberRole_MEMBER_ROLE_POSTGRES {
			continue
		}
		h := v.pg(m.Id)
		if !v.alive(m.Id) || h == nil {
			return decision{wait: fmt.Sprintf("bootstrap waits for member %s to report its data directory", m.Id)}
		}
		switch h.DataDir {
		case pb.DataDirKind_DATA_DIR_PRIMARY:
			primaries = append(primaries, m.Id)
		case pb.DataDirKind_DATA_DIR_STANDBY:
			standbys = append(standbys, m.Id)
		case pb.DataDirKind_DATA_DIR_EMPTY:
			if !m.Tags.GetNofailover() {
				empty = append(empty, m.Id)
			}
		default:
			return decision{wait: fmt.Sprintf("bootstrap waits: member %s does not know its data directory yet", m.Id)}
		}
	}
	assign := func(id, reason string) decision {
		tl := v.pg(id).GetTimeline()
		return decision{cmd: &pb.AssignPrimary{ExpectedEpoch: 0, MemberId: id, Timeline: tl, Reason: reason, AtUnixMs: v.now.UnixMilli()}, reason: reason}
	}
	switch {
	case len(primaries) == 1:
		return assign(primaries[0], "adopt existing primary")
	case len(primaries) > 1:
		return decision{wait: fmt.Sprintf("bootstrap refused: members %v all hold primary data directories; keep one, reinit the others", primaries)}
	case len(standbys) > 0:
		return decision{wait: fmt.Sprintf("bootstrap waits: members %v hold standby data directories and no member holds their primary", standbys)}
	case len(empty) == 0:
		return decision{wait: "bootstrap waits: no PostgreSQL member may initialize (all nofailover or none)"}
	}
	sort.Strings(empty)
	return assign(empty[0], "bootstrap new cluster")
}

// decideSystemID records PostgreSQL's system identifier once the first
// primary reports it.
func decideSystemID(v view) decision {
	if v.st.Identity.GetSystemIdentifier() != 0 {
		return decision{}
	}
	h := v.pg(v.st.Primary.MemberId)
	if h == nil || h.SystemIdentifier == 0 || h.AppliedEpoch != v.st.Primary.Epoch {
		return decision{}
	}
	return decision{cmd: &pb.SetSystemID{SystemIdentifier: h.SystemIdentifier}, reason: "record system identifier"}
}

// candidate is a member that may be promoted, with what ranks it.
type candidate struct {
	id       string
	sync     bool
	priority int32
	lsn      uint64
	timeline uint32
}

// candidates lists the members eligible for automatic promotion, best
// first: eligible (not nofailover, not a witness, alive and answering
// the fresh probe when one was asked, a running standby, on the newest timeline, within maximum_lag_on_failover), then
// recorded synchronous standbys in synchronous mode, then priority, then
// LSN. why explains an empty list.
func candidates(v view) (out []candidate, why string) {
	st := v.st
	cfg := st.Config
	syncOnly := cfg.GetSynchronousMode() == pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT ||
		(cfg.GetSynchronousMode() == pb.SynchronousMode_SYNCHRONOUS_MODE_ON && !st.Sync.GetDegraded())
	inSync := map[string]bool{}
	for _, id := range st.Sync.GetMembers() {
		inSync[id] = true
	}
	var maxTL uint32
	for _, m := range st.Members {
		if h := v.pg(m.Id); h != nil && v.alive(m.Id) && h.Timeline > maxTL {
			maxTL = h.Timeline
		}
	}
	primaryLSN := v.pg(st.Primary.MemberId).GetWalLsn()
	if rl := st.Primary.GetReleasedLsn(); rl > primaryLSN {
		primaryLSN = rl
	}
	var reasons []string
	for _, m := range st.Members {
		h := v.pg(m.Id)
		switch {
		case m.Id == st.Primary.MemberId:
			continue
		case m.Role != pb.MemberRole_MEMBER_ROLE_POSTGRES:
			continue
		case m.Tags.GetNofailover() || m.Tags.GetFailoverPriority() <= 0:
			reasons = append(reasons, m.Id+": nofailover")
		case v.unanswered[m.Id]:
			reasons = append(reasons, m.Id+": did not answer the fresh probe")
		case !v.alive(m.Id) || h == nil:
			reasons = append(reasons, m.Id+": agent not reporting")
		case h.State != pb.PgState_PG_STATE_RUNNING || !h.InRecovery:
			reasons = append(reasons, fmt.Sprintf("%s: not a running standby (%s)", m.Id, h.State))
		case h.Timeline < maxTL:
			reasons = append(reasons, fmt.Sprintf("%s: on timeline %d, newest is %d", m.Id, h.Timeline, maxTL))
		case syncOnly && !inSync[m.Id]:
			reasons = append(reasons, m.Id+": not a recorded synchronous standby")
		case !syncOnly && primaryLSN > h.WalLsn && int64(primaryLSN-h.WalLsn) > cfg.GetMaximumLagOnFailoverBytes():
			reasons = append(reasons, fmt.Sprintf("%s: %d bytes behind, maximum_lag_on_failover is %d", m.Id, primaryLSN-h.WalLsn, cfg.GetMaximumLagOnFailoverBytes()))
		default:
			out = append(out, candidate{id: m.Id, sync: inSync[m.Id], priority: m.Tags.GetFailoverPriority(), lsn: h.WalLsn, timeline: h.Timeline})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.sync != b.sync {
			return a.sync
		}
		if a.priority != b.priority {
			return a.priority > b.priority
		}
		if a.lsn != b.lsn {
			return a.lsn > b.lsn
		}
		return a.id < b.id
	})
	// why also explains the members left out when others qualify, so a
	// refused named candidate gets its reason.
	if len(out) == 0 {
		why = fmt.Sprintf("no candidate: %v", reasons)
	} else {
		why = strings.Join(reasons, "; ")
	}
	return out, why
}

// decideFailover assigns the best candidate once the primary's lease has
// run out (plus the safety margin) or was released.
func decideFailover(v view) decision {
	st := v.st
	if st.Paused {
		return decision{wait: "primary lease expired; paused: no automatic failover"}
	}
	cands, why := candidates(v)
	if len(cands) == 0 {
		return decision{wait: "primary lease expired; " + why}
	}
	best := cands[0]
	reason := fmt.Sprintf("failover: lease of %s (epoch %d) expired", st.Primary.MemberId, st.Primary.Epoch)
	if st.Primary.Released {
		reason = fmt.Sprintf("failover: %s released its lease (epoch %d)", st.Primary.MemberId, st.Primary.Epoch)
	}
	if sw := st.Switchover; sw != nil && sw.SteppingDown && st.Primary.Released {
		c, note, wait, probe := switchoverTarget(v, cands, sw, st.Primary.ReleasedLsn)
		if wait != "" {
			return decision{wait: wait, probe: probe}
		}
		best, reason = c, fmt.Sprintf("switchover from %s%s", sw.From, note)
	}
	ids := make([]string, len(cands))
	for i, c := range cands {
		ids[i] = c.id
	}
	return decision{
		cmd: &pb.AssignPrimary{
			ExpectedEpoch: st.Primary.Epoch, ExpectedLeaseSeq: v.leaseSeq, MemberId: best.id,
			Timeline: best.timeline, Reason: reason, AtUnixMs: v.now.UnixMilli(),
		},
		reason: reason,
		probe:  ids,
	}
}

// switchoverTarget picks who takes over from a primary that stepped down
// for sw and released its lease at rl: the requested candidate (the best
// one if none was requested) once it has replayed rl. The old primary has
// stopped, so a candidate that does not take over (its host died, it is
// cut off, it never gets the last WAL) must not leave the cluster without
// a primary: after as long as a lost lease is given, any candidate that
// has replayed rl will do, the requested one first. note is added to the
// reason; wait says why nobody yet, and probe whom to look at again.
func switchoverTarget(v view, cands []candidate, sw *pb.Switchover, rl uint64) (c candidate, note, wait string, probe []string) {
	requested := slices.IndexFunc(cands, func(c candidate) bool { return c.id == sw.To })
	giveUp := v.timing.TTL + v.timing.SafetyMargin
	if v.leaseAge <= giveUp {
		c = cands[0]
		if sw.To != "" {
			if requested < 0 {
				return c, "", fmt.Sprintf("switchover waits: candidate %s is not eligible", sw.To), nil
			}
			c = cands[requested]
		}
		if rl > 0 && c.lsn < rl {
			return c, "", fmt.Sprintf("switchover waits for %s to replay to %X (at %X)", c.id, rl, c.lsn), []string{c.id}
		}
		return c, "", "", nil
	}
	order := slices.Clone(cands)
	if requested > 0 {
		order = append([]candidate{cands[requested]}, slices.Delete(order, requested, requested+1)...)
	}
	for _, c := range order {
		if c.lsn >= rl {
			if sw.To != "" && c.id != sw.To {
				note = fmt.Sprintf(" (%s, the requested candidate, did not take over within %v)", sw.To, giveUp)
			}
			return c, note, "", nil
		}
	}
	ids := make([]string, len(cands))
	for i, c := range cands {
		ids[i] = c.id
	}
	return candidate{}, "", fmt.Sprintf("switchover waits: no candidate has replayed %s's last WAL (%X)", sw.From, rl), ids
}

// decideSwitchover starts a pending switchover once it is due and a
// candidate is ready: the primary then stops and releases its lease.
func decideSwitchover(v view) decision {
	sw := v.st.Switchover
	if sw == nil || sw.SteppingDown || sw.Epoch != v.st.Primary.Epoch {
		return decision{}
	}
	if sw.ScheduledAtUnixMs > v.now.UnixMilli() {
		return decision{}
	}
	cands, why := candidates(v)
	ok := false
	for _, c := range cands {
		ok = ok || sw.To == "" || c.id == sw.To
	}
	if !ok {
		return decision{wait: "switchover waits: " + why}
	}
	next := proto.Clone(sw).(*pb.Switchover)
	if !sw.Draining && len(v.st.Bouncers) > 0 {
		next.Draining = true
		return decision{cmd: &pb.SetSwitchover{Switchover: next}, checkpoint: sw.From,
			reason: fmt.Sprintf("switchover: bouncer agents drain %s", sw.From)}
	}
	if waiting := v.bouncersBehind(sw.Epoch + 1); len(waiting) > 0 {
		return decision{wait: fmt.Sprintf("switchover waits for bouncer agents %v to pause %s", waiting, sw.From)}
	}
	next.SteppingDown = true
	dec := decision{cmd: &pb.SetSwitchover{Switchover: next}, reason: fmt.Sprintf("switchover: %s steps down", sw.From)}
	if !sw.Draining {
		dec.checkpoint = sw.From // no bouncer agents: no drain step came first
	}
	return dec
}

// bouncersBehind lists the registered bouncer agents that have not
// acknowledged epoch and are still within their contact lease (plus the
// safety margin): the ones a change must wait for.
func (v *view) bouncersBehind(epoch uint64) []string {
	var waiting []string
	for _, b := range v.st.Bouncers {
		lease := time.Duration(b.ContactLeaseMs)*time.Millisecond + v.timing.SafetyMargin
		a, ok := v.acks[b.Id]
		switch {
		case ok && a.epoch >= epoch:
		case ok && v.now.Sub(a.at) > lease:
		case !ok && v.sinceLeader > lease:
		default:
			waiting = append(waiting, b.Id)
		}
	}
	return waiting
}
