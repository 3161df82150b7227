package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgquorum/pgquorum/internal/e2e"
	"github.com/pgquorum/pgquorum/internal/pgtest"
)

// TestBouncer_SwitchoverAndHostLoss runs a 3-node cluster, a real
// PgBouncer and `pgquorum bouncer`, with writers going through PgBouncer:
// a `ctl switchover` must cost no client error, and after kill -9 of the
// primary host (agent, guard, postmaster) the writers must recover
// without anyone touching PgBouncer.
func TestBouncer_SwitchoverAndHostLoss(t *testing.T) {
	c := e2e.New(t, e2e.Options{})
	primary, _ := c.WaitHealthy(90 * time.Second)
	ctx := testCtx(t)
	if err := c.Exec(ctx, primary, "CREATE TABLE bw (g int, n int)"); err != nil {
		t.Fatal(err)
	}
	pgb := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{Users: map[string]string{"postgres": e2e.SuperuserPassword}})
	startBouncerAgent(t, c, pgb)

	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=app sslmode=disable connect_timeout=5",
		pgb.Port, e2e.SuperuserPassword)
	port := map[string]int{}
	for _, n := range c.Nodes {
		port[n.ID] = n.PGPort
	}
	e2e.Eventually(t, 30*time.Second, "app routed to the primary through PgBouncer", func() error {
		got, err := serverPortOf(ctx, dsn)
		if err == nil && got != port[primary] {
			err = fmt.Errorf("routed to port %d, primary %s listens on %d", got, primary, port[primary])
		}
		return err
	})
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	l := startWriters(loadCtx, dsn, 4)
	e2e.Eventually(t, 10*time.Second, "writes through PgBouncer", func() error {
		if ok, _ := l.counts(); ok < 50 {
			return fmt.Errorf("%d writes so far", ok)
		}
		return nil
	})

	// Planned switchover: zero client errors.
	target := ""
	for _, id := range c.PostgresNodes() {
		if id != primary && target == "" {
			target = id
		}
	}
	_, errsBefore := l.counts()
	start := time.Now()
	if out, err := c.Ctl("switchover", "--candidate", target); err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	e2e.Eventually(t, 30*time.Second, "a write on "+target, func() error {
		if _, ok := l.firstOn(port[target], start); !ok {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	first, _ := l.firstOn(port[target], start)
	_, errsAfter := l.counts()
	t.Logf("switchover %s -> %s through PgBouncer: first write on %s +%v, longest write gap %v, %d client errors",
		primary, target, target, first.Sub(start).Round(time.Millisecond), l.maxGap(start, first).Round(time.Millisecond), errsAfter-errsBefore)
	if n := errsAfter - errsBefore; n != 0 {
		t.Errorf("%d client errors during the planned switchover; first: %v", n, l.firstErrorAfter(start))
	}
	out, err := c.Ctl("list")
	if err != nil || !strings.Contains(out, "BOUNCER AGENT") || !strings.Contains(out, "pgb-e2e") {
		t.Errorf("ctl list lacks the bouncer agent (%v):\n%s", err, out)
	}
	t.Logf("ctl list:\n%s", out)

	// Loss of the primary host: the writers recover on another member,
	// PgBouncer untouched.
	pgbPID := pgb.PID()
	killed := time.Now()
	c.KillHost(target)
	var next string
	e2e.Eventually(t, 30*time.Second, "a write on a new primary", func() error {
		for _, id := range c.PostgresNodes() {
			if _, ok := l.firstOn(port[id], killed); ok && id != target {
				next = id
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	recovered, _ := l.firstOn(port[next], killed)
	stopLoad()
	l.wait()
	ok, failed := l.counts()
	t.Logf("host loss of %s: first write on %s +%v after kill -9; %d writes, %d client errors in total",
		target, next, recovered.Sub(killed).Round(time.Millisecond), ok, failed)
	if pgb.PID() != pgbPID {
		t.Error("PgBouncer was restarted")
	}
	if d := recovered.Sub(killed); d > 10*time.Second {
		t.Errorf("recovery took %v", d)
	}
}

// startBouncerAgent writes the agent's config and runs `pgquorum bouncer`
// until the test ends (stopped by PID).
func startBouncerAgent(t *testing.T, c *e2e.Cluster, pgb *pgtest.PgBouncer) {
	// Under the cluster's directory, so PGQUORUME2E_KEEP keeps its log.
	runBouncerAgent(t, c, pgb, bouncerAgentRun{id: "pgb-e2e", dir: filepath.Join(c.Base, "bouncer"),
		password: pgb.AdminPassword, logLevel: "info", dumpOnFailure: true})
}

// bouncerAgentRun says how runBouncerAgent starts `pgquorum bouncer`.
type bouncerAgentRun struct {
	id, dir  string
	password string   // written into the config; empty: the agent's environment must carry it
	logLevel string   // info or debug
	env      []string // added to the agent's environment
	// dumpOnFailure logs the agent's log tail when the test failed.
	dumpOnFailure bool
}

// runBouncerAgent runs `pgquorum bouncer` for pgb, routing database "app"
// to the cluster's primary, until the test ends (SIGTERM, then kill). It
// returns the agent's log path.
func runBouncerAgent(t *testing.T, c *e2e.Cluster, pgb *pgtest.PgBouncer, r bouncerAgentRun) string {
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, n := range c.Nodes {
		eps = append(eps, strconv.Quote(n.GRPCAddr))
	}
	password := ""
	if r.password != "" {
		password = ", password: " + strconv.Quote(r.password)
	}
	cfg := fmt.Sprintf(`agent_id: %s
pgbouncer: {host: 127.0.0.1, port: %d, admin_user: %s%s, include_path: %s}
contact_lease: 1s
tls: {insecure: true}
log: {level: %s}
clusters:
  - name: %s
    endpoints: [%s]
    databases:
      - {name: app, dbname: postgres}
`, r.id, pgb.Port, pgb.AdminUser, password, pgb.IncludePath, r.logLevel, c.Name, strings.Join(eps, ", "))
	path := filepath.Join(r.dir, "bouncer.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(r.dir, "bouncer.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.Bin, "bouncer", "--config", path)
	// Not this process's PGQUORUM_POSTGRES_* (meant for the nodes).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PGQUORUM_POSTGRES_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, r.env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = lf.Close()
		if r.dumpOnFailure && t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("=== pgquorum bouncer log:\n%s", b)
		}
	})
	return logPath
}

func connectSimple(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return pgx.ConnectConfig(ctx, cfg)
}

func serverPortOf(ctx context.Context, dsn string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := connectSimple(cctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var port int
	err = conn.QueryRow(cctx, "SELECT current_setting('port')::int").Scan(&port)
	return port, err
}

// writers insert through PgBouncer in a loop and record every outcome.
type writers struct {
	mu     sync.Mutex
	okAt   []time.Time
	okPort []int
	errAt  []time.Time
	errs   []error
	wg     sync.WaitGroup
}

func startWriters(ctx context.Context, dsn string, n int) *writers {
	w := &writers{}
	for g := range n {
		w.wg.Go(func() {
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					_ = conn.Close(context.Background())
				}
			}()
			for seq := 0; ctx.Err() == nil; seq++ {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				var err error
				var port int
				if conn == nil {
					conn, err = connectSimple(sctx, dsn)
				}
				if err == nil {
					err = conn.QueryRow(sctx, "INSERT INTO bw VALUES ($1, $2) RETURNING current_setting('port')::int", g, seq).Scan(&port)
				}
				cancel()
				if ctx.Err() != nil {
					return
				}
				now := time.Now()
				w.mu.Lock()
				if err == nil {
					w.okAt, w.okPort = append(w.okAt, now), append(w.okPort, port)
				} else {
					w.errAt, w.errs = append(w.errAt, now), append(w.errs, err)
				}
				w.mu.Unlock()
				if err != nil {
					if conn != nil {
						_ = conn.Close(context.Background())
						conn = nil
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return w
}

func (w *writers) wait() { w.wg.Wait() }

func (w *writers) counts() (ok, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.okAt), len(w.errs)
}

// firstOn is the first successful write on the server at port at or after t0.
func (w *writers) firstOn(port int, t0 time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for i, at := range w.okAt {
		if w.okPort[i] == port && !at.Before(t0) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first, !first.IsZero()
}

// maxGap is the longest time without a successful write in [from, to].
func (w *writers) maxGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, gap := from, time.Duration(0)
	for _, at := range w.okAt { // appended in time order (one lock)
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return gap
}

func (w *writers) firstErrorAfter(t0 time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, at := range w.errAt {
		if !at.Before(t0) {
			return w.errs[i]
		}
	}
	return nil
}
