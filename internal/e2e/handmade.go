package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgquorum/pgquorum/internal/pgtest"
)

// RunAsPostgres runs a PostgreSQL program from the bin directory the way an
// operator would: as the postgres OS user (setpriv, when root), with env
// added to a minimal environment. It fails the test on error.
func RunAsPostgres(t testing.TB, env []string, program string, args ...string) string {
	t.Helper()
	bin := filepath.Join(pgtest.PGBinDir(), program)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("setpriv", append([]string{"--reuid=" + pgtest.OSUser, "--regid=" + pgtest.OSUser, "--init-groups", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "LC_ALL=C"}, env...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", program, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// HandMadePrimary initializes and starts, by hand (initdb -k, pg_ctl), a
// primary in node id's PostgreSQL data directory with the node's port and
// socket directory, as an operator commonly leaves one: local connections
// by peer authentication, the superuser with the harness password, and no
// replication or rewind role (the agent that adopts it makes them). The
// postmaster is pg_ctl's daemon; the Cluster stops it by PID at the end
// like any other.
func (c *Cluster) HandMadePrimary(id string) {
	t := c.t
	t.Helper()
	n := c.Node(id)
	c.handMadeDirs(n)
	pw := filepath.Join(n.Dir, "superuser.pw")
	if err := os.WriteFile(pw, []byte(SuperuserPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, pw)
	RunAsPostgres(t, nil, "initdb", "-D", n.PGDataDir, "-U", "postgres", "--pwfile="+pw, "--data-checksums", "--no-sync",
		"--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C")
	_ = os.Remove(pw)
	// The settings standbys must match (max_connections) as the managed
	// nodes have them (see writeConfig).
	c.appendConf(n, "fsync = off", "wal_keep_size = '256MB'", "listen_addresses = '127.0.0.1'", "max_connections = 40")
	RunAsPostgres(t, nil, "pg_ctl", "-D", n.PGDataDir, "-l", n.PGDataDir+".log", "-w", "-t", "60", "start")
}

// HandMadeStandby clones node id's data directory from node primary by
// hand (pg_basebackup -R, as the superuser: the hand-made primary has no
// replication role) and starts it with pg_ctl.
func (c *Cluster) HandMadeStandby(id, primary string) {
	t := c.t
	t.Helper()
	n, p := c.Node(id), c.Node(primary)
	c.handMadeDirs(n)
	RunAsPostgres(t, []string{"PGPASSWORD=" + SuperuserPassword}, "pg_basebackup", "-D", n.PGDataDir, "-R", "-X", "stream",
		"-c", "fast", "-h", "127.0.0.1", "-p", strconv.Itoa(p.PGPort), "-U", "postgres")
	c.appendConf(n)
	RunAsPostgres(t, nil, "pg_ctl", "-D", n.PGDataDir, "-l", n.PGDataDir+".log", "-w", "-t", "60", "start")
}

// Psql runs sql with psql as the superuser on node id's PostgreSQL.
func (c *Cluster) Psql(id, sql string) string {
	c.t.Helper()
	return RunAsPostgres(c.t, []string{"PGPASSWORD=" + SuperuserPassword}, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", strconv.Itoa(c.Node(id).PGPort), "-U", "postgres", "-d", "postgres", "-c", sql)
}

func (c *Cluster) handMadeDirs(n *Node) {
	if err := os.MkdirAll(n.PGSocketDir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	pgtest.Chown(c.t, n.PGSocketDir)
}

// appendConf sets the node's port and socket directory, and lines, at the
// end of its postgresql.conf.
func (c *Cluster) appendConf(n *Node, lines ...string) {
	f, err := os.OpenFile(filepath.Join(n.PGDataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	all := append([]string{fmt.Sprintf("port = %d", n.PGPort), fmt.Sprintf("unix_socket_directories = '%s'", n.PGSocketDir)}, lines...)
	if _, err := f.WriteString("\n" + strings.Join(all, "\n") + "\n"); err != nil {
		c.t.Fatal(err)
	}
}
