package pgnode

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

func TestReplyTracker_AgeGrowsUntilTheReplyChanges(t *testing.T) {
	var tr replyTracker
	t0 := time.Now()
	r1 := t0.Add(-time.Hour) // the standby's clock: any value, only changes count
	rows := func(pid int32, reply time.Time) []ReplicaStatus {
		return []ReplicaStatus{{ApplicationName: "b", PID: pid, ReplyTime: reply}}
	}
	steps := []struct {
		name  string
		pid   int32
		reply time.Time
		at    time.Duration
		want  time.Duration
	}{
		{"first sight counts as fresh", 7, r1, 0, 0},
		{"same reply", 7, r1, 1500 * time.Millisecond, 1500 * time.Millisecond},
		{"still the same", 7, r1, 3 * time.Second, 3 * time.Second},
		{"a new reply", 7, r1.Add(time.Second), 3100 * time.Millisecond, 0},
		{"a new reply older than the last (standby clock stepped back)", 7, r1, 3200 * time.Millisecond, 0},
		{"a new walsender with the same reply time", 8, r1, 4 * time.Second, 0},
		{"no reply yet", 9, time.Time{}, 5 * time.Second, 0},
		{"still no reply", 9, time.Time{}, 7 * time.Second, 2 * time.Second},
	}
	for _, s := range steps {
		got := rows(s.pid, s.reply)
		tr.observe(got, t0.Add(s.at))
		if got[0].ReplyAge != s.want {
			t.Errorf("%s: age %v, want %v", s.name, got[0].ReplyAge, s.want)
		}
		if len(tr.seen) != 1 {
			t.Errorf("%s: tracker holds %d walsenders, want only the live one", s.name, len(tr.seen))
		}
	}
	tr.observe(nil, t0.Add(8*time.Second))
	if len(tr.seen) != 0 {
		t.Errorf("walsenders gone, tracker still holds %v", tr.seen)
	}
}

// TestNode_ProbeReportsReplyAge: a live standby replies at least every
// ReceiverStatusInterval (pgnode sets it), so its reply age stays small
// while nothing is written; a standby whose WAL receiver stopped
// (SIGSTOP: the connection stays open, as with a network cut that drops
// packets) keeps state "streaming" on the primary, but its reply age
// grows, and falls back once it replies again.
func TestNode_ProbeReportsReplyAge(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)

	a, sysid := bootstrapPrimary(t, ctx, base, "a")
	slotB := SlotName(a.Config().SlotPrefix, "b")
	if err := a.EnsureSlots(ctx, []string{slotB}); err != nil {
		t.Fatal(err)
	}
	b := newTestNode(t, testConfig(t, base, "b"))
	if err := b.CloneFrom(ctx, a.AsUpstream(slotB)); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, StartOptions{Role: RoleAsIs, ExpectSystemID: sysid}); err != nil {
		t.Fatal(err)
	}
	waitStreaming(t, ctx, a, "b")

	var interval string
	if err := sqlConn(t, ctx, b).QueryRow(ctx, "SELECT current_setting('wal_receiver_status_interval')").Scan(&interval); err != nil {
		t.Fatal(err)
	}
	if interval != "1s" {
		t.Fatalf("wal_receiver_status_interval on the standby = %q, want 1s", interval)
	}

	eventually(t, 10*time.Second, "a first reply from b", func() error {
		if r := replyOf(t, ctx, a, "b"); r.ReplyTime.IsZero() {
			return fmt.Errorf("%+v", r)
		}
		return nil
	})
	// Idle for three status intervals: the age never gets near the
	// bound the primary's agent uses (two intervals and more).
	var most time.Duration
	for end := time.Now().Add(3 * ReceiverStatusInterval); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		r := replyOf(t, ctx, a, "b")
		if r.ReplyTime.IsZero() || r.PID == 0 {
			t.Fatalf("no reply_time or pid: %+v", r)
		}
		most = max(most, r.ReplyAge)
	}
	if most > 3*ReceiverStatusInterval/2 {
		t.Fatalf("an idle live standby's reply age reached %v", most)
	}
	t.Logf("idle live standby: reply age at most %v", most)

	var wr int
	if err := sqlConn(t, ctx, b).QueryRow(ctx, "SELECT pid FROM pg_stat_wal_receiver").Scan(&wr); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(wr, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	cont := func() { _ = syscall.Kill(wr, syscall.SIGCONT) }
	t.Cleanup(cont)
	eventually(t, 15*time.Second, "b silent but streaming", func() error {
		r := replyOf(t, ctx, a, "b")
		if r.State != "streaming" || r.ReplyAge < 5*ReceiverStatusInterval/2 {
			return fmt.Errorf("%+v", r)
		}
		return nil
	})
	t.Logf("stopped WAL receiver: reply age past 2.5 s after %v, state still streaming", time.Since(stopped).Round(time.Millisecond))
	cont()
	eventually(t, 15*time.Second, "b replies again", func() error {
		if r := replyOf(t, ctx, a, "b"); r.ReplyAge > ReceiverStatusInterval {
			return fmt.Errorf("%+v", r)
		}
		return nil
	})
}

// replyOf probes primary and returns standby name's row.
func replyOf(t *testing.T, ctx context.Context, primary *Node, name string) ReplicaStatus {
	t.Helper()
	st, err := primary.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := replicaState(st, name)
	if !ok {
		t.Fatalf("%s not in pg_stat_replication: %+v", name, st.Replicas)
	}
	return r
}
