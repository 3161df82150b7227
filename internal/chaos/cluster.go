//go:build chaos

package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
	"github.com/pgquorum/pgquorum/internal/pgtest"
	"github.com/pgquorum/pgquorum/rpc"
)

// Ports every host uses on its own address.
const (
	raftPort    = 7000
	grpcPort    = 7100
	httpPort    = 8008
	pgPort      = 5432
	bouncerPort = 6432
	clusterName = "chaos"
	appDB       = "app"
)

// Node is one pgquorum node: its host, its directories and its agent.
type Node struct {
	ID        string
	Host      *Host
	Dir       string
	AgentDir  string
	PGDataDir string
	agent     *proc
	mounted   bool
	// handStarted is set while a postmaster an operator started by hand
	// runs here: the probe does not count it (clients reach members
	// through PgBouncer; the history checks those).
	handStarted atomic.Bool
}

// Cluster is the system under test: three to five nodes, PgBouncer and
// the bouncer agent, each in its namespace of Net, and the client host the
// workload connects from.
type Cluster struct {
	t       testing.TB
	Net     *Net
	Bin     string
	Dir     string
	Nodes   []*Node
	PGB     *Host
	Client  *Host
	pgb     *proc
	bagent  *proc
	pool    *rpc.Pool
	adminPW string
}

// StartCluster builds the topology in dir and starts every process. The
// caller registers Close before anything else can fail.
func StartCluster(t testing.TB, net *Net, dir string, nodes int) (*Cluster, error) {
	e2e.StartReaper()
	c := &Cluster{t: t, Net: net, Bin: e2e.Binary(t), Dir: dir, PGB: net.Host("pgb"), Client: net.Host("cl"), pool: rpc.NewPool(nil), adminPW: "pgb-admin-secret"}
	var initial []string
	for i := 1; i <= nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		n := &Node{ID: id, Host: net.Host(id), Dir: filepath.Join(dir, id)}
		n.AgentDir = filepath.Join(n.Dir, "agent")
		n.PGDataDir = filepath.Join(n.Dir, "vol", "pgdata")
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			return c, err
		}
		pgtest.Chown(t, n.Dir)
		c.Nodes = append(c.Nodes, n)
		n.mounted = true // Close unmounts whatever got mounted
		if err := mountVolume(n); err != nil {
			return c, err
		}
		pgtest.Chown(t, filepath.Join(n.Dir, "vol"))
		initial = append(initial, fmt.Sprintf("%s=%s:%d", id, n.Host.IP, raftPort))
	}
	for _, n := range c.Nodes {
		cfg := filepath.Join(n.Dir, "pgquorum.yaml")
		if err := os.WriteFile(cfg, []byte(nodeConfig(n, initial)), 0o600); err != nil {
			return c, err
		}
		n.agent = &proc{name: "agent " + n.ID, host: n.Host, argv: []string{c.Bin, "serve", "--config", cfg}, logPath: filepath.Join(n.Dir, "agent.log")}
		if err := n.agent.start(); err != nil {
			return c, err
		}
	}
	return c, c.startBouncer()
}

func nodeConfig(n *Node, initial []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster_name: %s\nnode_id: %s\ndata_dir: %s\n", clusterName, n.ID, n.AgentDir)
	fmt.Fprintf(&b, "raft: {bind_addr: \"%s:%d\"}\ngrpc: {listen_addr: \"%s:%d\"}\nhttp: {listen_addr: \"%s:%d\"}\n",
		n.Host.IP, raftPort, n.Host.IP, grpcPort, n.Host.IP, httpPort)
	b.WriteString("timing: {profile: default}\ntls: {insecure: true}\nlog: {level: info}\n")
	fmt.Fprintf(&b, "bootstrap: {initial_cluster: [%s]}\n", strings.Join(initial, ", "))
	b.WriteString("postgres:\n")
	fmt.Fprintf(&b, "  bin_dir: %s\n  data_dir: %s\n  socket_dir: %s\n  port: %d\n  listen_addresses: %q\n",
		pgtest.PGBinDir(), n.PGDataDir, filepath.Join(n.Dir, "sock"), pgPort, n.Host.IP)
	fmt.Fprintf(&b, "  superuser: {password: %q}\n  replication: {password: %q}\n  rewind: {password: %q}\n",
		e2e.SuperuserPassword, e2e.ReplicationPassword, e2e.RewindPassword)
	b.WriteString("  initdb: [--data-checksums, --encoding=UTF8, --locale=C, --no-sync]\n  parameters:\n")
	// fsync stays on: the volume is memory-backed, so it costs little,
	// and without it no WAL flush would ever wait on the disk the
	// stall-disk-primary nemesis stalls.
	params := map[string]string{
		"shared_buffers": "16MB", "max_connections": "60",
		"wal_keep_size": "256MB", "log_min_messages": "warning",
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "    %s: %q\n", k, params[k])
	}
	return b.String()
}

// startBouncer writes PgBouncer's and the bouncer agent's files and
// starts both in the pgb namespace.
func (c *Cluster) startBouncer() error {
	dir := filepath.Join(c.Dir, "pgb")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pgtest.Chown(c.t, dir)
	include := filepath.Join(dir, "databases.ini")
	users := fmt.Sprintf("%q %q\n%q %q\n", "postgres", e2e.SuperuserPassword, "pgbadmin", c.adminPW)
	ini := fmt.Sprintf(`[databases]
%%include %s

[pgbouncer]
listen_addr = %s
listen_port = %d
unix_socket_dir =
auth_type = md5
auth_file = %s
admin_users = pgbadmin
pool_mode = transaction
logfile = %s
max_client_conn = 200
default_pool_size = 20
server_login_retry = 0.1
server_connect_timeout = 2
server_fast_close = 1
`, include, c.PGB.IP, bouncerPort, filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.log"))
	for name, content := range map[string]string{"userlist.txt": users, "pgbouncer.ini": ini, "databases.ini": ""} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return err
		}
		pgtest.Chown(c.t, p)
	}
	c.pgb = &proc{name: "pgbouncer", host: c.PGB, logPath: filepath.Join(dir, "pgbouncer.stderr"), argv: []string{
		"setpriv", "--reuid=" + pgtest.OSUser, "--regid=" + pgtest.OSUser, "--init-groups", pgtest.PgBouncerBin(), filepath.Join(dir, "pgbouncer.ini")}}
	if err := c.startPgBouncer(); err != nil {
		return err
	}
	var eps []string
	for _, n := range c.Nodes {
		eps = append(eps, fmt.Sprintf("\"%s:%d\"", n.Host.IP, grpcPort))
	}
	cfg := fmt.Sprintf(`agent_id: pgb-chaos
pgbouncer:
  host: %s
  port: %d
  admin_user: pgbadmin
  password: %q
  include_path: %s
contact_lease: 3s
tls: {insecure: true}
log: {level: info, format: json}
clusters:
  - name: %s
    endpoints: [%s]
    databases:
      - {name: %s, dbname: postgres}
`, c.PGB.IP, bouncerPort, c.adminPW, include, clusterName, strings.Join(eps, ", "), appDB)
	path := filepath.Join(dir, "bouncer.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	c.bagent = &proc{name: "bouncer agent", host: c.PGB, argv: []string{c.Bin, "bouncer", "--config", path}, logPath: filepath.Join(dir, "bouncer-agent.log")}
	return c.bagent.start()
}

// startPgBouncer starts PgBouncer (at setup, and again after the
// kill-pgbouncer nemesis) and waits until it listens: it must answer
// before the agent's first admin command.
func (c *Cluster) startPgBouncer() error {
	if err := c.pgb.start(); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for dialOK(c.PGB.IP, bouncerPort) != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("pgbouncer not listening on %s:%d: %s", c.PGB.IP, bouncerPort, e2e.Tail(filepath.Join(c.Dir, "pgb", "pgbouncer.log"), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Node returns the node with the given ID.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	panic("chaos: no node " + id)
}

// NodeByIP returns the node whose host has ip, or nil.
func (c *Cluster) NodeByIP(ip string) *Node {
	for _, n := range c.Nodes {
		if n.Host.IP == ip {
			return n
		}
	}
	return nil
}

// BouncerDSN is the clients' connection string: through PgBouncer.
func (c *Cluster) BouncerDSN() string {
	return fmt.Sprintf("host=%s port=%d user=postgres password=%s dbname=%s sslmode=disable connect_timeout=3",
		c.PGB.IP, bouncerPort, e2e.SuperuserPassword, appDB)
}

// DirectDSN is a connection string for node n's PostgreSQL, bypassing
// PgBouncer (the observer is never partitioned).
func (n *Node) DirectDSN() string {
	return fmt.Sprintf("host=%s port=%d user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=2",
		n.Host.IP, pgPort, e2e.SuperuserPassword)
}

// GRPCAddr is the node's gRPC address.
func (n *Node) GRPCAddr() string { return fmt.Sprintf("%s:%d", n.Host.IP, grpcPort) }

// PostmasterPID is the PID of the node's running postmaster, or 0.
func (n *Node) PostmasterPID() int {
	pid := e2e.ReadPostmasterPID(n.PGDataDir)
	if pid > 0 && e2e.IsPostmasterOf(pid, n.PGDataDir) {
		return pid
	}
	return 0
}

// GuardPID is the PID of the node's fence guard, or 0.
func (n *Node) GuardPID() int {
	b, err := os.ReadFile(filepath.Join(n.AgentDir, "fence-guard.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || !e2e.IsGuard(pid) {
		return 0
	}
	e2e.AdoptGuard(pid)
	return pid
}

// KillPostmaster is kill -9 of the node's postmaster; it returns the PID.
func (n *Node) KillPostmaster() int {
	pid := n.PostmasterPID()
	if pid > 0 {
		_ = e2e.KillPostmasterPID(pid)
	}
	return pid
}

// KillGuard is kill -9 of the node's fence guard.
func (n *Node) KillGuard() {
	if pid := n.GuardPID(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// KillHost is the loss of the node's host: its agent, fence guard and
// postmaster, kill -9.
func (n *Node) KillHost() {
	pm := n.PostmasterPID()
	n.agent.kill()
	n.KillGuard()
	if pm == 0 {
		pm = n.PostmasterPID()
	}
	if pm > 0 {
		_ = e2e.KillPostmasterPID(pm)
	}
}

// Close stops every process by PID (agents, guards, postmasters,
// PgBouncer, the bouncer agent) and the connection pool. The network is
// the caller's to close.
func (c *Cluster) Close() {
	if c.bagent != nil {
		c.bagent.stop(syscall.SIGTERM, 5*time.Second)
	}
	if c.pgb != nil {
		c.pgb.stop(syscall.SIGTERM, 5*time.Second)
	}
	for _, n := range c.Nodes {
		if n.agent != nil {
			n.agent.kill()
		}
		n.KillGuard()
	}
	for _, n := range c.Nodes {
		_, _ = e2e.StopPostmaster(n.PGDataDir, 10*time.Second)
		if n.mounted {
			unmountVolume(n)
		}
	}
	c.pool.Close()
}
