package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// Assignment is one primary assignment of the FSM history (`ctl history`):
// epoch Epoch went to the member whose PostgreSQL listens on Server, which
// was on Timeline when it was assigned (a promotion then moves it to the
// next one). At is the leader's decision time on the campaign clock.
type Assignment struct {
	Epoch    uint64        `json:"epoch"`
	Member   string        `json:"member"`
	Server   string        `json:"server"`
	Timeline uint32        `json:"tl"`
	At       time.Duration `json:"at"`
}

// Ack is one "acknowledging epoch" of the bouncer agent: from At on
// (campaign clock) it routes no client to a primary of an older epoch.
type Ack struct {
	Epoch uint64        `json:"epoch"`
	At    time.Duration `json:"at"`
}

// Epochs is what the bouncer checker needs besides the history: the
// primary assignments and the agent's acknowledgements. A run keeps it as
// epochs.json so that TestRecheck can check a history again.
type Epochs struct {
	Assignments []Assignment `json:"assignments"`
	Acks        []Ack        `json:"acks"`
}

// assignSlack is how long after a write returned the epoch it is
// attributed to may have been assigned: the leader stamps a decision in
// milliseconds of its wall clock, the history runs on the monotonic one.
const assignSlack = 100 * time.Millisecond

// StaleRoute is a write that reached an older primary through PgBouncer
// after the bouncer agent had acknowledged a newer epoch.
type StaleRoute struct {
	Op Op
	// Epoch is the newest epoch the write can belong to; Acked the epoch
	// the agent had acknowledged when the write was called, at AckedAt.
	Epoch, Acked uint64
	AckedAt      time.Duration
}

func (s StaleRoute) String() string {
	return fmt.Sprintf("%s: epoch %d, but epoch %d was acknowledged at %.3fs", s.Op, s.Epoch, s.Acked, s.AckedAt.Seconds())
}

// BouncerReport is the verdict on fence-before-expose as the clients saw
// it.
type BouncerReport struct {
	// Checked counts the writes attributed to an epoch: acknowledged
	// ones and those that returned a row with the "committed locally"
	// warning (both carry the server and timeline that answered).
	Checked int
	// Unattributed counts writes whose server and timeline match no
	// assignment (none should).
	Unattributed int
	Stale        []StaleRoute
	// NoAcks is set when there were writes to check but the agent's log
	// held no acknowledgement: the check would pass vacuously.
	NoAcks bool
}

// Violations lists what broke, one line each.
func (r BouncerReport) Violations() []string {
	var v []string
	if r.NoAcks {
		v = append(v, "bouncer check: the bouncer agent's log holds no \"acknowledging epoch\" line, nothing to check against")
	}
	if len(r.Stale) > 0 {
		v = append(v, fmt.Sprintf("%d writes reached an older primary through PgBouncer after the bouncer agent acknowledged a newer epoch; first: %s",
			len(r.Stale), r.Stale[0]))
	}
	if r.Unattributed > 0 {
		v = append(v, fmt.Sprintf("bouncer check: %d writes from a server and timeline that no primary assignment explains", r.Unattributed))
	}
	return v
}

// CheckBouncerAcks checks that after the bouncer agent acknowledged epoch
// E, no write called from then on was answered by a primary of an epoch
// older than E. A write (server S, timeline T) belongs to the newest epoch
// assigned to S on a timeline at most T, no later than the write returned:
// the most favourable reading, so that a violation is certain. Writes
// whose outcome is unknown without a server (a timeout, a lost
// connection) cannot be attributed and are not checked.
func CheckBouncerAcks(ops []Op, e Epochs) BouncerReport {
	var r BouncerReport
	acks := slices.Clone(e.Acks)
	sort.SliceStable(acks, func(i, j int) bool { return acks[i].At < acks[j].At })
	// newest[i] is the highest epoch acknowledged by acks[i].At.
	newest := make([]Ack, len(acks))
	for i, a := range acks {
		newest[i] = a
		if i > 0 && newest[i-1].Epoch >= a.Epoch {
			newest[i].Epoch = newest[i-1].Epoch
		}
	}
	byServer := map[string][]Assignment{}
	for _, a := range e.Assignments {
		byServer[a.Server] = append(byServer[a.Server], a)
	}
	for _, o := range ops {
		if o.Kind == KindRead || o.Server == "" || o.Timeline == 0 || o.Outcome == Fail {
			continue
		}
		var epoch uint64
		for _, a := range byServer[o.Server] {
			if a.Timeline <= o.Timeline && a.At <= o.Return+assignSlack {
				epoch = max(epoch, a.Epoch)
			}
		}
		if epoch == 0 {
			r.Unattributed++
			continue
		}
		r.Checked++
		// The newest acknowledgement at or before the call.
		i := sort.Search(len(newest), func(i int) bool { return newest[i].At > o.Call }) - 1
		if i >= 0 && newest[i].Epoch > epoch {
			r.Stale = append(r.Stale, StaleRoute{Op: o, Epoch: epoch, Acked: newest[i].Epoch, AckedAt: newest[i].At})
		}
	}
	r.NoAcks = r.Checked > 0 && len(acks) == 0
	return r
}

// ParseAcks reads the bouncer agent's JSON log (log.format json) and
// returns its "acknowledging epoch" lines, their times converted to the
// campaign clock by since. Lines that are not JSON (the harness's own
// markers, a panic) are skipped.
func ParseAcks(r io.Reader, since func(time.Time) time.Duration) ([]Ack, error) {
	var acks []Ack
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.HasPrefix(string(line), "{") {
			continue
		}
		var rec struct {
			Time  time.Time `json:"time"`
			Msg   string    `json:"msg"`
			Epoch uint64    `json:"epoch"`
		}
		if err := json.Unmarshal(line, &rec); err != nil || rec.Msg != "acknowledging epoch" {
			continue
		}
		acks = append(acks, Ack{Epoch: rec.Epoch, At: since(rec.Time)})
	}
	return acks, sc.Err()
}
