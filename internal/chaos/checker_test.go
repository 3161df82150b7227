package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func ins(p int, v int64, call, ret int, oc Outcome, server string, tl uint32) Op {
	return Op{Process: p, Kind: KindInsert, Value: v, Call: time.Duration(call) * time.Millisecond,
		Return: time.Duration(ret) * time.Millisecond, Outcome: oc, Server: server, Timeline: tl}
}

func TestCheckInserts_FindsEveryKindOfDamage(t *testing.T) {
	ops := []Op{
		ins(0, 1, 0, 1, OK, "a", 1),
		ins(0, 2, 2, 3, OK, "a", 1),  // lost
		ins(0, 3, 4, 5, Fail, "", 0), // present: the error lied
		ins(0, 4, 6, 7, Unknown, "", 0),
		ins(0, 5, 8, 9, Unknown, "", 0),
	}
	primary := Read{Node: "n1", IDs: []int64{1, 3, 4, 9, 1}}
	replicas := []Read{{Node: "n2", IDs: []int64{1, 3, 4, 9}}, {Node: "n3", IDs: []int64{1}}}
	r := CheckInserts(ops, primary, replicas)
	if r.Acked != 2 || r.Failed != 1 || r.Unknown != 2 || r.UnknownPresent != 1 {
		t.Errorf("counts: %+v", r)
	}
	if len(r.Lost) != 1 || r.Lost[0] != 2 {
		t.Errorf("lost %v, want [2]", r.Lost)
	}
	if len(r.Phantoms) != 1 || r.Phantoms[0] != 9 {
		t.Errorf("phantoms %v, want [9]", r.Phantoms)
	}
	if len(r.FailedPresent) != 1 || r.FailedPresent[0] != 3 {
		t.Errorf("failed-but-present %v, want [3]", r.FailedPresent)
	}
	if d := r.Duplicates["n1"]; len(d) != 1 || d[0] != 1 {
		t.Errorf("duplicates %v, want n1: [1]", r.Duplicates)
	}
	if len(r.Diverged) != 1 || !strings.HasPrefix(r.Diverged[0], "n3:") {
		t.Errorf("diverged %v, want n3 only", r.Diverged)
	}
	if got := len(r.Violations()); got != 5 {
		t.Errorf("%d violations, want 5: %v", got, r.Violations())
	}
}

func TestCheckInserts_CleanRun(t *testing.T) {
	ops := []Op{ins(0, 1, 0, 1, OK, "a", 1), ins(1, 2, 0, 2, Unknown, "", 0), ins(0, 3, 2, 3, Fail, "", 0)}
	r := CheckInserts(ops, Read{Node: "n1", IDs: []int64{1}}, []Read{{Node: "n2", IDs: []int64{1}}})
	if v := r.Violations(); len(v) != 0 {
		t.Errorf("violations in a clean run: %v", v)
	}
}

func TestCheckPrimaries(t *testing.T) {
	tests := []struct {
		name           string
		ops            []Op
		windows, stale int
		shared         int
	}{
		{"failover", []Op{ins(0, 1, 0, 1, OK, "a", 1), ins(1, 2, 2, 3, OK, "b", 2), ins(0, 3, 4, 5, OK, "b", 2)}, 0, 0, 0},
		// b (timeline 2) acknowledged at 3; a (timeline 1) acknowledged
		// a write called at 4: a deposed primary still took writes.
		{"stale primary acks", []Op{ins(0, 1, 0, 1, OK, "a", 1), ins(1, 2, 2, 3, OK, "b", 2), ins(0, 3, 4, 5, OK, "a", 1),
			ins(0, 4, 6, 7, OK, "a", 1), ins(1, 5, 8, 9, OK, "b", 2), ins(0, 6, 10, 11, OK, "a", 1)}, 2, 3, 0},
		// Concurrent writes may linearize either way.
		{"overlapping is fine", []Op{ins(0, 1, 0, 10, OK, "a", 1), ins(1, 2, 2, 3, OK, "b", 2)}, 0, 0, 0},
		{"two servers on one timeline", []Op{ins(0, 1, 0, 1, OK, "a", 2), ins(1, 2, 2, 3, OK, "b", 2)}, 0, 0, 1},
		{"failed and unknown do not count", []Op{ins(1, 2, 2, 3, OK, "b", 2), ins(0, 3, 4, 5, Unknown, "", 0)}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := CheckPrimaries(tt.ops)
			if r.DualWindows != tt.windows || len(r.StaleAcks) != tt.stale || len(r.SharedTimelines) != tt.shared {
				t.Errorf("windows %d stale %d shared %v; want %d %d %d", r.DualWindows, len(r.StaleAcks), r.SharedTimelines, tt.windows, tt.stale, tt.shared)
			}
		})
	}
}

func reg(p int, write bool, k int, v int64, call, ret int, oc Outcome) Op {
	kind := KindRead
	if write {
		kind = KindWrite
	}
	return Op{Process: p, Kind: kind, Key: k, Value: v, Call: time.Duration(call), Return: time.Duration(ret), Outcome: oc}
}

func TestCheckLinearizable(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"sequential", []Op{reg(0, true, 0, 5, 0, 1, OK), reg(1, false, 0, 5, 2, 3, OK)}, porcupine.Ok},
		{"stale read", []Op{reg(0, true, 0, 5, 0, 1, OK), reg(1, false, 0, 0, 2, 3, OK)}, porcupine.Illegal},
		// An unknown write may take effect any time after its call.
		{"unknown write seen later", []Op{reg(0, true, 0, 5, 0, 1, Unknown), reg(1, false, 0, 0, 2, 3, OK), reg(1, false, 0, 5, 4, 5, OK)}, porcupine.Ok},
		{"unknown write then undone", []Op{reg(0, true, 0, 5, 0, 1, Unknown), reg(1, false, 0, 5, 2, 3, OK), reg(1, false, 0, 0, 4, 5, OK)}, porcupine.Illegal},
		{"failed write never seen", []Op{reg(0, true, 0, 5, 0, 1, Fail), reg(1, false, 0, 0, 2, 3, OK)}, porcupine.Ok},
		// A read of a value no write produced.
		{"unknown value read", []Op{reg(0, true, 0, 5, 0, 1, OK), reg(1, false, 0, 7, 2, 3, OK)}, porcupine.Illegal},
		// An unknown write read before its call cannot have happened.
		{"read before the write's call", []Op{reg(1, false, 0, 5, 0, 1, OK), reg(0, true, 0, 5, 2, 3, Unknown)}, porcupine.Illegal},
		{"many unobserved unknown writes", append([]Op{reg(0, true, 0, 5, 0, 1, OK), reg(1, false, 0, 5, 100, 101, OK)},
			unknownWrites(200)...), porcupine.Ok},
		{"keys independent", []Op{reg(0, true, 0, 5, 0, 1, OK), reg(1, false, 1, 0, 2, 3, OK)}, porcupine.Ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := CheckLinearizable(tt.ops, 10*time.Second, ""); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func unknownWrites(n int) []Op {
	var ops []Op
	for i := range n {
		ops = append(ops, reg(2+i%3, true, 0, int64(1000+i), 2+i, 3+i, Unknown))
	}
	return ops
}

func TestSummaryTable_OneRowPerFigure(t *testing.T) {
	table := Summary{Faults: map[string]int{"isolate-primary": 1}}.Table()
	seen := map[string]bool{}
	for _, line := range strings.Split(table, "\n") {
		key, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " |")
		if key != "" && seen[key] {
			t.Errorf("row %q twice", key)
		}
		seen[key] = true
	}
}

func TestRecoveryFrom(t *testing.T) {
	never := 1 << 30
	tests := []struct {
		name        string
		returns     []int
		ref, before int
		want        int
	}{
		{"writes never stopped", []int{900, 1010, 1030, 1050}, 1000, never, 10},
		// A write slipped through right after the fault, then nothing
		// for 9 s: writes flowed again at 10 s.
		{"outage after a straggler", []int{1010, 10000, 10020}, 1000, never, 9000},
		{"two outages: the last counts", []int{1010, 4000, 4020, 8000, 8010}, 1000, never, 7000},
		{"short gaps are no outage", []int{1010, 1900, 2800}, 1000, never, 10},
		{"nothing after ref", []int{100, 900}, 1000, never, -1},
		// The second outage began after the heal (at 5000): it is the
		// heal's to answer for, not the fault's.
		{"an outage after the heal does not count", []int{1010, 4000, 4020, 4500, 5000, 5020, 8000}, 1000, 5010, 3000},
		{"an outage that began before the heal counts to its end", []int{1010, 8000}, 1000, 5000, 7000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs []time.Duration
			for _, r := range tt.returns {
				rs = append(rs, time.Duration(r)*time.Millisecond)
			}
			want := time.Duration(tt.want) * time.Millisecond
			if tt.want < 0 {
				want = -1
			}
			ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
			if got := RecoveryFrom(rs, ms(tt.ref), ms(tt.before)); got != want {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}
