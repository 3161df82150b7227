package pgnode

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestNode_RewindAfterCleanSwitchoverSkipsPgRewind: a primary shut down
// cleanly whose standby then replayed the shutdown checkpoint and was
// promoted (a planned switchover) holds nothing the new primary lacks.
// Rewind must then skip pg_rewind and the CHECKPOINT it needs on the new
// primary (load on the server clients are just moving to), and the old
// primary must still come back as a streaming standby of the new
// timeline with every row.
func TestNode_RewindAfterCleanSwitchoverSkipsPgRewind(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)

	a, sysid := bootstrapPrimary(t, ctx, base, "a")
	var logs lockedBuffer
	a.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slotA := SlotName(a.Config().SlotPrefix, "a")
	b := streamingStandby(t, ctx, a, base, "b", sysid, nil)
	mustExec(t, ctx, a, "CREATE TABLE t (id int)")
	mustExec(t, ctx, a, "INSERT INTO t VALUES (1), (2)")
	waitIDs(t, ctx, b, 1, 2)

	// The switchover: the old primary stops cleanly (its walsender hands
	// over the shutdown checkpoint), then the standby is promoted.
	if err := a.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	if err := b.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.EnsureSlots(ctx, []string{slotA}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, ctx, b, "INSERT INTO t VALUES (3)")

	if err := a.Rewind(ctx, b.AsUpstream(slotA)); err != nil {
		t.Fatalf("Rewind: %v", err)
	}
	out := logs.String()
	if strings.Contains(out, "running pg_rewind") || !strings.Contains(out, "no rewind needed") {
		t.Fatalf("a clean switchover ran pg_rewind (or did not say it skipped it):\n%s", out)
	}
	info, err := a.Inspect(ctx)
	if err != nil || info.Running || !info.Standby {
		t.Fatalf("after Rewind: %+v, %v", info, err)
	}
	if err := a.Start(ctx, StartOptions{Role: RoleAsIs, ExpectSystemID: sysid}); err != nil {
		t.Fatalf("Start after Rewind: %v", err)
	}
	waitIDs(t, ctx, a, 1, 2, 3)
	eventually(t, 20*time.Second, "a streams from b on timeline 2", func() error {
		st, err := a.Probe(ctx)
		if err != nil {
			return err
		}
		if st.WALReceiver != "streaming" || st.Timeline != 2 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
}

// TestNode_NoLocalConnectionWhileStopping: while the Node stops its
// postmaster, local connections are not attempted (each would be a
// rejected backend the postmaster waits for before it exits); once the
// process is gone, or when it is not being stopped, they are.
func TestNode_NoLocalConnectionWhileStopping(t *testing.T) {
	n, err := New(testConfig(t, t.TempDir(), "s"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	// A live PID stands in for the postmaster being stopped.
	n.proc = &process{pid: os.Getpid(), adopted: true, stopping: true}
	if _, err := n.connect(testCtx(t)); !errors.Is(err, ErrStopping) {
		t.Fatalf("connect while stopping: %v, want ErrStopping", err)
	}
	n.proc.stopping = false
	if _, err := n.connect(testCtx(t)); errors.Is(err, ErrStopping) || err == nil {
		t.Fatalf("connect to a server not being stopped (none listens): %v, want a connection error", err)
	}
}
