package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Summary is the table printed at the end of a campaign and copied into
// docs/chaos.md.
type Summary struct {
	Seed        uint64
	Nodes       int
	Elapsed     time.Duration
	Cycles      int
	Faults      map[string]int
	Skipped     int
	Inserts     InsertReport
	Register    string // porcupine's verdict and the number of ops
	DualHistory int    // windows from the history
	DualProbe   int    // windows from the observer's probes
	Failovers   []time.Duration
	Switchovers []time.Duration
	Outages     []time.Duration
	HealTimes   []time.Duration
	// Recoveries are the cycles' times to the first acknowledged write
	// (from the fault or the heal, see Cycle.Recovery); OverBound counts
	// the cycles that missed their bound.
	Recoveries []time.Duration
	OverBound  int
	Bouncer    BouncerReport
	Violations []string
}

// stats is "min / median / max" of ds, or "-".
func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	f := func(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
	return fmt.Sprintf("%s / %s / %s (n=%d)", f(s[0]), f(s[len(s)/2]), f(s[len(s)-1]), len(s))
}

// Table renders the summary as a Markdown table.
func (s Summary) Table() string {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	b.WriteString("| What | Figure |\n|---|---|\n")
	row("seed", fmt.Sprint(s.Seed))
	row("nodes", fmt.Sprint(s.Nodes))
	row("elapsed", s.Elapsed.Round(time.Second).String())
	row("cycles", fmt.Sprint(s.Cycles))
	var kinds []string
	for _, k := range sortedKeys(s.Faults) {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, s.Faults[k]))
	}
	row("faults by kind", strings.Join(kinds, ", "))
	row("faults skipped (did not apply)", fmt.Sprint(s.Skipped))
	r := s.Inserts
	row("inserts attempted / acknowledged / failed / unknown", fmt.Sprintf("%d / %d / %d / %d", r.Attempted, r.Acked, r.Failed, r.Unknown))
	row("unknown inserts that committed", fmt.Sprint(r.UnknownPresent))
	row("acknowledged inserts lost", fmt.Sprint(len(r.Lost)))
	row("phantom / duplicate / failed-but-present ids", fmt.Sprintf("%d / %d / %d", len(r.Phantoms), len(r.Duplicates), len(r.FailedPresent)))
	row("replicas diverged after heal", fmt.Sprint(len(r.Diverged)))
	row("register (porcupine)", s.Register)
	row("dual-primary windows (history / probe)", fmt.Sprintf("%d / %d", s.DualHistory, s.DualProbe))
	row("writes checked against the bouncer agent's acks / reached an older primary after an ack", fmt.Sprintf("%d / %d", s.Bouncer.Checked, len(s.Bouncer.Stale)))
	row("failover: first ack on the new primary after the fault, min / median / max", stats(s.Failovers))
	row("switchover: first ack on the new primary after `ctl switchover`, min / median / max", stats(s.Switchovers))
	row("longest write gap per cycle, min / median / max", stats(s.Outages))
	row("healthy again after heal, min / median / max", stats(s.HealTimes))
	row("write acknowledged again (from the fault for a lone failover, else from the heal), min / median / max", stats(s.Recoveries))
	row("cycles over their recovery bound", fmt.Sprint(s.OverBound))
	row("violations", fmt.Sprint(len(s.Violations)))
	return b.String()
}
