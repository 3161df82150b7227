package servertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgquorum/pgquorum/pgnode"
	"github.com/pgquorum/pgquorum/server"
)

// World is an in-memory model of the PostgreSQL servers of one cluster,
// shared by the fake drivers of every node so that cloning, streaming,
// promotion and rewinding behave plausibly. Each server holds its data as
// the list of write IDs it has (its WAL); a standby that streams from a
// primary copies the primary's list, unless its replay is paused. The
// world records every write a client got acknowledged and every interval
// in which a server accepted writes (running, not in recovery), so tests
// can check that no two servers ever accepted writes at the same instant
// (DESIGN.md invariant 1) and that no acknowledged write is lost
// (invariant 5). All times are monotonic readings of time.Now; seq
// numbers order events totally.
type World struct {
	mu      sync.Mutex
	hosts   map[string]*Host
	seq     uint64
	nextSys uint64
	nextTL  uint32
	writeID uint64
	acks    []Ack
	periods []Period
	events  []Event
}

// Host is one server's state: its data directory and its postmaster.
type Host struct {
	ID string

	initialized bool
	sysid       uint64
	timeline    uint32
	standby     bool // standby.signal
	upstream    string
	data        []uint64
	clean       bool
	checkpoint  uint64
	syncNames   []string
	syncCount   int
	slots       []string
	params      map[string]string
	// live is params as the running postmaster read them at its start:
	// a restart-only parameter that differs is a pending restart.
	live map[string]string

	running    bool
	inRecovery bool
	gen        int  // bumped on every postmaster start
	stopAsked  bool // the last exit was requested by a driver
	paused     bool // replay paused (test knob)
	// cutAt is when this standby's replication connection was cut
	// silently (test knob; zero: not cut), see CutReplication.
	cutAt      time.Time
	starts     int
	failRewind bool
	// diskStalled: every commit hangs (blkio throttle, FACTS.md); reads
	// and probes still answer.
	diskStalled bool
	failStart   bool
	diskFull    bool
	// roles: the replication and rewind roles exist (Bootstrap or
	// EnsureRoles made them, or the clone source had them); a clone from
	// a server without them fails, as pg_basebackup's login would.
	roles bool
	// clonedFrom is the server the data directory was last cloned from.
	clonedFrom string
	// acceptFrom is the seq at which the server began accepting writes
	// (0: it does not).
	acceptFrom   uint64
	acceptFromAt time.Time
}

// Ack is one write a client got acknowledged.
type Ack struct {
	ID     uint64
	Server string
	LSN    uint64
	// Sync lists the standbys that confirmed it before the ack.
	Sync []string
	At   time.Time
	Seq  uint64
}

// Period is an interval in which a server accepted writes. An open
// period has ToSeq 0.
type Period struct {
	Server         string
	FromSeq, ToSeq uint64
	From, To       time.Time
	// How says what opened it ("start", "promote", "bootstrap").
	How string
}

// Event is one thing that happened to a server.
type Event struct {
	Server string
	What   string // "start", "stop-fast", "stop-immediate", "crash", "promote", "rewind", "clone", "bootstrap"
	At     time.Time
	Seq    uint64
}

// RestartOnlyParams are the parameters the fake applies only at a start
// (context postmaster in PostgreSQL); changing one makes a pending restart.
var RestartOnlyParams = []string{"max_connections", "shared_buffers"}

// ErrNotAccepting is returned by Write to a server that does not accept
// writes.
var ErrNotAccepting = errors.New("fakepg: server does not accept writes")

// ErrNotAcknowledged is returned by Write when the commit was written
// locally but the synchronous standbys did not confirm it, so the client
// got no acknowledgement (in PostgreSQL it would wait).
var ErrNotAcknowledged = errors.New("fakepg: commit not acknowledged by synchronous standbys")

// NewWorld returns an empty world.
func NewWorld() *World {
	return &World{hosts: map[string]*Host{}, nextSys: 7000000000000000001, nextTL: 1}
}

// PGAddr is the pg_addr a member with id gets in a world.
func PGAddr(id string) string { return id + ".pg:5432" }

// WithFakePostgres attaches a fake driver of w to every node, and a fake
// fence guard (which outlives the node's agent, as the real one does).
func WithFakePostgres(w *World) Option {
	return func(o *server.Options) {
		o.PGAddr = PGAddr(o.NodeID)
		o.Postgres = w.Agent(o.NodeID)
		o.Guard = w.Guard(o.NodeID)
	}
}

// WithoutGuard runs nodes without a fence guard.
func WithoutGuard() Option {
	return func(o *server.Options) { o.Guard = nil }
}

// FakeGuard is a fence guard of a World: armed with a postmaster PID and
// a delay, it crashes that postmaster when the delay passes unless it is
// armed again or disarmed.
type FakeGuard struct {
	w  *World
	id string

	mu    sync.Mutex
	timer *time.Timer
}

// Guard returns the fence guard of server id.
func (w *World) Guard(id string) *FakeGuard { return &FakeGuard{w: w, id: id} }

// Arm implements server.FenceGuard.
func (g *FakeGuard) Arm(pid int, d time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timer != nil {
		g.timer.Stop()
	}
	g.timer = time.AfterFunc(d, func() {
		g.w.mu.Lock()
		defer g.w.mu.Unlock()
		h := g.w.hosts[g.id]
		if h == nil || !h.running || pidOf(h.gen) != pid {
			return
		}
		h.running, h.inRecovery, h.stopAsked, h.clean = false, false, false, false
		g.w.update(h, "")
		g.w.event(g.id, "guard-kill")
	})
	return nil
}

// Disarm implements server.FenceGuard.
func (g *FakeGuard) Disarm() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	return nil
}

func pidOf(gen int) int { return 1000 + gen }

func (w *World) host(id string) *Host {
	h, ok := w.hosts[id]
	if !ok {
		h = &Host{ID: id, params: map[string]string{}}
		w.hosts[id] = h
	}
	return h
}

func (w *World) next() (uint64, time.Time) {
	w.seq++
	return w.seq, time.Now()
}

func (w *World) event(id, what string) {
	seq, at := w.next()
	w.events = append(w.events, Event{Server: id, What: what, At: at, Seq: seq})
}

// accepting is the model's definition of "takes writes".
func (h *Host) accepting() bool { return h.running && !h.inRecovery }

// update opens or closes h's accepting period after a state change.
func (w *World) update(h *Host, how string) {
	switch acc := h.accepting(); {
	case acc && h.acceptFrom == 0:
		h.acceptFrom, h.acceptFromAt = w.next()
		w.periods = append(w.periods, Period{Server: h.ID, FromSeq: h.acceptFrom, From: h.acceptFromAt, How: how})
	case !acc && h.acceptFrom != 0:
		seq, at := w.next()
		for i := range w.periods {
			p := &w.periods[i]
			if p.Server == h.ID && p.FromSeq == h.acceptFrom {
				p.ToSeq, p.To = seq, at
			}
		}
		h.acceptFrom = 0
	}
}

func lsnOf(data []uint64) uint64 { return 0x3000000 + uint64(len(data))*0x100 }

// source returns the running host behind an upstream address.
func (w *World) source(addr string) *Host {
	host, _, _ := net.SplitHostPort(addr)
	id := strings.TrimSuffix(host, ".pg")
	if h, ok := w.hosts[id]; ok {
		return h
	}
	return nil
}

// streamingFrom reports whether standby s streams from primary p: both
// run, s is in recovery, follows p, and its WAL is a prefix of p's (a
// diverged standby cannot stream).
func (w *World) streamingFrom(s, p *Host) bool {
	return s != p && s.running && s.inRecovery && p.running && w.source(s.upstream) == p &&
		s.sysid == p.sysid && len(s.data) <= len(p.data) && slices.Equal(s.data, p.data[:len(s.data)])
}

// replicate lets every streaming, unpaused standby catch up with its
// upstream, following it onto a newer timeline.
func (w *World) replicate() {
	for _, s := range w.hosts {
		if !s.running || !s.inRecovery || s.paused || !s.cutAt.IsZero() {
			continue
		}
		if p := w.source(s.upstream); p != nil && w.streamingFrom(s, p) {
			s.data = slices.Clone(p.data)
			s.timeline = max(s.timeline, p.timeline)
		}
	}
}

// syncStandbys returns the standbys that are synchronous for p right now
// under FIRST count (names): the first count names that stream.
func (w *World) syncStandbys(p *Host) (sync []string, potential []string) {
	for _, n := range p.syncNames {
		s, ok := w.hosts[n]
		if !ok || !w.streamingFrom(s, p) || s.paused {
			continue
		}
		if len(sync) < p.syncCount {
			sync = append(sync, n)
		} else {
			potential = append(potential, n)
		}
	}
	return sync, potential
}

// Write is a client's commit on server id. It returns the write's ID and
// an error if the client got no acknowledgement.
func (w *World) Write(id string) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hosts[id]
	if h == nil || !h.accepting() {
		return 0, fmt.Errorf("%w: %s", ErrNotAccepting, id)
	}
	if h.diskStalled {
		return 0, fmt.Errorf("%w: %s: the commit hangs on a stalled disk", ErrNotAcknowledged, id)
	}
	w.writeID++
	wid := w.writeID
	h.data = append(h.data, wid)
	w.replicate()
	var confirmed []string
	if h.syncCount > 0 && len(h.syncNames) > 0 {
		sync, _ := w.syncStandbys(h)
		for _, n := range sync {
			if s := w.hosts[n]; slices.Contains(s.data, wid) {
				confirmed = append(confirmed, n)
			}
		}
		if len(confirmed) < min(h.syncCount, len(h.syncNames)) {
			return wid, fmt.Errorf("%w: %s wants %d of %v", ErrNotAcknowledged, id, h.syncCount, h.syncNames)
		}
	}
	seq, at := w.next()
	w.acks = append(w.acks, Ack{ID: wid, Server: id, LSN: lsnOf(h.data), Sync: confirmed, At: at, Seq: seq})
	return wid, nil
}

// Accepting lists the servers that accept writes now.
func (w *World) Accepting() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for id, h := range w.hosts {
		if h.accepting() {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// Overlaps returns every pair of periods of different servers that
// overlapped: a breach of invariant 1.
func (w *World) Overlaps() [][2]Period {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out [][2]Period
	end := func(p Period) uint64 {
		if p.ToSeq == 0 {
			return ^uint64(0)
		}
		return p.ToSeq
	}
	for i, a := range w.periods {
		for _, b := range w.periods[i+1:] {
			if a.Server != b.Server && a.FromSeq < end(b) && b.FromSeq < end(a) {
				out = append(out, [2]Period{a, b})
			}
		}
	}
	return out
}

// Periods returns a copy of every accepting period so far.
func (w *World) Periods() []Period {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.periods)
}

// Events returns a copy of every event so far.
func (w *World) Events() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// Acks returns a copy of every acknowledged write.
func (w *World) Acks() []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

// Has reports whether server id holds write wid.
func (w *World) Has(id string, wid uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hosts[id]
	return h != nil && slices.Contains(h.data, wid)
}

// Starts counts the postmaster starts of server id.
func (w *World) Starts(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.host(id).starts
}

// Running reports whether id's postmaster runs.
func (w *World) Running(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.host(id).running
}

// Standby reports whether id runs in recovery.
func (w *World) Standby(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.host(id)
	return h.running && h.inRecovery
}

// StreamingFrom reports whether standby s streams from primary p.
func (w *World) StreamingFrom(s, p string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.streamingFrom(w.host(s), w.host(p))
}

// Timeline returns id's timeline.
func (w *World) Timeline(id string) uint32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.host(id).timeline
}

// SyncNames returns id's synchronous_standby_names as (count, names).
func (w *World) SyncNames(id string) (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.host(id)
	return h.syncCount, slices.Clone(h.syncNames)
}

// Crash kills id's postmaster (kill -9, or the host died with it).
func (w *World) Crash(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.host(id)
	if !h.running {
		return
	}
	h.running, h.inRecovery, h.stopAsked, h.clean = false, false, false, false
	w.update(h, "")
	w.event(id, "crash")
}

// PauseReplay stops (or resumes) replication to standby id.
func (w *World) PauseReplay(id string, paused bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.host(id).paused = paused
	w.replicate()
}

// CutReplication cuts (or restores) standby id's replication connection
// the way a network partition that drops packets does: the standby
// receives nothing and replies nothing, yet the primary keeps it
// "streaming" (as PostgreSQL does until wal_sender_timeout), still
// counts it for synchronous_standby_names, so commits that wait for it
// are not acknowledged, and reports its reply age growing from the cut.
func (w *World) CutReplication(id string, cut bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.host(id)
	switch {
	case !cut:
		h.cutAt = time.Time{}
	case h.cutAt.IsZero():
		h.cutAt = time.Now()
	}
	w.replicate()
}

// FailRewind makes pg_rewind fail on id.
func (w *World) FailRewind(id string, fail bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.host(id).failRewind = fail
}

// FailStart makes every start of id's postmaster fail (a full WAL disk,
// say), until called again with false.
func (w *World) FailStart(id string, fail bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.host(id).failStart = fail
}

// StallDisk makes id's disk stall (or resume): its commits hang, so no
// client write is acknowledged and WriteProbe times out, while Probe still
// answers.
func (w *World) StallDisk(id string, stalled bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.host(id).diskStalled = stalled
}

// DiskFull makes every start of id fail as PostgreSQL does when a volume
// of its data directory is full.
func (w *World) DiskFull(id string, full bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.host(id).diskFull = full
}

// HandMadePrimary gives server id a stopped primary data directory of a
// new cluster made by hand, without the replication and rewind roles, as
// an operator's initdb leaves it for pgquorum to adopt.
func (w *World) HandMadePrimary(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.host(id)
	h.initialized, h.sysid, h.timeline, h.standby, h.clean = true, w.nextSys, 1, false, true
	w.nextSys++
}

// ClonedFrom returns the server id's data directory was last cloned from.
func (w *World) ClonedFrom(id string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.host(id).clonedFrom
}

// Wipe kills server id's postmaster (if it runs) and empties its data
// directory, as a replaced disk would leave it.
func (w *World) Wipe(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.host(id)
	h.running, h.inRecovery = false, false
	w.update(h, "")
	w.hosts[id] = &Host{ID: id}
	w.event(id, "wipe")
}

// HasRoles reports whether server id's data directory has the replication
// and rewind roles.
func (w *World) HasRoles(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.host(id).roles
}

// LiveParam returns parameter name as server id's running postmaster read
// it at its start ("" if unset or not running).
func (w *World) LiveParam(id, name string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h := w.host(id); h.running {
		return h.live[name]
	}
	return ""
}

// Agent returns a fresh driver for server id, as a newly started agent
// process would have: it knows no postmaster until it starts or adopts
// one.
func (w *World) Agent(id string) *FakePostgres {
	w.mu.Lock()
	w.host(id)
	w.mu.Unlock()
	return &FakePostgres{w: w, id: id, gen: -1}
}

// FakePostgres implements server.Postgres on a World.
type FakePostgres struct {
	w  *World
	id string
	// gen is the postmaster generation this driver started or adopted
	// (-1: none).
	gen int
	// params are the parameters this driver writes at a start (nil: it
	// knows none yet, like a freshly started agent).
	params map[string]string
}

var (
	_ server.Postgres   = (*FakePostgres)(nil)
	_ server.FenceGuard = (*FakeGuard)(nil)
)

func (f *FakePostgres) lock() *Host {
	f.w.mu.Lock()
	f.w.replicate()
	return f.w.hosts[f.id]
}

func (f *FakePostgres) unlock() {
	f.w.replicate()
	f.w.mu.Unlock()
}

// Inspect implements server.Postgres.
func (f *FakePostgres) Inspect(ctx context.Context) (pgnode.DataDirInfo, error) {
	h := f.lock()
	defer f.unlock()
	info := pgnode.DataDirInfo{Path: "/fake/" + f.id, Exists: true, Empty: !h.initialized}
	if !h.initialized {
		return info, nil
	}
	info.Initialized, info.Version, info.SystemIdentifier = true, "15", h.sysid
	info.Timeline, info.Standby, info.Running = h.timeline, h.standby, h.running
	info.CleanShutdown = h.clean && !h.running
	info.CheckpointLSN = pgnode.LSN(h.checkpoint)
	if h.running {
		info.PostmasterPID = pidOf(h.gen)
	}
	switch {
	case h.running && h.inRecovery:
		info.ClusterState = "in archive recovery"
	case h.running:
		info.ClusterState = "in production"
	case h.clean && h.standby:
		info.ClusterState = "shut down in recovery"
	case h.clean:
		info.ClusterState = "shut down"
	default:
		info.ClusterState = "in production"
	}
	return info, nil
}

// Bootstrap implements server.Postgres.
func (f *FakePostgres) Bootstrap(ctx context.Context) (uint64, error) {
	h := f.lock()
	defer f.unlock()
	if h.initialized {
		return 0, fmt.Errorf("%w: %s", pgnode.ErrAlreadyInitialized, f.id)
	}
	h.initialized, h.sysid, h.timeline, h.standby = true, f.w.nextSys, 1, false
	f.w.nextSys++
	f.w.event(f.id, "bootstrap")
	if h.failStart {
		// initdb ran; the start failed, so pgnode made no roles.
		h.clean = true
		return 0, fmt.Errorf("%w: %s: FATAL: could not write to file (fake)", pgnode.ErrStartFailed, f.id)
	}
	f.startLocked(h, "bootstrap")
	h.roles = true
	return h.sysid, nil
}

func (f *FakePostgres) startLocked(h *Host, how string) {
	h.running, h.inRecovery, h.stopAsked, h.clean = true, h.standby, false, false
	h.gen++
	h.starts++
	if f.params != nil {
		h.params = maps.Clone(f.params)
	}
	h.live = maps.Clone(h.params)
	f.gen = h.gen
	f.w.event(f.id, "start")
	f.w.update(h, how)
}

// Start implements server.Postgres.
func (f *FakePostgres) Start(ctx context.Context, opts pgnode.StartOptions) error {
	h := f.lock()
	defer f.unlock()
	if !h.initialized {
		return fmt.Errorf("%w: %s", pgnode.ErrNotInitialized, f.id)
	}
	if opts.ExpectSystemID != 0 && opts.ExpectSystemID != h.sysid {
		return fmt.Errorf("%w: %s", pgnode.ErrForeignDataDir, f.id)
	}
	if h.running {
		f.gen = h.gen // adopt
		switch {
		case opts.Role == pgnode.RolePrimary && h.inRecovery:
			return fmt.Errorf("%w: %s runs as a standby", pgnode.ErrRoleMismatch, f.id)
		case opts.Role == pgnode.RoleStandby && !h.inRecovery:
			return fmt.Errorf("%w: %s runs as a primary", pgnode.ErrRoleMismatch, f.id)
		}
		if opts.Role == pgnode.RoleStandby && opts.Upstream != nil {
			h.upstream = upstreamAddr(*opts.Upstream)
		}
		return nil
	}
	if h.diskFull {
		return fmt.Errorf("%w: %s: PANIC: could not write to file \"pg_wal/xlogtemp.1\": No space left on device (fake)", pgnode.ErrStartFailed, f.id)
	}
	if h.failStart {
		return fmt.Errorf("%w: %s: FATAL: could not write to file (fake)", pgnode.ErrStartFailed, f.id)
	}
	switch opts.Role {
	case pgnode.RolePrimary:
		h.standby = false
	case pgnode.RoleStandby:
		h.standby = true
		if opts.Upstream != nil {
			h.upstream = upstreamAddr(*opts.Upstream)
		}
	}
	f.startLocked(h, "start")
	return nil
}

func upstreamAddr(up pgnode.Upstream) string { return net.JoinHostPort(up.Host, fmt.Sprint(up.Port)) }

// Stop implements server.Postgres.
func (f *FakePostgres) Stop(ctx context.Context, mode pgnode.StopMode) error {
	h := f.lock()
	defer f.unlock()
	f.stopLocked(h, mode)
	return nil
}

func (f *FakePostgres) stopLocked(h *Host, mode pgnode.StopMode) {
	if !h.running {
		return
	}
	h.running, h.stopAsked = false, true
	h.clean = mode != pgnode.StopImmediate
	if h.clean {
		h.checkpoint = lsnOf(h.data)
	}
	h.inRecovery = false
	f.w.update(h, "")
	what := "stop-fast"
	if mode == pgnode.StopImmediate {
		what = "stop-immediate"
	}
	f.w.event(f.id, what)
}

// Promote implements server.Postgres.
func (f *FakePostgres) Promote(ctx context.Context) error {
	h := f.lock()
	defer f.unlock()
	if !h.running {
		return fmt.Errorf("%w: %s", pgnode.ErrNotRunning, f.id)
	}
	h.standby = false
	if !h.inRecovery {
		return nil
	}
	f.w.nextTL = max(f.w.nextTL, h.timeline) + 1
	h.timeline = f.w.nextTL
	h.inRecovery = false
	f.w.event(f.id, "promote")
	f.w.update(h, "promote")
	return nil
}

// Diverged implements server.Postgres. The fake world keeps standbys on
// their upstream's history, so none diverges.
func (f *FakePostgres) Diverged(ctx context.Context, up pgnode.Upstream) (bool, error) {
	return false, nil
}

// PrepareStop implements server.Postgres (it records "checkpoint").
func (f *FakePostgres) PrepareStop(ctx context.Context) error {
	h := f.lock()
	defer f.unlock()
	if !h.running {
		return fmt.Errorf("%w: %s", pgnode.ErrNotRunning, f.id)
	}
	f.w.event(f.id, "checkpoint")
	return nil
}

// sourceFor returns the running server behind up, or an error.
func (f *FakePostgres) sourceFor(h *Host, up pgnode.Upstream) (*Host, error) {
	src := f.w.source(upstreamAddr(up))
	if src == nil || src == h || !src.running {
		return nil, fmt.Errorf("%w: cannot connect to %s", pgnode.ErrCommandFailed, upstreamAddr(up))
	}
	return src, nil
}

// Rewind implements server.Postgres.
func (f *FakePostgres) Rewind(ctx context.Context, up pgnode.Upstream) error {
	h := f.lock()
	defer f.unlock()
	if !h.initialized {
		return fmt.Errorf("%w: %s", pgnode.ErrNotInitialized, f.id)
	}
	f.stopLocked(h, pgnode.StopFast)
	src, err := f.sourceFor(h, up)
	if err != nil {
		return err
	}
	if h.failRewind || src.sysid != h.sysid {
		return fmt.Errorf("%w: pg_rewind on %s failed", pgnode.ErrCommandFailed, f.id)
	}
	h.data, h.timeline = slices.Clone(src.data), src.timeline
	h.standby, h.upstream, h.clean = true, upstreamAddr(up), true
	f.w.event(f.id, "rewind")
	return nil
}

// CloneFrom implements server.Postgres.
func (f *FakePostgres) CloneFrom(ctx context.Context, up pgnode.Upstream) error {
	h := f.lock()
	defer f.unlock()
	if h.initialized {
		return fmt.Errorf("%w: %s", pgnode.ErrAlreadyInitialized, f.id)
	}
	return f.cloneLocked(h, up)
}

func (f *FakePostgres) cloneLocked(h *Host, up pgnode.Upstream) error {
	src, err := f.sourceFor(h, up)
	if err != nil {
		return err
	}
	if !src.roles {
		return fmt.Errorf("%w: pg_basebackup from %s: password authentication failed for the replication user (fake)", pgnode.ErrCommandFailed, upstreamAddr(up))
	}
	h.initialized, h.sysid, h.timeline = true, src.sysid, src.timeline
	h.data, h.standby, h.upstream, h.clean = slices.Clone(src.data), true, upstreamAddr(up), true
	h.syncNames, h.syncCount = slices.Clone(src.syncNames), src.syncCount
	h.roles, h.clonedFrom = true, src.ID
	f.w.event(f.id, "clone")
	return nil
}

// Reinit implements server.Postgres.
func (f *FakePostgres) Reinit(ctx context.Context, up pgnode.Upstream) error {
	h := f.lock()
	defer f.unlock()
	if h.running && !h.inRecovery {
		return fmt.Errorf("%w: %s", pgnode.ErrRunningPrimary, f.id)
	}
	if _, err := f.sourceFor(h, up); err != nil {
		return err
	}
	f.stopLocked(h, pgnode.StopFast)
	if err := f.cloneLocked(h, up); err != nil {
		return err
	}
	f.startLocked(h, "start")
	return nil
}

// Probe implements server.Postgres.
func (f *FakePostgres) Probe(ctx context.Context) (pgnode.Status, error) {
	h := f.lock()
	defer f.unlock()
	if !h.running {
		return pgnode.Status{}, fmt.Errorf("%w: %s", pgnode.ErrNotRunning, f.id)
	}
	st := pgnode.Status{Up: true, InRecovery: h.inRecovery, Timeline: h.timeline}
	for _, k := range RestartOnlyParams {
		if v, ok := h.params[k]; ok && v != h.live[k] {
			st.PendingRestart = append(st.PendingRestart, k)
		}
	}
	lsn := pgnode.LSN(lsnOf(h.data))
	if h.inRecovery {
		st.ReceiveLSN, st.ReplayLSN = lsn, lsn
		if p := f.w.source(h.upstream); p != nil && f.w.streamingFrom(h, p) {
			st.WALReceiver = "streaming"
			st.UpstreamHost = p.ID + ".pg"
		}
		return st, nil
	}
	st.CurrentLSN = lsn
	sync, potential := f.w.syncStandbys(h)
	ids := make([]string, 0, len(f.w.hosts))
	for id := range f.w.hosts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s := f.w.hosts[id]
		if !f.w.streamingFrom(s, h) {
			continue
		}
		state := "async"
		switch {
		case slices.Contains(sync, id):
			state = "sync"
		case slices.Contains(potential, id):
			state = "potential"
		}
		sl := pgnode.LSN(lsnOf(s.data))
		var age time.Duration
		if !s.cutAt.IsZero() {
			age = time.Since(s.cutAt)
		}
		st.Replicas = append(st.Replicas, pgnode.ReplicaStatus{ApplicationName: id, State: "streaming",
			SentLSN: sl, WriteLSN: sl, FlushLSN: sl, ReplayLSN: sl, SyncState: state, ReplyAge: age})
	}
	return st, nil
}

// WriteProbe implements server.Postgres: it hangs until timeout while the
// disk is stalled.
func (f *FakePostgres) WriteProbe(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		h := f.lock()
		running, rec, stalled := h.running, h.inRecovery, h.diskStalled
		f.unlock()
		switch {
		case !running:
			return fmt.Errorf("%w: %s", pgnode.ErrNotRunning, f.id)
		case rec:
			return fmt.Errorf("write probe %s: %w", f.id, pgnode.ErrNotPrimary)
		case !stalled:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w", pgnode.ErrWriteProbe, f.id, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// EnsureSlots implements server.Postgres.
func (f *FakePostgres) EnsureSlots(ctx context.Context, names []string) error {
	h := f.lock()
	defer f.unlock()
	if !h.running {
		return fmt.Errorf("%w: %s", pgnode.ErrNotRunning, f.id)
	}
	h.slots = slices.Clone(names)
	return nil
}

// SetSynchronousStandbys implements server.Postgres.
func (f *FakePostgres) SetSynchronousStandbys(ctx context.Context, names []string, count int) error {
	if _, err := pgnode.SyncStandbyNames(names, count); err != nil {
		return err
	}
	h := f.lock()
	defer f.unlock()
	h.syncNames, h.syncCount = slices.Clone(names), count
	if count == 0 {
		h.syncNames = nil
	}
	return nil
}

// SetParameters implements server.Postgres.
func (f *FakePostgres) SetParameters(ctx context.Context, params map[string]string) ([]string, error) {
	h := f.lock()
	defer f.unlock()
	h.params = map[string]string{}
	for k, v := range params {
		h.params[k] = v
	}
	f.params = maps.Clone(h.params)
	return nil, nil
}

// UseParameters implements server.Postgres: the next start writes params.
func (f *FakePostgres) UseParameters(params map[string]string) error {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.params = maps.Clone(params)
	if f.params == nil {
		f.params = map[string]string{}
	}
	return nil
}

// EnsureRoles implements server.Postgres.
func (f *FakePostgres) EnsureRoles(ctx context.Context) error {
	h := f.lock()
	defer f.unlock()
	if !h.running {
		return fmt.Errorf("%w: %s", pgnode.ErrNotRunning, f.id)
	}
	if h.inRecovery {
		return fmt.Errorf("%w: %s", pgnode.ErrNotPrimary, f.id)
	}
	h.roles = true
	f.w.event(f.id, "roles")
	return nil
}

// Process implements server.Postgres.
func (f *FakePostgres) Process() pgnode.ProcessInfo {
	h := f.lock()
	defer f.unlock()
	switch {
	case f.gen < 0:
		return pgnode.ProcessInfo{State: pgnode.ProcessNone}
	case f.gen == h.gen && h.running:
		return pgnode.ProcessInfo{State: pgnode.ProcessRunning, PID: pidOf(h.gen)}
	case f.gen == h.gen && h.stopAsked:
		return pgnode.ProcessInfo{State: pgnode.ProcessStopped}
	default:
		return pgnode.ProcessInfo{State: pgnode.ProcessCrashed}
	}
}
