package pgnode

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// replicaState finds name among st.Replicas.
func replicaState(st Status, name string) (ReplicaStatus, bool) {
	for _, r := range st.Replicas {
		if r.ApplicationName == name {
			return r, true
		}
	}
	return ReplicaStatus{}, false
}

func waitStreaming(t *testing.T, ctx context.Context, primary *Node, standbys ...string) {
	t.Helper()
	eventually(t, 20*time.Second, primary.Config().Name+" streams to "+fmt.Sprint(standbys), func() error {
		st, err := primary.Probe(ctx)
		if err != nil {
			return err
		}
		for _, s := range standbys {
			if r, ok := replicaState(st, s); !ok || r.State != "streaming" {
				return fmt.Errorf("%s: %+v", s, st.Replicas)
			}
		}
		return nil
	})
}

// TestNode_ReplicationFailover walks one cluster through the whole life of
// a failover: bootstrap, two clones, synchronous commit, promotion of a
// standby, the old primary diverging, demoted and rewound, and the other
// standby reinitialised from the new primary.
func TestNode_ReplicationFailover(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)

	a, sysid := bootstrapPrimary(t, ctx, base, "a")
	prefix := a.Config().SlotPrefix
	slotA, slotB, slotC := SlotName(prefix, "a"), SlotName(prefix, "b"), SlotName(prefix, "c")
	mustExec(t, ctx, a, "CREATE TABLE t (id int PRIMARY KEY)")
	mustExec(t, ctx, a, "INSERT INTO t VALUES (1)")
	if err := a.EnsureSlots(ctx, []string{slotB, slotC}); err != nil {
		t.Fatal(err)
	}

	b := newTestNode(t, testConfig(t, base, "b"))
	c := newTestNode(t, testConfig(t, base, "c"))
	for _, s := range []struct {
		n    *Node
		slot string
	}{{b, slotB}, {c, slotC}} {
		if err := s.n.CloneFrom(ctx, a.AsUpstream(s.slot)); err != nil {
			t.Fatalf("CloneFrom %s: %v", s.n.Config().Name, err)
		}
		if err := s.n.CheckIdentity(ctx, sysid); err != nil {
			t.Fatal(err)
		}
		if err := s.n.Start(ctx, StartOptions{Role: RoleAsIs, ExpectSystemID: sysid}); err != nil {
			t.Fatalf("Start %s: %v", s.n.Config().Name, err)
		}
	}

	t.Run("row replicates", func(t *testing.T) {
		mustExec(t, ctx, a, "INSERT INTO t VALUES (2)")
		waitIDs(t, ctx, b, 1, 2)
		waitIDs(t, ctx, c, 1, 2)
		waitStreaming(t, ctx, a, "b", "c")
		st, err := b.Probe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !st.InRecovery || st.Timeline != 1 || st.WALReceiver != "streaming" || st.UpstreamPort != a.Config().Port || st.ReplayLSN == 0 {
			t.Fatalf("standby probe: %+v", st)
		}
		if err := b.WriteProbe(ctx, time.Second); !errors.Is(err, ErrNotPrimary) {
			t.Fatalf("WriteProbe on standby: %v", err)
		}
	})

	t.Run("synchronous commit", func(t *testing.T) {
		if err := a.SetSynchronousStandbys(ctx, []string{"b"}, 1); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "b is the sync standby", func() error {
			st, err := a.Probe(ctx)
			if err != nil {
				return err
			}
			if r, _ := replicaState(st, "b"); r.SyncState != "sync" {
				return fmt.Errorf("replicas %+v, s_s_n %q", st.Replicas, st.SynchronousStandbyNames)
			}
			return nil
		})
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		mustExec(t, wctx, a, "INSERT INTO t VALUES (3)")
		waitIDs(t, ctx, b, 1, 2, 3)
		// The write probe tests the local disk only: it must not wait for b.
		if err := a.WriteProbe(ctx, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := a.Reinit(ctx, b.AsUpstream("")); !errors.Is(err, ErrRunningPrimary) {
			t.Fatalf("Reinit of a running primary: got %v", err)
		}
		if _, err := SyncStandbyNames([]string{"b"}, 2); !errors.Is(err, ErrInvalidParameter) {
			t.Fatalf("2 of 1 sync standbys accepted: %v", err)
		}
		if err := a.SetSynchronousStandbys(ctx, nil, 0); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("promote, diverge, demote, rewind", func(t *testing.T) {
		if err := b.SetSynchronousStandbys(ctx, nil, 0); err != nil {
			t.Fatalf("SetSynchronousStandbys on a standby: %v", err)
		}
		if err := b.Promote(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Promote(ctx); err != nil {
			t.Fatalf("second Promote: %v", err)
		}
		st, err := b.Probe(ctx)
		if err != nil || st.InRecovery || st.Timeline != 2 {
			t.Fatalf("after Promote: %+v, %v", st, err)
		}
		if err := b.EnsureSlots(ctx, []string{slotA, slotC}); err != nil {
			t.Fatal(err)
		}
		mustExec(t, ctx, b, "INSERT INTO t VALUES (10)")
		// The old primary still takes a write the new one never sees.
		mustExec(t, ctx, a, "INSERT INTO t VALUES (99)")

		if err := a.Demote(ctx, b.AsUpstream(slotA)); err != nil {
			t.Fatalf("Demote: %v", err)
		}
		if st, err := a.Probe(ctx); err != nil || !st.InRecovery {
			t.Fatalf("after Demote: %+v, %v", st, err)
		}
		// A source still in recovery (a new primary whose promotion has
		// not finished looks the same) is refused: pg_rewind would find
		// "no rewind required" on the old timeline.
		before, _ := a.Inspect(ctx)
		if err := a.Rewind(ctx, c.AsUpstream(slotA)); !errors.Is(err, ErrSourceInRecovery) {
			t.Fatalf("Rewind from a standby: %v, want ErrSourceInRecovery", err)
		}
		if after, _ := a.Inspect(ctx); after.Timeline != before.Timeline || after.SystemIdentifier != before.SystemIdentifier || !after.Standby {
			t.Fatalf("refused rewind changed the target: %+v -> %+v", before, after)
		}
		if err := a.Rewind(ctx, b.AsUpstream(slotA)); err != nil {
			t.Fatalf("Rewind: %v", err)
		}
		info, err := a.Inspect(ctx)
		if err != nil || info.Running || !info.Standby {
			t.Fatalf("after Rewind: %+v, %v", info, err)
		}
		if err := a.Start(ctx, StartOptions{Role: RoleAsIs, ExpectSystemID: sysid}); err != nil {
			t.Fatalf("Start after Rewind: %v", err)
		}
		waitIDs(t, ctx, a, 1, 2, 3, 10)
		eventually(t, 20*time.Second, "a streams from b on timeline 2", func() error {
			st, err := a.Probe(ctx)
			if err != nil {
				return err
			}
			if st.WALReceiver != "streaming" || st.Timeline != 2 || st.UpstreamPort != b.Config().Port {
				return fmt.Errorf("%+v", st)
			}
			return nil
		})
		// With its upstream gone (no WAL receiver), a still reports the
		// timeline it follows, not its last checkpoint's: the decider
		// would otherwise think it is behind and never promote it.
		dead := Upstream{Host: "127.0.0.1", Port: 1, SlotName: "pgq_a"}
		if err := a.Start(ctx, StartOptions{Role: RoleStandby, Upstream: &dead}); err != nil {
			t.Fatalf("repoint a to a dead upstream: %v", err)
		}
		eventually(t, 20*time.Second, "a without a WAL receiver still on timeline 2", func() error {
			st, err := a.Probe(ctx)
			if err != nil {
				return err
			}
			if st.WALReceiver == "streaming" || st.Timeline != 2 {
				return fmt.Errorf("%+v", st)
			}
			return nil
		})
		up := b.AsUpstream("pgq_a")
		if err := a.Start(ctx, StartOptions{Role: RoleStandby, Upstream: &up}); err != nil {
			t.Fatalf("repoint a back to b: %v", err)
		}
	})

	t.Run("reinit", func(t *testing.T) {
		// c followed a and replayed the diverged row 99: it is past the
		// point where b's timeline forked off, and cannot follow b. a was
		// rewound onto b's timeline and is not.
		waitIDs(t, ctx, c, 1, 2, 3, 99)
		if d, err := c.Diverged(ctx, b.AsUpstream("")); err != nil || !d {
			t.Fatalf("c.Diverged(b) = %v, %v; want true", d, err)
		}
		if d, err := a.Diverged(ctx, b.AsUpstream("")); err != nil || d {
			t.Fatalf("a.Diverged(b) = %v, %v; want false", d, err)
		}
		oldPID := c.Process().PID
		// A clone that fails puts the old directory back.
		dead := Upstream{Host: "127.0.0.1", Port: freePort(t)}
		if err := c.Reinit(ctx, dead); !errors.Is(err, ErrCommandFailed) {
			t.Fatalf("Reinit from a dead upstream: %v", err)
		}
		if err := c.CheckIdentity(ctx, sysid); err != nil {
			t.Fatalf("old data directory not restored: %v", err)
		}
		if err := c.Reinit(ctx, b.AsUpstream(slotC)); err != nil {
			t.Fatal(err)
		}
		if pid := c.Process().PID; pid == oldPID {
			t.Fatalf("Reinit kept the old postmaster %d", pid)
		}
		mustExec(t, ctx, b, "INSERT INTO t VALUES (11)")
		waitIDs(t, ctx, c, 1, 2, 3, 10, 11)
		waitIDs(t, ctx, a, 1, 2, 3, 10, 11)
		waitStreaming(t, ctx, b, "a", "c")
		left, _ := filepath.Glob(filepath.Join(filepath.Dir(c.Config().DataDir), "*pgquorum-old*"))
		if len(left) != 0 {
			t.Fatalf("old data directory left behind: %v", left)
		}
	})

	t.Run("slots", func(t *testing.T) {
		mustExec(t, ctx, b, "SELECT pg_create_physical_replication_slot('foreign_slot')")
		mustExec(t, ctx, b, "SELECT pg_create_physical_replication_slot($1)", SlotName(prefix, "gone"))
		if err := b.EnsureSlots(ctx, []string{slotA}); err != nil {
			t.Fatal(err)
		}
		c2 := sqlConn(t, ctx, b)
		rows, err := c2.Query(ctx, "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var s string
			_ = rows.Scan(&s)
			got = append(got, s)
		}
		// slotC is active (c streams), so it stays; "gone" is dropped;
		// the foreign slot is never touched.
		if want := []string{"foreign_slot", slotA, slotC}; !slices.Equal(got, want) {
			t.Fatalf("slots %v, want %v", got, want)
		}
		if err := b.EnsureSlots(ctx, []string{"other_x"}); !errors.Is(err, ErrInvalidSlotName) {
			t.Fatalf("EnsureSlots without prefix: %v", err)
		}
	})
}
