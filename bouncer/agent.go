package bouncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// AgentRouter is what the Agent needs of a Router; *Router implements it.
type AgentRouter interface {
	Fence(ctx context.Context, db string, epoch uint64, mode FenceMode) error
	Hold(ctx context.Context, db string, epoch uint64, mode FenceMode) error
	Expose(ctx context.Context, db string, epoch uint64, route Route) error
	Stage(ctx context.Context, db string, epoch uint64, route Route) error
	Status(db string) (Status, bool)
	Tune(ctx context.Context, opts TuneOptions) error
}

// DatabaseSpec is one PgBouncer database routed to a cluster's primary.
type DatabaseSpec struct {
	// Name is the database name clients use in PgBouncer.
	Name string
	// DBName is the database on the PostgreSQL server; empty means Name.
	DBName string
	// User forces the server login user; empty keeps the client's.
	User string
	// Pool holds per-database pool settings.
	Pool PoolOptions
}

// route is r (a primary's host and port) with d's database settings.
func (d DatabaseSpec) route(r Route) Route {
	r.DBName, r.User, r.Pool = d.DBName, d.User, d.Pool
	return r
}

// ClusterSpec is one cluster the agent routes to.
type ClusterSpec struct {
	// Name is the cluster's cluster_name.
	Name string
	// Endpoints are gRPC addresses of the cluster's members.
	Endpoints []string
	// Databases are routed to the cluster's primary.
	Databases []DatabaseSpec
}

// AgentOptions configures NewAgent.
type AgentOptions struct {
	// AgentID names the agent to the quorum; unique among the agents of the
	// clusters it serves.
	AgentID string
	// ContactLease is how long the agent keeps routing a cluster without a
	// successful heartbeat to any of its members; then it pauses the
	// cluster's databases by itself. The quorum waits this long (plus its
	// safety margin) for an agent that stopped answering.
	ContactLease time.Duration
	// Clusters are served independently of one another.
	Clusters []ClusterSpec
	// Router is shared by all clusters.
	Router AgentRouter
	// Dial returns a client for a member's gRPC address (rpc.Pool.Client).
	Dial func(addr string) (pb.AdminClient, error)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Tune is applied at start (DefaultTune when zero).
	Tune TuneOptions
	// PauseTimeout bounds a planned fence (PAUSE), which waits for
	// transactions in flight; then the agent goes on without them (the
	// pause flag holds new ones). Default 5 s.
	PauseTimeout time.Duration
	// EmergencyPauseTimeout bounds the wait for PAUSE's reply when fencing
	// after a failover. Default 300 ms; negative: do not wait.
	EmergencyPauseTimeout time.Duration
}

// Agent keeps one PgBouncer routed to the primaries of one or more
// clusters: per cluster it watches the quorum's state, fences old primaries
// before it acknowledges a new epoch, exposes a primary only once the
// quorum marked it exposed, and pauses the cluster's databases when it
// loses contact with the quorum. See DESIGN.md in this directory.
type Agent struct {
	opts     AgentOptions
	log      *slog.Logger
	clusters []*clusterRun
	started  sync.Once
}

// ClusterStatus is the agent's view of one cluster.
type ClusterStatus struct {
	// Name is the cluster name.
	Name string
	// Epoch is the newest epoch seen (local state or the leader's answers).
	Epoch uint64
	// Index is the Raft index of the local state copy.
	Index uint64
	// Primary is the primary of the local state, and PrimaryExposed whether
	// the quorum has exposed it.
	Primary        string
	PrimaryExposed bool
	// Acked is the newest epoch acknowledged to the quorum: the agent routes
	// to no primary older than it.
	Acked uint64
	// Exposed is the member every database of the cluster routes to; empty
	// while any of them is fenced or not routed yet.
	Exposed string
	// Fenced is true while any database of the cluster is fenced.
	Fenced bool
	// SelfFenced is true while the agent has no contact with the quorum.
	SelfFenced bool
	// LastContact is when the last successful heartbeat was sent (zero if
	// none yet).
	LastContact time.Time
	// WatchEndpoint is the member the watch stream runs on ("" if none).
	WatchEndpoint string
	// Databases is the Router's state of each database.
	Databases map[string]Status
	// Err is the last error, if the last attempt failed.
	Err string
}

// NewAgent checks opts and returns an Agent; Run starts it.
func NewAgent(opts AgentOptions) (*Agent, error) {
	var errs []error
	if opts.AgentID == "" {
		errs = append(errs, errors.New("AgentID is empty"))
	}
	if opts.ContactLease <= 0 {
		errs = append(errs, errors.New("ContactLease must be positive"))
	}
	if opts.Router == nil || opts.Dial == nil {
		errs = append(errs, errors.New("router and Dial are required"))
	}
	if len(opts.Clusters) == 0 {
		errs = append(errs, errors.New("no cluster to serve"))
	}
	seenDB, seenCluster := map[string]string{}, map[string]bool{}
	for _, c := range opts.Clusters {
		switch {
		case c.Name == "":
			errs = append(errs, errors.New("a cluster has no name"))
		case seenCluster[c.Name]:
			errs = append(errs, fmt.Errorf("cluster %q is listed twice", c.Name))
		}
		seenCluster[c.Name] = true
		if len(c.Endpoints) == 0 {
			errs = append(errs, fmt.Errorf("cluster %q has no endpoints", c.Name))
		}
		if len(c.Databases) == 0 {
			errs = append(errs, fmt.Errorf("cluster %q has no databases", c.Name))
		}
		for _, d := range c.Databases {
			if err := ValidateName(d.Name); err != nil {
				errs = append(errs, fmt.Errorf("cluster %q: %w", c.Name, err))
			}
			if other, dup := seenDB[d.Name]; dup {
				errs = append(errs, fmt.Errorf("database %q is routed by clusters %q and %q", d.Name, other, c.Name))
			}
			seenDB[d.Name] = c.Name
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bouncer: agent options: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PauseTimeout <= 0 {
		opts.PauseTimeout = 5 * time.Second
	}
	if opts.EmergencyPauseTimeout == 0 {
		opts.EmergencyPauseTimeout = 300 * time.Millisecond
	}
	if opts.Tune == (TuneOptions{}) {
		opts.Tune = DefaultTune
	}
	a := &Agent{opts: opts, log: opts.Logger.With("component", "bouncer-agent", "agent", opts.AgentID)}
	for _, c := range opts.Clusters {
		a.clusters = append(a.clusters, newClusterRun(a, c))
	}
	return a, nil
}

// Run serves every cluster until ctx ends, then waits for its goroutines
// and returns nil. The routes stay as they are: a stopped agent neither
// fences nor exposes, and the quorum stops waiting for it once its contact
// lease has run out.
func (a *Agent) Run(ctx context.Context) error {
	first := false
	a.started.Do(func() { first = true })
	if !first {
		return errors.New("bouncer: Agent.Run called twice")
	}
	a.log.Info("bouncer agent starting", "clusters", len(a.clusters), "contact_lease", a.opts.ContactLease)
	var wg sync.WaitGroup
	wg.Go(func() { a.tune(ctx) })
	for _, c := range a.clusters {
		c.start(ctx, &wg)
	}
	<-ctx.Done()
	wg.Wait()
	a.log.Info("bouncer agent stopped")
	return nil
}

// tune applies the PgBouncer timers, retrying until PgBouncer answers.
func (a *Agent) tune(ctx context.Context) {
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.opts.Router.Tune(tctx, a.opts.Tune)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		a.log.Warn("cannot tune PgBouncer; retrying", "err", err)
		if !b.sleep(ctx) {
			return
		}
	}
}

// Status returns the agent's view of each cluster, in configuration order.
func (a *Agent) Status() []ClusterStatus {
	out := make([]ClusterStatus, 0, len(a.clusters))
	for _, c := range a.clusters {
		out = append(out, c.status())
	}
	return out
}

// backoff is a doubling delay with a cap.
type backoff struct{ base, cap, cur time.Duration }

func newBackoff(base, cap time.Duration) *backoff { return &backoff{base: base, cap: cap} }

func (b *backoff) reset() { b.cur = 0 }

func (b *backoff) next() time.Duration {
	b.cur = min(max(2*b.cur, b.base), b.cap)
	return b.cur
}

// sleep waits for the next delay; false if ctx ended first.
func (b *backoff) sleep(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// statusMap collects the Router's state of dbs.
func statusMap(r AgentRouter, dbs []DatabaseSpec) map[string]Status {
	m := make(map[string]Status, len(dbs))
	for _, d := range dbs {
		if s, ok := r.Status(d.Name); ok {
			m[d.Name] = s
		}
	}
	return m
}
