package chaos

import (
	"strings"
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// Three epochs: a (10.0.0.1) bootstraps on timeline 1, b is assigned at
// 1000 ms on timeline 1 (promoted to 2), a comes back at 5000 ms on
// timeline 2 (promoted to 3).
var testEpochs = []Assignment{
	{Epoch: 1, Member: "a", Server: "10.0.0.1", Timeline: 1, At: 0},
	{Epoch: 2, Member: "b", Server: "10.0.0.2", Timeline: 1, At: ms(1000)},
	{Epoch: 3, Member: "a", Server: "10.0.0.1", Timeline: 2, At: ms(5000)},
}

func TestCheckBouncerAcks(t *testing.T) {
	acks := []Ack{{Epoch: 1, At: ms(10)}, {Epoch: 2, At: ms(1200)}, {Epoch: 3, At: ms(5200)}}
	tests := []struct {
		name                 string
		ops                  []Op
		acks                 []Ack
		stale, unattr, check int
		noAcks               bool
	}{
		{name: "clean failover and failback", acks: acks, check: 4, ops: []Op{
			ins(0, 1, 100, 110, OK, "10.0.0.1", 1),
			// Called before the ack of epoch 2 (1200): may still land on a.
			ins(0, 2, 1100, 1300, OK, "10.0.0.1", 1),
			ins(0, 3, 1400, 1500, OK, "10.0.0.2", 2),
			ins(0, 4, 5300, 5400, OK, "10.0.0.1", 3),
		}},
		{name: "old primary answers after the ack", acks: acks, stale: 1, check: 2, ops: []Op{
			ins(0, 1, 100, 110, OK, "10.0.0.1", 1),
			// a on timeline 1 is epoch 1; the agent acknowledged epoch 2
			// at 1200: PgBouncer still routed to the deposed primary.
			ins(0, 2, 1250, 1300, OK, "10.0.0.1", 1),
		}},
		{name: "committed locally counts, failures do not", acks: acks, stale: 1, check: 1, ops: []Op{
			{Process: 0, Kind: KindInsert, Value: 1, Call: ms(1300), Return: ms(1400), Outcome: Unknown, Server: "10.0.0.1", Timeline: 1, Err: "committed locally"},
			ins(0, 2, 1300, 1400, Fail, "10.0.0.1", 1),
			ins(0, 3, 1300, 1400, Unknown, "", 0),
		}},
		{name: "register writes are checked, reads are not", acks: acks, stale: 1, check: 1, ops: []Op{
			{Process: 1, Kind: KindWrite, Value: 7, Call: ms(5300), Return: ms(5400), Outcome: OK, Server: "10.0.0.2", Timeline: 2},
			{Process: 1, Kind: KindRead, Value: 7, Call: ms(5300), Return: ms(5400), Outcome: OK, Server: "10.0.0.2", Timeline: 2},
		}},
		// b's timeline-2 writes are epoch 2: after the ack of epoch 3
		// they come from a deposed primary.
		{name: "the same server on a newer timeline is a newer epoch", acks: acks, stale: 1, check: 2, ops: []Op{
			ins(0, 1, 5300, 5400, OK, "10.0.0.1", 3),
			ins(0, 2, 5300, 5400, OK, "10.0.0.2", 2),
		}},
		// An epoch assigned after the write returned cannot explain it:
		// a on timeline 2 before epoch 3 existed is still epoch 1.
		{name: "an epoch assigned later does not count", acks: acks, stale: 1, check: 1, ops: []Op{
			ins(0, 1, 2000, 2100, OK, "10.0.0.1", 2),
		}},
		{name: "a server no assignment names", acks: acks, unattr: 1, ops: []Op{
			ins(0, 1, 2000, 2100, OK, "10.0.0.9", 2),
		}},
		{name: "acks out of order keep the newest", acks: []Ack{{Epoch: 2, At: ms(1200)}, {Epoch: 1, At: ms(1250)}}, stale: 1, check: 1, ops: []Op{
			ins(0, 1, 1300, 1400, OK, "10.0.0.1", 1),
		}},
		{name: "no acks at all", check: 1, noAcks: true, ops: []Op{ins(0, 1, 100, 110, OK, "10.0.0.1", 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := CheckBouncerAcks(tt.ops, Epochs{Assignments: testEpochs, Acks: tt.acks})
			if len(r.Stale) != tt.stale || r.Unattributed != tt.unattr || r.Checked != tt.check || r.NoAcks != tt.noAcks {
				t.Errorf("stale %v unattributed %d checked %d noAcks %v; want %d %d %d %v",
					r.Stale, r.Unattributed, r.Checked, r.NoAcks, tt.stale, tt.unattr, tt.check, tt.noAcks)
			}
			want := tt.stale > 0 || tt.unattr > 0 || tt.noAcks
			if got := len(r.Violations()) > 0; got != want {
				t.Errorf("violations %v, want some: %v", r.Violations(), want)
			}
		})
	}
}

func TestParseAcks(t *testing.T) {
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	log := `=== chaos: starting bouncer agent at 2026-11-26T10:00:00Z
{"time":"2026-11-26T10:00:01.5Z","level":"INFO","msg":"acknowledging epoch","cluster":"chaos","epoch":1,"previous":0}
{"time":"2026-11-26T10:00:02Z","level":"INFO","msg":"exposing","epoch":1}
not json {"msg":"acknowledging epoch"}
{"time":"2026-11-26T10:00:09.25Z","level":"INFO","msg":"acknowledging epoch","cluster":"chaos","epoch":2,"previous":1}
`
	acks, err := ParseAcks(strings.NewReader(log), func(t time.Time) time.Duration { return t.Sub(start) })
	if err != nil {
		t.Fatal(err)
	}
	want := []Ack{{Epoch: 1, At: ms(1500)}, {Epoch: 2, At: ms(9250)}}
	if len(acks) != len(want) || acks[0] != want[0] || acks[1] != want[1] {
		t.Errorf("got %v, want %v", acks, want)
	}
}
