package chaos

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Read is the final read of one PostgreSQL member: every id in the table.
type Read struct {
	Node string
	IDs  []int64
}

// InsertReport is the verdict on the id workload.
type InsertReport struct {
	Attempted, Acked, Failed, Unknown int
	// Lost are acknowledged ids missing from the primary's final read.
	Lost []int64
	// Phantoms are ids read that no client ever attempted.
	Phantoms []int64
	// Duplicates are ids read more than once, by member.
	Duplicates map[string][]int64
	// FailedPresent are ids whose attempt was reported as a definite
	// failure but that are in the final read: the error was a lie.
	FailedPresent []int64
	// Diverged names the replicas whose ids differ from the primary's.
	Diverged []string
	// UnknownPresent counts unknown attempts that did commit.
	UnknownPresent int
}

// Violations lists what broke, one line each; empty when all held.
func (r InsertReport) Violations() []string {
	var v []string
	if len(r.Lost) > 0 {
		v = append(v, fmt.Sprintf("%d acknowledged ids lost: %v", len(r.Lost), head(r.Lost)))
	}
	if len(r.Phantoms) > 0 {
		v = append(v, fmt.Sprintf("%d ids read that were never attempted: %v", len(r.Phantoms), head(r.Phantoms)))
	}
	for _, n := range sortedKeys(r.Duplicates) {
		v = append(v, fmt.Sprintf("%s: %d duplicate ids: %v", n, len(r.Duplicates[n]), head(r.Duplicates[n])))
	}
	if len(r.FailedPresent) > 0 {
		v = append(v, fmt.Sprintf("%d ids reported failed are present: %v", len(r.FailedPresent), head(r.FailedPresent)))
	}
	for _, d := range r.Diverged {
		v = append(v, "replica diverged: "+d)
	}
	return v
}

// CheckInserts compares the id workload's history with the final reads:
// primary is the read of the primary, replicas those of the others after
// they caught up.
func CheckInserts(ops []Op, primary Read, replicas []Read) InsertReport {
	r := InsertReport{Duplicates: map[string][]int64{}}
	outcome := map[int64]Outcome{}
	for _, o := range ops {
		if o.Kind != KindInsert {
			continue
		}
		r.Attempted++
		outcome[o.Value] = o.Outcome
		switch o.Outcome {
		case OK:
			r.Acked++
		case Fail:
			r.Failed++
		default:
			r.Unknown++
		}
	}
	present := map[int64]bool{}
	for _, id := range primary.IDs {
		present[id] = true
		oc, attempted := outcome[id]
		switch {
		case !attempted:
			r.Phantoms = append(r.Phantoms, id)
		case oc == Fail:
			r.FailedPresent = append(r.FailedPresent, id)
		case oc == Unknown:
			r.UnknownPresent++
		}
	}
	for id, oc := range outcome {
		if oc == OK && !present[id] {
			r.Lost = append(r.Lost, id)
		}
	}
	for _, rd := range append([]Read{primary}, replicas...) {
		if d := duplicates(rd.IDs); len(d) > 0 {
			r.Duplicates[rd.Node] = d
		}
	}
	want := dedupSorted(primary.IDs)
	for _, rd := range replicas {
		got := dedupSorted(rd.IDs)
		if !slices.Equal(got, want) {
			missing, extra := diff(want, got)
			r.Diverged = append(r.Diverged, fmt.Sprintf("%s: %d ids (primary %s has %d), missing %v, extra %v",
				rd.Node, len(got), primary.Node, len(want), head(missing), head(extra)))
		}
	}
	slices.Sort(r.Lost)
	slices.Sort(r.Phantoms)
	slices.Sort(r.FailedPresent)
	return r
}

// PrimaryReport is the verdict on who acknowledged writes when.
type PrimaryReport struct {
	// SharedTimelines are timelines on which more than one server
	// acknowledged writes.
	SharedTimelines []string
	// StaleAcks are acknowledged writes that started after a write on a
	// newer timeline had been acknowledged: a deposed primary still
	// acknowledging.
	StaleAcks []Op
	// DualWindows counts the periods in which a deposed primary
	// acknowledged writes after its successor had (consecutive stale acks
	// from one server are one window).
	DualWindows int
}

// Violations lists what broke, one line each.
func (r PrimaryReport) Violations() []string {
	v := append([]string(nil), r.SharedTimelines...)
	if len(r.StaleAcks) > 0 {
		v = append(v, fmt.Sprintf("%d acknowledged writes on an older timeline after a newer one acknowledged (%d windows); first: %s",
			len(r.StaleAcks), r.DualWindows, r.StaleAcks[0]))
	}
	return v
}

// CheckPrimaries checks the acknowledged writes of both workloads: for
// every timeline one server, and timelines never go backwards in real
// time (an ack that was called after another ack returned must not be on
// an older timeline).
func CheckPrimaries(ops []Op) PrimaryReport {
	var acked []Op
	for _, o := range ops {
		if o.Outcome == OK && o.Kind != KindRead && o.Timeline > 0 {
			acked = append(acked, o)
		}
	}
	var r PrimaryReport
	servers := map[uint32]map[string]bool{}
	for _, o := range acked {
		if servers[o.Timeline] == nil {
			servers[o.Timeline] = map[string]bool{}
		}
		servers[o.Timeline][o.Server] = true
	}
	for _, tl := range sortedKeys(servers) {
		if len(servers[tl]) > 1 {
			r.SharedTimelines = append(r.SharedTimelines, fmt.Sprintf("timeline %d acknowledged by %v", tl, sortedKeys(servers[tl])))
		}
	}
	byReturn := slices.Clone(acked)
	sort.SliceStable(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
	byCall := slices.Clone(acked)
	sort.SliceStable(byCall, func(i, j int) bool { return byCall[i].Call < byCall[j].Call })
	var newest uint32
	next, lastStale := 0, ""
	for _, o := range byCall {
		for next < len(byReturn) && byReturn[next].Return < o.Call {
			newest = max(newest, byReturn[next].Timeline)
			next++
		}
		if o.Timeline < newest {
			r.StaleAcks = append(r.StaleAcks, o)
			if lastStale != o.Server {
				r.DualWindows++
			}
			lastStale = o.Server
		} else {
			lastStale = ""
		}
	}
	return r
}

func duplicates(ids []int64) []int64 {
	seen := map[int64]int{}
	var d []int64
	for _, id := range ids {
		seen[id]++
		if seen[id] == 2 {
			d = append(d, id)
		}
	}
	slices.Sort(d)
	return d
}

func dedupSorted(ids []int64) []int64 {
	s := slices.Clone(ids)
	slices.Sort(s)
	return slices.Compact(s)
}

// diff returns what b lacks of a and what b has beyond a (both sorted).
func diff(a, b []int64) (missing, extra []int64) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j >= len(b) || (i < len(a) && a[i] < b[j]):
			missing = append(missing, a[i])
			i++
		case i >= len(a) || b[j] < a[i]:
			extra = append(extra, b[j])
			j++
		default:
			i++
			j++
		}
	}
	return missing, extra
}

// head is at most the first ten ids, for messages.
func head(ids []int64) []int64 { return ids[:min(len(ids), 10)] }

func sortedKeys[K int | uint32 | uint64 | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Excerpt is the history lines of the insert attempts of ids and of the
// ops in stale, for a bug report.
func Excerpt(ops []Op, ids []int64, stale []Op) string {
	want := map[int64]bool{}
	for _, id := range head(ids) {
		want[id] = true
	}
	var b []byte
	for _, o := range ops {
		if o.Kind == KindInsert && want[o.Value] {
			b = append(b, o.String()+"\n"...)
		}
	}
	for _, o := range stale[:min(len(stale), 20)] {
		b = append(b, "stale ack: "+o.String()+"\n"...)
	}
	return string(b)
}

// outageGap is the shortest stretch without an acknowledged insert that
// counts as an outage: the inserters commit every few tens of
// milliseconds between them.
const outageGap = time.Second

// RecoveryFrom is how long after ref writes flowed again: the return of
// the first acknowledged insert after ref, or of the one that ended the
// last outage (no ack for longer than outageGap) that began after ref and
// before before, minus ref. returns are the acks' return times in order.
// It is -1 when none returned at or after ref.
func RecoveryFrom(returns []time.Duration, ref, before time.Duration) time.Duration {
	rec, last := time.Duration(-1), ref
	for _, r := range returns {
		if r < ref {
			continue
		}
		if rec < 0 || (r-last > outageGap && last < before) {
			rec = r - ref
		}
		last = r
	}
	return rec
}
