package e2e_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
)

// TestSyncRep_FrozenSyncStandbyReplaced: in synchronous mode "on", the
// synchronous standby's WAL receiver is frozen (SIGSTOP: its connection
// stays open, as when a partition drops packets, so the primary keeps
// listing it 'streaming' until wal_sender_timeout, 60 s). The other
// standby must take its place, and writes resume, within a few seconds.
func TestSyncRep_FrozenSyncStandbyReplaced(t *testing.T) {
	c := e2e.New(t, e2e.Options{})
	primary, _ := c.WaitHealthy(60 * time.Second)
	ctx := testCtx(t)
	if out, err := c.Ctl("edit-config", "--set", "synchronous_mode=on", "--set", "synchronous_node_count=1"); err != nil {
		t.Fatalf("edit-config: %v\n%s", err, out)
	}
	var syncID string
	e2e.Eventually(t, 30*time.Second, "a recorded synchronous standby", func() error {
		st, err := c.State()
		if err != nil {
			return err
		}
		if len(st.GetSync().GetMembers()) != 1 {
			return fmt.Errorf("sync %v", st.GetSync())
		}
		syncID = st.Sync.Members[0]
		return nil
	})
	if err := c.Exec(ctx, primary, "CREATE TABLE t (id bigint PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}

	// One writer, one row at a time; commits wait for the sync standby.
	var mu sync.Mutex
	var done []time.Time
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := c.DB(wctx, primary)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		for i := 1; wctx.Err() == nil; i++ {
			if _, err := conn.Exec(wctx, "INSERT INTO t VALUES ($1)", i); err != nil {
				return
			}
			mu.Lock()
			done = append(done, time.Now())
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { stop(); wg.Wait() })
	acked := func(after time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, d := range done {
			if d.After(after) {
				n++
			}
		}
		return n
	}
	e2e.Eventually(t, 10*time.Second, "writes", func() error {
		if acked(time.Time{}) < 10 {
			return fmt.Errorf("%d writes", acked(time.Time{}))
		}
		return nil
	})

	pids, err := c.QueryInts(ctx, syncID, "SELECT pid FROM pg_stat_wal_receiver")
	if err != nil || len(pids) != 1 {
		t.Fatalf("WAL receiver of %s: %v %v", syncID, pids, err)
	}
	wr := int(pids[0])
	if err := syscall.Kill(wr, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	t.Logf("froze %s WAL receiver (pid %d) at %s", syncID, wr, frozen.UTC().Format("15:04:05.000"))
	t.Cleanup(func() { _ = syscall.Kill(wr, syscall.SIGCONT) })
	e2e.Eventually(t, 30*time.Second, "writes acknowledged again", func() error {
		if n := acked(frozen.Add(100 * time.Millisecond)); n == 0 {
			return fmt.Errorf("no write since %s's WAL receiver froze", syncID)
		}
		return nil
	})
	mu.Lock()
	var last, first time.Time
	for _, d := range done {
		if !d.After(frozen) {
			last = d
		} else if first.IsZero() {
			first = d
		}
	}
	mu.Unlock()
	gap := first.Sub(last)
	t.Logf("sync standby %s frozen: longest write gap %v (first write %v after the freeze)", syncID, gap.Round(time.Millisecond), first.Sub(frozen).Round(time.Millisecond))
	if gap > 10*time.Second {
		t.Errorf("writes stalled %v, want a few seconds", gap)
	}
	// (State is read from a node's own FSM, which may trail the leader's
	// by a heartbeat.)
	e2e.Eventually(t, 10*time.Second, "the other standby recorded as synchronous", func() error {
		st, err := c.State()
		if err != nil {
			return err
		}
		if rec := st.GetSync().GetMembers(); len(rec) != 1 || rec[0] == syncID {
			return fmt.Errorf("FSM records %v as synchronous, %s is frozen", rec, syncID)
		}
		return nil
	})
	_ = syscall.Kill(wr, syscall.SIGCONT)
	stop()
	wg.Wait()
}
