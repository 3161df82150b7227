package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/pgtest"
	"github.com/pgquorum/pgquorum/rpc"
)

// Passwords of the roles every cluster of this harness uses.
const (
	SuperuserPassword   = "su-secret"
	ReplicationPassword = "repl-secret"
	RewindPassword      = "rewind-secret"
	// ReplicationUser and RewindUser are the config defaults.
	ReplicationUser = "replicator"
	RewindUser      = "rewind_user"
)

// Options shape a Cluster.
type Options struct {
	// Nodes is the number of PostgreSQL members n1..nN (default 3).
	Nodes int
	// Witnesses adds witness members w1..wK (vote, run no PostgreSQL).
	Witnesses int
	// Profile is the timing profile (default "default": the fast profile's 1 s lease is too tight for a loaded 2-core CI machine).
	Profile string
	// Parameters are extra postgres.parameters of every node.
	Parameters map[string]string
	// DeferStart writes the configs and directories but starts no agent;
	// call Start or StartAgent.
	DeferStart bool
	// LogLevel of the agents (default "info").
	LogLevel string
}

// Node is one pgquorum node of a Cluster.
type Node struct {
	ID      string
	Witness bool
	// Dir holds everything of the node: the config, the agent's data
	// directory, the PostgreSQL data directory, sockets and logs.
	Dir        string
	ConfigPath string
	AgentDir   string
	RaftAddr   string
	GRPCAddr   string
	HTTPAddr   string
	// PGPort, PGDataDir and PGSocketDir are empty for a witness.
	PGPort      int
	PGDataDir   string
	PGSocketDir string
	LogPath     string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Cluster is a set of pgquorum processes on loopback.
type Cluster struct {
	t     testing.TB
	Bin   string
	Name  string
	Base  string
	Nodes []*Node
	pool  *rpc.Pool
}

// Skip skips the test in -short mode, when not root (the agents run
// PostgreSQL as the postgres OS user) or when PostgreSQL is missing.
func Skip(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: starts real pgquorum and PostgreSQL processes")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root (agents run PostgreSQL as the postgres OS user)")
	}
	for _, b := range []string{"initdb", "postgres", "pg_ctl", "pg_basebackup", "pg_rewind", "pg_controldata", "psql"} {
		if _, err := os.Stat(filepath.Join(pgtest.PGBinDir(), b)); err != nil {
			t.Skipf("e2e: %s missing; install postgresql-15 (make deps)", filepath.Join(pgtest.PGBinDir(), b))
		}
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("e2e: setpriv (util-linux) missing")
	}
	if _, err := user.Lookup(pgtest.OSUser); err != nil {
		t.Skipf("e2e: OS user %s missing", pgtest.OSUser)
	}
}

// New creates a cluster: directories, free ports, configs, and unless
// opts.DeferStart, running agents. Everything is stopped by PID in
// t.Cleanup.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	Skip(t)
	startReaper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Profile == "" {
		opts.Profile = "default"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	// A short base path: unix socket paths are limited to 107 bytes.
	base, err := os.MkdirTemp("", "pgq-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, Bin: Binary(t), Name: "e2e", Base: base, pool: rpc.NewPool(nil)}
	t.Cleanup(c.cleanup)

	var ids []string
	for i := 1; i <= opts.Nodes; i++ {
		ids = append(ids, fmt.Sprintf("n%d", i))
	}
	for i := 1; i <= opts.Witnesses; i++ {
		ids = append(ids, fmt.Sprintf("w%d", i))
	}
	var initial []string
	for _, id := range ids {
		n := &Node{ID: id, Witness: strings.HasPrefix(id, "w"), Dir: filepath.Join(base, id)}
		n.ConfigPath = filepath.Join(n.Dir, "pgquorum.yaml")
		n.AgentDir = filepath.Join(n.Dir, "agent")
		n.LogPath = filepath.Join(n.Dir, "agent.log")
		n.RaftAddr = fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
		n.GRPCAddr = fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
		n.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
		if !n.Witness {
			n.PGPort = pgtest.FreePort(t)
			n.PGDataDir = filepath.Join(n.Dir, "pgdata")
			n.PGSocketDir = filepath.Join(n.Dir, "sock")
		}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The postgres OS user creates the data directory, the socket
		// directory and the log file in here.
		pgtest.Chown(t, n.Dir)
		c.Nodes = append(c.Nodes, n)
		initial = append(initial, fmt.Sprintf("%s=%s", id, n.RaftAddr))
	}
	for _, n := range c.Nodes {
		c.writeConfig(n, opts, initial)
	}
	if !opts.DeferStart {
		c.Start()
	}
	return c
}

func (c *Cluster) writeConfig(n *Node, opts Options, initial []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster_name: %s\nnode_id: %s\ndata_dir: %s\n", c.Name, n.ID, n.AgentDir)
	fmt.Fprintf(&b, "raft: {bind_addr: %q}\ngrpc: {listen_addr: %q}\nhttp: {listen_addr: %q}\n", n.RaftAddr, n.GRPCAddr, n.HTTPAddr)
	fmt.Fprintf(&b, "timing: {profile: %s}\n", opts.Profile)
	b.WriteString("tls: {insecure: true}\n")
	fmt.Fprintf(&b, "bootstrap: {initial_cluster: [%s]}\n", strings.Join(initial, ", "))
	fmt.Fprintf(&b, "log: {level: %s}\n", opts.LogLevel)
	if n.Witness {
		b.WriteString("role: witness\n")
	} else {
		params := map[string]string{
			"fsync": "off", "shared_buffers": "16MB", "max_connections": "40",
			"wal_keep_size": "256MB", "log_min_messages": "warning",
		}
		for k, v := range opts.Parameters {
			params[k] = v
		}
		keys := make([]string, 0, len(params))
		for k := range params {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteString("postgres:\n")
		fmt.Fprintf(&b, "  bin_dir: %s\n  data_dir: %s\n  socket_dir: %s\n  port: %d\n", pgtest.PGBinDir(), n.PGDataDir, n.PGSocketDir, n.PGPort)
		fmt.Fprintf(&b, "  superuser: {password: %q}\n  replication: {password: %q}\n  rewind: {password: %q}\n",
			SuperuserPassword, ReplicationPassword, RewindPassword)
		b.WriteString("  initdb: [--data-checksums, --encoding=UTF8, --locale=C, --no-sync]\n  parameters:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "    %s: %q\n", k, params[k])
		}
	}
	if err := os.WriteFile(n.ConfigPath, []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// Node returns the node with the given ID.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	c.t.Fatalf("e2e: no node %q", id)
	return nil
}

// PostgresNodes lists the IDs of the PostgreSQL members.
func (c *Cluster) PostgresNodes() []string {
	var out []string
	for _, n := range c.Nodes {
		if !n.Witness {
			out = append(out, n.ID)
		}
	}
	return out
}

// Endpoints is the comma-separated list of every node's gRPC address.
func (c *Cluster) Endpoints() string {
	eps := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		eps[i] = n.GRPCAddr
	}
	return strings.Join(eps, ",")
}

// Start starts every agent that is not running.
func (c *Cluster) Start() {
	c.t.Helper()
	for _, n := range c.Nodes {
		if !n.running() {
			c.StartAgent(n.ID)
		}
	}
}

// StartAgent starts the agent of node id, its output appended to its log.
func (c *Cluster) StartAgent(id string) {
	c.t.Helper()
	n := c.Node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		c.t.Fatalf("e2e: agent %s already running (pid %d)", id, n.cmd.Process.Pid)
	}
	lf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	fmt.Fprintf(lf, "=== e2e: starting agent %s at %s\n", id, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.Bin, "serve", "--config", n.ConfigPath)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		c.t.Fatalf("e2e: start agent %s: %v", id, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = lf.Close()
		close(done)
	}()
	n.cmd, n.done = cmd, done
}

func (n *Node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// AgentPID returns the PID of the running agent of id, or 0.
func (c *Cluster) AgentPID(id string) int {
	n := c.Node(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// signalAgent sends sig to the agent by PID and waits until it is reaped
// (SIGKILL after grace).
func (c *Cluster) signalAgent(id string, sig syscall.Signal, grace time.Duration) error {
	n := c.Node(id)
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd, n.done = nil, nil
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("agent %s (pid %d) did not exit within %v of %v; killed", id, cmd.Process.Pid, grace, sig)
}

// StopAgent stops the agent of id with SIGTERM, as an operator restarting
// it would; its PostgreSQL keeps running.
func (c *Cluster) StopAgent(id string) {
	c.t.Helper()
	if err := c.signalAgent(id, syscall.SIGTERM, 20*time.Second); err != nil {
		c.t.Error(err)
	}
}

// KillAgent kills the agent of id with SIGKILL and reaps it; its
// PostgreSQL and its fence guard keep running (the guard fences a primary
// whose lease is not renewed in time).
func (c *Cluster) KillAgent(id string) {
	c.t.Helper()
	_ = c.signalAgent(id, syscall.SIGKILL, 10*time.Second)
}

// Restart stops the agent of id with SIGTERM and starts it again.
func (c *Cluster) Restart(id string) {
	c.t.Helper()
	c.StopAgent(id)
	c.StartAgent(id)
}

// PostmasterPID returns the PID of the running postmaster of id, or 0.
func (c *Cluster) PostmasterPID(id string) int {
	n := c.Node(id)
	if n.Witness {
		return 0
	}
	pid := ReadPostmasterPID(n.PGDataDir)
	if pid > 0 && isPostmasterOf(pid, n.PGDataDir) {
		return pid
	}
	return 0
}

// KillPostmaster kills the postmaster of id with SIGKILL (its agent stays)
// and waits until it is reaped. It returns the PID killed.
func (c *Cluster) KillPostmaster(id string) int {
	c.t.Helper()
	pid := c.PostmasterPID(id)
	if pid == 0 {
		c.t.Fatalf("e2e: %s has no running postmaster", id)
	}
	if err := KillPostmasterPID(pid); err != nil {
		c.t.Fatal(err)
	}
	return pid
}

// KillHost simulates the loss of host id: kill -9 of its agent, its
// fence guard and its postmaster, all reaped before it returns.
func (c *Cluster) KillHost(id string) {
	c.t.Helper()
	pid := c.PostmasterPID(id)
	c.KillAgent(id)
	c.killGuard(id)
	if pid == 0 {
		pid = c.PostmasterPID(id)
	}
	if pid > 0 {
		if err := KillPostmasterPID(pid); err != nil {
			c.t.Fatal(err)
		}
	}
}

// GuardPID returns the PID of node id's fence guard (the detached
// `pgquorum fence-guard` process that kills the primary's postmaster when
// its agent stops renewing), or 0 if none runs.
func (c *Cluster) GuardPID(id string) int {
	n := c.Node(id)
	b, err := os.ReadFile(filepath.Join(n.AgentDir, "fence-guard.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if !pidAlive(pid) || !isGuard(pid) {
		return 0
	}
	adoptGuard(pid)
	return pid
}

// isGuard reports whether pid runs `pgquorum fence-guard`.
func isGuard(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "fence-guard")
}

// killGuard kills node id's fence guard by PID, if one runs.
func (c *Cluster) killGuard(id string) {
	if pid := c.GuardPID(id); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
}

// Ctl runs `pgquorum ctl --endpoints <all> ARGS...` and returns its
// combined output.
func (c *Cluster) Ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"ctl", "--endpoints", c.Endpoints(), "--timeout", "2s", "--insecure"}, args...)
	out, err := exec.CommandContext(ctx, c.Bin, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pgquorum ctl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (c *Cluster) cleanup() {
	for _, n := range c.Nodes {
		_ = c.signalAgent(n.ID, syscall.SIGKILL, 10*time.Second)
		c.killGuard(n.ID)
	}
	for _, n := range c.Nodes {
		if n.Witness {
			continue
		}
		if _, err := StopPostmaster(n.PGDataDir, 10*time.Second); err != nil {
			c.t.Errorf("e2e cleanup: %v", err)
		}
	}
	c.pool.Close()
	if c.t.Failed() {
		c.DumpLogs()
	}
	if os.Getenv("PGQUORUME2E_KEEP") == "" {
		_ = os.RemoveAll(c.Base)
	} else {
		c.t.Logf("e2e: kept %s", c.Base)
	}
}

// DumpLogs writes the tail of every agent's and postmaster's log to the
// test log.
func (c *Cluster) DumpLogs() {
	for _, n := range c.Nodes {
		c.t.Logf("=== agent log of %s (%s):\n%s", n.ID, n.LogPath, tail(n.LogPath, 24000))
		if !n.Witness {
			c.t.Logf("=== postgres log of %s:\n%s", n.ID, tail(n.PGDataDir+".log", 6000))
		}
	}
}

// Eventually polls cond every 100 ms until it returns nil or timeout
// passes, then fails the test with the last error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
