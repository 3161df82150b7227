package pgnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runByHand runs a PostgreSQL tool as the postgres OS user the way an
// operator would (setpriv when root), independently of pgnode's helpers.
func runByHand(t *testing.T, env []string, name string, args ...string) {
	t.Helper()
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("setpriv", append([]string{"--reuid=postgres", "--regid=postgres", "--init-groups", filepath.Join(DefaultBinDir, name)}, args...)...)
	} else {
		cmd = exec.Command(filepath.Join(DefaultBinDir, name), args...)
	}
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "LC_ALL=C"}, env...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func appendConf(t *testing.T, dataDir string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("\n" + strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

func postmasterPID(t *testing.T, dataDir string) int {
	t.Helper()
	pf, ok, err := readPIDFile(dataDir)
	if err != nil || !ok {
		t.Fatalf("postmaster.pid of %s: %v", dataDir, err)
	}
	return pf.pid
}

// TestNode_AdoptHandMadePair builds a primary/standby pair by hand with
// initdb, pg_ctl and pg_basebackup -R, then hands both to pgnode: they
// keep their data and their postmasters, and the standby keeps streaming
// while pgnode takes over its configuration.
func TestNode_AdoptHandMadePair(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	cfgP := testConfig(t, base, "p")
	cfgS := testConfig(t, base, "s")
	for _, c := range []Config{cfgP, cfgS} {
		for _, d := range []string{filepath.Dir(c.DataDir), c.SocketDir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(d, int(mustOSUser(t).uid), int(mustOSUser(t).gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	pw := filepath.Join(filepath.Dir(cfgP.DataDir), "pw")
	if err := os.WriteFile(pw, []byte(testSuperPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chown(pw, int(mustOSUser(t).uid), int(mustOSUser(t).gid))

	// By hand: the primary.
	runByHand(t, nil, "initdb", "-D", cfgP.DataDir, "-U", "postgres", "--pwfile="+pw, "-k", "--no-sync",
		"--auth-local=scram-sha-256", "--auth-host=scram-sha-256")
	t.Cleanup(func() { stopByPIDFile(t, cfgP.DataDir) })
	appendConf(t, cfgP.DataDir, fmt.Sprintf("port = %d", cfgP.Port), "listen_addresses = '127.0.0.1'",
		fmt.Sprintf("unix_socket_directories = '%s'", cfgP.SocketDir), "fsync = off")
	runByHand(t, nil, "pg_ctl", "-D", cfgP.DataDir, "-l", cfgP.DataDir+".log", "-w", "start")
	psql := func(port int, sql string) {
		runByHand(t, []string{"PGPASSWORD=" + testSuperPW}, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
			"-p", fmt.Sprint(port), "-U", "postgres", "-d", "postgres", "-c", sql)
	}
	psql(cfgP.Port, "CREATE ROLE replicator LOGIN REPLICATION PASSWORD '"+testReplPW+"'")
	psql(cfgP.Port, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")

	// By hand: the standby.
	t.Cleanup(func() { stopByPIDFile(t, cfgS.DataDir) })
	runByHand(t, []string{"PGPASSWORD=" + testReplPW}, "pg_basebackup", "-D", cfgS.DataDir, "-R", "-X", "stream", "-c", "fast",
		"-h", "127.0.0.1", "-p", fmt.Sprint(cfgP.Port), "-U", "replicator")
	appendConf(t, cfgS.DataDir, fmt.Sprintf("port = %d", cfgS.Port), fmt.Sprintf("unix_socket_directories = '%s'", cfgS.SocketDir))
	runByHand(t, nil, "pg_ctl", "-D", cfgS.DataDir, "-l", cfgS.DataDir+".log", "-w", "start")
	psql(cfgP.Port, "INSERT INTO t VALUES (2)")

	pidP, pidS := postmasterPID(t, cfgP.DataDir), postmasterPID(t, cfgS.DataDir)
	p, err := New(cfgP, testLogger(t).With("node", "p"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfgS, testLogger(t).With("node", "s"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := p.Inspect(ctx)
	if err != nil || !info.Running || info.PostmasterPID != pidP {
		t.Fatalf("Inspect hand-made primary: %+v, %v", info, err)
	}
	if pi, err := p.Adopt(ctx); err != nil || pi.PID != pidP || !pi.Adopted {
		t.Fatalf("Adopt primary: %+v, %v", pi, err)
	}
	if pi, err := s.Adopt(ctx); err != nil || pi.PID != pidS {
		t.Fatalf("Adopt standby: %+v, %v", pi, err)
	}
	waitIDs(t, ctx, s, 1, 2)

	// Taking over the configuration reloads, never restarts.
	if err := p.Start(ctx, StartOptions{Role: RolePrimary, ExpectSystemID: info.SystemIdentifier}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx, StartOptions{Role: RoleAsIs, ExpectSystemID: info.SystemIdentifier}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Probe(ctx)
	if err != nil || !st.InRecovery {
		t.Fatalf("adopted standby: %+v, %v", st, err)
	}
	psql(cfgP.Port, "INSERT INTO t VALUES (3)")
	waitIDs(t, ctx, s, 1, 2, 3)

	// Pointing the standby at its primary through pgnode replaces the
	// primary_conninfo pg_basebackup -R left in postgresql.auto.conf; the
	// standby now reports its member name.
	if err := s.Start(ctx, StartOptions{Role: RoleStandby, Upstream: ptr(p.AsUpstream(""))}); err != nil {
		t.Fatal(err)
	}
	waitStreaming(t, ctx, p, "s")
	psql(cfgP.Port, "INSERT INTO t VALUES (4)")
	waitIDs(t, ctx, s, 1, 2, 3, 4)
	if got := postmasterPID(t, cfgP.DataDir); got != pidP {
		t.Fatalf("primary restarted: pid %d -> %d", pidP, got)
	}
	if got := postmasterPID(t, cfgS.DataDir); got != pidS {
		t.Fatalf("standby restarted: pid %d -> %d", pidS, got)
	}
	auto, _ := os.ReadFile(filepath.Join(cfgS.DataDir, "postgresql.auto.conf"))
	if strings.Contains(string(auto), "primary_conninfo") {
		t.Fatalf("postgresql.auto.conf still sets primary_conninfo:\n%s", auto)
	}

	// pgnode stops a postmaster it did not start (pg_ctl's daemon).
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.Stop(sctx, StopFast); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(sctx, StopFast); err != nil {
		t.Fatal(err)
	}
	if info, _ := p.Inspect(ctx); info.Running || !info.CleanShutdown {
		t.Fatalf("after Stop: %+v", info)
	}
}

func ptr[T any](v T) *T { return &v }

func mustOSUser(t *testing.T) osIdentity {
	t.Helper()
	id, err := lookupOSUser(DefaultOSUser)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
