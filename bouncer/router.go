package bouncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"
)

// FenceMode says how Fence stops routing to the old primary.
type FenceMode int

const (
	// FencePlanned runs PAUSE: in-flight transactions finish, new ones wait.
	// It blocks while a server connection is stuck (e.g. a COMMIT waiting on
	// a dead sync standby); escalate to FenceEmergency when ctx runs out.
	FencePlanned FenceMode = iota + 1
	// FenceEmergency sets the pause flag without waiting for the
	// transactions in flight (Admin.PauseFlag): no new transaction gets a
	// server, and one stuck in a COMMIT on the old primary ends when that
	// server's socket does (the old primary is stopped by its lease guard).
	// It does not KILL: KILL can crash PgBouncer (see Admin.Kill).
	FenceEmergency
)

func (m FenceMode) String() string {
	switch m {
	case FencePlanned:
		return "planned"
	case FenceEmergency:
		return "emergency"
	}
	return fmt.Sprintf("FenceMode(%d)", int(m))
}

// RouterOptions configures NewRouter.
type RouterOptions struct {
	// IncludePath is the [databases] include file the Router owns. An
	// existing file must have been written by Render; its routes and epochs
	// are adopted.
	IncludePath string
	// Admin is the console of the PgBouncer that includes IncludePath.
	Admin *Admin
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// FileMode of the include file (0644 if zero): PgBouncer must read it.
	FileMode os.FileMode
}

// Router keeps one PgBouncer's routes in step with the quorum's epochs. Each
// database moves on its own: operations on one database are serialized by
// that database's lock and never wait for another's PAUSE; only the include
// file rewrite and RELOAD, which cover all databases, are serialized globally.
type Router struct {
	admin *Admin
	path  string
	perm  os.FileMode
	log   *slog.Logger

	mu  sync.Mutex
	dbs map[string]*dbState

	fileMu  sync.Mutex       // serializes write + RELOAD + re-tune
	entries map[string]Entry // desired file content; guarded by fileMu
	tune    *TuneOptions     // re-applied after every RELOAD; guarded by fileMu
	config  map[string]string
}

// dbState is the Router's view of one database. Guarded by its mu.
type dbState struct {
	mu        sync.Mutex
	seen      uint64 // newest epoch seen
	fenced    bool   // fenced and not exposed since
	fencedAt  uint64
	exposedAt uint64 // epoch of the current exposure; 0 when fenced or unknown
	route     Route  // last exposed route
	// stagedAt and staged: the running PgBouncer was RELOADed with staged
	// as db's route for epoch stagedAt while db stays paused (see Stage).
	stagedAt uint64
	staged   Route
}

// Status is a snapshot of one database's routing state.
type Status struct {
	Seen      uint64 // newest epoch seen
	Fenced    bool
	FencedAt  uint64
	ExposedAt uint64
	Route     Route
}

// NewRouter returns a Router for opts.IncludePath, adopting the routes and
// epochs of an existing include file.
func NewRouter(opts RouterOptions) (*Router, error) {
	if opts.Admin == nil || opts.IncludePath == "" {
		return nil, errors.New("bouncer: NewRouter needs Admin and IncludePath")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.FileMode == 0 {
		opts.FileMode = 0o644
	}
	r := &Router{
		admin: opts.Admin, path: opts.IncludePath, perm: opts.FileMode,
		log: opts.Logger.With("component", "bouncer-router"),
		dbs: map[string]*dbState{}, entries: map[string]Entry{},
	}
	data, err := os.ReadFile(opts.IncludePath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bouncer: read include %s: %w", opts.IncludePath, err)
	}
	entries, err := ParseInclude(data)
	if err != nil {
		return nil, fmt.Errorf("bouncer: adopt %s: %w", opts.IncludePath, err)
	}
	for _, e := range entries {
		r.entries[e.Name] = e
		st := &dbState{seen: e.Epoch, route: e.Route}
		if e.Fenced {
			st.fenced, st.fencedAt = true, e.Epoch
		} else {
			st.exposedAt = e.Epoch
		}
		r.dbs[e.Name] = st
	}
	return r, nil
}

// Status returns the state of db, and false if the Router has never seen it.
func (r *Router) Status(db string) (Status, bool) {
	r.mu.Lock()
	st, ok := r.dbs[db]
	r.mu.Unlock()
	if !ok {
		return Status{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return Status{Seen: st.seen, Fenced: st.fenced, FencedAt: st.fencedAt, ExposedAt: st.exposedAt, Route: st.route}, true
}

func (r *Router) state(db string) *dbState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.dbs[db]
	if !ok {
		st = &dbState{}
		r.dbs[db] = st
	}
	return st
}

// Fence stops routing db to its current primary for the move to epoch.
// Planned mode PAUSEs and waits, emergency mode pauses without waiting;
// then the include file is rewritten with db pointing at FencedHost
// (without a RELOAD: the running PgBouncer is already held by the pause),
// so a PgBouncer restart or a later RELOAD cannot route to the old primary
// either. A request with an epoch
// older than the newest seen, or not newer than the current exposure, is
// ignored with a *StaleEpochError. Fencing again at the same epoch repeats
// the commands (escalating planned → emergency this way is allowed).
func (r *Router) Fence(ctx context.Context, db string, epoch uint64, mode FenceMode) error {
	if err := ValidateName(db); err != nil {
		return err
	}
	st := r.state(db)
	st.mu.Lock()
	defer st.mu.Unlock()
	return r.fenceLocked(ctx, db, st, epoch, mode, false)
}

// Hold fences db like Fence, but also while db is exposed at epoch itself:
// for a primary that is stepping down or gave its lease back before the
// next epoch exists, and for an agent that lost contact with the quorum.
// Expose at the same epoch undoes it (the same primary may come back), and
// Fence or Expose at a newer epoch follow it as usual. An epoch older than
// the newest seen gets a *StaleEpochError.
func (r *Router) Hold(ctx context.Context, db string, epoch uint64, mode FenceMode) error {
	if err := ValidateName(db); err != nil {
		return err
	}
	st := r.state(db)
	st.mu.Lock()
	defer st.mu.Unlock()
	return r.fenceLocked(ctx, db, st, epoch, mode, true)
}

func (r *Router) fenceLocked(ctx context.Context, db string, st *dbState, epoch uint64, mode FenceMode, hold bool) error {
	if epoch < st.seen || (!hold && st.exposedAt != 0 && epoch <= st.exposedAt) {
		op := "fence"
		if hold {
			op = "hold"
		}
		return &StaleEpochError{DB: db, Op: op, Epoch: epoch, Newest: max(st.seen, st.exposedAt)}
	}
	st.seen = epoch
	start := time.Now()
	var err error
	switch mode {
	case FencePlanned:
		err = r.admin.Pause(ctx, db)
	case FenceEmergency:
		err = r.admin.PauseFlag(ctx, db)
	default:
		return fmt.Errorf("bouncer: fence %s: unknown mode %d", db, int(mode))
	}
	if errors.Is(err, ErrUnknownDatabase) {
		err = nil // PgBouncer does not route db at all: nothing to stop
	}
	commanded := time.Now()
	// Make the fence durable even if the console failed: PgBouncer may be
	// down now and read the file when it comes back.
	var fileErr error
	r.fileMu.Lock()
	if e, ok := r.entries[db]; ok && (!e.Fenced || e.Epoch != epoch) {
		e.Fenced, e.Epoch = true, epoch
		fileErr = r.writeLocked(ctx, db, e, false, true)
	}
	r.fileMu.Unlock()
	if err = errors.Join(err, fileErr); err != nil {
		return fmt.Errorf("bouncer: fence %s at epoch %d (%s): %w", db, epoch, mode, err)
	}
	st.fenced, st.fencedAt, st.exposedAt = true, epoch, 0
	r.log.Info("fenced", "db", db, "epoch", epoch, "mode", mode.String(),
		"command", commanded.Sub(start), "took", time.Since(start))
	return nil
}

// Expose routes db to route for epoch: it rewrites the include file, RELOADs,
// re-applies the tuning, waits until SHOW DATABASES shows the new host and
// port, and RESUMEs db. db must be fenced (at any epoch ≤ epoch), already
// exposed at this epoch, or new to the Router; a database still exposed at
// an older epoch gets ErrNotFenced (fence before expose). Older epochs get a
// *StaleEpochError. On error db stays paused; Expose may be retried.
func (r *Router) Expose(ctx context.Context, db string, epoch uint64, route Route) error {
	if err := ValidateName(db); err != nil {
		return err
	}
	if err := route.Validate(db); err != nil {
		return err
	}
	st := r.state(db)
	st.mu.Lock()
	defer st.mu.Unlock()
	return r.exposeLocked(ctx, db, st, epoch, route)
}

func (r *Router) exposeLocked(ctx context.Context, db string, st *dbState, epoch uint64, route Route) error {
	if epoch < st.seen {
		return &StaleEpochError{DB: db, Op: "expose", Epoch: epoch, Newest: st.seen}
	}
	if st.exposedAt != 0 && st.exposedAt < epoch {
		return fmt.Errorf("bouncer: expose %s at epoch %d: exposed at %d: %w", db, epoch, st.exposedAt, ErrNotFenced)
	}
	st.seen = epoch
	start := time.Now()
	// Staged (see Stage): the running PgBouncer has the route already,
	// unless someone RELOADed it since; then it takes the full path.
	reload := true
	if st.stagedAt == epoch && st.staged == route {
		d, err := r.admin.Database(ctx, db)
		reload = err != nil || d.Host != route.Host || d.Port != route.Port
	}
	st.stagedAt, st.staged = 0, Route{}
	entry := Entry{Name: db, Route: route, Epoch: epoch}
	if reload {
		r.fileMu.Lock()
		err := r.writeLocked(ctx, db, entry, true, true)
		r.fileMu.Unlock()
		if err != nil {
			return fmt.Errorf("bouncer: expose %s at epoch %d: %w", db, epoch, err)
		}
		if err := r.waitRoute(ctx, db, route); err != nil {
			return fmt.Errorf("bouncer: expose %s at epoch %d: %w", db, epoch, err)
		}
	}
	reloaded := time.Now()
	if err := r.admin.Resume(ctx, db); err != nil {
		return fmt.Errorf("bouncer: expose %s at epoch %d: %w", db, epoch, err)
	}
	if !reload {
		// Staged: PgBouncer runs with route already, and the file still
		// says fenced, which is the safe side if this write fails or the
		// agent dies first (the next Expose RELOADs). Writing it after the
		// RESUME keeps the fsyncs out of the write stall.
		r.fileMu.Lock()
		err := r.writeLocked(ctx, db, entry, false, true)
		r.fileMu.Unlock()
		if err != nil {
			return fmt.Errorf("bouncer: expose %s at epoch %d: resumed, but the include file: %w", db, epoch, err)
		}
	}
	st.fenced, st.exposedAt, st.route = false, epoch, route
	r.log.Info("exposed", "db", db, "epoch", epoch, "host", route.Host, "port", route.Port,
		"staged", !reload, "reload", reloaded.Sub(start), "took", time.Since(start))
	return nil
}

// Stage prepares the exposure of db at epoch while db stays paused: the
// running PgBouncer is RELOADed with route, then the include file goes back
// to its fenced form without a RELOAD, so that a PgBouncer restart still
// routes nowhere. Expose at the same epoch and route then only RESUMEs,
// which takes the RELOAD and re-tuning (tens of milliseconds under load)
// out of the planned switchover's write stall. PgBouncer opens no server
// connection for a paused database, except for min_pool_size, whose
// connections it closes again at once and counts as failed logins
// (server_login_retry): a route with min_pool_size is not staged.
//
// db must be fenced at an epoch older than epoch; anything else, a stale
// epoch included, is left alone (nil): staging is an optimisation only.
func (r *Router) Stage(ctx context.Context, db string, epoch uint64, route Route) error {
	if err := ValidateName(db); err != nil {
		return err
	}
	if err := route.Validate(db); err != nil {
		return err
	}
	if route.Pool.MinSize > 0 {
		return nil
	}
	st := r.state(db)
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.fenced || st.fencedAt >= epoch || epoch < st.seen || (st.stagedAt == epoch && st.staged == route) {
		return nil
	}
	start := time.Now()
	r.fileMu.Lock()
	defer r.fileMu.Unlock()
	fenced, ok := r.entries[db]
	if !ok {
		return nil // never routed: nothing to gain
	}
	// Neither write is synced (they were up to 140 ms under load, and an
	// Expose waits for a Stage in progress): the file is back in its fenced
	// form a moment later. A crash of the machine in between may leave the
	// staged form, which routes only to the next primary of a switchover,
	// whose predecessor has shut down already.
	if err := r.writeLocked(ctx, db, Entry{Name: db, Route: route, Epoch: epoch}, true, false); err != nil {
		return fmt.Errorf("bouncer: stage %s at epoch %d: %w", db, epoch, err)
	}
	st.stagedAt, st.staged = epoch, route
	if err := r.writeLocked(ctx, db, fenced, false, false); err != nil {
		return fmt.Errorf("bouncer: stage %s at epoch %d: restore the fenced entry: %w", db, epoch, err)
	}
	r.log.Info("staged", "db", db, "epoch", epoch, "host", route.Host, "port", route.Port, "took", time.Since(start))
	return nil
}

// Switch performs a planned switchover of db at epoch: PAUSE (in-flight
// transactions finish, new ones queue in PgBouncer), promote (the caller's
// promotion of the new primary), then Expose(route). Clients see a stall, not
// errors. If promote fails, db stays fenced and paused at epoch; the caller
// decides where to Expose it (the old route is allowed at the same epoch).
func (r *Router) Switch(ctx context.Context, db string, epoch uint64, route Route, promote func(context.Context) error) error {
	if err := ValidateName(db); err != nil {
		return err
	}
	if err := route.Validate(db); err != nil {
		return err
	}
	st := r.state(db)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := r.fenceLocked(ctx, db, st, epoch, FencePlanned, false); err != nil {
		return err
	}
	if promote != nil {
		if err := promote(ctx); err != nil {
			return fmt.Errorf("bouncer: switch %s at epoch %d: promotion failed, database stays fenced: %w", db, epoch, err)
		}
	}
	return r.exposeLocked(ctx, db, st, epoch, route)
}

// Tune sets PgBouncer's retry timers (DefaultTune when opts is zero) and
// remembers them: RELOAD resets SET values to the config file, so the Router
// re-applies them after each of its reloads. Keys this PgBouncer lacks are
// skipped and logged. Putting the same values in pgbouncer.ini as well closes
// the short window after a RELOAD done by someone else.
func (r *Router) Tune(ctx context.Context, opts TuneOptions) error {
	if opts == (TuneOptions{}) {
		opts = DefaultTune
	}
	r.fileMu.Lock()
	defer r.fileMu.Unlock()
	cfg, err := r.admin.Config(ctx)
	if err != nil {
		return fmt.Errorf("bouncer: tune: %w", err)
	}
	skipped, err := applyTune(ctx, r.admin, opts, cfg)
	if err != nil {
		return err
	}
	r.tune, r.config = &opts, cfg
	r.log.Info("tuned", "server_login_retry", opts.LoginRetry, "server_connect_timeout", opts.ConnectTimeout,
		"server_fast_close", opts.FastClose, "skipped", skipped)
	return nil
}

// writeLocked sets entries[db] = e, renders and writes the include file
// (fsynced when durable), and with reload RELOADs and re-applies the
// tuning. The caller holds fileMu. If rendering or writing fails, the
// previous entry is restored.
func (r *Router) writeLocked(ctx context.Context, db string, e Entry, reload, durable bool) error {
	prev, had := r.entries[db]
	r.entries[db] = e
	all := slices.Collect(maps.Values(r.entries))
	data, err := Render(all)
	if err == nil {
		err = writeFileAtomic(r.path, data, r.perm, durable)
	}
	if err != nil {
		if had {
			r.entries[db] = prev
		} else {
			delete(r.entries, db)
		}
		return err
	}
	if !reload {
		return nil
	}
	if err := r.admin.Reload(ctx); err != nil {
		return err
	}
	if r.tune != nil {
		if _, err := applyTune(ctx, r.admin, *r.tune, r.config); err != nil {
			return err
		}
	}
	return nil
}

// waitRoute polls SHOW DATABASES until db shows route's host and port.
func (r *Router) waitRoute(ctx context.Context, db string, route Route) error {
	delay := time.Millisecond
	for {
		d, err := r.admin.Database(ctx, db)
		if err == nil && d.Host == route.Host && d.Port == route.Port {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for SHOW DATABASES to show %s:%d (last: %s:%d, err %v): %w",
				route.Host, route.Port, d.Host, d.Port, err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}
