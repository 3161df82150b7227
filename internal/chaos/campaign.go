//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// Config shapes a campaign.
type Config struct {
	Seed uint64
	// Duration is how long faults are injected; setup, the final heal
	// and the checks come on top.
	Duration time.Duration
	// Kinds restricts the nemeses (all when empty).
	Kinds []string
	// Combine is the probability that a cycle adds a companion fault.
	Combine float64
	// HealBound is how long the cluster may take to be healthy again
	// after a fault is healed.
	HealBound            time.Duration
	Inserters, Registers int
	// Nodes is the number of pgquorum nodes, 3 to 5.
	Nodes int
}

// Cycle is one fault cycle: what struck, when, and how the cluster came
// back. Times are on the campaign clock.
type Cycle struct {
	N       int
	Faults  []string // kind:target
	Start   time.Duration
	Healed  time.Duration
	Healthy time.Duration
	// Before and After are the primaries before the fault and once
	// healthy again.
	Before, After string
	// Failover is the time from the fault to the first write
	// acknowledged by a different server, when the primary moved.
	Failover time.Duration
	// Outage is the longest stretch without an acknowledged insert from
	// the fault until healthy.
	Outage time.Duration
	// Recovery is how long after the bound's reference point (the heal,
	// or the fault for a lone failover: FromStart) writes flowed again
	// (RecoveryFrom; for FromStart, outages that began before the heal);
	// -1 when no write came. AfterHeal is the same from the heal, for a
	// FromStart cycle (bound healBound): a heal can disrupt writes again.
	Recovery, AfterHeal time.Duration
	Bound               time.Duration
	FromStart           bool
	Err                 string
}

// OverBound says how the cycle missed its recovery bound, or "".
func (c Cycle) OverBound() string {
	if c.Err != "" || c.Bound == 0 {
		return "" // did not heal: a violation of its own
	}
	from := "heal"
	if c.FromStart {
		from = "fault"
	}
	switch {
	case c.Recovery < 0:
		return fmt.Sprintf("no write acknowledged within %v of the %s", c.Bound, from)
	case c.Recovery > c.Bound:
		return fmt.Sprintf("writes flowed again %.2fs after the %s, bound %v", c.Recovery.Seconds(), from, c.Bound)
	case c.FromStart && c.AfterHeal > healBound:
		return fmt.Sprintf("writes flowed again %.2fs after the heal, bound %v", c.AfterHeal.Seconds(), healBound)
	}
	return ""
}

func (c Cycle) String() string {
	s := fmt.Sprintf("cycle %d at %.1fs: %s; held %.1fs; healthy %.1fs after heal; primary %s -> %s",
		c.N, c.Start.Seconds(), strings.Join(c.Faults, " + "), (c.Healed - c.Start).Seconds(), (c.Healthy - c.Healed).Seconds(), c.Before, c.After)
	if c.Failover > 0 {
		s += fmt.Sprintf("; failover %.2fs", c.Failover.Seconds())
	}
	s += fmt.Sprintf("; longest write gap %.2fs", c.Outage.Seconds())
	if c.Bound > 0 {
		from := "heal"
		if c.FromStart {
			from = "fault"
		}
		s += fmt.Sprintf("; write again %.2fs after the %s (bound %v)", c.Recovery.Seconds(), from, c.Bound)
		if c.FromStart {
			s += fmt.Sprintf(", %.2fs after the heal", c.AfterHeal.Seconds())
		}
	}
	if c.Err != "" {
		s += "; ERROR " + c.Err
	}
	return s
}

// campaign runs cycles until cfg.Duration has passed or a cycle leaves
// the cluster broken.
type campaign struct {
	cfg     Config
	c       *Cluster
	h       *History
	rng     *rand.Rand
	log     *os.File
	deck    []string
	cycles  []Cycle
	skipped int
	// epochs collects the primary assignments seen in the FSM history.
	epochs map[uint64]Assignment
}

// noteEpochs adds the FSM history's assignments to cp.epochs (the FSM
// keeps only the newest fsm.HistoryLimit).
func (cp *campaign) noteEpochs(ctx context.Context) {
	as, err := cp.c.Assignments(ctx, cp.h)
	if err != nil {
		return
	}
	if cp.epochs == nil {
		cp.epochs = map[uint64]Assignment{}
	}
	for _, a := range as {
		cp.epochs[a.Epoch] = a
	}
}

// assignments are the collected assignments by epoch.
func (cp *campaign) assignments() []Assignment {
	out := make([]Assignment, 0, len(cp.epochs))
	for _, e := range sortedKeys(cp.epochs) {
		out = append(out, cp.epochs[e])
	}
	return out
}

// draw takes the next kind from a shuffled deck of every allowed kind,
// so that a long enough campaign covers each kind evenly.
func (cp *campaign) draw() string {
	if len(cp.deck) == 0 {
		kinds := cp.cfg.Kinds
		if len(kinds) == 0 {
			for _, n := range Nemeses {
				kinds = append(kinds, n.Kind)
			}
		}
		cp.deck = append([]string(nil), kinds...)
		cp.rng.Shuffle(len(cp.deck), func(i, j int) { cp.deck[i], cp.deck[j] = cp.deck[j], cp.deck[i] })
	}
	k := cp.deck[0]
	cp.deck = cp.deck[1:]
	return k
}

func (cp *campaign) logf(format string, args ...any) {
	now := cp.h.Now()
	line := fmt.Sprintf("%9.3fs [%s] %s", now.Seconds(), cp.h.At(now).UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	fmt.Fprintln(cp.log, line)
	fmt.Println("chaos:", line)
}

// view reads who is primary, sync standby and Raft leader.
func (cp *campaign) view(ctx context.Context) (view, error) {
	v := view{c: cp.c}
	p, _, sync, err := cp.c.Primary(ctx)
	if err != nil {
		return v, err
	}
	if p == "" {
		return v, errors.New("no primary")
	}
	v.primary = cp.c.Node(p)
	for _, s := range sync {
		v.sync = append(v.sync, cp.c.Node(s))
	}
	if l := cp.c.Leader(ctx); l != "" {
		v.leader = cp.c.Node(l)
	}
	return v, nil
}

// run runs the cycles.
func (cp *campaign) run(ctx context.Context) {
	end := time.Now().Add(cp.cfg.Duration)
	for n := 1; time.Now().Before(end) && ctx.Err() == nil; n++ {
		sleepCtx(ctx, 2*time.Second+time.Duration(cp.rng.Int64N(int64(3*time.Second))))
		// Draw everything from the seed before looking at the cluster,
		// so a replay makes the same draws.
		kinds := []string{cp.draw()}
		if cp.rng.Float64() < cp.cfg.Combine {
			if k := companions[cp.rng.IntN(len(companions))]; k != kinds[0] {
				kinds = append(kinds, k)
			}
		}
		hold := nemesis(kinds[0]).Hold(cp.rng)
		sub := rand.New(rand.NewPCG(cp.rng.Uint64(), uint64(n)))
		cy := cp.cycle(ctx, n, kinds, hold, sub)
		if cy.Err == errSkip.Error() {
			n-- // nothing struck: not a cycle
			continue
		}
		cp.cycles = append(cp.cycles, cy)
		cp.logf("%s", cy)
		if cy.Err != "" {
			// Recorded as a violation; repair by hand, visibly, so the
			// campaign can go on, or stop.
			if err := cp.repair(ctx); err != nil {
				cp.logf("cycle %d: repair failed, campaign stops: %v", n, err)
				return
			}
		}
	}
}

// cycle injects kinds, holds, heals and waits for the cluster to be
// healthy again.
func (cp *campaign) cycle(ctx context.Context, n int, kinds []string, hold time.Duration, rng *rand.Rand) Cycle {
	cy := Cycle{N: n}
	cp.noteEpochs(ctx)
	v, err := cp.view(ctx)
	if err != nil {
		cy.Err = "before the fault: " + err.Error()
		return cy
	}
	cy.Before = v.primary.ID
	cy.Start = cp.h.Now()
	var heals []healFunc
	for _, k := range kinds {
		target, heal, err := nemesis(k).Inject(ctx, v, rng)
		switch {
		case errors.Is(err, errSkip):
			cp.logf("cycle %d: %s skipped (%v)", n, k, err)
			cp.skipped++
			continue
		case err != nil:
			cp.logf("cycle %d: %s on %s: inject: %v", n, k, target, err)
		}
		if heal != nil {
			heals = append(heals, heal)
		}
		cy.Faults = append(cy.Faults, k+":"+target)
		cp.logf("cycle %d: %s on %s, held %.1fs", n, k, target, hold.Seconds())
	}
	if len(cy.Faults) == 0 {
		cy.Err = errSkip.Error()
		return cy
	}
	sleepCtx(ctx, hold)
	for i := len(heals) - 1; i >= 0; i-- {
		if err := heals[i](); err != nil {
			cp.logf("cycle %d: heal: %v", n, err)
		}
	}
	cy.Healed = cp.h.Now()
	primary, _, err := cp.c.WaitHealthy(ctx, cp.cfg.HealBound)
	cy.Healthy = cp.h.Now()
	if err == nil {
		for _, n := range cp.c.Nodes {
			n.handStarted.Store(false) // a standby again
		}
	}
	if err != nil {
		cy.Err = err.Error()
	}
	cy.After = primary
	cy.Failover, cy.Outage = cp.measure(cy, v.primary.Host.IP)
	cp.noteEpochs(ctx)
	cp.recovery(ctx, &cy)
	return cy
}

// recovery measures how soon writes flowed again, against the cycle's
// bound: from the fault when one fault with FromStart struck alone
// (counting the outages that began before the heal; those after it are
// measured from the heal against healBound), else from the heal, with
// the largest bound of the cycle's kinds. Writes flow again at the first
// acknowledged insert after the reference point, or at the end of the
// last outage after it (RecoveryFrom): a fault that stops writes a moment
// after it strikes is measured from the fault, not from the last write
// that slipped through. It waits until an insert is acknowledged after
// the cluster was found healthy, at most until the bound has passed and
// 10 s more.
func (cp *campaign) recovery(ctx context.Context, cy *Cycle) {
	for _, f := range cy.Faults {
		kind, _, _ := strings.Cut(f, ":")
		cy.Bound = max(cy.Bound, nemesis(kind).Recover)
	}
	if len(cy.Faults) == 1 {
		kind, _, _ := strings.Cut(cy.Faults[0], ":")
		cy.FromStart = nemesis(kind).FromStart
	}
	ref := cy.Healed
	if cy.FromStart {
		ref = cy.Start
	}
	giveUp := max(cy.Healthy, ref+cy.Bound) + 10*time.Second
	for {
		returns := cp.h.AckReturns(ref)
		if n := len(returns); n > 0 && returns[n-1] >= cy.Healthy {
			if cy.FromStart {
				cy.Recovery = RecoveryFrom(returns, cy.Start, cy.Healed)
				cy.AfterHeal = RecoveryFrom(returns, cy.Healed, math.MaxInt64)
			} else {
				cy.Recovery = RecoveryFrom(returns, cy.Healed, math.MaxInt64)
			}
			return
		}
		if cy.Err != "" || cp.h.Now() > giveUp || ctx.Err() != nil {
			cy.Recovery, cy.AfterHeal = -1, -1
			return
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// measure finds, in the history so far, the first insert acknowledged by
// another server than before (failover) and the longest stretch without
// an acknowledged insert in the cycle.
func (cp *campaign) measure(cy Cycle, oldIP string) (failover, outage time.Duration) {
	last := cy.Start
	for _, o := range cp.h.Ops() {
		if o.Kind != KindInsert || o.Outcome != OK || o.Return < cy.Start || o.Return > cy.Healthy {
			continue
		}
		if failover == 0 && o.Server != oldIP && o.Call >= cy.Start {
			failover = o.Return - cy.Start
		}
		outage = max(outage, o.Return-last)
		last = max(last, o.Return)
	}
	outage = max(outage, cy.Healthy-last)
	return failover, outage
}

// writeFile writes name in the run's directory.
func writeFile(dir, name, content string) {
	_ = os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
}

// repair is the manual step an operator would take after a fault the
// cluster did not heal from by itself: a node that is no member is added
// back, and every member that does not stream from the primary is wiped
// and cloned again (kill -9, remove its data directory, restart its
// agent). It is logged; the cycle already counts as a violation.
func (cp *campaign) repair(ctx context.Context) error {
	if st, err := cp.c.State(ctx); err == nil {
		for _, n := range cp.c.Nodes {
			if !slices.ContainsFunc(st.GetMembers(), func(m *pb.Member) bool { return m.GetId() == n.ID }) {
				cp.logf("REPAIR by hand: %s is not a member; adding it back", n.ID)
				if err := cp.c.AddMember(ctx, n); err != nil {
					return err
				}
			}
		}
	}
	p, _, _, err := cp.c.Primary(ctx)
	if err != nil || p == "" {
		return fmt.Errorf("no primary to repair around: %v", err)
	}
	var streaming []string
	err = nodeQuery(ctx, cp.c.Node(p), 5*time.Second, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
		if err != nil {
			return err
		}
		streaming, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return err
	}
	for _, n := range cp.c.Nodes {
		if n.ID == p || slices.Contains(streaming, n.ID) {
			continue
		}
		cp.logf("REPAIR by hand: %s does not stream from %s; wiping and re-cloning it", n.ID, p)
		n.KillHost()
		if err := os.RemoveAll(n.PGDataDir); err != nil {
			return err
		}
		if err := n.agent.start(); err != nil {
			return err
		}
	}
	_, took, err := cp.c.WaitHealthy(ctx, cp.cfg.HealBound)
	if err == nil {
		cp.logf("healthy %v after the repair", took.Round(time.Millisecond))
		for _, n := range cp.c.Nodes {
			n.handStarted.Store(false)
		}
	}
	return err
}
