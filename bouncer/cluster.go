package bouncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// clusterRun serves one cluster with three goroutines: the watch keeps the
// local state, the heartbeat renews the contact lease and carries the
// acknowledged epoch, and the reconciler drives the Router from both. A
// PAUSE that blocks in the reconciler never delays a heartbeat.
type clusterRun struct {
	a    *Agent
	spec ClusterSpec
	log  *slog.Logger

	wake    chan struct{} // reconcile: state, contact or epoch changed
	ackNow  chan struct{} // heartbeat now: the acknowledged epoch grew
	rewatch chan struct{} // the watch lags: move it to another member
	// toLeader: a heartbeat named a new leader among the endpoints; move
	// the watch there (leaderEp), since the leader applies a decision
	// before any follower does.
	toLeader chan struct{}

	mu          sync.Mutex
	st          *pb.ClusterState // adopted local state; never mutated once published
	newest      uint64           // newest epoch of st and the heartbeat answers
	hbEpoch     uint64           // epoch of the leader's last heartbeat answer
	lagSince    time.Time        // since when hbEpoch > st's epoch (zero: no lag)
	lastOK      time.Time        // when the last successful heartbeat was sent
	everOK      bool
	acked       uint64
	selfFenced  bool
	exposed     string
	lastErr     string
	hbEndpoint  int
	leaderEp    int // index in spec.Endpoints of the last leader named; -1 unknown
	watchOn     string
	startedAt   time.Time
	hbFailing   bool
	watchFailed bool
}

func newClusterRun(a *Agent, spec ClusterSpec) *clusterRun {
	return &clusterRun{
		a: a, spec: spec, log: a.log.With("cluster", spec.Name),
		wake: make(chan struct{}, 1), ackNow: make(chan struct{}, 1), rewatch: make(chan struct{}, 1),
		toLeader: make(chan struct{}, 1), leaderEp: -1,
	}
}

// notify wakes the receiver of ch without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *clusterRun) start(ctx context.Context, wg *sync.WaitGroup) {
	c.mu.Lock()
	// A starting agent counts its contact lease from its start: it keeps
	// the routes it finds for at most one lease without contact.
	c.startedAt = time.Now()
	c.lastOK = c.startedAt
	c.mu.Unlock()
	wg.Go(func() { c.watchLoop(ctx) })
	wg.Go(func() { c.heartbeatLoop(ctx) })
	wg.Go(func() { c.reconcileLoop(ctx) })
}

func (c *clusterRun) lease() time.Duration { return c.a.opts.ContactLease }

// ---- watch ----

// watchLoop keeps a Watch stream on one member, moving to the next
// endpoint when the stream fails, resuming from the last index seen.
func (c *clusterRun) watchLoop(ctx context.Context) {
	b := newBackoff(20*time.Millisecond, time.Second)
	eps := c.spec.Endpoints
	i, fromZero := 0, false
	for ctx.Err() == nil {
		ep := eps[i%len(eps)]
		got, err := c.watchOnce(ctx, ep, fromZero)
		if ctx.Err() != nil {
			return
		}
		fromZero = false
		if got {
			b.reset()
		}
		switch {
		case status.Code(err) == codes.Aborted:
			// The member cut us off (we fell behind, or its state was
			// restored): start again from a snapshot, same member.
			c.log.Info("watch asks for a resync; starting from a snapshot", "endpoint", ep, "err", err)
			fromZero = true
			continue
		case errors.Is(err, errToLeader):
			c.mu.Lock()
			j := c.leaderEp
			c.mu.Unlock()
			if j >= 0 {
				c.log.Info("moving the watch to the leader", "from", ep, "to", eps[j])
				i = j
				continue
			}
		case errors.Is(err, errLagging):
			c.log.Warn("watch lags behind the leader; moving to another member", "endpoint", ep)
		default:
			c.mu.Lock()
			first := !c.watchFailed
			c.watchFailed = true
			c.mu.Unlock()
			if first {
				c.log.Warn("watch failed; trying the next member", "endpoint", ep, "err", err)
			} else {
				c.log.Debug("watch failed", "endpoint", ep, "err", err)
			}
		}
		i++
		if i%len(eps) == 0 || !got {
			if !b.sleep(ctx) {
				return
			}
		}
	}
}

// watchOnce runs one Watch stream until it fails. got reports whether any
// event arrived.
func (c *clusterRun) watchOnce(ctx context.Context, ep string, fromZero bool) (got bool, err error) {
	cl, err := c.a.opts.Dial(ep)
	if err != nil {
		return false, err
	}
	select {
	case <-c.rewatch: // a lag signal for an earlier stream
	default:
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lagged, moved := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-c.rewatch:
			close(lagged)
			cancel()
		case <-c.toLeader:
			close(moved)
			cancel()
		case <-sctx.Done():
		}
	}()
	c.mu.Lock()
	local := c.st // base for the deltas after from
	c.mu.Unlock()
	from := local.GetIndex()
	if fromZero || local == nil {
		from, local = 0, nil
	}
	if local != nil {
		local = proto.Clone(local).(*pb.ClusterState)
	}
	stream, err := cl.Watch(sctx, &pb.WatchRequest{FromIndex: from})
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	c.watchOn = ep
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.watchOn = ""
		c.mu.Unlock()
		select {
		case <-lagged:
			err = errLagging
		case <-moved:
			err = errToLeader
		default:
		}
	}()
	for {
		ev, err := stream.Recv()
		if err != nil {
			return got, err
		}
		if !got {
			got = true
			c.mu.Lock()
			recovered := c.watchFailed
			c.watchFailed = false
			c.mu.Unlock()
			if recovered {
				c.log.Info("watch running", "endpoint", ep, "from_index", from)
			}
		}
		if snap := ev.GetSnapshot(); snap != nil {
			if name := snap.GetIdentity().GetName(); name != "" && name != c.spec.Name {
				return got, fmt.Errorf("%s: %w: it serves %q", ep, ErrWrongCluster, name)
			}
		} else if local != nil && ev.Index <= local.Index {
			continue // already applied
		}
		local = fsm.ApplyEvent(local, ev)
		c.adopt(local)
	}
}

// adopt publishes a copy of the stream's state, unless it is older than
// the adopted one (a lagging member answered with an older snapshot; its
// stream is kept until it catches up).
func (c *clusterRun) adopt(local *pb.ClusterState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != nil && local.Index < c.st.Index {
		return
	}
	c.st = proto.Clone(local).(*pb.ClusterState)
	e := c.st.GetPrimary().GetEpoch()
	c.newest = max(c.newest, e)
	if e >= c.hbEpoch {
		c.lagSince = time.Time{}
	}
	notify(c.wake)
}

// ---- heartbeat ----

// heartbeatLoop sends a BouncerHeartbeat every lease/4, and at once when
// the acknowledged epoch grew.
func (c *clusterRun) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(max(c.lease()/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		c.heartbeat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.ackNow:
		}
	}
}

// heartbeat tries the members in turn, starting with the last one that
// answered, until one answers.
func (c *clusterRun) heartbeat(ctx context.Context) {
	dbs := make([]string, len(c.spec.Databases))
	for i, d := range c.spec.Databases {
		dbs[i] = d.Name
	}
	c.mu.Lock()
	req := &pb.BouncerHeartbeatRequest{
		AgentId: c.a.opts.AgentID, ClusterName: c.spec.Name,
		ContactLeaseMs: c.lease().Milliseconds(), AckedEpoch: c.acked, Databases: dbs,
	}
	first := c.hbEndpoint
	c.mu.Unlock()
	timeout := max(c.lease()/8, 100*time.Millisecond)
	var errs []error
	eps := c.spec.Endpoints
	for k := range eps {
		i := (first + k) % len(eps)
		sent := time.Now()
		resp, err := c.send(ctx, eps[i], req, timeout)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", eps[i], err))
			continue
		}
		c.mu.Lock()
		if sent.After(c.lastOK) {
			c.lastOK = sent
		}
		c.everOK = true
		c.hbEndpoint = i
		if j := slices.Index(eps, resp.GetLeaderGrpcAddr()); j >= 0 && j != c.leaderEp {
			c.leaderEp = j
			if c.watchOn != eps[j] {
				notify(c.toLeader)
			}
		}
		c.hbEpoch = resp.GetEpoch()
		c.newest = max(c.newest, c.hbEpoch)
		if c.hbEpoch > c.st.GetPrimary().GetEpoch() {
			if c.lagSince.IsZero() {
				c.lagSince = sent
			}
		} else {
			c.lagSince = time.Time{}
		}
		recovered := c.hbFailing
		c.hbFailing = false
		c.mu.Unlock()
		if recovered {
			c.log.Info("heartbeat answered again", "endpoint", eps[i], "acked_epoch", req.AckedEpoch)
		}
		notify(c.wake)
		return
	}
	c.mu.Lock()
	firstFailure := !c.hbFailing
	c.hbFailing = true
	c.lastErr = errors.Join(errs...).Error()
	c.mu.Unlock()
	if firstFailure {
		c.log.Warn("no member answered the heartbeat", "err", errors.Join(errs...))
	}
}

func (c *clusterRun) send(ctx context.Context, ep string, req *pb.BouncerHeartbeatRequest, timeout time.Duration) (*pb.BouncerHeartbeatResponse, error) {
	cl, err := c.a.opts.Dial(ep)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return cl.BouncerHeartbeat(cctx, req)
}

// ---- reconcile ----

// reconcileLoop runs plan and carries it out whenever something changed,
// when the contact lease runs out, and to retry failed steps.
func (c *clusterRun) reconcileLoop(ctx context.Context) {
	b := newBackoff(50*time.Millisecond, 2*time.Second)
	lagGrace := max(c.lease()/2, 50*time.Millisecond)
	for {
		failed := c.reconcile(ctx, lagGrace)
		// Wake up when the contact lease runs out, when a lag outlasts its
		// grace, or to retry.
		var wait time.Duration = time.Hour
		c.mu.Lock()
		now := time.Now()
		if d := c.lastOK.Add(c.lease()).Sub(now); d > 0 {
			wait = d + time.Millisecond
		}
		if !c.lagSince.IsZero() {
			if d := c.lagSince.Add(lagGrace).Sub(now); d > 0 {
				wait = min(wait, d+time.Millisecond)
			}
		}
		c.mu.Unlock()
		if failed {
			wait = min(wait, b.next())
		} else {
			b.reset()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// reconcile plans and executes one round; true if a step failed.
func (c *clusterRun) reconcile(ctx context.Context, lagGrace time.Duration) (failed bool) {
	r := c.a.opts.Router
	c.mu.Lock()
	now := time.Now()
	in := planInput{
		st: c.st, newest: c.newest, dbs: c.spec.Databases, status: r.Status,
		contact: now.Sub(c.lastOK) < c.lease(), confirmed: c.everOK,
		lagging: !c.lagSince.IsZero() && now.Sub(c.lagSince) >= lagGrace,
	}
	wasSelfFenced := c.selfFenced
	c.selfFenced = !in.contact
	lastOK := c.lastOK
	c.mu.Unlock()
	if in.contact == wasSelfFenced {
		if in.contact {
			c.log.Info("contact with the quorum is back")
		} else {
			c.log.Warn("no contact with the quorum for longer than the contact lease; pausing the cluster's databases",
				"contact_lease", c.lease(), "last_contact_ago", now.Sub(lastOK))
		}
	}
	if in.lagging {
		notify(c.rewatch)
	}
	out := plan(in)
	errs := c.execute(ctx, out.ops, !in.contact)
	if ctx.Err() != nil {
		return false
	}
	if out.problem != "" {
		errs = append(errs, errors.New(out.problem))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(errs) > 0 {
		c.lastErr = errors.Join(errs...).Error()
	} else {
		c.lastErr = ""
	}
	if len(errs) == 0 {
		c.exposed = out.expose
	} else {
		c.exposed = ""
	}
	if out.epoch > c.acked && ackable(out.epoch, c.spec.Databases, r.Status) {
		c.log.Info("acknowledging epoch", "epoch", out.epoch, "previous", c.acked)
		c.acked = out.epoch
		notify(c.ackNow)
	}
	if out.problem != "" && len(out.ops) == 0 {
		c.log.Warn("cannot expose", "problem", out.problem)
	}
	return len(errs) > 0
}

// execute runs ops, one goroutine per database (ops of one database in
// order, stopping at its first failure), and returns the failures.
func (c *clusterRun) execute(ctx context.Context, ops []op, selfFence bool) []error {
	if len(ops) == 0 {
		return nil
	}
	byDB := map[string][]op{}
	var order []string
	for _, o := range ops {
		if _, ok := byDB[o.db]; !ok {
			order = append(order, o.db)
		}
		byDB[o.db] = append(byDB[o.db], o)
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, db := range order {
		wg.Go(func() {
			for _, o := range byDB[db] {
				if err := c.do(ctx, o, selfFence); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// do runs one op. A fence whose PAUSE outlasts its timeout (a transaction
// that does not end) is escalated to the emergency mode, which only checks
// that the pause flag is set.
func (c *clusterRun) do(ctx context.Context, o op, selfFence bool) error {
	r := c.a.opts.Router
	log := c.log.With("db", o.db, "epoch", o.epoch)
	start := time.Now()
	switch o.kind {
	case opExpose:
		log.Info("exposing", "host", o.route.Host, "port", o.route.Port, "why", o.why)
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := r.Expose(ectx, o.db, o.epoch, o.route)
		if err != nil {
			log.Warn("expose failed", "err", err, "took", time.Since(start))
		}
		return err
	case opStage:
		// Only an optimisation: a failure leaves the full path to Expose.
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := r.Stage(sctx, o.db, o.epoch, o.route); err != nil {
			log.Warn("staging the next route failed; the exposure will RELOAD", "err", err)
		}
		return nil
	case opFence, opHold:
		call := r.Fence
		if o.kind == opHold {
			call = r.Hold
		}
		log.Info("fencing", "op", o.kind.String(), "mode", o.mode.String(), "why", o.why)
		// Every fence starts with a bounded PAUSE, which lets the
		// transactions in flight finish. The pause flag is set as soon as
		// PgBouncer reads the command, so a PAUSE that does not finish in
		// time (a COMMIT stuck on the old primary, a blackholed host) has
		// fenced all the same; the emergency mode confirms the flag. KILL,
		// which would end the stuck ones, can crash PgBouncer (see
		// Admin.Kill).
		timeout := c.a.opts.PauseTimeout
		if o.mode == FenceEmergency {
			timeout = c.a.opts.EmergencyPauseTimeout
		}
		if selfFence {
			// The quorum stops waiting for this agent soon: do not let a
			// long transaction hold up the fence.
			timeout = min(timeout, max(c.lease()/10, 50*time.Millisecond))
		}
		if timeout > 0 {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			err := call(pctx, o.db, o.epoch, FencePlanned)
			timedOut := pctx.Err() != nil
			cancel()
			if err == nil || errors.Is(err, ErrStaleEpoch) || !timedOut || ctx.Err() != nil {
				if err != nil {
					log.Warn("fence failed", "op", o.kind.String(), "err", err)
				}
				return err
			}
			log.Warn("PAUSE did not finish in time (transactions in flight); confirming the pause flag", "timeout", timeout, "err", err)
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := call(fctx, o.db, o.epoch, FenceEmergency)
		if err != nil {
			log.Warn("fence failed", "op", o.kind.String(), "mode", "emergency", "err", err)
		}
		return err
	}
	return fmt.Errorf("bouncer: unknown op %v", o.kind)
}

func (c *clusterRun) status() ClusterStatus {
	c.mu.Lock()
	s := ClusterStatus{
		Name: c.spec.Name, Epoch: c.newest, Index: c.st.GetIndex(),
		Primary: c.st.GetPrimary().GetMemberId(), PrimaryExposed: c.st.GetPrimary().GetExposed(),
		Acked: c.acked, Exposed: c.exposed, SelfFenced: c.selfFenced,
		WatchEndpoint: c.watchOn, Err: c.lastErr,
	}
	if c.everOK {
		s.LastContact = c.lastOK
	}
	c.mu.Unlock()
	s.Databases = statusMap(c.a.opts.Router, c.spec.Databases)
	for _, d := range s.Databases {
		s.Fenced = s.Fenced || d.Fenced
	}
	if s.Fenced {
		s.Exposed = ""
	}
	return s
}
