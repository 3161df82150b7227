package scripts

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// netnsScript runs scripts/netns-cluster.sh for one test cluster.
type netnsScript struct {
	t      *testing.T
	root   string // the repository
	dir    string // NETNS_DIR
	prefix string // NETNS_PREFIX
	env    []string
}

// run runs the script with args and fails the test if it fails or takes
// longer than timeout. `timeout` kills the script's whole process group.
func (s *netnsScript) run(timeout time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.try(timeout, args...)
	if err != nil {
		s.t.Fatalf("netns-cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try runs the script with args and returns its output and error.
func (s *netnsScript) try(timeout time.Duration, args ...string) (string, error) {
	secs := fmt.Sprintf("%.1f", timeout.Seconds())
	cmd := exec.Command("timeout", append([]string{"-k", "5", secs, "bash", filepath.Join(s.root, "scripts/netns-cluster.sh")}, args...)...)
	cmd.Dir, cmd.Env = s.root, s.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// roles returns each node's role as the script reads it from the health checks.
func (s *netnsScript) roles() map[string]string {
	s.t.Helper()
	roles := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(s.run(30*time.Second, "roles")), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			roles[f[0]] = f[1]
		}
	}
	return roles
}

// waitFor polls cond every 200 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// leftovers lists what a cluster in dir with namespace prefix left behind:
// namespaces, and processes whose command line names dir (every process
// the script starts does: agents and PgBouncer by their config, the
// postmasters by their data directory, the fence guards by their socket).
func leftovers(dir, prefix string) []string {
	var left []string
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
				left = append(left, "namespace "+f[0])
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(dir+"/")) {
			left = append(left, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		}
	}
	if _, err := os.Stat(dir); err == nil {
		left = append(left, "directory "+dir)
	}
	return left
}

// TestNetnsCluster runs the three-host cluster in network namespaces: up,
// healthy, a write through PgBouncer, the primary's namespace isolated, a
// new primary taking writes, heal, down, and nothing left behind.
func TestNetnsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster in network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("creates network namespaces, veths and iptables rules: needs root")
	}
	if _, err := os.Stat("/usr/lib/postgresql/15/bin/postgres"); err != nil {
		t.Skip("PostgreSQL 15 is not installed (make deps)")
	}
	for _, tool := range []string{"ip", "iptables", "curl", "openssl", "psql", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing: the netns cluster needs it", tool)
		}
	}
	began := time.Now()
	root, _ := filepath.Abs("..")
	s := &netnsScript{t: t, root: root, dir: filepath.Join(t.TempDir(), "netns"),
		prefix: fmt.Sprintf("pgqt%d-", os.Getpid()%100000)}
	s.env = append(os.Environ(), "NETNS_DIR="+s.dir, "NETNS_PREFIX="+s.prefix,
		"BIN="+pgquorumBinary(t), "NO_BUILD=1", "PARTITION_TARGET=DROP")
	t.Cleanup(func() {
		if out, err := s.try(2*time.Minute, "down"); err != nil {
			t.Errorf("down in cleanup: %v\n%s", err, out)
		}
		if left := leftovers(s.dir, s.prefix); len(left) > 0 {
			t.Errorf("left behind after down:\n%s", strings.Join(left, "\n"))
		}
	})

	out := s.run(4*time.Minute, "up")
	t.Logf("up (%.0f s):\n%s", time.Since(began).Seconds(), out)
	roles := s.roles()
	var primary string
	for n, r := range roles {
		if r == "primary" {
			primary = n
		}
	}
	if primary == "" {
		t.Fatalf("no primary after up: %v", roles)
	}

	s.run(30*time.Second, "psql", "-v", "ON_ERROR_STOP=1", "-qc", "create table netns_writes (id serial primary key, node inet default inet_server_addr())")
	s.run(30*time.Second, "psql", "-v", "ON_ERROR_STOP=1", "-qc", "insert into netns_writes default values")

	s.run(30*time.Second, "isolate", primary)
	isolated := time.Now()
	var attempts int
	if !waitFor(90*time.Second, func() bool {
		attempts++
		_, err := s.try(3*time.Second, "psql", "-v", "ON_ERROR_STOP=1", "-qc", "insert into netns_writes default values")
		return err == nil
	}) {
		t.Fatalf("no write through PgBouncer within 90 s of isolating %s; roles %v", primary, s.roles())
	}
	failover := time.Since(isolated)
	roles = s.roles()
	var newPrimary string
	for n, r := range roles {
		if r == "primary" {
			newPrimary = n
		}
	}
	if newPrimary == "" || newPrimary == primary {
		t.Fatalf("after isolating %s the write succeeded, but the roles are %v", primary, roles)
	}
	t.Logf("isolated %s: first write through PgBouncer after %v (%d attempts), new primary %s", primary, failover.Round(time.Millisecond), attempts, newPrimary)

	s.run(30*time.Second, "heal")
	healed := time.Now()
	if !waitFor(90*time.Second, func() bool { return s.roles()[primary] == "replica" }) {
		t.Fatalf("%s did not rejoin as a replica within 90 s of heal: %v", primary, s.roles())
	}
	t.Logf("healed: %s a replica again after %v", primary, time.Since(healed).Round(time.Millisecond))
	rows := strings.TrimSpace(s.run(30*time.Second, "psql", "-Atc", "select count(*) from netns_writes"))
	if rows != "2" {
		t.Errorf("rows after failover: %s, want 2 (one before the partition, one after)", rows)
	}
	history := s.run(30*time.Second, "ctl", "history")
	t.Logf("history:\n%s", history)

	downAt := time.Now()
	out = s.run(2*time.Minute, "down")
	t.Logf("down (%v): %s", time.Since(downAt).Round(time.Millisecond), strings.TrimSpace(out))
	if left := leftovers(s.dir, s.prefix); len(left) > 0 {
		t.Fatalf("left behind after down:\n%s", strings.Join(left, "\n"))
	}
	t.Logf("netns test took %v", time.Since(began).Round(time.Second))
}
