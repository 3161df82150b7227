package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
)

// ctlLong runs a ctl verb that waits for PostgreSQL (restart, reinit)
// with a deadline fit for a loaded two-core machine.
func ctlLong(t *testing.T, c *e2e.Cluster, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	full := append([]string{"ctl", "--endpoints", c.Endpoints(), "--timeout", "10s", "--insecure"}, args...)
	out, err := exec.CommandContext(ctx, c.Bin, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgquorum ctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pendingOn lists the members whose PostgreSQL reports a pending restart.
func pendingOn(c *e2e.Cluster) ([]string, error) {
	ms, err := c.List()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range ms {
		if m.Health != nil && m.Health.PendingRestart {
			ids = append(ids, m.Id)
		}
	}
	return ids, nil
}

// TestRestartVerbs_PendingRestartAppliedPrimaryKept: a restart-only
// parameter changed with edit-config shows as pending restart on every
// member; `ctl restart --pending` restarts each postmaster (replicas
// first, the primary in place) and clears it, with the same primary at the
// same epoch and no history entry. Then reload, topology, version and
// flush against real PostgreSQL, and a reinit of a replica.
func TestRestartVerbs_PendingRestartAppliedPrimaryKept(t *testing.T) {
	e2e.Skip(t)
	c := e2e.New(t, e2e.Options{})
	primary, epoch := c.WaitHealthy(120 * time.Second)
	st, err := c.State()
	if err != nil {
		t.Fatal(err)
	}
	history := len(st.History)

	if _, err := c.Ctl("edit-config", "--pg", "max_locks_per_transaction=96"); err != nil {
		t.Fatal(err)
	}
	e2e.Eventually(t, 60*time.Second, "pending restart on every member", func() error {
		ids, err := pendingOn(c)
		if err != nil {
			return err
		}
		if len(ids) != len(c.PostgresNodes()) {
			return fmt.Errorf("pending restart on %v only", ids)
		}
		return nil
	})
	if out, err := c.Ctl("list"); err != nil || strings.Count(out, " * ") < len(c.PostgresNodes()) {
		t.Errorf("ctl list does not mark every member pending restart (%v):\n%s", err, out)
	}
	pids := map[string]int{}
	for _, id := range c.PostgresNodes() {
		pids[id] = c.PostmasterPID(id)
	}

	began := time.Now()
	out := ctlLong(t, c, "restart", "--pending")
	t.Logf("ctl restart --pending took %v:\n%s", time.Since(began).Round(time.Millisecond), out)
	if !strings.Contains(out, fmt.Sprintf("restarted %d of %d members", len(pids), len(pids))) {
		t.Fatalf("restart --pending did not restart every member:\n%s", out)
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[len(pids)], primary+" ") {
		t.Errorf("the primary %s was not restarted last:\n%s", primary, out)
	}
	if ids, err := pendingOn(c); err != nil || len(ids) != 0 {
		t.Errorf("pending restart left on %v (%v)", ids, err)
	}
	for id, pid := range pids {
		if got := c.PostmasterPID(id); got == pid || got == 0 {
			t.Errorf("postmaster of %s: pid %d -> %d, want a new one", id, pid, got)
		}
	}
	p, e := c.WaitHealthy(120 * time.Second)
	if p != primary || e != epoch {
		t.Fatalf("after the restart: primary %s epoch %d, want %s epoch %d", p, e, primary, epoch)
	}
	if st, err := c.State(); err != nil || len(st.History) != history {
		t.Errorf("history changed by a restart: %d -> %d entries (%v)", history, len(st.History), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if v, err := c.QueryStrings(ctx, primary, "SHOW max_locks_per_transaction"); err != nil || len(v) != 1 || v[0] != "96" {
		t.Errorf("max_locks_per_transaction on the primary = %v (%v), want 96", v, err)
	}

	if out, err := c.Ctl("reload"); err != nil || !strings.Contains(out, "reloaded 3 of 3 members") {
		t.Errorf("reload: %v\n%s", err, out)
	}
	if out, err := c.Ctl("topology"); err != nil || strings.Count(out, " streaming ") != 2 {
		t.Errorf("topology: %v\n%s", err, out)
	}
	if out, err := c.Ctl("version", "-o", "yaml"); err != nil || !strings.Contains(out, "client:") || strings.Count(out, "reachable: true") != 3 {
		t.Errorf("version -o yaml: %v\n%s", err, out)
	}
	if out, err := c.Ctl("flush"); err != nil || !strings.Contains(out, "nothing was scheduled") {
		t.Errorf("flush: %v\n%s", err, out)
	}
	if out, err := c.Ctl("reinit", primary); err == nil || !strings.Contains(out, "FailedPrecondition") {
		t.Errorf("reinit of the primary was not refused: %v\n%s", err, out)
	}

	var replica string
	for _, id := range c.PostgresNodes() {
		if id != primary {
			replica = id
			break
		}
	}
	began = time.Now()
	out = ctlLong(t, c, "reinit", replica)
	t.Logf("ctl reinit %s took %v", replica, time.Since(began).Round(time.Millisecond))
	if !strings.Contains(out, "cloned again") {
		t.Errorf("reinit %s:\n%s", replica, out)
	}
	if p, e := c.WaitHealthy(120 * time.Second); p != primary || e != epoch {
		t.Fatalf("after reinit: primary %s epoch %d, want %s epoch %d", p, e, primary, epoch)
	}
}

// TestCallbacks_RoleChangeRecordedOnSwitchover: every agent runs an
// on_role_change script that records its arguments and an on_stop script
// that hangs far longer than a switchover takes, killed after 10 s (set
// through PGQUORUM_* variables). A switchover records "on_role_change primary CLUSTER" and
// "on_role_change replica CLUSTER" and is not held up by the hanging
// script.
func TestCallbacks_RoleChangeRecordedOnSwitchover(t *testing.T) {
	e2e.Skip(t)
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	record := filepath.Join(dir, "record")
	hang := filepath.Join(dir, "hang")
	if err := os.WriteFile(record, []byte("#!/bin/sh\necho \"$1 $2 $3\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hang, []byte("#!/bin/sh\nsleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGQUORUM_CALLBACKS_ON_ROLE_CHANGE", record)
	t.Setenv("PGQUORUM_CALLBACKS_ON_STOP", hang)
	t.Setenv("PGQUORUM_CALLBACKS_TIMEOUT", "10s")
	c := e2e.New(t, e2e.Options{})
	primary, epoch := c.WaitHealthy(120 * time.Second)

	began := time.Now()
	out := ctlLong(t, c, "switchover")
	took := time.Since(began)
	t.Logf("switchover with a hanging on_stop callback took %v:\n%s", took.Round(time.Millisecond), out)
	p, e := c.WaitHealthy(120 * time.Second)
	if p == primary || e != epoch+1 {
		t.Fatalf("after the switchover: primary %s epoch %d (before: %s epoch %d)", p, e, primary, epoch)
	}
	if took > 10*time.Second {
		t.Errorf("switchover took %v: held up by the hanging callback?", took)
	}
	// Callbacks of one node run in order: the old primary's "replica"
	// waits until its hanging on_stop is killed (10 s).
	for _, want := range []string{"on_role_change primary " + c.Name, "on_role_change replica " + c.Name} {
		e2e.Eventually(t, 60*time.Second, want, func() error {
			b, _ := os.ReadFile(calls)
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("callbacks so far: %q", b)
			}
			return nil
		})
	}
}
