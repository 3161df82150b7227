package pgnode

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestNode_BootstrapPrimary(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	n, sysid := bootstrapPrimary(t, ctx, base, "n1")
	if sysid == 0 {
		t.Fatal("Bootstrap returned system identifier 0")
	}

	info, err := n.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Initialized || !info.Running || info.Standby || info.SystemIdentifier != sysid || !info.DataChecksums {
		t.Fatalf("Inspect after bootstrap: %+v", info)
	}
	if err := n.CheckIdentity(ctx, sysid); err != nil {
		t.Fatalf("CheckIdentity(own id): %v", err)
	}
	if pi := n.Process(); pi.State != ProcessRunning || pi.PID != info.PostmasterPID || pi.Adopted {
		t.Fatalf("Process after bootstrap: %+v, postmaster.pid %d", pi, info.PostmasterPID)
	}

	st, err := n.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Up || st.InRecovery || st.Timeline != 1 || st.CurrentLSN == 0 || st.ServerVersion < 150000 {
		t.Fatalf("Probe: %+v", st)
	}
	if err := n.WriteProbe(ctx, 2*time.Second); err != nil {
		t.Fatalf("WriteProbe: %v", err)
	}
	st2, _ := n.Probe(ctx)
	if st2.CurrentLSN <= st.CurrentLSN {
		t.Fatalf("WriteProbe did not write WAL: %s -> %s", st.CurrentLSN, st2.CurrentLSN)
	}

	// The roles exist and log in over TCP; the rewind role has its grants.
	rw, err := n.connectTo(ctx, "127.0.0.1", n.Config().Port, n.Config().Rewind)
	if err != nil {
		t.Fatalf("rewind role login: %v", err)
	}
	var size int64
	if err := rw.QueryRow(ctx, "SELECT size FROM pg_stat_file('global/pg_control', false)").Scan(&size); err != nil || size == 0 {
		t.Fatalf("rewind role pg_stat_file: %v (size %d)", err, size)
	}
	closeConn(rw)

	// Idempotence and refusals.
	if _, err := n.Bootstrap(ctx); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second Bootstrap: got %v, want ErrAlreadyInitialized", err)
	}
	pid := n.Process().PID
	if err := n.Start(ctx, StartOptions{Role: RolePrimary}); err != nil {
		t.Fatalf("Start on running primary: %v", err)
	}
	if err := n.Start(ctx, StartOptions{Role: RoleStandby}); !errors.Is(err, ErrRoleMismatch) {
		t.Fatalf("Start standby on running primary: got %v, want ErrRoleMismatch", err)
	}
	if got := n.Process().PID; got != pid {
		t.Fatalf("Start on a running server restarted it: pid %d -> %d", pid, got)
	}
	if err := n.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	if pi := n.Process(); pi.State != ProcessStopped {
		t.Fatalf("Process after Stop: %+v", pi)
	}
	if err := n.Stop(ctx, StopFast); err != nil {
		t.Fatalf("Stop on stopped server: %v", err)
	}
	info, _ = n.Inspect(ctx)
	if info.Running || !info.CleanShutdown || info.PIDFile {
		t.Fatalf("Inspect after Stop: %+v", info)
	}
	if err := n.Start(ctx, StartOptions{Role: RoleAsIs, ExpectSystemID: sysid + 1}); !errors.Is(err, ErrForeignDataDir) {
		t.Fatalf("Start with a wrong expected identity: got %v, want ErrForeignDataDir", err)
	}
	if err := n.Start(ctx, StartOptions{Role: RoleAsIs, ExpectSystemID: sysid}); err != nil {
		t.Fatal(err)
	}
}

func TestNode_ForeignDataDir(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	a, sysA := bootstrapPrimary(t, ctx, base, "a")
	b, sysB := bootstrapPrimary(t, ctx, base, "b")
	if sysA == sysB {
		t.Fatalf("two bootstraps share system identifier %d", sysA)
	}
	err := b.CheckIdentity(ctx, sysA)
	if !errors.Is(err, ErrForeignDataDir) {
		t.Fatalf("CheckIdentity(b, id of a): got %v, want ErrForeignDataDir", err)
	}
	t.Logf("refusal reads: %v", err)
	if err := b.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, StartOptions{Role: RoleAsIs, ExpectSystemID: sysA}); !errors.Is(err, ErrForeignDataDir) {
		t.Fatalf("Start(b, expecting a): got %v", err)
	}
	if info, _ := b.Inspect(ctx); info.Running || info.SystemIdentifier != sysB {
		t.Fatalf("refused start touched b: %+v", info)
	}
	// A clone into an initialized directory is refused and changes nothing.
	if err := b.CloneFrom(ctx, a.AsUpstream("")); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("CloneFrom into b: got %v, want ErrAlreadyInitialized", err)
	}
	if info, _ := b.Inspect(ctx); info.SystemIdentifier != sysB {
		t.Fatalf("refused clone touched b: %+v", info)
	}
	// A custom replica command clones from the environment it is given;
	// a failing one leaves the directory empty.
	cfg := testConfig(t, base, "d")
	cfg.CreateReplicaCommand = `exec "` + DefaultBinDir + `/pg_basebackup" -D "$PGQ_DATA_DIR" -X stream -c fast -d "$PGQ_UPSTREAM_CONNINFO"`
	d := newTestNode(t, cfg)
	if err := d.CloneFrom(ctx, a.AsUpstream("")); err != nil {
		t.Fatalf("CloneFrom with CreateReplicaCommand: %v", err)
	}
	if err := d.CheckIdentity(ctx, sysA); err != nil {
		t.Fatal(err)
	}
	cfg = testConfig(t, base, "e")
	cfg.CreateReplicaCommand = "echo no backup here >&2; exit 3"
	e := newTestNode(t, cfg)
	if err := e.CloneFrom(ctx, a.AsUpstream("")); !errors.Is(err, ErrCommandFailed) {
		t.Fatalf("failing CreateReplicaCommand: %v", err)
	}
	if info, _ := e.Inspect(ctx); !info.Empty {
		t.Fatalf("failed clone left content: %+v", info)
	}

	// A directory with foreign content is not a cluster and is not wiped.
	junk := filepath.Join(base, "junk")
	if err := os.MkdirAll(junk, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, "keep.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = testConfig(t, base, "j")
	cfg.DataDir = junk
	j := newTestNode(t, cfg)
	if _, err := j.Bootstrap(ctx); !errors.Is(err, ErrDataDirNotEmpty) {
		t.Fatalf("Bootstrap into non-empty dir: got %v", err)
	}
	if err := j.Start(ctx, StartOptions{Role: RolePrimary}); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Start on non-cluster dir: got %v", err)
	}
	if _, err := os.Stat(filepath.Join(junk, "keep.txt")); err != nil {
		t.Fatalf("foreign content lost: %v", err)
	}
}

func TestNode_KillAndRestartInPlace(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	n, _ := bootstrapPrimary(t, ctx, base, "k1")
	mustExec(t, ctx, n, "CREATE TABLE t (id int PRIMARY KEY)")
	mustExec(t, ctx, n, "INSERT INTO t VALUES (1), (2)")
	pid := n.Process().PID

	// A frozen postmaster takes no new connections; the probes' timeouts
	// are client-side, so they fail fast instead of hanging.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	werr := n.WriteProbe(ctx, 300*time.Millisecond)
	took := time.Since(start)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(werr, ErrWriteProbe) || took > 2*time.Second {
		t.Fatalf("WriteProbe on a frozen postmaster: %v after %s", werr, took)
	}

	// Hold a session open so a backend outlives the postmaster for a moment.
	hold := sqlConn(t, ctx, n)
	if _, err := hold.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "postmaster seen as crashed", func() error {
		if pi := n.Process(); pi.State != ProcessCrashed {
			return errors.New(pi.State.String())
		}
		return nil
	})
	pi := n.Process()
	if pi.ExitStatus != "signal: killed" {
		t.Fatalf("ExitStatus %q", pi.ExitStatus)
	}
	info, err := n.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Running || !info.StalePIDFile || info.CleanShutdown {
		t.Fatalf("Inspect after kill -9: %+v", info)
	}
	if _, err := n.Probe(ctx); err == nil {
		t.Fatal("Probe of a killed server succeeded")
	}
	if err := n.Start(ctx, StartOptions{Role: RoleAsIs}); err != nil {
		t.Fatalf("restart after kill -9: %v", err)
	}
	if got := n.Process(); got.State != ProcessRunning || got.PID == pid {
		t.Fatalf("Process after restart: %+v (old pid %d)", got, pid)
	}
	if got := ids(t, ctx, n); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("rows after crash restart: %v", got)
	}
}

func TestNode_AgentRestartAdopts(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	first, sysid := bootstrapPrimary(t, ctx, base, "r1")
	pid := first.Process().PID
	st1, err := first.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// A new agent: a new Node for the same data directory.
	second := newTestNode(t, first.Config())
	if pi := second.Process(); pi.State != ProcessNone {
		t.Fatalf("fresh Node process state %v", pi.State)
	}
	pi, err := second.Adopt(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pi.PID != pid || !pi.Adopted || pi.State != ProcessRunning {
		t.Fatalf("Adopt: %+v, want pid %d", pi, pid)
	}
	if err := second.Start(ctx, StartOptions{Role: RolePrimary, ExpectSystemID: sysid}); err != nil {
		t.Fatal(err)
	}
	st2, err := second.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Process().PID != pid || !st2.PostmasterStartTime.Equal(st1.PostmasterStartTime) {
		t.Fatalf("postgres restarted by the new agent: pid %d->%d, start %v->%v", pid, second.Process().PID, st1.PostmasterStartTime, st2.PostmasterStartTime)
	}
	// The adopted postmaster is not our child; Stop still works and waits.
	if err := second.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	if got := second.Process(); got.State != ProcessStopped {
		t.Fatalf("adopted process after Stop: %+v", got)
	}
	if _, err := second.Adopt(ctx); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Adopt with nothing running: got %v", err)
	}
}

func TestNode_ParametersPendingRestart(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	n, _ := bootstrapPrimary(t, ctx, base, "p1")
	params := map[string]string{"shared_buffers": "16MB", "max_connections": "30", "fsync": "off", "work_mem": "8MB"}
	pending, err := n.SetParameters(ctx, params)
	if err != nil || len(pending) != 0 {
		t.Fatalf("SetParameters(work_mem): pending %v, err %v", pending, err)
	}
	var wm string
	if err := sqlConn(t, ctx, n).QueryRow(ctx, "SHOW work_mem").Scan(&wm); err != nil || wm != "8MB" {
		t.Fatalf("work_mem = %q (%v)", wm, err)
	}

	// A node-local parameter wins over the dynamic one: no change.
	params["max_connections"] = "40"
	if pending, err := n.SetParameters(ctx, params); err != nil || len(pending) != 0 {
		t.Fatalf("SetParameters(max_connections, local 30): pending %v, err %v", pending, err)
	}
	params["max_locks_per_transaction"] = "128"
	pending, err = n.SetParameters(ctx, params)
	if err != nil || !slices.Equal(pending, []string{"max_locks_per_transaction"}) {
		t.Fatalf("SetParameters(max_locks_per_transaction): pending %v, err %v", pending, err)
	}
	if st, _ := n.Probe(ctx); !slices.Equal(st.PendingRestart, []string{"max_locks_per_transaction"}) {
		t.Fatalf("Probe.PendingRestart = %v", st.PendingRestart)
	}

	for _, bad := range []map[string]string{
		{"port": "1"},
		{"synchronous_standby_names": "*"},
		{"work_mem": "lots"},
		{"no_such_parameter": "1"},
	} {
		if _, err := n.SetParameters(ctx, bad); !errors.Is(err, ErrInvalidParameter) {
			t.Errorf("SetParameters(%v): got %v, want ErrInvalidParameter", bad, err)
		} else {
			t.Logf("SetParameters(%v): %v", bad, err)
		}
	}
	// The rejected sets changed nothing.
	if err := sqlConn(t, ctx, n).QueryRow(ctx, "SHOW work_mem").Scan(&wm); err != nil || wm != "8MB" {
		t.Fatalf("work_mem after rejected sets = %q (%v)", wm, err)
	}

	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := n.Probe(ctx)
	if err != nil || len(st.PendingRestart) != 0 {
		t.Fatalf("after Restart: pending %v, err %v", st.PendingRestart, err)
	}
	var mc string
	if err := sqlConn(t, ctx, n).QueryRow(ctx, "SHOW max_locks_per_transaction").Scan(&mc); err != nil || mc != "128" {
		t.Fatalf("max_locks_per_transaction = %q (%v)", mc, err)
	}
	if err := sqlConn(t, ctx, n).QueryRow(ctx, "SHOW max_connections").Scan(&mc); err != nil || mc != "30" {
		t.Fatalf("max_connections = %q (%v), want the node-local 30", mc, err)
	}
}

func TestNode_UnreachableDataDir(t *testing.T) {
	requirePG(t)
	if os.Geteuid() != 0 {
		t.Skip("only root switches to the postgres OS user")
	}
	base := reachableTempDir(t)
	locked := filepath.Join(base, "locked")
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, locked, "u")
	n := newTestNode(t, cfg)
	_, err := n.Bootstrap(testCtx(t))
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Bootstrap under a 0700 root directory: %v", err)
	}
	t.Logf("refusal reads: %v", err)
}
