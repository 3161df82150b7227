//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/jackc/pgx/v5"

	"github.com/pgquorum/pgquorum/internal/e2e"
)

// skip skips the test unless the machine can run a campaign.
func skip(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chaos: needs root (network namespaces, iptables, cgroup freezer; PostgreSQL runs as the postgres user)")
	}
	for _, b := range []string{"ip", "iptables", "setpriv", "mkfs.ext4", "mount", "losetup"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("chaos: %s missing", b)
		}
	}
	if _, err := os.Stat(filepath.Join(freezerRoot, "freezer.state")); err != nil {
		if _, err := os.Stat(freezerRoot); err != nil {
			t.Skipf("chaos: no cgroup v1 freezer at %s", freezerRoot)
		}
	}
	if _, err := os.Stat(filepath.Join(blkioRoot, "blkio.throttle.write_bps_device")); err != nil {
		t.Skipf("chaos: no cgroup v1 blkio throttle at %s", blkioRoot)
	}
	e2e.Skip(t)
}

// SeedFromEnv returns $SEED, or a fresh random seed.
func SeedFromEnv(t *testing.T) uint64 {
	if s := os.Getenv("SEED"); s != "" {
		var seed uint64
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("chaos: SEED=%q: %v", s, err)
		}
		return seed
	}
	return rand.Uint64() >> 1
}

// Run builds the topology, runs a campaign and checks it. A failing run
// keeps everything in one directory it prints; `SEED=<seed>` replays the
// schedule (the same draws of faults, hold times and pauses; which node is
// hit follows the cluster's state at the time).
func Run(t *testing.T, cfg Config) Summary {
	skip(t)
	for _, k := range cfg.Kinds {
		if !slices.ContainsFunc(Nemeses, func(n Nemesis) bool { return n.Kind == k }) {
			t.Fatalf("chaos: unknown nemesis kind %q", k)
		}
	}
	if swept := Sweep(); len(swept) > 0 {
		t.Logf("chaos: swept leftovers of earlier runs: %v", swept)
	}
	var net *Net
	var c *Cluster
	var dir string
	t.Cleanup(func() {
		if c != nil {
			c.Close()
		}
		if net != nil {
			if err := net.Close(); err != nil {
				t.Errorf("chaos: removing the topology: %v", err)
			}
		}
		if dir == "" {
			return
		}
		if t.Failed() || os.Getenv("CHAOS_KEEP") != "" {
			t.Logf("chaos: kept %s (seed %d): history.jsonl, nemesis.log, probe.log, summary.md, errors.txt, n*/agent.log, n*/pgdata.log, pgb/*.log", dir, cfg.Seed)
			return
		}
		_ = os.RemoveAll(dir)
	})
	if cfg.Nodes < 3 || cfg.Nodes > 5 {
		t.Fatalf("chaos: %d nodes; CHAOS_NODES must be 3 to 5", cfg.Nodes)
	}
	hosts := []string{}
	for i := 1; i <= cfg.Nodes; i++ {
		hosts = append(hosts, fmt.Sprintf("n%d", i))
	}
	var err error
	net, err = NewNet(append(hosts, "pgb", "cl")...)
	if err != nil {
		t.Fatalf("chaos: topology: %v", err)
	}
	// The directory carries the prefix, so a sweep finds its mounts.
	dir = filepath.Join(os.TempDir(), "pqchaos-"+net.Prefix)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	env := ""
	if cfg.Nodes != 3 {
		env = fmt.Sprintf("CHAOS_NODES=%d ", cfg.Nodes)
	}
	if len(cfg.Kinds) > 0 {
		env += "CHAOS_KINDS=" + strings.Join(cfg.Kinds, ",") + " "
	}
	writeFile(dir, "seed.txt", fmt.Sprintf("%d\nreplay: %sCHAOS_DURATION=%v SEED=%d go test -tags chaos -count=1 -v -run '^%s$' ./internal/chaos\n",
		cfg.Seed, env, cfg.Duration, cfg.Seed, t.Name()))
	t.Logf("chaos: seed %d, run directory %s", cfg.Seed, dir)
	c, err = StartCluster(t, net, dir, cfg.Nodes)
	if err != nil {
		t.Fatalf("chaos: start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := setup(ctx, c); err != nil {
		t.Fatalf("chaos: setup: %v", err)
	}

	h, err := NewHistory(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	logf, err := os.Create(filepath.Join(dir, "nemesis.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	wctx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	prober, err := StartProber(wctx, c, h, filepath.Join(dir, "probe.log"), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	w := StartWorkload(wctx, c.BouncerDSN(), nsDialer(c.Client.NS), h, cfg.Inserters, cfg.Registers, cfg.Seed)
	cp := &campaign{cfg: cfg, c: c, h: h, rng: rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)), log: logf}
	cp.logf("campaign starts: seed %d, %v of faults, %d nodes, topology %s (%s.0/24)", cfg.Seed, cfg.Duration, cfg.Nodes, net.Prefix, net.Subnet)
	cp.run(ctx)

	// Faults are over; the cluster must be whole again by itself.
	var violations []string
	primary, took, err := c.WaitHealthy(ctx, cfg.HealBound)
	if err != nil {
		violations = append(violations, "cluster did not heal without manual steps: "+err.Error())
	} else {
		cp.logf("healthy %v after the last cycle; primary %s", took.Round(time.Millisecond), primary)
	}
	cp.noteEpochs(ctx)
	sleepCtx(ctx, 3*time.Second)
	stopWork()
	w.Wait()
	dual := prober.Stop()
	_ = h.Close()

	s := Summary{Seed: cfg.Seed, Nodes: cfg.Nodes, Elapsed: h.Now(), Cycles: len(cp.cycles), Faults: map[string]int{}, DualProbe: len(dual), Skipped: cp.skipped}
	for _, cy := range cp.cycles {
		for _, f := range cy.Faults {
			kind, _, _ := strings.Cut(f, ":")
			s.Faults[kind]++
		}
		planned := slices.ContainsFunc(cy.Faults, func(f string) bool { return strings.HasPrefix(f, "switchover:") })
		switch {
		case cy.Failover > 0 && planned:
			s.Switchovers = append(s.Switchovers, cy.Failover)
		case cy.Failover > 0:
			s.Failovers = append(s.Failovers, cy.Failover)
		}
		s.Outages = append(s.Outages, cy.Outage)
		if cy.Recovery >= 0 && cy.Err == "" {
			s.Recoveries = append(s.Recoveries, cy.Recovery)
		}
		if over := cy.OverBound(); over != "" {
			s.OverBound++
			violations = append(violations, fmt.Sprintf("cycle %d (%v) recovered too slowly: %s", cy.N, cy.Faults, over))
		}
		if cy.Err == "" {
			s.HealTimes = append(s.HealTimes, cy.Healthy-cy.Healed)
		} else {
			violations = append(violations, fmt.Sprintf("cycle %d (%v) did not heal: %s", cy.N, cy.Faults, cy.Err))
		}
	}
	for _, d := range dual {
		violations = append(violations, "two members out of recovery at once (probe): "+d)
	}
	ops := h.Ops()
	if primary != "" {
		p, reps, err := finalReads(ctx, c, primary)
		if err != nil {
			violations = append(violations, "final read: "+err.Error())
		} else {
			s.Inserts = CheckInserts(ops, p, reps)
			violations = append(violations, s.Inserts.Violations()...)
		}
	}
	pr := CheckPrimaries(ops)
	s.DualHistory = pr.DualWindows
	violations = append(violations, pr.Violations()...)
	epochs := Epochs{Assignments: cp.assignments()}
	if f, err := os.Open(filepath.Join(dir, "pgb", "bouncer-agent.log")); err == nil {
		epochs.Acks, err = ParseAcks(f, h.Since)
		_ = f.Close()
		if err != nil {
			violations = append(violations, "reading the bouncer agent's log: "+err.Error())
		}
	}
	if b, err := json.MarshalIndent(epochs, "", " "); err == nil {
		writeFile(dir, "epochs.json", string(b)+"\n")
	}
	br := CheckBouncerAcks(ops, epochs)
	s.Bouncer = br
	violations = append(violations, br.Violations()...)
	res, n := CheckLinearizable(ops, 2*time.Minute, filepath.Join(dir, "register.html"))
	s.Register = fmt.Sprintf("%s (%d ops)", res, n)
	if res == porcupine.Illegal {
		violations = append(violations, "register history is not linearizable: see register.html")
	}
	s.Violations = violations
	writeFile(dir, "errors.txt", errorCounts(ops))
	stale := slices.Clone(pr.StaleAcks)
	for _, r := range br.Stale {
		stale = append(stale, r.Op)
	}
	if ex := Excerpt(ops, slices.Concat(s.Inserts.Lost, s.Inserts.Phantoms, s.Inserts.FailedPresent), stale); ex != "" {
		writeFile(dir, "excerpt.txt", ex)
		t.Logf("chaos: history excerpt:\n%s", ex)
	}
	table := s.Table()
	writeFile(dir, "summary.md", table+"\n"+strings.Join(violations, "\n")+"\n")
	t.Logf("chaos: summary (seed %d):\n%s", cfg.Seed, table)
	for _, v := range violations {
		t.Errorf("chaos: VIOLATION (seed %d): %s", cfg.Seed, v)
	}
	return s
}

// setup waits for the first primary, creates the workload's tables,
// turns synchronous replication on and waits for a healthy cluster.
func setup(ctx context.Context, c *Cluster) error {
	deadline := time.Now().Add(3 * time.Minute)
	var primary string
	for {
		p, _, _, err := c.Primary(ctx)
		if err == nil && p != "" {
			if rec, err2 := c.InRecovery(ctx, c.Node(p), 3*time.Second); err2 == nil && !rec {
				primary = p
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no writable primary after 3m: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	err := nodeQuery(ctx, c.Node(primary), 30*time.Second, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, Schema)
		return err
	})
	if err != nil {
		return err
	}
	// strict: "on" falls back to asynchronous replication when no standby
	// is healthy (recorded in the FSM first), and a write acknowledged in
	// that window may be lost by a failover, by design (seed
	// 7473406816466120686 under flapping partitions). Only strict promises
	// that no acknowledged write is lost, which is what the checker asserts.
	if out, err := c.Ctl(ctx, "edit-config", "--set", "synchronous_mode=strict", "--set", "synchronous_node_count=1"); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	_, _, err = c.WaitHealthy(ctx, 3*time.Minute)
	return err
}

// finalReads waits until every replica replayed the primary's WAL, then
// reads the ids on every member.
func finalReads(ctx context.Context, c *Cluster, primary string) (Read, []Read, error) {
	p := c.Node(primary)
	var lsn string
	err := nodeQuery(ctx, p, 10*time.Second, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn)
	})
	if err != nil {
		return Read{}, nil, err
	}
	read := func(n *Node) (Read, error) {
		r := Read{Node: n.ID}
		err := nodeQuery(ctx, n, 30*time.Second, func(ctx context.Context, conn *pgx.Conn) error {
			rows, err := conn.Query(ctx, "SELECT id FROM chaos_ids")
			if err != nil {
				return err
			}
			r.IDs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			return err
		})
		return r, err
	}
	pr, err := read(p)
	if err != nil {
		return pr, nil, err
	}
	var reps []Read
	var errs []error
	for _, n := range c.Nodes {
		if n == p {
			continue
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			var caught bool
			err := nodeQuery(ctx, n, 5*time.Second, func(ctx context.Context, conn *pgx.Conn) error {
				return conn.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", lsn).Scan(&caught)
			})
			if err == nil && caught {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("%s did not replay up to %s within 60s: %v", n.ID, lsn, err))
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		r, err := read(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		reps = append(reps, r)
	}
	return pr, reps, errors.Join(errs...)
}

// errorCounts counts the error messages of failed and unknown attempts
// (digits blanked so that one cause is one line), most frequent first.
func errorCounts(ops []Op) string {
	counts := map[string]int{}
	for _, o := range ops {
		if o.Outcome == OK {
			continue
		}
		msg := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '#'
			}
			return r
		}, o.Err)
		counts[string(o.Outcome)+" "+o.Kind+": "+msg]++
	}
	keys := sortedKeys(counts)
	slices.SortStableFunc(keys, func(a, b string) int { return counts[b] - counts[a] })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%6d %s\n", counts[k], k)
	}
	return b.String()
}
