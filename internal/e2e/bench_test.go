package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
	"github.com/pgquorum/pgquorum/internal/pgtest"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/rpc"
)

// The benchmarks of issues 4 and 5 run real clusters for minutes, so they
// are not part of `make test`: `make bench-failover` and
// `make bench-switchover` run them with PGQUORUMBENCH set. They print the
// figures; they fail only when something is wrong (lost writes in
// synchronous mode, client errors on a switchover), never on speed.

func benchEnabled(t *testing.T, name string) (trials int, profile string) {
	if os.Getenv("PGQUORUMBENCH") != name {
		t.Skipf("benchmark; run with PGQUORUMBENCH=%s (make bench-%s)", name, name)
	}
	trials = 5
	if n, err := strconv.Atoi(os.Getenv("PGQUORUMBENCH_TRIALS")); err == nil && n > 0 {
		trials = n
	}
	profile = os.Getenv("PGQUORUMBENCH_PROFILE")
	if profile == "" {
		profile = "default"
	}
	return trials, profile
}

// benchSetup starts a cluster with PgBouncer and a bouncer agent in front.
func benchSetup(t *testing.T, profile string) (*e2e.Cluster, string, map[string]int, string) {
	opts := e2e.Options{Profile: profile}
	if os.Getenv("PGQUORUMBENCH_PGLOG") != "" {
		// PostgreSQL's own timeline (connections, shutdown, promotion) with
		// millisecond stamps, for reading a trial afterwards.
		opts.Parameters = map[string]string{"log_min_messages": "log", "log_connections": "on",
			"log_disconnections": "on", "log_line_prefix": "%m [%p] ", "log_checkpoints": "on"}
	}
	// PGQUORUMBENCH_PG adds PostgreSQL parameters ("k=v,k=v"), for
	// trying a setting's effect on the figures.
	for _, kv := range strings.Split(os.Getenv("PGQUORUMBENCH_PG"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			if opts.Parameters == nil {
				opts.Parameters = map[string]string{}
			}
			opts.Parameters[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	c := e2e.New(t, opts)
	primary, _ := c.WaitHealthy(90 * time.Second)
	ctx := testCtx(t)
	if err := c.Exec(ctx, primary, "CREATE TABLE bw (g int, n int)"); err != nil {
		t.Fatal(err)
	}
	pgbOpts := pgtest.PgBouncerOptions{Users: map[string]string{"postgres": e2e.SuperuserPassword}}
	if os.Getenv("PGQUORUMBENCH_PGLOG") != "" {
		pgbOpts.Settings = map[string]string{"verbose": "1"}
	}
	pgb := pgtest.StartPgBouncer(t, pgbOpts)
	startBouncerAgent(t, c, pgb)
	if os.Getenv("PGQUORUME2E_KEEP") != "" {
		// PgBouncer's own log (server logins, pauses) beside the agents'
		// logs, for reading a trial's timeline afterwards.
		t.Cleanup(func() {
			if b, err := os.ReadFile(pgb.LogPath); err == nil {
				_ = os.WriteFile(filepath.Join(c.Base, "bouncer", "pgbouncer.log"), b, 0o644)
			}
		})
	}
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=app sslmode=disable connect_timeout=5",
		pgb.Port, e2e.SuperuserPassword)
	port := map[string]int{}
	for _, n := range c.Nodes {
		port[n.ID] = n.PGPort
	}
	e2e.Eventually(t, 60*time.Second, "app routed through PgBouncer", func() error {
		_, err := serverPortOf(ctx, dsn)
		return err
	})
	return c, dsn, port, pgb.LogPath
}

// acked is one writer that inserts a new id every interval and remembers
// which inserts were acknowledged.
type acked struct {
	mu   sync.Mutex
	ids  []int
	okAt []time.Time
	port []int
	errs int
	wg   sync.WaitGroup
}

func startAckedWriter(ctx context.Context, dsn string, every time.Duration) *acked {
	a := &acked{}
	a.wg.Go(func() {
		for id := 1; ctx.Err() == nil; id++ {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var port int
			conn, err := connectSimple(sctx, dsn)
			if err == nil {
				err = conn.QueryRow(sctx, "INSERT INTO bw VALUES (0, $1) RETURNING current_setting('port')::int", id).Scan(&port)
				_ = conn.Close(context.Background())
			}
			cancel()
			now := time.Now()
			a.mu.Lock()
			if err == nil {
				a.ids, a.okAt, a.port = append(a.ids, id), append(a.okAt, now), append(a.port, port)
			} else if ctx.Err() == nil {
				a.errs++
			}
			a.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	})
	return a
}

// firstAfter is the first acknowledged write after t0 on a server other
// than the one at notPort, and that server's port.
func (a *acked) firstAfter(t0 time.Time, notPort int) (time.Time, int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, at := range a.okAt {
		if at.After(t0) && a.port[i] != notPort {
			return at, a.port[i], true
		}
	}
	return time.Time{}, 0, false
}

func (a *acked) idsUntil(t time.Time) []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []int
	for i, at := range a.okAt {
		if !at.After(t) {
			out = append(out, a.ids[i])
		}
	}
	return out
}

type stats []time.Duration

func (s stats) String() string {
	if len(s) == 0 {
		return "n/a"
	}
	c := slices.Clone(s)
	slices.Sort(c)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %v  median %v  max %v", r(c[0]), r(c[len(c)/2]), r(c[len(c)-1]))
}

// waitEpoch polls until the cluster's epoch passes before and returns when
// the new primary was assigned.
func waitEpoch(t *testing.T, c *e2e.Cluster, before uint64) (time.Time, *pb.ClusterState) {
	var st *pb.ClusterState
	e2e.Eventually(t, 60*time.Second, "a new primary", func() error {
		var err error
		if st, err = c.State(); err != nil {
			return err
		}
		if st.Primary.GetEpoch() <= before {
			return fmt.Errorf("epoch still %d", st.Primary.GetEpoch())
		}
		return nil
	})
	// The decision's own timestamp (the leader's wall clock, this machine's)
	// is exact; polling a cluster with a dead member is not.
	if h := st.History; len(h) > 0 && h[len(h)-1].Epoch == st.Primary.GetEpoch() {
		return time.UnixMilli(h[len(h)-1].AtUnixMs), st
	}
	return time.Now(), st
}

// TestBenchFailover kills the primary host (agent, fence guard and
// postmaster, kill -9) N times with a client writing through PgBouncer
// every 50 ms, in synchronous mode, and prints per trial: client
// unavailability (kill to first acknowledged write), time to the new
// primary's assignment, and acknowledged writes lost.
func TestBenchFailover(t *testing.T) {
	trials, profile := benchEnabled(t, "failover")
	failoverTrials(t, trials, profile)
}

// TestFailover_SyncModeKeepsAcknowledgedWrites is one trial of the
// failover benchmark in the test suite: in synchronous mode a kill -9 of
// the primary host loses no acknowledged write (invariant 5), through the
// real binary, PostgreSQL and PgBouncer.
func TestFailover_SyncModeKeepsAcknowledgedWrites(t *testing.T) {
	failoverTrials(t, 1, "default")
}

// TestSwitchover_BothWaysThroughPgBouncer is two trials of the
// switchover benchmark in the test suite: there and back, zero client
// errors.
func TestSwitchover_BothWaysThroughPgBouncer(t *testing.T) {
	c := switchoverTrials(t, 2, "default")
	// Replication slots live on the primary only: a slot left on a
	// standby (a former primary that rejoined without pg_rewind keeps its
	// pg_replslot; a candidate creates its peers' slots before it
	// promotes) would retain WAL there for good.
	primary, _ := c.WaitHealthy(60 * time.Second)
	ctx := testCtx(t)
	e2e.Eventually(t, 60*time.Second, "slots on the primary only", func() error {
		for _, id := range c.PostgresNodes() {
			slots, err := c.QueryStrings(ctx, id, "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1")
			if err != nil {
				return err
			}
			if want := 0; id == primary {
				if len(slots) != len(c.PostgresNodes())-1 {
					return fmt.Errorf("primary %s has slots %v", id, slots)
				}
			} else if len(slots) != want {
				return fmt.Errorf("standby %s has slots %v", id, slots)
			}
		}
		return nil
	})
}

func failoverTrials(t *testing.T, trials int, profile string) {
	c, dsn, port, _ := benchSetup(t, profile)
	if out, err := c.Ctl("edit-config", "--set", "synchronous_mode=on"); err != nil {
		t.Fatalf("synchronous mode: %v\n%s", err, out)
	}
	e2e.Eventually(t, 60*time.Second, "a recorded synchronous standby", func() error {
		st, err := c.State()
		if err != nil || len(st.Sync.GetMembers()) == 0 {
			return fmt.Errorf("sync set %v (%v)", st.GetSync().GetMembers(), err)
		}
		return nil
	})
	ctx := testCtx(t)
	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	w := startAckedWriter(loadCtx, dsn, 50*time.Millisecond)
	var unavail, assign stats
	lost := 0
	t.Logf("profile %s, synchronous_mode on, %d trials", profile, trials)
	for i := 1; i <= trials; i++ {
		primary, epoch := c.WaitHealthy(120 * time.Second)
		e2e.Eventually(t, 60*time.Second, "a recorded synchronous standby", func() error {
			st, err := c.State()
			if err != nil || len(st.Sync.GetMembers()) == 0 || st.Sync.GetEpoch() != epoch {
				return fmt.Errorf("no sync standby at epoch %d yet", epoch)
			}
			return nil
		})
		time.Sleep(500 * time.Millisecond) // some acknowledged writes on this primary
		killed := time.Now()
		c.KillHost(primary)
		assigned, _ := waitEpoch(t, c, epoch)
		var first time.Time
		var fport int
		e2e.Eventually(t, 60*time.Second, "a write on the new primary", func() error {
			var ok bool
			if first, fport, ok = w.firstAfter(killed, port[primary]); !ok {
				return fmt.Errorf("none yet")
			}
			return nil
		})
		newPrimary := ""
		for id, p := range port {
			if p == fport {
				newPrimary = id
			}
		}
		ids := w.idsUntil(killed)
		have, err := c.QueryInts(ctx, newPrimary, "SELECT n FROM bw WHERE g = 0")
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for _, id := range ids {
			if !slices.Contains(have, int64(id)) {
				missing++
			}
		}
		lost += missing
		unavail = append(unavail, first.Sub(killed))
		assign = append(assign, assigned.Sub(killed))
		t.Logf("trial %d: %s killed; %s took over; writes resumed after %v; assignment seen after %v; acknowledged writes lost: %d of %d",
			i, primary, newPrimary, first.Sub(killed).Round(time.Millisecond), assigned.Sub(killed).Round(time.Millisecond), missing, len(ids))
		c.StartAgent(primary)
	}
	stop()
	w.wg.Wait()
	t.Logf("FAILOVER (%s profile, %d trials): client unavailability %v", profile, trials, unavail)
	t.Logf("FAILOVER (%s profile, %d trials): kill to new primary assigned %v", profile, trials, assign)
	t.Logf("FAILOVER (%s profile, %d trials): acknowledged writes lost: %d", profile, trials, lost)
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost in synchronous mode", lost)
	}
}

// TestBenchSwitchover runs N planned switchovers with four writers going
// through PgBouncer and prints client errors, the longest write stall, and
// the time from the new primary's exposure (the committed decision that
// bouncers may route to it) to the first write that reached it.
func TestBenchSwitchover(t *testing.T) {
	trials, profile := benchEnabled(t, "switchover")
	switchoverTrials(t, trials, profile)
}

func switchoverTrials(t *testing.T, trials int, profile string) *e2e.Cluster {
	c, dsn, port, pgbLog := benchSetup(t, profile)
	ctx := testCtx(t)
	exposedAt := watchExposures(t, ctx, c)
	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	l := startWriters(loadCtx, dsn, 4)
	var stall, repoint, resumed, total stats
	errors := 0
	for i := 1; i <= trials; i++ {
		primary, epoch := c.WaitHealthy(120 * time.Second)
		time.Sleep(500 * time.Millisecond)
		target := ""
		for _, id := range c.PostgresNodes() {
			if id != primary && target == "" {
				target = id
			}
		}
		_, before := l.counts()
		start := time.Now()
		if err := c.Switchover(target); err != nil {
			t.Fatal(err)
		}
		var first time.Time
		e2e.Eventually(t, 60*time.Second, "a write on "+target, func() error {
			var ok bool
			if first, ok = l.firstOn(port[target], start); !ok {
				return fmt.Errorf("none yet")
			}
			return nil
		})
		_, after := l.counts()
		exp := exposedAt(epoch + 1)
		gap := l.maxGap(start, first)
		errors += after - before
		stall, total = append(stall, gap), append(total, first.Sub(start))
		rp, rs := time.Duration(-1), time.Duration(-1)
		if !exp.IsZero() {
			rp = first.Sub(exp)
			repoint = append(repoint, rp)
			if at, ok := pgbResumeAfter(pgbLog, exp.Add(-50*time.Millisecond)); ok {
				rs = at.Sub(exp)
				resumed = append(resumed, rs)
			}
		}
		t.Logf("trial %d: %s -> %s: client errors %d, longest write stall %v, exposed->PgBouncer resumed on the new route %v, exposed->first write %v, request->first write %v",
			i, primary, target, after-before, gap.Round(time.Millisecond), rs.Round(time.Millisecond), rp.Round(time.Millisecond), first.Sub(start).Round(time.Millisecond))
	}
	stop()
	l.wait()
	t.Logf("SWITCHOVER (%s profile, %d trials): client errors %d", profile, trials, errors)
	t.Logf("SWITCHOVER (%s profile, %d trials): write stall %v", profile, trials, stall)
	t.Logf("SWITCHOVER (%s profile, %d trials): exposure committed -> PgBouncer resumed on the new route (its log) %v", profile, trials, resumed)
	t.Logf("SWITCHOVER (%s profile, %d trials): exposure committed -> first write through PgBouncer on the new primary %v", profile, trials, repoint)
	t.Logf("SWITCHOVER (%s profile, %d trials): request -> first write on the new primary %v", profile, trials, total)
	if errors > 0 {
		t.Errorf("%d client errors during planned switchovers", errors)
	}
	return c
}

// watchExposures follows the Watch stream of every member and records, per
// epoch, when the primary's exposure first arrived from any of them: the
// moment it committed, give or take the fastest member's apply, whichever
// member a bouncer agent happens to watch.
func watchExposures(t *testing.T, ctx context.Context, c *e2e.Cluster) func(uint64) time.Time {
	var mu sync.Mutex
	seen := map[uint64]time.Time{}
	pool := rpc.NewPool(nil)
	t.Cleanup(pool.Close)
	for _, ep := range strings.Split(c.Endpoints(), ",") {
		go func() {
			for ctx.Err() == nil {
				cl, err := pool.Client(ep)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				stream, err := cl.Watch(ctx, &pb.WatchRequest{})
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				for {
					ev, err := stream.Recv()
					if err != nil {
						break
					}
					now := time.Now()
					p := ev.GetSnapshot().GetPrimary()
					if d := ev.GetDelta(); d != nil {
						p = d.GetPrimary()
					}
					if p.GetExposed() {
						mu.Lock()
						if at, ok := seen[p.Epoch]; !ok || now.Before(at) {
							seen[p.Epoch] = now
						}
						mu.Unlock()
					}
				}
			}
		}()
	}
	return func(epoch uint64) time.Time {
		mu.Lock()
		defer mu.Unlock()
		return seen[epoch]
	}
}

// TestBenchIdle measures what an idle cluster costs (DESIGN.md: an idle
// node under 1 % of a core and 64 MiB RSS): it starts three nodes, waits
// until they are healthy, lets them settle, then reads each agent's CPU
// time (utime+stime in /proc/PID/stat) at both ends of a window
// (PGQUORUMBENCH_WINDOW, default 60s) and its RSS at the end, and prints
// them by role. It also counts the Raft entries committed in the window,
// which on an idle cluster are all lease renewals.
func TestBenchIdle(t *testing.T) {
	_, profile := benchEnabled(t, "idle")
	window := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("PGQUORUMBENCH_WINDOW")); err == nil && d > 0 {
		window = d
	}
	c := e2e.New(t, e2e.Options{Profile: profile})
	c.WaitHealthy(120 * time.Second)
	// Start-up work (base backups, the first checkpoints, slot creation)
	// is not idling.
	time.Sleep(idleSettle)
	primary, epoch := c.WaitHealthy(60 * time.Second)
	pool := rpc.NewPool(nil)
	defer pool.Close()
	leader, commit0 := idleLeader(t, pool, c)
	pids := map[string]int{}
	before, beforeKids := map[string]time.Duration{}, map[string]time.Duration{}
	for _, id := range c.PostgresNodes() {
		pids[id] = c.AgentPID(id)
		if pids[id] == 0 {
			t.Fatalf("agent %s not running", id)
		}
		before[id], beforeKids[id] = procCPU(t, pids[id])
	}
	guard := c.GuardPID(primary)
	guardBefore := time.Duration(0)
	if guard > 0 {
		guardBefore, _ = procCPU(t, guard)
	}
	load0 := loadAvg()
	t.Logf("idling for %v: agent PIDs %v, fence guard %d", window, pids, guard)
	t0 := time.Now()
	time.Sleep(window)
	elapsed := time.Since(t0)
	used, usedKids := map[string]time.Duration{}, map[string]time.Duration{}
	for id, pid := range pids {
		self, kids := procCPU(t, pid)
		used[id], usedKids[id] = self-before[id], kids-beforeKids[id]
	}
	guardUsed := time.Duration(0)
	if guard > 0 {
		g, _ := procCPU(t, guard)
		guardUsed = g - guardBefore
	}
	load1 := loadAvg()
	leader2, commit1 := idleLeader(t, pool, c)
	if p, e := c.WaitHealthy(30 * time.Second); p != primary || e != epoch || leader2 != leader {
		t.Errorf("the cluster did not stay idle: primary %s -> %s, epoch %d -> %d, leader %s -> %s", primary, p, epoch, e, leader, leader2)
	}
	t.Logf("IDLE (%s profile, %v window): Raft entries committed %d (%.2f/s); machine load average %s at the start, %s at the end",
		profile, elapsed.Round(time.Second), commit1-commit0, float64(commit1-commit0)/elapsed.Seconds(), load0, load1)
	for _, id := range c.PostgresNodes() {
		var roles []string
		if id == leader {
			roles = append(roles, "leader")
		}
		if id == primary {
			roles = append(roles, "primary")
		} else {
			roles = append(roles, "replica")
		}
		t.Logf("IDLE (%s profile): %s %-14s agent CPU %5.2f %% of a core (+%.2f %% in its reaped children), RSS %5.1f MiB", profile, id,
			strings.Join(roles, "+"), 100*used[id].Seconds()/elapsed.Seconds(), 100*usedKids[id].Seconds()/elapsed.Seconds(),
			float64(procRSS(pids[id]))/(1<<20))
	}
	if guard > 0 {
		t.Logf("IDLE (%s profile): %s fence guard      CPU %5.2f %% of a core, RSS %5.1f MiB", profile, primary,
			100*guardUsed.Seconds()/elapsed.Seconds(), float64(procRSS(guard))/(1<<20))
	}
}

// idleSettle is how long TestBenchIdle waits after the cluster is healthy
// before it starts counting.
const idleSettle = 20 * time.Second

// idleLeader asks every node for its status and returns the Raft leader
// and the highest commit index seen.
func idleLeader(t *testing.T, pool *rpc.Pool, c *e2e.Cluster) (string, uint64) {
	t.Helper()
	leader, commit := "", uint64(0)
	for _, n := range c.Nodes {
		cl, err := pool.Client(n.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cl.Status(ctx, &pb.StatusRequest{})
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", n.ID, err)
		}
		if st.LeaderId != "" {
			leader = st.LeaderId
		}
		commit = max(commit, st.CommitIndex)
	}
	return leader, commit
}

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/PID/stat (100 on every Linux architecture Go supports here).
const clockTicks = 100

// procCPU returns the CPU time (user + system) pid has used so far, and
// that of its children it has waited for (pg_controldata and the like;
// not PostgreSQL, which keeps running).
func procCPU(t *testing.T, pid int) (self, children time.Duration) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which may hold spaces: state is
	// field 3, utime 14 and stime 15 (proc(5)).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ticks [4]int64 // utime, stime, cutime, cstime: fields 14-17
	for i := range ticks {
		var err error
		if ticks[i], err = strconv.ParseInt(f[14-3+i], 10, 64); err != nil {
			t.Fatalf("/proc/%d/stat: %q", pid, s)
		}
	}
	return time.Duration(ticks[0]+ticks[1]) * time.Second / clockTicks, time.Duration(ticks[2]+ticks[3]) * time.Second / clockTicks
}

// loadAvg is the 1-minute load average of the machine: the figures of a
// busy machine are higher (shared caches, more context switches).
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// procRSS returns the resident set size of pid in bytes (VmRSS), or 0.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// pgbResumeAfter finds, in PgBouncer's log, the first RESUME command it
// logged after t: the moment it routes to the route staged for the new
// primary (its log has millisecond stamps in UTC).
func pgbResumeAfter(path string, t time.Time) (time.Time, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "RESUME") || !strings.Contains(line, "command issued") || len(line) < 23 {
			continue
		}
		at, err := time.ParseInLocation("2006-01-02 15:04:05.000", line[:23], time.UTC)
		if err == nil && at.After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}
