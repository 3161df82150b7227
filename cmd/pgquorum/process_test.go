package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// The test binary doubles as the pgquorum binary: with this variable set,
// TestMain runs main() instead of the tests. Processes started this way are
// real pgquorum processes (and carry -race when the tests do).
const beMain = "PGQUORUMTEST_BE_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(beMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type proc struct {
	id, cfg, grpc string
	cmd           *exec.Cmd
	log           *bytes.Buffer
}

type procCluster struct {
	t     *testing.T
	nodes []*proc
	// ctlFlags are ctl's TLS flags for this cluster.
	ctlFlags []string
}

func startProcCluster(t *testing.T, n int) *procCluster {
	t.Helper()
	return startProcClusterTLS(t, n, "{insecure: true}", []string{"--insecure"})
}

// startProcClusterTLS starts n witness processes whose config has tlsYAML
// as its tls section; ctl calls use ctlFlags.
func startProcClusterTLS(t *testing.T, n int, tlsYAML string, ctlFlags []string) *procCluster {
	t.Helper()
	dir := t.TempDir()
	c := &procCluster{t: t, ctlFlags: ctlFlags}
	var initial []string
	raftPorts := make([]int, n)
	for i := range n {
		raftPorts[i] = freePort(t)
		initial = append(initial, fmt.Sprintf("n%d=127.0.0.1:%d", i+1, raftPorts[i]))
	}
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		grpcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg := filepath.Join(dir, id+".yaml")
		// Witnesses: this is the quorum's own test, with no PostgreSQL
		// (internal/e2e runs the same with real PostgreSQL).
		body := fmt.Sprintf(`cluster_name: proc
node_id: %s
data_dir: %s
role: witness
raft: {bind_addr: "127.0.0.1:%d"}
grpc: {listen_addr: "%s"}
http: {listen_addr: ""}
timing: {profile: fast}
tls: %s
bootstrap: {initial_cluster: [%s]}
`, id, filepath.Join(dir, id), raftPorts[i], grpcAddr, tlsYAML, strings.Join(initial, ", "))
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, &proc{id: id, cfg: cfg, grpc: grpcAddr})
	}
	for _, p := range c.nodes {
		c.start(p)
	}
	t.Cleanup(func() {
		for _, p := range c.nodes {
			c.kill(p, syscall.SIGTERM)
		}
		if t.Failed() {
			for _, p := range c.nodes {
				t.Logf("log of %s:\n%s", p.id, p.log.String())
			}
		}
	})
	return c
}

func (c *procCluster) start(p *proc) {
	c.t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--config", p.cfg)
	cmd.Env = append(os.Environ(), beMain+"=1")
	if p.log == nil {
		p.log = &bytes.Buffer{}
	}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.cmd = cmd
}

// kill signals the process by PID and reaps it.
func (c *procCluster) kill(p *proc, sig syscall.Signal) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

func (c *procCluster) endpoints() string {
	var eps []string
	for _, p := range c.nodes {
		eps = append(eps, p.grpc)
	}
	return strings.Join(eps, ",")
}

// ctl runs `pgquorum ctl` in-process and returns its output.
func (c *procCluster) ctl(args ...string) (string, error) {
	return c.ctlVia(context.Background(), c.endpoints(), args...)
}

// ctlVia runs `pgquorum ctl` in-process against the given endpoints, for
// at most as long as ctx.
func (c *procCluster) ctlVia(ctx context.Context, endpoints string, args ...string) (string, error) {
	var out bytes.Buffer
	root := rootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(append([]string{"ctl", "--endpoints", endpoints, "--timeout", "2s"}, c.ctlFlags...), args...))
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

type statusJSON struct {
	NodeID       string `json:"nodeId"`
	RaftState    string `json:"raftState"`
	LeaderID     string `json:"leaderId"`
	AppliedIndex string `json:"appliedIndex"`
	Error        string `json:"error"`
}

// status returns the members that answered `ctl status`.
func (c *procCluster) status() []statusJSON {
	out, err := c.ctl("status", "-o", "json")
	if err != nil {
		return nil
	}
	out = strings.TrimSpace(out)
	if !strings.HasPrefix(out, "[") {
		out = "[" + out + "]"
	}
	var all []statusJSON
	_ = json.Unmarshal([]byte(out), &all)
	var st []statusJSON
	for _, s := range all {
		if s.Error == "" {
			st = append(st, s)
		}
	}
	return st
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *procCluster) leader() string {
	for _, s := range c.status() {
		if s.RaftState == "Leader" {
			return s.NodeID
		}
	}
	return ""
}

// TestProcesses_KillLeaderAndRestart is the foundation's end-to-end test:
// three real processes on loopback form a quorum; the leader is killed with
// -9; a new leader serves writes; the killed node restarts from its data
// directory and catches up.
func TestProcesses_KillLeaderAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startProcCluster(t, 3)
	eventually(t, 30*time.Second, "three members and a leader", func() bool {
		out, err := c.ctl("members")
		return err == nil && strings.Count(out, " voter ") == 3 && c.leader() != ""
	})
	old := c.leader()
	var victim *proc
	for _, p := range c.nodes {
		if p.id == old {
			victim = p
		}
	}
	c.kill(victim, syscall.SIGKILL)
	eventually(t, 30*time.Second, "a new leader", func() bool {
		l := c.leader()
		return l != "" && l != old
	})
	// A write through the new leader: removing and re-adding a member is
	// a real membership change; adding a non-voter is enough and harmless.
	out, err := c.ctl("members", "add", "n9", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--nonvoter")
	if err != nil {
		t.Fatalf("write after failover: %v\n%s", err, out)
	}
	c.start(victim)
	eventually(t, 30*time.Second, "the restarted node to catch up", func() bool {
		st := c.status()
		if len(st) < 3 {
			return false
		}
		for _, s := range st {
			if s.AppliedIndex != st[0].AppliedIndex || s.LeaderID == "" {
				return false
			}
		}
		out, err := c.ctl("members")
		return err == nil && strings.Contains(out, "n9")
	})
	// n9 never starts, so removing it must be allowed (3 healthy voters).
	if out, err := c.ctl("members", "remove", "n9"); err != nil {
		t.Fatalf("remove n9: %v\n%s", err, out)
	}
}

// TestProcesses_Ctl runs the admin client against three real processes:
// a dead endpoint first in --endpoints is skipped, status shows the Raft
// columns, watch streams JSON and stops after --count, and a member that
// does not answer stays in `status -o json` with its error.
func TestProcesses_Ctl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startProcCluster(t, 3)
	eventually(t, 30*time.Second, "three members and a leader", func() bool {
		out, err := c.ctl("members")
		return err == nil && strings.Count(out, " voter ") == 3 && c.leader() != ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there

	// The live endpoint is a follower: it lists every member once it has
	// applied every registration (the check above may have asked another).
	var out string
	var err error
	eventually(t, 30*time.Second, "members via dead,live", func() bool {
		out, err = c.ctlVia(ctx, dead+","+c.nodes[1].grpc, "members")
		return err == nil && strings.Count(out, " voter ") == 3
	})
	if out, err := c.ctlVia(ctx, dead, "members"); err == nil || !strings.Contains(err.Error(), "no member answered") {
		t.Fatalf("members via a dead endpoint only: err=%v\n%s", err, out)
	}

	out, err = c.ctl("status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if h := strings.Fields(lines[0]); strings.Join(h, " ") != "MEMBER RAFT TERM LEADER COMMIT APPLIED LAST CONTACT GRPC" {
		t.Fatalf("status header %q", lines[0])
	}
	if len(lines) != 4 || !strings.Contains(out, "Leader") || strings.Count(out, "Follower") != 2 {
		t.Fatalf("status rows:\n%s", out)
	}

	// watch: the first event is a snapshot; resuming from its index after
	// a write gives the write's delta. --count ends each run.
	out, err = c.ctlVia(ctx, dead+","+c.endpoints(), "watch", "-o", "json", "--count", "1")
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, out)
	}
	first := parseEvent(t, out)
	if first.GetSnapshot() == nil || first.Index == 0 {
		t.Fatalf("first watch event is not a snapshot: %s", out)
	}
	if out, err := c.ctl("pause"); err != nil {
		t.Fatalf("pause: %v\n%s", err, out)
	}
	out, err = c.ctlVia(ctx, c.endpoints(), "watch", "-o", "json", "--count", "1", "--from-index", fmt.Sprint(first.Index))
	if err != nil {
		t.Fatalf("watch from %d: %v\n%s", first.Index, err, out)
	}
	if ev := parseEvent(t, out); ev.GetDelta().Paused == nil || !*ev.GetDelta().Paused || ev.Index <= first.Index {
		t.Fatalf("resumed watch event is not the pause: %s", out)
	}
	if out, err := c.ctlVia(ctx, dead, "watch", "--count", "1"); err == nil || !strings.Contains(err.Error(), "no member answered the watch") {
		t.Fatalf("watch via a dead endpoint only: err=%v\n%s", err, out)
	}

	// A member that does not answer is listed with its error.
	gone := c.nodes[2]
	c.kill(gone, syscall.SIGTERM)
	var entries []map[string]any
	eventually(t, 30*time.Second, "status -o json to list "+gone.id+" with an error", func() bool {
		out, err := c.ctl("status", "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &entries) != nil || len(entries) != 3 {
			return false
		}
		for _, e := range entries {
			if e["nodeId"] == gone.id {
				msg, _ := e["error"].(string)
				return msg != "" && e["grpcAddr"] == gone.grpc
			}
		}
		return false
	})
	for _, e := range entries {
		if e["nodeId"] != gone.id && (e["error"] != nil || e["raftState"] == "") {
			t.Fatalf("a live member's status entry: %v", e)
		}
	}
}

// parseEvent reads the one JSON watch event in out.
func parseEvent(t *testing.T, out string) *pb.WatchEvent {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one event line, got %d:\n%s", len(lines), out)
	}
	ev := &pb.WatchEvent{}
	if err := protojson.Unmarshal([]byte(lines[0]), ev); err != nil {
		t.Fatalf("watch line is not a WatchEvent: %v\n%s", err, out)
	}
	return ev
}

// TestProcesses_RefusesBadStart checks that a node that cannot bind its
// port, or whose data dir belongs to another cluster, exits with a clear
// error instead of looping.
func TestProcesses_RefusesBadStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startProcCluster(t, 3)
	eventually(t, 30*time.Second, "a leader", func() bool { return c.leader() != "" })
	run := func(args ...string) (string, error) {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), beMain+"=1")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("pgquorum %v did not exit", args)
		}
		return string(out), err
	}
	// Port taken: n1 is running, start a second n1.
	out, err := run("serve", "--config", c.nodes[0].cfg)
	if err == nil || !strings.Contains(out, "cannot listen") {
		t.Fatalf("second n1: err=%v out=%s", err, out)
	}
	// Raft port taken: n1's raft.bind_addr with a free gRPC port and an
	// empty data_dir, so that only the Raft listener clashes.
	cfg, err := os.ReadFile(c.nodes[0].cfg)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	raftAddr := ""
	for _, l := range strings.Split(string(cfg), "\n") {
		switch {
		case strings.HasPrefix(l, "data_dir: "):
			l = "data_dir: " + filepath.Join(t.TempDir(), "n1b")
		case strings.HasPrefix(l, "grpc: "):
			l = fmt.Sprintf(`grpc: {listen_addr: "127.0.0.1:%d"}`, freePort(t))
		case strings.HasPrefix(l, "raft: "):
			raftAddr = strings.TrimSuffix(strings.TrimPrefix(l, `raft: {bind_addr: "`), `"}`)
		}
		lines = append(lines, l)
	}
	busyRaft := filepath.Join(t.TempDir(), "busy-raft.yaml")
	if err := os.WriteFile(busyRaft, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run("serve", "--config", busyRaft)
	if want := "raft.bind_addr: cannot listen on " + raftAddr; err == nil || raftAddr == "" || !strings.Contains(out, want) {
		t.Fatalf("raft port taken: err=%v, want output with %q:\n%s", err, want, out)
	}
	// Data dir of another cluster.
	c.kill(c.nodes[2], syscall.SIGTERM)
	out, err = run("serve", "--config", c.nodes[2].cfg, "--cluster_name", "other")
	if err == nil || !strings.Contains(out, `belongs to another cluster "proc"`) {
		t.Fatalf("foreign data dir: err=%v out=%s", err, out)
	}
	// Unknown key.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("cluster_name: x\nnode_id: a\nraft: {bindaddr: 1}\n"), 0o600)
	out, err = run("validate-config", bad)
	if err == nil || !strings.Contains(out, "raft.bindaddr") {
		t.Fatalf("unknown key: err=%v out=%s", err, out)
	}
}
