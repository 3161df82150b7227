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
	skewed := t0.Add(-time.Hour) // a standby clock an hour behind
	ms := time.Millisecond
	steps := []struct {
		name  string
		pid   int32
		reply time.Time
		at    time.Duration
		want  time.Duration
	}{
		{"first sight counts as fresh", 7, skewed, 0, 0},
		{"same reply", 7, skewed, 1500 * ms, 1500 * ms},
		{"still the same", 7, skewed, 3000 * ms, 3000 * ms},
		{"a new reply, clock an hour behind: no older than the previous probe", 7, skewed.Add(time.Second), 3100 * ms, 100 * ms},
		{"that reply, a probe later", 7, skewed.Add(time.Second), 3300 * ms, 300 * ms},
		{"a new reply, clocks agree: sent 30ms ago", 7, t0.Add(3370 * ms), 3400 * ms, 30 * ms},
		{"that reply, later", 7, t0.Add(3370 * ms), 4400 * ms, 1030 * ms},
		{"a new reply, clock ahead: now", 7, t0.Add(time.Hour), 4500 * ms, 0},
		{"a new walsender with an old reply time", 8, skewed, 4600 * ms, 0},
		{"no reply yet", 9, time.Time{}, 5000 * ms, 0},
		{"still no reply", 9, time.Time{}, 7000 * ms, 2000 * ms},
	}
	for _, s := range steps {
		got := []ReplicaStatus{{ApplicationName: "b", PID: s.pid, ReplyTime: s.reply}}
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
	b := streamingStandby(t, ctx, a, base, "b", sysid, nil)

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
