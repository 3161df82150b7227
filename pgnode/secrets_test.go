package pgnode

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestScramVerifier_Form: printable ASCII passwords become a verifier of
// PostgreSQL's form with a fresh salt; others are left to the server.
func TestScramVerifier_Form(t *testing.T) {
	a, ok, err := scramVerifier("s3cret 'x'")
	if err != nil || !ok {
		t.Fatalf("scramVerifier: %v, ok %v", err, ok)
	}
	b, _, _ := scramVerifier("s3cret 'x'")
	if !strings.HasPrefix(a, "SCRAM-SHA-256$4096:") || strings.Count(a, "$") != 2 || strings.Count(a, ":") != 2 {
		t.Fatalf("verifier %q", a)
	}
	if a == b {
		t.Fatal("two verifiers share a salt")
	}
	if strings.Contains(a, "s3cret") {
		t.Fatalf("verifier holds the password: %q", a)
	}
	if _, ok, _ := scramVerifier("mot-de-passé"); ok {
		t.Fatal("non-ASCII password got a client-side verifier (SASLprep is the server's)")
	}
}

// TestNode_PasswordsNeverReachServerLog bootstraps with every statement
// logged and checks that no role password (ASCII or not) reaches the
// postmaster's log, that the stored secrets are SCRAM verifiers, and that
// every role logs in with its password.
func TestNode_PasswordsNeverReachServerLog(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	cfg := testConfig(t, base, "n1")
	cfg.Superuser.Password = "leak-test-super-7f3a"
	cfg.Replication.Password = "leak-test-répl-91c2" // not ASCII: sent in clear, logging off
	cfg.Rewind.Password = "leak-test-rewind-4be8"
	cfg.Parameters["log_statement"] = "all"
	cfg.Parameters["log_min_duration_statement"] = "0"
	cfg.Parameters["log_min_error_statement"] = "debug5"
	n := newTestNode(t, cfg)
	if _, err := n.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	// The second run takes the ALTER ROLE path for every role.
	if err := n.ensureRoles(ctx); err != nil {
		t.Fatal(err)
	}
	for _, cr := range []Credentials{cfg.Superuser, cfg.Replication, cfg.Rewind} {
		c, err := n.connectTo(ctx, "127.0.0.1", cfg.Port, cr)
		if err != nil {
			t.Fatalf("%s cannot log in with its password: %v", cr.Username, err)
		}
		var secret string
		err = c.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = current_user").Scan(&secret)
		if cr.Username == cfg.Superuser.Username && (err != nil || !strings.HasPrefix(secret, "SCRAM-SHA-256$")) {
			t.Errorf("superuser's stored secret %q, %v", secret, err)
		}
		closeConn(c)
	}
	logText, err := os.ReadFile(n.Config().LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logText), "statement:") {
		t.Fatalf("statement logging did not take effect; the test proves nothing:\n%s", logText)
	}
	for _, pw := range []string{cfg.Superuser.Password, cfg.Replication.Password, cfg.Rewind.Password} {
		if strings.Contains(string(logText), pw) {
			t.Errorf("password %q in the server log %s", pw, n.Config().LogFile)
		}
	}
}

// TestNode_ReplicationPasswordNotInConninfo: a standby told to follow a
// primary streams with the password from its passfile; primary_conninfo,
// which PostgreSQL logs with its value when it changes on reload, holds no
// password, and neither does the standby's log.
func TestNode_ReplicationPasswordNotInConninfo(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	base := reachableTempDir(t)
	a, sysid := bootstrapPrimary(t, ctx, base, "a")
	slot := SlotName(a.Config().SlotPrefix, "b")
	if err := a.EnsureSlots(ctx, []string{slot}); err != nil {
		t.Fatal(err)
	}
	b := newTestNode(t, testConfig(t, base, "b"))
	up := a.AsUpstream(slot)
	if err := b.CloneFrom(ctx, up); err != nil {
		t.Fatal(err)
	}
	// Start following nobody, then follow a: the reload changes
	// primary_conninfo, which the server logs with the new value.
	if err := b.Start(ctx, StartOptions{Role: RoleStandby, ExpectSystemID: sysid}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, StartOptions{Role: RoleStandby, Upstream: &up, ExpectSystemID: sysid}); err != nil {
		t.Fatal(err)
	}
	waitStreaming(t, ctx, a, "b")

	pw := b.Config().Replication.Password
	dir := b.Config().DataDir
	for _, f := range []string{recoveryConfFile, "postgresql.auto.conf"} {
		data, _ := os.ReadFile(filepath.Join(dir, f))
		if strings.Contains(string(data), pw) {
			t.Errorf("replication password in %s:\n%s", f, data)
		}
	}
	pass := filepath.Join(dir, passFile)
	fi, err := os.Stat(pass)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("passfile %s: %v, %v; want mode 0600", pass, fi, err)
	}
	if os.Geteuid() == 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
			t.Errorf("passfile owned by root, not by the OS user")
		}
	}
	logText, err := os.ReadFile(b.Config().LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logText), `parameter "primary_conninfo" changed`) {
		t.Errorf("no primary_conninfo change logged; the test proves nothing:\n%s", logText)
	}
	if strings.Contains(string(logText), pw) {
		t.Errorf("replication password in the standby's server log:\n%s", logText)
	}
	// Promoted, it keeps no password file a clone would copy.
	if _, err := b.writeRecoveryConf(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pass); !os.IsNotExist(err) {
		t.Errorf("passfile left without an upstream: %v", err)
	}
}

// TestPasswordEnv_Passfile: client tools get a passfile, not PGPASSWORD;
// the file is private and gone after done. A password a passfile cannot
// hold falls back to PGPASSWORD.
func TestPasswordEnv_Passfile(t *testing.T) {
	n := &Node{}
	env, done, err := n.passwordEnv("rep:l", `p\w:d`)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != 1 || !strings.HasPrefix(env[0], "PGPASSFILE=") {
		t.Fatalf("env %q", env)
	}
	path := strings.TrimPrefix(env[0], "PGPASSFILE=")
	data, err := os.ReadFile(path)
	if err != nil || string(data) != `*:*:*:rep\:l:p\\w\:d`+"\n" {
		t.Fatalf("passfile %q, %v", data, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("passfile mode %v", fi.Mode())
	}
	done()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("passfile left behind: %v", err)
	}
	env, done, _ = n.passwordEnv("u", "two\nlines")
	done()
	if len(env) != 1 || env[0] != "PGPASSWORD=two\nlines" {
		t.Fatalf("fallback env %q", env)
	}
}
