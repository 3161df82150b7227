package pgnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestScramMatches(t *testing.T) {
	v, ok, err := scramVerifier("s3cret")
	if err != nil || !ok {
		t.Fatalf("scramVerifier: %v %v", ok, err)
	}
	tests := []struct {
		name, secret, password string
		want                   bool
	}{
		{"same password", v, "s3cret", true},
		{"other password", v, "s3cret!", false},
		{"md5 secret", "md5a3556571e93b0d20722ba62be61e8c2d", "s3cret", false},
		{"truncated", v[:len(v)-10], "s3cret", false},
		{"non-ASCII password", v, "sécret", false},
		{"empty", "", "s3cret", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scramMatches(tt.secret, tt.password); got != tt.want {
				t.Errorf("scramMatches = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestNode_EnsureRolesOnAdoptedPeerPrimary adopts a running primary made
// by hand with peer authentication for local connections and no
// replication or rewind role: Start rewrites pg_hba.conf before it logs
// in, EnsureRoles creates the roles, a second call writes nothing (the
// salted verifiers stay), a changed password is set again, and an
// immediate stop leaves a crashed (not cleanly shut down) data directory.
func TestNode_EnsureRolesOnAdoptedPeerPrimary(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	cfg := testConfig(t, base, "p")
	for _, d := range []string{filepath.Dir(cfg.DataDir), cfg.SocketDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, int(mustOSUser(t).uid), int(mustOSUser(t).gid)); err != nil {
			t.Fatal(err)
		}
	}
	pw := filepath.Join(filepath.Dir(cfg.DataDir), "pw")
	if err := os.WriteFile(pw, []byte(testSuperPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chown(pw, int(mustOSUser(t).uid), int(mustOSUser(t).gid))
	runByHand(t, nil, "initdb", "-D", cfg.DataDir, "-U", "postgres", "--pwfile="+pw, "-k", "--no-sync",
		"--auth-local=peer", "--auth-host=scram-sha-256")
	t.Cleanup(func() { stopByPIDFile(t, cfg.DataDir) })
	appendConf(t, cfg.DataDir, fmt.Sprintf("port = %d", cfg.Port), "listen_addresses = '127.0.0.1'",
		fmt.Sprintf("unix_socket_directories = '%s'", cfg.SocketDir), "fsync = off")
	runByHand(t, nil, "pg_ctl", "-D", cfg.DataDir, "-l", cfg.DataDir+".log", "-w", "start")
	pid := postmasterPID(t, cfg.DataDir)

	n := newTestNode(t, cfg)
	if err := n.Start(ctx, StartOptions{Role: RolePrimary}); err != nil {
		t.Fatalf("Start on a running primary with peer local auth: %v", err)
	}
	if got := postmasterPID(t, cfg.DataDir); got != pid {
		t.Fatalf("postmaster restarted: pid %d -> %d", pid, got)
	}
	secrets := func() map[string]string {
		t.Helper()
		rows, err := sqlConn(t, ctx, n).Query(ctx, "SELECT rolname, coalesce(rolpassword, '') FROM pg_authid WHERE rolname IN ('postgres', 'replicator', 'rewinder')")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var name, secret string
			if err := rows.Scan(&name, &secret); err != nil {
				t.Fatal(err)
			}
			out[name] = secret
		}
		return out
	}
	if s := secrets(); len(s) != 1 {
		t.Fatalf("roles before EnsureRoles: %v", s)
	}

	if err := n.EnsureRoles(ctx); err != nil {
		t.Fatalf("EnsureRoles: %v", err)
	}
	first := secrets()
	if len(first) != 3 || !scramMatches(first["replicator"], testReplPW) || !scramMatches(first["rewinder"], testRwPW) {
		t.Fatalf("roles after EnsureRoles: %v", first)
	}
	var granted bool
	if err := sqlConn(t, ctx, n).QueryRow(ctx, "SELECT pg_has_role('rewinder', 'pg_checkpoint', 'MEMBER') AND "+
		"has_function_privilege('rewinder', 'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)', 'EXECUTE') AND "+
		"(SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator')").Scan(&granted); err != nil || !granted {
		t.Fatalf("grants: %v %v", granted, err)
	}
	if c, err := n.connectTo(ctx, "127.0.0.1", cfg.Port, cfg.Replication); err != nil {
		t.Fatalf("log in as the replication role: %v", err)
	} else {
		closeConn(c)
	}

	if err := n.EnsureRoles(ctx); err != nil {
		t.Fatalf("EnsureRoles again: %v", err)
	}
	if again := secrets(); again["replicator"] != first["replicator"] || again["postgres"] != first["postgres"] {
		t.Fatalf("a second EnsureRoles rewrote roles that were in place")
	}

	cfg2 := cfg
	cfg2.Replication.Password = "changed-" + testReplPW
	n2, err := New(cfg2, testLogger(t).With("node", "p2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.EnsureRoles(ctx); err != nil {
		t.Fatalf("EnsureRoles with a changed password: %v", err)
	}
	if s := secrets(); !scramMatches(s["replicator"], cfg2.Replication.Password) {
		t.Fatalf("replication password not changed: %v", s["replicator"])
	}

	if err := n.Stop(ctx, StopImmediate); err != nil {
		t.Fatalf("Stop immediate: %v", err)
	}
	info, err := n.Inspect(ctx)
	if err != nil || info.Running || info.CleanShutdown {
		t.Fatalf("after an immediate stop: %+v, %v", info, err)
	}
	if err := n.EnsureRoles(ctx); err == nil {
		t.Fatal("EnsureRoles on a stopped server succeeded")
	} else if errors.Is(err, ErrNotPrimary) {
		t.Fatalf("EnsureRoles on a stopped server: %v", err)
	}
}
