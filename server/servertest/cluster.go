// Package servertest runs several pgquorum nodes in one process for tests:
// Raft over raft.InmemTransport (so tests can partition it), the real Bolt
// stores in temporary directories (so restarts keep state), and the real
// gRPC service on loopback (so forwarding and watches are exercised).
package servertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/internal/mtls"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/rpc"
	"github.com/pgquorum/pgquorum/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Timing is fast enough for tests and slow enough for -race on 2 cores.
var Timing = server.Timing{
	TTL: 2 * time.Second, LoopWait: 100 * time.Millisecond, RetryTimeout: time.Second, SafetyMargin: 200 * time.Millisecond,
	RaftHeartbeat: 200 * time.Millisecond, RaftElection: 200 * time.Millisecond,
	RaftLeaderLease: 100 * time.Millisecond, RaftCommit: 10 * time.Millisecond,
}

// Node is one in-process node.
type Node struct {
	ID       string
	RaftAddr string
	GRPCAddr string
	DataDir  string
	Opts     server.Options
	Srv      *server.Server

	trans  *raft.InmemTransport
	tls    *mtls.Bundle // set by NewTLS: Raft over TCP and gRPC with mutual TLS
	pool   *rpc.Pool    // this node's outgoing gRPC, subject to partitions
	grpc   *grpc.Server
	cancel context.CancelFunc
	done   chan error
	// lis holds the gRPC port from newNode until the first Start, so no
	// other test or outgoing connection takes it in between.
	lis net.Listener
	// crashed is set by Crash until the next Start: the node's Raft and
	// gRPC traffic goes nowhere, as for a process killed with -9.
	crashed bool
}

// Running reports whether the node is up.
func (n *Node) Running() bool { return n.Srv != nil }

// Cluster is a set of in-process nodes.
type Cluster struct {
	t     testing.TB
	mu    sync.Mutex
	Nodes []*Node
	pool  *rpc.Pool
	// cut holds pairs of raft addresses that may not talk.
	cut map[[2]string]bool
	// delays holds the calls Delay slows down.
	delays []delay
}

// delay is one Delay rule: calls of method (to the node serving to, or
// to any node when empty) wait before they are sent and after they
// returned.
type delay struct {
	method, to    string
	before, after time.Duration
}

// Option changes a node's options before it starts.
type Option func(*server.Options)

// New starts n nodes bootstrapped from an initial_cluster list and waits
// for a leader.
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := newCluster(t)
	var initial []raft.Server
	for i := 1; i <= n; i++ {
		node := c.newNode(fmt.Sprintf("n%d", i))
		initial = append(initial, raft.Server{ID: raft.ServerID(node.ID), Address: raft.ServerAddress(node.RaftAddr), Suffrage: raft.Voter})
	}
	for _, node := range c.Nodes {
		node.Opts.InitialCluster = initial
		for _, o := range opts {
			o(&node.Opts)
		}
		c.Start(node)
	}
	c.WaitLeader(10 * time.Second)
	return c
}

func newCluster(t testing.TB) *Cluster {
	c := &Cluster{t: t, pool: rpc.NewPool(nil), cut: map[[2]string]bool{}}
	// The first TempDir registers the removal of the test's directories;
	// doing it before Close is registered makes it run after the nodes
	// stopped writing there (cleanups run last in, first out).
	_ = t.TempDir()
	t.Cleanup(c.Close)
	return c
}

// newNode reserves addresses and a data directory for a node.
func (c *Cluster) newNode(id string) *Node {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	addr := lis.Addr().String()
	c.t.Cleanup(func() { _ = lis.Close() }) // if the node never starts
	n := &Node{ID: id, RaftAddr: "raft-" + id, GRPCAddr: addr, DataDir: c.t.TempDir(), lis: lis}
	n.pool = rpc.NewPool(nil, grpc.WithUnaryInterceptor(c.unaryCut(n)), grpc.WithStreamInterceptor(c.streamCut(n)))
	n.Opts = server.Options{
		NodeID: id, ClusterName: "test", DataDir: n.DataDir,
		RaftAdvertiseAddr: n.RaftAddr, GRPCAddr: addr, PGAddr: "127.0.0.1:5432",
		Timing: Timing, Dial: n.pool.Client, Version: "test",
		Logger: logger(id),
	}
	c.mu.Lock()
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	return n
}

func logger(id string) *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("PGQUORUM_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", id)
}

// AddNode prepares a node that joins through the given members; call
// Start to run it.
func (c *Cluster) AddNode(id string, joinVia ...*Node) *Node {
	n := c.newNode(id)
	for _, j := range joinVia {
		n.Opts.Join = append(n.Opts.Join, j.GRPCAddr)
	}
	return n
}

// Start runs a node (again, after Kill) with its current options and data.
func (c *Cluster) Start(n *Node) {
	c.t.Helper()
	if n.tls == nil {
		_, n.trans = raft.NewInmemTransport(raft.ServerAddress(n.RaftAddr))
		n.Opts.Transport = n.trans
	}
	n.Opts.RaftAdvertiseAddr = n.RaftAddr
	c.mu.Lock()
	n.crashed = false
	c.mu.Unlock()
	srv, err := server.New(n.Opts)
	if err != nil {
		c.t.Fatalf("start %s: %v", n.ID, err)
	}
	lis, err := c.listen(n)
	if err != nil {
		c.t.Fatalf("listen %s: %v", n.GRPCAddr, err)
	}
	g := grpc.NewServer(rpc.ServerOptions(n.tls)...)
	rpc.NewAdmin(srv, n.pool, n.Opts.Logger).Register(g)
	go func() { _ = g.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	n.Srv, n.grpc, n.cancel, n.done = srv, g, cancel, make(chan error, 1)
	go func() { n.done <- srv.Run(ctx) }()
	c.rewire()
}

// listen returns the node's gRPC listener: the one reserved by newNode,
// or, after a Kill, the same port again. On a busy machine an outgoing
// connection may hold it as its ephemeral port for a moment: retry.
func (c *Cluster) listen(n *Node) (net.Listener, error) {
	if lis := n.lis; lis != nil {
		n.lis = nil
		return lis, nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		lis, err := net.Listen("tcp", n.GRPCAddr)
		if err == nil || time.Now().After(deadline) {
			return lis, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rewire connects every running transport to every other, minus cuts.
func (c *Cluster) rewire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.Nodes {
		if a.trans == nil {
			continue
		}
		a.trans.DisconnectAll()
		if a.crashed {
			continue
		}
		for _, b := range c.Nodes {
			if b == a || b.trans == nil || b.crashed || c.cut[[2]string{a.RaftAddr, b.RaftAddr}] {
				continue
			}
			a.trans.Connect(raft.ServerAddress(b.RaftAddr), b.trans)
		}
	}
}

// Crash stops a node as kill -9 would: first its Raft transport and gRPC
// traffic are cut both ways, then Raft stops, so a leader hands nothing
// over and says goodbye to no one; the others must notice the silence and
// elect. Start brings it back with its data.
func (c *Cluster) Crash(n *Node) {
	c.t.Helper()
	if n.Srv == nil {
		return
	}
	c.mu.Lock()
	n.crashed = true
	c.mu.Unlock()
	c.rewire()
	n.grpc.Stop()
	n.Srv.Shutdown() // Raft stops here: no leadership transfer is possible after it
	c.Kill(n)
}

// WaitExit waits until a node's Run ends by itself (a fatal error, such
// as a data directory of another cluster) and returns its error. The node
// still counts as running until Kill.
func (c *Cluster) WaitExit(n *Node, timeout time.Duration) error {
	c.t.Helper()
	select {
	case err := <-n.done:
		n.done <- err // for Kill
		return err
	case <-time.After(timeout):
		c.t.Fatalf("node %s still running after %v", n.ID, timeout)
		return nil
	}
}

// Kill stops a node: its context ends, so a leader hands leadership over
// first (as on SIGTERM), Raft shuts down and its gRPC server stops. Crash
// is the abrupt stop.
func (c *Cluster) Kill(n *Node) {
	if n.Srv == nil {
		return
	}
	n.cancel()
	n.grpc.Stop()
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		c.t.Errorf("node %s did not stop", n.ID)
	}
	n.Srv, n.trans = nil, nil
	c.rewire()
}

// cutBetween reports whether a partition separates node from the node
// serving grpcAddr.
func (c *Cluster) cutBetween(from *Node, grpcAddr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if from.crashed {
		return true
	}
	for _, to := range c.Nodes {
		if to.GRPCAddr == grpcAddr {
			return c.cut[[2]string{from.RaftAddr, to.RaftAddr}]
		}
	}
	return false
}

// blackhole makes a call across a partition behave as on a real network
// that drops packets: it hangs until the caller gives up (or the
// partition heals, then it goes through).
func (c *Cluster) blackhole(ctx context.Context, from *Node, target string) error {
	for c.cutBetween(from, target) {
		select {
		case <-ctx.Done():
			return status.Errorf(codes.DeadlineExceeded, "partitioned from %s: %v", target, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (c *Cluster) unaryCut(from *Node) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if err := c.blackhole(ctx, from, cc.Target()); err != nil {
			return err
		}
		before, after := c.delayOf(method, cc.Target())
		if err := hold(ctx, before); err != nil {
			return err
		}
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		return hold(ctx, after)
	}
}

// Delay makes every node's calls of a gRPC method (its full name, such
// as pb.Admin_RenewLease_FullMethodName) to the given nodes (all when
// none) wait before they are sent and after they returned, as a slow
// network or a slow server would; the call still takes effect on the
// server. Zero durations remove the rule. The test's own clients are not
// delayed.
func (c *Cluster) Delay(method string, before, after time.Duration, to ...*Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	targets := []string{""}
	if len(to) > 0 {
		targets = nil
		for _, n := range to {
			targets = append(targets, n.GRPCAddr)
		}
	}
	for _, t := range targets {
		c.delays = slices.DeleteFunc(c.delays, func(d delay) bool { return d.method == method && d.to == t })
		if before > 0 || after > 0 {
			c.delays = append(c.delays, delay{method: method, to: t, before: before, after: after})
		}
	}
}

// delayOf returns how long a call of method to target waits before and
// after.
func (c *Cluster) delayOf(method, target string) (before, after time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.delays {
		if d.method == method && (d.to == "" || d.to == target) {
			before, after = max(before, d.before), max(after, d.after)
		}
	}
	return before, after
}

// hold waits d, or until ctx ends (then the call fails as a timed-out
// one would).
func hold(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.Errorf(codes.DeadlineExceeded, "delayed call: %v", ctx.Err())
	}
}

func (c *Cluster) streamCut(from *Node) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if err := c.blackhole(ctx, from, cc.Target()); err != nil {
			return nil, err
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// Partition cuts Raft and gRPC traffic between the listed nodes and all
// others. Calls across the cut hang until their deadline, as on a network
// that drops packets; the test's own clients (Client) are not cut.
func (c *Cluster) Partition(group ...*Node) {
	in := map[*Node]bool{}
	for _, n := range group {
		in[n] = true
	}
	c.mu.Lock()
	for _, a := range c.Nodes {
		for _, b := range c.Nodes {
			if in[a] != in[b] {
				c.cut[[2]string{a.RaftAddr, b.RaftAddr}] = true
			}
		}
	}
	c.mu.Unlock()
	c.rewire()
}

// Heal removes every partition.
func (c *Cluster) Heal() {
	c.mu.Lock()
	c.cut = map[[2]string]bool{}
	c.mu.Unlock()
	c.rewire()
}

// Close stops every node.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		c.Kill(n)
	}
	for _, n := range c.Nodes {
		n.pool.Close()
	}
	c.pool.Close()
}

// Client returns a gRPC Admin client for a node.
func (c *Cluster) Client(n *Node) pb.AdminClient {
	cl, err := c.pool.Client(n.GRPCAddr)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// WaitLeader waits until exactly one running node leads and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration) *Node {
	c.t.Helper()
	var leader *Node
	c.Eventually(timeout, "a single leader", func() bool {
		leader = nil
		for _, n := range c.Nodes {
			if n.Srv != nil && n.Srv.IsLeader() {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// Followers returns the running nodes that do not lead.
func (c *Cluster) Followers() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Srv != nil && !n.Srv.IsLeader() {
			out = append(out, n)
		}
	}
	return out
}

// Eventually polls cond until it holds or timeout passes.
func (c *Cluster) Eventually(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
