package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	"github.com/pgquorum/pgquorum/pgnode"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// actuator converges this node's PostgreSQL to the committed state. It
// decides nothing about the cluster: the FSM says who is primary at which
// epoch, and the actuator makes the local server match — bootstrap,
// adopt, promote, follow, rewind, clone — idempotently, retrying with
// backoff (DESIGN.md invariant 7). It never acts on an epoch older than
// the newest it has seen (invariant 2).
type actuator struct {
	s   *Server
	pg  Postgres
	log *slog.Logger
	// writes is what the primary's write probes saw (see writeprobe.go).
	writes           writeHealth
	writeStallLogged bool // guarded by mu

	mu     sync.Mutex
	health *pb.PostgresHealth
	// appliedEpoch is the newest epoch converged to.
	appliedEpoch uint64
	// maxEpoch is the newest epoch seen in the FSM.
	maxEpoch uint64
	// phase overrides the probed state while a long action runs.
	phase   pb.PgState
	lastErr string
	// fenced is set by the lease keeper when the lease ran out.
	fenced bool
	// leaseEpoch and leaseUntil are the last committed renewal: its
	// epoch and when the lease it gave ends on this node's clock.
	leaseEpoch uint64
	leaseUntil time.Time
	// crashedAt is when the primary's PostgreSQL was first seen down.
	crashedAt time.Time
	// released is the epoch whose lease this node gave back.
	released uint64
	// paramsVersion is the dynamic config version applied.
	paramsVersion uint64
	// paramsUsed is the dynamic config version handed to pgnode for
	// starts (see useParameters).
	paramsUsed uint64
	// rolesEnsured: the replication and rewind roles were made on this
	// node's primary in this agent's lifetime (see ensureRoles).
	rolesEnsured bool
	// info is the last data directory inspection, from infoAt.
	info   pgnode.DataDirInfo
	infoAt time.Time
	// infoGen counts actions that may have changed the data directory
	// (see inspectcache.go).
	infoGen uint64
	// slots is the replication slot list last ensured on the primary.
	slots []string
	// standbySlotsEpoch is the epoch for which this standby last dropped
	// the slots left from a time it was (about to be) primary.
	standbySlotsEpoch uint64
	// following is the upstream the running standby was last started
	// (or re-pointed) to follow.
	following pgnode.Upstream
	// guardArmed: the fence guard holds a deadline for our postmaster.
	guardArmed bool
	guardPID   int
	// stuckSince is when this standby was first seen not streaming from
	// the upstream it follows (zero while it streams; see diverge.go).
	stuckSince time.Time
	// healthAt is when health was probed.
	healthAt time.Time
	// streamingAt is when the probe loop last saw this standby streaming:
	// a convergence round trusts it for a loop instead of probing again.
	streamingAt time.Time
	// writableAt is when a probe last saw the postmaster writablePID up
	// and out of recovery: a convergence round of the primary trusts it
	// for a loop instead of probing again (see recentlyWritable).
	writableAt  time.Time
	writablePID int
	// pgSync is the synchronous standby list last set in PostgreSQL, and
	// pgSyncLSN the WAL position read right after (see joinedSync).
	pgSync    []string
	pgSyncSet bool
	pgSyncLSN uint64
	// pgSyncGen is infoGen when pgSync was set: pg_rewind and
	// pg_basebackup copy the source's synchronous_standby_names, so after
	// such an action pgSync no longer says what the files hold.
	pgSyncGen uint64

	wake chan struct{}
	// requests carries operators' restarts, reloads and reinits to the
	// converge loop (see localRequest).
	requests chan *localRequest
	// lastRole is the role last converged to ("primary", "replica"), for
	// the on_role_change callback; empty until the first convergence.
	lastRole string
	// quiet suppresses the on_start and on_stop callbacks while an
	// operator's restart runs (it fires on_restart instead).
	quiet bool
	// explicit is set while an operator's restart or reinit runs: its
	// rounds act although the cluster is paused (see paused).
	explicit bool
	// fencedEpoch is the epoch whose lease last ran out here: the fence
	// (or the guard) stopped this primary, and regaining the lease starts
	// it again even while paused (see paused).
	fencedEpoch uint64
	// exposedEpoch and exposedSeen: a stopped former primary saw the
	// primary of exposedEpoch before its exposure, and first saw it
	// exposed at exposedSeen (zero until then; see holdRejoin).
	exposedEpoch uint64
	exposedSeen  time.Time
	// born is when this actuator was made; caughtUp is set once this
	// node's state has caught up with the leader's since then (see
	// converge).
	born     time.Time
	caughtUp bool
}

// catchUpHurry is how long after its start an agent asks for heartbeats
// every 50 ms while its state catches up (see converge).
const catchUpHurry = 3 * time.Second

func newActuator(s *Server, pg Postgres) *actuator {
	a := &actuator{s: s, log: s.log.With("component", "actuator"), wake: make(chan struct{}, 1),
		requests: make(chan *localRequest), born: time.Now()}
	a.pg = changeTracker{Postgres: pg, changed: a.dropInfo}
	return a
}

// Health returns the latest health, for heartbeats.
func (a *actuator) Health() *pb.PostgresHealth {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.health == nil {
		return nil
	}
	h := proto.Clone(a.health).(*pb.PostgresHealth)
	h.AppliedEpoch = a.appliedEpoch
	if !a.healthAt.IsZero() {
		h.ProbeAgeMs = time.Since(a.healthAt).Milliseconds()
	}
	if a.phase != pb.PgState_PG_STATE_UNKNOWN {
		h.State = a.phase
	}
	if a.fenced {
		h.State = pb.PgState_PG_STATE_FENCED
	}
	h.Error = a.lastErr
	return h
}

// Probe takes a fresh look at PostgreSQL (the decider asks before it acts).
func (a *actuator) Probe(ctx context.Context) (*pb.PostgresHealth, error) {
	a.probe(ctx)
	if h := a.Health(); h != nil {
		return h, nil
	}
	return nil, errors.New("postgres not probed yet")
}

// probe refreshes the cached health.
func (a *actuator) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, a.s.opts.Timing.RetryTimeout)
	defer cancel()
	pid := a.pg.Process().PID
	// Inspecting the data directory may run pg_controldata: do it only
	// when the server is not answering, or every few loops, not every
	// probe (an idle node should cost well under 1 % of a core).
	a.mu.Lock()
	info, fresh, gen := a.info, !a.infoAt.IsZero() && time.Since(a.infoAt) < a.infoMaxAge(), a.infoGen
	a.mu.Unlock()
	var st pgnode.Status
	if fresh && info.Running {
		st, _ = a.pg.Probe(pctx)
	}
	if !fresh || !st.Up {
		var err error
		if info, err = a.pg.Inspect(pctx); err != nil {
			a.setErr(fmt.Errorf("inspect data directory: %w", err))
			return
		}
		if info.Running && !st.Up {
			st, _ = a.pg.Probe(pctx)
		}
		a.keepInfo(info, gen)
	}
	h := healthOf(info, st, a.pg.Process())
	if st.WALReceiver == "streaming" {
		h.Upstream = memberAt(a.s.fsm.State(), st.UpstreamHost, st.UpstreamPort)
	}
	a.mu.Lock()
	a.health, a.healthAt = h, time.Now()
	if st.Up && st.InRecovery && st.WALReceiver == "streaming" {
		a.streamingAt = time.Now()
	}
	a.mu.Unlock()
	a.noteProbe(st, pid)
	if a.syncStandbyWentSilent(h) {
		a.poke()
	}
}

func (a *actuator) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		a.lastErr = ""
		return
	}
	if a.lastErr != err.Error() {
		a.log.Warn("actuator", "err", err)
	}
	a.lastErr = err.Error()
}

func (a *actuator) setPhase(p pb.PgState) {
	a.mu.Lock()
	a.phase = p
	a.mu.Unlock()
}

// poke asks for a convergence round now.
func (a *actuator) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run drives the probe loops, the lease keeper and the convergence loop
// until ctx ends.
func (a *actuator) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); a.probeLoop(ctx) }()
	go func() { defer wg.Done(); a.writeProbeLoop(ctx) }()
	go func() { defer wg.Done(); a.leaseLoop(ctx) }()
	go func() { defer wg.Done(); a.convergeLoop(ctx) }()
	wg.Wait()
}

func (a *actuator) probeLoop(ctx context.Context) {
	every := max(a.s.opts.Timing.LoopWait, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		a.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// convergeLoop runs a round on every committed change and every LoopWait;
// failures back off up to 5 s.
func (a *actuator) convergeLoop(ctx context.Context) {
	_, sub := a.s.fsm.Subscribe(^uint64(0), 64)
	defer func() { sub.Close() }()
	backoff := time.Duration(0)
	for {
		began := time.Now()
		err := a.converge(ctx)
		if took := time.Since(began); took > a.s.opts.Timing.LoopWait {
			a.log.Info("slow convergence round", "took", took.Round(time.Millisecond), "err", err)
		}
		a.setErr(err)
		if err != nil {
			backoff = min(max(2*backoff, a.s.opts.Timing.LoopWait), 5*time.Second)
		} else {
			backoff = a.s.opts.Timing.LoopWait
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case _, ok := <-sub.C:
			if !ok {
				_, sub = a.s.fsm.Subscribe(^uint64(0), 64)
			}
		case <-a.wake:
		case r := <-a.requests:
			a.handle(ctx, r)
		case <-t.C:
		}
		t.Stop()
	}
}

// converge makes one step towards the committed state.
func (a *actuator) converge(ctx context.Context) error {
	st := a.s.fsm.State()
	me := a.s.opts.NodeID
	p := st.Primary
	a.mu.Lock()
	if p.GetEpoch() < a.maxEpoch {
		a.mu.Unlock()
		return nil // stale state: never act on an older epoch
	}
	a.maxEpoch = p.GetEpoch()
	fenced := a.fenced
	caughtUp := a.caughtUp
	a.mu.Unlock()
	if !caughtUp {
		// A restarted agent's state may be part-way through the Raft log:
		// it could clone or start a server with an old primary or old
		// parameters (a fresh clone started without a max_connections
		// raised since). The first round waits until this node has
		// applied as far as the leader had when it answered a heartbeat.
		// The lease and its fence do not wait (leaseLoop).
		if !a.s.caughtUpSince(a.born) {
			// Ask again soon for a while (a heartbeat brings the leader's
			// index); a node that stays cut off from the leader is left
			// to the regular heartbeats and rounds.
			if time.Since(a.born) < catchUpHurry {
				a.s.wakeNode()
				time.AfterFunc(50*time.Millisecond, a.poke)
			}
			return nil
		}
		a.mu.Lock()
		a.caughtUp = true
		a.mu.Unlock()
	}
	a.useParameters(st)

	if sw := st.Switchover; !fenced && p.GetMemberId() == me && !p.Released && a.releasedEpoch() != p.Epoch &&
		sw != nil && sw.SteppingDown && sw.From == me && sw.Epoch == p.Epoch {
		// Clients wait in PgBouncer from here on: step down before the
		// data directory inspection, which a running primary of a
		// verified cluster does not need.
		return a.stepDown(ctx, p, "switchover")
	}
	info, err := a.inspect(ctx)
	if err != nil {
		return fmt.Errorf("inspect data directory: %w", err)
	}
	if sysid := st.Identity.GetSystemIdentifier(); sysid != 0 && info.Initialized && info.SystemIdentifier != sysid {
		a.setPhase(pb.PgState_PG_STATE_FAILED)
		return fmt.Errorf("%w: data directory %s has system identifier %d, the cluster has %d; refusing to touch it (reinit it explicitly)",
			pgnode.ErrForeignDataDir, info.Path, info.SystemIdentifier, sysid)
	}
	switch {
	case p.GetMemberId() == "":
		// No primary decided yet: keep a running server as it is.
		if info.Running && a.pg.Process().State == pgnode.ProcessNone {
			if err := a.pg.Start(ctx, pgnode.StartOptions{Role: pgnode.RoleAsIs}); err != nil && !errors.Is(err, pgnode.ErrRoleMismatch) {
				return err
			}
		}
		return nil
	case p.MemberId == me:
		if fenced {
			return a.stop(ctx, pgnode.StopImmediate)
		}
		return a.convergePrimary(ctx, st, info)
	default:
		return a.convergeStandby(ctx, st, info)
	}
}

func (a *actuator) stop(ctx context.Context, mode pgnode.StopMode) error {
	running := a.pg.Process().State == pgnode.ProcessRunning
	err := a.pg.Stop(ctx, mode)
	if err == nil && running {
		a.lifecycle(cbStop)
	}
	return err
}

// convergePrimary makes this node the primary of the committed epoch.
func (a *actuator) convergePrimary(ctx context.Context, st *pb.ClusterState, info pgnode.DataDirInfo) error {
	p := st.Primary
	a.mu.Lock()
	a.following = pgnode.Upstream{}
	a.mu.Unlock()
	if a.releasedEpoch() == p.Epoch || p.Released {
		return a.stop(ctx, pgnode.StopFast)
	}
	if sw := st.Switchover; sw != nil && sw.SteppingDown && sw.From == p.MemberId && sw.Epoch == p.Epoch {
		return a.stepDown(ctx, p, "switchover")
	}
	if !info.Initialized {
		if a.paused(st) {
			return fmt.Errorf("%w: assigned primary at epoch %d with an empty data directory; not initializing it", ErrPaused, p.Epoch)
		}
		if st.Identity.GetSystemIdentifier() != 0 {
			a.setPhase(pb.PgState_PG_STATE_FAILED)
			return fmt.Errorf("assigned primary at epoch %d but data directory %s is empty while the cluster has data; refusing to initialize a second cluster", p.Epoch, info.Path)
		}
		if err := a.acquireLease(ctx, p.Epoch); err != nil {
			return err
		}
		a.setPhase(pb.PgState_PG_STATE_INITIALIZING)
		sysid, err := a.pg.Bootstrap(ctx)
		a.setPhase(pb.PgState_PG_STATE_UNKNOWN)
		if err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		a.log.Info("initialized new cluster", "epoch", p.Epoch, "system_identifier", sysid)
		a.probe(ctx)
		a.lifecycle(cbStart)
	} else if !info.Running || a.pg.Process().State == pgnode.ProcessNone {
		if !info.Running && a.paused(st) && !a.unfencing(p.Epoch) {
			a.clearCrash() // resumed, it gets a whole primary_start_timeout
			return fmt.Errorf("%w: the primary's PostgreSQL is stopped; not starting it", ErrPaused)
		}
		if !info.Running && !info.Standby {
			// Starting a primary data directory makes it writable.
			if err := a.acquireLease(ctx, p.Epoch); err != nil {
				return err
			}
		}
		if err := a.startForPrimary(ctx, info); err != nil {
			return a.primaryDown(ctx, p, err)
		}
		if !info.Running && !info.Standby {
			// A start can outlast the lease it began under (a long crash
			// recovery while renewals fail): a primary must not stay up
			// past it, the decider may be promoting another one already.
			if !a.leaseHeld(p.Epoch) {
				_ = a.stop(ctx, pgnode.StopImmediate)
				return fmt.Errorf("PostgreSQL came up after the lease of epoch %d ran out; stopped it again", p.Epoch)
			}
			a.ensureGuard()
		}
		if !info.Running {
			a.lifecycle(cbStart)
		}
		a.mu.Lock()
		a.pgSyncSet = false
		a.fencedEpoch = 0
		a.mu.Unlock()
	}
	probeStart := time.Now()
	var status pgnode.Status // zero, out of recovery, when a recent probe is trusted
	if !a.recentlyWritable() {
		var err error
		pid := a.pg.Process().PID
		status, err = a.pg.Probe(ctx)
		if err != nil || !status.Up {
			return a.primaryDown(ctx, p, fmt.Errorf("probe: %v", err))
		}
		a.noteProbe(status, pid)
	}
	a.clearCrash()
	if status.InRecovery {
		probed := time.Now()
		// The other members' slots go first: they re-point to this server
		// when the assignment commits, and one whose slot is missing here
		// fails and retries only after wal_retrieve_retry_interval (5 s),
		// while in synchronous mode the new primary's writes wait for it.
		// A standby may hold physical slots: they stream from this one
		// (cascading) until the promotion and continue on its timeline.
		if err := a.pg.EnsureSlots(ctx, a.slotNames(st)); err != nil {
			a.log.Warn("replication slots before promotion", "err", err)
		}
		slotted := time.Now()
		// The standby copied the old primary's synchronous_standby_names;
		// choose what the new primary waits for before it takes writes.
		// (Standbys keep it ready, see presetPromotionSync: usually a
		// no-op here.)
		if err := a.setPGSync(ctx, a.promotionSync(st), int(max(st.Config.GetSynchronousNodeCount(), 1))); err != nil {
			return fmt.Errorf("set synchronous standbys before promotion: %w", err)
		}
		synced := time.Now()
		if err := a.acquireLease(ctx, p.Epoch); err != nil {
			return err
		}
		a.log.Info("promoting", "epoch", p.Epoch, "reason", p.Reason,
			"probe", probed.Sub(probeStart), "slots", slotted.Sub(probed), "sync", synced.Sub(slotted), "lease", time.Since(synced))
		if err := a.pg.Promote(ctx); err != nil {
			return fmt.Errorf("promote at epoch %d: %w", p.Epoch, err)
		}
		a.log.Info("promoted", "epoch", p.Epoch)
		a.probePromoted(ctx, info)
	}
	a.markApplied(p.Epoch)
	a.noteRole("primary")
	a.ensureGuard()
	slots := a.slotNames(st)
	a.mu.Lock()
	same := slices.Equal(a.slots, slots)
	a.mu.Unlock()
	if !same {
		if err := a.pg.EnsureSlots(ctx, slots); err != nil {
			return fmt.Errorf("replication slots: %w", err)
		}
		a.mu.Lock()
		a.slots = slots
		a.mu.Unlock()
	}
	if err := a.manageSync(ctx, st); err != nil {
		return fmt.Errorf("synchronous standbys: %w", err)
	}
	rolesErr := a.ensureRoles(ctx)
	return errors.Join(a.applyParameters(ctx, st), rolesErr)
}

// startForPrimary starts a stopped server that is assigned primary. A
// standby data directory starts as a standby and is promoted next round;
// a primary data directory restarts in place (same epoch: nobody else
// was assigned since).
func (a *actuator) startForPrimary(ctx context.Context, info pgnode.DataDirInfo) error {
	err := a.pg.Start(ctx, pgnode.StartOptions{Role: pgnode.RoleAsIs, ExpectSystemID: a.s.fsm.State().Identity.GetSystemIdentifier()})
	if errors.Is(err, pgnode.ErrRoleMismatch) {
		return nil
	}
	return err
}

// primaryDown handles a primary whose PostgreSQL is not up: restart in
// place until primary_start_timeout, then give the lease back so the
// decider fails over instead of waiting for the lease to run out. While
// paused it does neither, and the clock starts when the cluster resumes.
func (a *actuator) primaryDown(ctx context.Context, p *pb.PrimaryAssignment, cause error) error {
	if a.paused(a.s.fsm.State()) {
		a.clearCrash()
		return fmt.Errorf("%w: the primary's PostgreSQL is down; not restarting it or stepping down: %w", ErrPaused, cause)
	}
	a.mu.Lock()
	if a.crashedAt.IsZero() {
		a.crashedAt = time.Now()
	}
	since := time.Since(a.crashedAt)
	a.mu.Unlock()
	if isDiskFull(cause) {
		// Every restart in place hits the same full disk (FACTS.md):
		// hand over now rather than after primary_start_timeout.
		return a.stepDown(ctx, p, fmt.Sprintf("postgres cannot start, its disk is full: %v", cause))
	}
	limit := time.Duration(a.s.fsm.State().Config.GetPrimaryStartTimeoutMs()) * time.Millisecond
	if since < limit {
		return fmt.Errorf("primary PostgreSQL is down for %v (restarting in place, giving up after %v): %w", since.Round(time.Millisecond), limit, cause)
	}
	return a.stepDown(ctx, p, fmt.Sprintf("postgres did not come back within primary_start_timeout (%v): %v", limit, cause))
}

// isDiskFull reports a start failure whose server log says a volume of
// the data directory is full.
func isDiskFull(err error) bool {
	return err != nil && errors.Is(err, pgnode.ErrStartFailed) && strings.Contains(err.Error(), "No space left on device")
}

func (a *actuator) clearCrash() {
	a.mu.Lock()
	a.crashedAt = time.Time{}
	a.mu.Unlock()
}

// stepDown stops PostgreSQL cleanly and releases the lease with the WAL
// position it stopped at, so the decider can hand over without waiting.
func (a *actuator) stepDown(ctx context.Context, p *pb.PrimaryAssignment, reason string) error {
	if err := a.stop(ctx, pgnode.StopFast); err != nil {
		if err := a.stop(ctx, pgnode.StopImmediate); err != nil {
			return fmt.Errorf("step down: stop: %w", err)
		}
	}
	var lsn uint64
	if info, err := a.pg.Inspect(ctx); err == nil && info.CleanShutdown {
		lsn = uint64(info.CheckpointLSN)
	}
	req := &pb.ReleaseLease{MemberId: a.s.opts.NodeID, Epoch: p.Epoch, Lsn: lsn, Reason: reason}
	if err := a.s.callLeader(ctx, func(ctx context.Context, c pb.AdminClient) error {
		_, err := c.ReleaseLease(ctx, req)
		return err
	}); err != nil && !errors.Is(fromStatus(err), fsm.ErrStaleEpoch) {
		return fmt.Errorf("release lease: %w", err)
	}
	a.mu.Lock()
	a.released = p.Epoch
	a.mu.Unlock()
	a.log.Info("stepped down", "epoch", p.Epoch, "lsn", fmt.Sprintf("%X", lsn), "reason", reason)
	return nil
}

func (a *actuator) releasedEpoch() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.released
}

func (a *actuator) markApplied(epoch uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if epoch > a.appliedEpoch {
		a.log.Info("converged", "epoch", epoch)
		a.appliedEpoch = epoch
		// A promoted standby inherited its synchronous_standby_names
		// from the old primary (FACTS.md): set it again.
		a.pgSyncSet = false
		a.slots = nil
		// The decider waits for this (to expose a new primary): tell it
		// now rather than at the next heartbeat.
		defer a.s.wakeNode()
	}
}

// dropStandbySlots removes, once per epoch, the slots this standby still
// holds from a time it was (or was about to become) the primary: a former
// primary that rejoined without pg_rewind keeps its pg_replslot, a
// candidate creates its peers' slots before it promotes, and a slot
// retains WAL on a standby too, while nothing streams from a standby here.
func (a *actuator) dropStandbySlots(ctx context.Context, epoch uint64) {
	a.mu.Lock()
	done := a.standbySlotsEpoch == epoch
	a.mu.Unlock()
	if done {
		return
	}
	if err := a.pg.EnsureSlots(ctx, nil); err != nil {
		a.log.Warn("dropping a standby's replication slots", "err", err)
		return
	}
	a.mu.Lock()
	a.standbySlotsEpoch = epoch
	a.mu.Unlock()
}

// slotNames lists a slot for every other PostgreSQL member.
func (a *actuator) slotNames(st *pb.ClusterState) []string {
	var out []string
	for _, m := range st.Members {
		if m.Id != a.s.opts.NodeID && m.Role == pb.MemberRole_MEMBER_ROLE_POSTGRES {
			out = append(out, pgnode.SlotName(SlotPrefix, m.Id))
		}
	}
	return out
}

// convergeStandby makes this node a standby of the committed primary.
func (a *actuator) convergeStandby(ctx context.Context, st *pb.ClusterState, info pgnode.DataDirInfo) error {
	p := st.Primary
	pm := fsm.FindMember(st, p.MemberId)
	if pm == nil {
		return fmt.Errorf("primary %s is not a member", p.MemberId)
	}
	up, err := upstreamOf(pm, a.s.opts.NodeID)
	if err != nil {
		return err
	}
	sysid := st.Identity.GetSystemIdentifier()
	if sysid == 0 {
		// Nothing may touch a data directory before its system identifier
		// has been checked against the cluster's. The primary may not
		// have recorded it yet (bootstrap, adopt), or this node's FSM is
		// part-way through catching up after a restart and holds the
		// assignment but not yet the identifier: acting now would take a
		// foreign data directory for a former primary and rewind or
		// re-clone it. A running server is left as it is.
		return nil
	}
	paused := a.paused(st)
	if !info.Initialized {
		if paused {
			return fmt.Errorf("%w: the data directory is empty; not cloning it", ErrPaused)
		}
		a.setPhase(pb.PgState_PG_STATE_CLONING)
		err := a.clone(ctx, st, up)
		a.setPhase(pb.PgState_PG_STATE_UNKNOWN)
		if err != nil {
			return err
		}
		info, err = a.pg.Inspect(ctx)
		if err != nil {
			return err
		}
	}
	if !info.Standby {
		if !info.Running && a.holdRejoin(st) {
			// A stopped former primary waits until the new one is
			// exposed, and a little longer (see holdRejoin). (A running
			// one is stopped at once, below.)
			return nil
		}
		if paused {
			return a.holdFormerPrimary(ctx, info)
		}
		// A former primary: never start it writable (FACTS.md). Rewind it
		// onto the new primary's timeline; clone again if rewind cannot.
		if err := a.rejoin(ctx, p, up); err != nil {
			return err
		}
	}
	// A standby already running under this agent and following up needs
	// nothing: skip pgnode's Start (which rewrites and reloads), so a round
	// is cheap and an assignment is acted on at once.
	a.mu.Lock()
	following := a.following == up && info.Running && info.Standby && a.pg.Process().State == pgnode.ProcessRunning
	a.mu.Unlock()
	if !following {
		if paused && !info.Running {
			return fmt.Errorf("%w: PostgreSQL is stopped; not starting it", ErrPaused)
		}
		if err := a.pg.Start(ctx, pgnode.StartOptions{Role: pgnode.RoleStandby, Upstream: &up, ExpectSystemID: sysid}); err != nil {
			if errors.Is(err, pgnode.ErrRoleMismatch) && !paused {
				return a.rejoin(ctx, p, up)
			}
			return fmt.Errorf("start standby of %s: %w", p.MemberId, err)
		}
		a.mu.Lock()
		a.following = up
		a.mu.Unlock()
		if !info.Running {
			a.lifecycle(cbStart)
		}
	} else if !paused { // a diverged standby is rewound once resumed
		if rejoined, err := a.rejoinIfDiverged(ctx, p, up); rejoined || err != nil {
			return err
		}
	}
	a.markApplied(p.Epoch)
	a.noteRole("replica")
	a.dropStandbySlots(ctx, p.Epoch)
	a.presetPromotionSync(ctx, st)
	return a.applyParameters(ctx, st)
}

// paused reports whether maintenance mode holds this round: nothing is
// started, stopped, promoted by a start, rewound or cloned on the
// actuator's own initiative while the cluster is paused. An operator's
// restart or reinit still runs its rounds. Lease renewal and the lease
// fence go on regardless: a primary that cannot renew stops taking writes
// (invariant 1 beats maintenance mode), and so does a running former
// primary (holdFormerPrimary).
func (a *actuator) paused(st *pb.ClusterState) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return st.GetPaused() && !a.explicit
}

// noteFenced records that the lease of epoch ran out on this node.
func (a *actuator) noteFenced(epoch uint64) {
	a.mu.Lock()
	a.fencedEpoch = epoch
	a.mu.Unlock()
}

// unfencing reports whether this primary's PostgreSQL was stopped by the
// lease fence of epoch, and not started since: starting it again once the
// lease is back undoes the fence, which maintenance mode allows (the
// operator paused a running primary; the fence is not management).
func (a *actuator) unfencing(epoch uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return epoch != 0 && a.fencedEpoch == epoch
}

// holdFormerPrimary is a paused round's answer to a former primary: one
// that runs is writable while another member is assigned, so it is
// stopped (the one exception to maintenance mode, as for the lease
// fence); it is neither rewound nor started until the cluster resumes.
func (a *actuator) holdFormerPrimary(ctx context.Context, info pgnode.DataDirInfo) error {
	if info.Running {
		a.mu.Lock()
		a.following = pgnode.Upstream{}
		a.mu.Unlock()
		if err := a.stop(ctx, pgnode.StopFast); err != nil {
			if err := a.stop(ctx, pgnode.StopImmediate); err != nil {
				return fmt.Errorf("stop former primary: %w", err)
			}
		}
		a.log.Warn("stopped a running former primary; paused: not rewinding it until resumed")
	}
	return fmt.Errorf("%w: former primary; not rewinding or starting it", ErrPaused)
}

// clone creates this node's data directory: from a member tagged
// clonefrom when there is one (to spare the primary), else, or if that
// fails, from the primary.
func (a *actuator) clone(ctx context.Context, st *pb.ClusterState, primary pgnode.Upstream) error {
	for _, m := range st.Members {
		if m.Id == a.s.opts.NodeID || m.Id == st.Primary.MemberId || !m.Tags.GetClonefrom() || m.Role != pb.MemberRole_MEMBER_ROLE_POSTGRES {
			continue
		}
		src, err := upstreamOf(m, a.s.opts.NodeID)
		if err != nil {
			continue
		}
		src.SlotName = "" // slots live on the primary only
		a.log.Info("cloning from a clonefrom member", "source", m.Id)
		err = a.pg.CloneFrom(ctx, src)
		if err == nil {
			return nil
		}
		a.log.Warn("clone from clonefrom member failed; cloning from the primary", "source", m.Id, "err", err)
	}
	a.log.Info("cloning from primary", "primary", st.Primary.MemberId, "epoch", st.Primary.Epoch)
	if err := a.pg.CloneFrom(ctx, primary); err != nil {
		return fmt.Errorf("clone from %s: %w", st.Primary.MemberId, err)
	}
	return nil
}

// rejoinDelay is how long a stopped former primary waits after the new
// primary's exposure before it rejoins, when nothing waits for it: its
// rewind check and start (a PostgreSQL start is about 100 ms of CPU) would
// compete with the promotion's end and PgBouncer's first logins on the new
// primary. Measured on two cores: exposure → first write through
// PgBouncer median 120 ms without the wait, 90 ms with it.
const rejoinDelay = 500 * time.Millisecond

// holdRejoin reports whether a stopped former primary should wait before
// it rejoins the primary of st: until that primary is exposed (nothing
// waits for the former one, and its rewind check and start would compete
// with the promotion), then for rejoinDelay, and it asks for a round when
// that is over. The delay is skipped when the new primary may wait for
// this node as a synchronous standby (synchronous mode, unless the
// synchronous standbys recorded for this epoch are enough without it), and
// when this node did not see the epoch before its exposure (a restarted
// agent: the switchover is long over).
func (a *actuator) holdRejoin(st *pb.ClusterState) bool {
	p := st.Primary
	a.mu.Lock()
	if !p.Exposed {
		a.exposedEpoch, a.exposedSeen = p.Epoch, time.Time{}
		a.mu.Unlock()
		return true
	}
	if a.exposedEpoch != p.Epoch {
		a.mu.Unlock()
		return false
	}
	if a.exposedSeen.IsZero() {
		a.exposedSeen = time.Now()
	}
	wait := rejoinDelay - time.Since(a.exposedSeen)
	a.mu.Unlock()
	if wait <= 0 || a.neededAsSync(st) {
		return false
	}
	time.AfterFunc(wait, a.poke)
	return true
}

// neededAsSync reports whether the primary of st may wait for this node as
// a synchronous standby.
func (a *actuator) neededAsSync(st *pb.ClusterState) bool {
	if st.Config.GetSynchronousMode() == pb.SynchronousMode_SYNCHRONOUS_MODE_OFF {
		return false
	}
	s := st.Sync
	if s.GetEpoch() != st.Primary.GetEpoch() || s.GetDegraded() || slices.Contains(s.GetMembers(), a.s.opts.NodeID) {
		return true
	}
	return len(s.GetMembers()) < int(max(st.Config.GetSynchronousNodeCount(), 1))
}

// rejoin turns a former primary into a standby of up: stop, pg_rewind,
// and if that fails, reinit (clone again).
func (a *actuator) rejoin(ctx context.Context, p *pb.PrimaryAssignment, up pgnode.Upstream) error {
	a.log.Info("former primary rejoins as standby", "primary", p.MemberId, "epoch", p.Epoch)
	a.mu.Lock()
	a.following = pgnode.Upstream{}
	a.mu.Unlock()
	if err := a.stop(ctx, pgnode.StopFast); err != nil {
		if err := a.stop(ctx, pgnode.StopImmediate); err != nil {
			return fmt.Errorf("stop former primary: %w", err)
		}
	}
	err := a.pg.Rewind(ctx, up)
	if err == nil {
		a.log.Info("former primary is a standby now", "primary", p.MemberId)
		return nil
	}
	if errors.Is(err, pgnode.ErrSourceInRecovery) {
		// Not a failed rewind: the new primary is still promoting.
		return fmt.Errorf("rejoin waits for %s to finish its promotion: %w", p.MemberId, err)
	}
	a.log.Warn("pg_rewind failed; cloning again", "err", err)
	a.setPhase(pb.PgState_PG_STATE_CLONING)
	defer a.setPhase(pb.PgState_PG_STATE_UNKNOWN)
	if err := a.pg.Reinit(ctx, up); err != nil {
		return fmt.Errorf("reinit from %s after failed rewind: %w", p.MemberId, err)
	}
	return nil
}

// applyParameters applies the dynamic PostgreSQL parameters.
func (a *actuator) applyParameters(ctx context.Context, st *pb.ClusterState) error {
	v := st.Config.GetVersion()
	a.mu.Lock()
	done := a.paramsVersion == v
	a.mu.Unlock()
	if done {
		return nil
	}
	if _, err := a.pg.SetParameters(ctx, st.Config.GetPostgresParameters()); err != nil {
		return err
	}
	a.mu.Lock()
	a.paramsVersion = v
	a.mu.Unlock()
	return nil
}
