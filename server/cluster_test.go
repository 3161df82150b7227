package server_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/servertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const wait = 15 * time.Second

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}

// converged waits until every running node applied the same state and all
// wanted members are registered.
func converged(t *testing.T, c *servertest.Cluster, members int) *pb.ClusterState {
	t.Helper()
	var st *pb.ClusterState
	c.Eventually(wait, "state to converge", func() bool {
		st = nil
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			s, err := n.Srv.State(context.Background(), false)
			if err != nil || len(s.Members) != members || s.Identity.Uuid == "" {
				return false
			}
			s.Index = 0
			if st != nil && !proto.Equal(st, s) {
				return false
			}
			st = s
		}
		return st != nil
	})
	return st
}

func raftServers(t *testing.T, n *servertest.Node) map[string]raft.Server {
	t.Helper()
	ns := n.Srv.Status()
	out := map[string]raft.Server{}
	for _, p := range ns.Peers {
		s := raft.Voter
		if p.Suffrage == pb.Suffrage_SUFFRAGE_NONVOTER {
			s = raft.Nonvoter
		}
		out[p.Id] = raft.Server{ID: raft.ServerID(p.Id), Address: raft.ServerAddress(p.RaftAddr), Suffrage: s}
	}
	return out
}

func TestCluster_FormsQuorumAndAgrees(t *testing.T) {
	c := servertest.New(t, 3)
	st := converged(t, c, 3)
	if st.Identity.Name != "test" || len(st.Identity.Uuid) != 36 {
		t.Fatalf("identity = %v", st.Identity)
	}
	if st.Config.Version != 1 {
		t.Fatalf("config version = %d, want 1", st.Config.Version)
	}
	for _, m := range st.Members {
		if m.GrpcAddr == "" || m.RaftAddr == "" || m.Suffrage != pb.Suffrage_SUFFRAGE_VOTER {
			t.Errorf("member %v incomplete", m)
		}
	}
}

func TestCluster_LeaderLoss(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	old := c.WaitLeader(wait)
	c.Crash(old)
	leader := c.WaitLeader(wait)
	if leader == old {
		t.Fatal("killed node still leads")
	}
	if _, err := leader.Srv.SetPaused(ctx(t), true); err != nil {
		t.Fatalf("write on new leader: %v", err)
	}
	c.Start(old)
	c.Eventually(wait, "old leader to catch up", func() bool {
		st, _ := old.Srv.State(context.Background(), false)
		return st.Paused
	})
}

func TestCluster_MinorityPartition(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	old := c.WaitLeader(wait)
	c.Partition(old)
	var leader *servertest.Node
	c.Eventually(wait, "majority to elect a new leader", func() bool {
		for _, n := range c.Followers() {
			if n.Srv.IsLeader() {
				leader = n
			}
		}
		for _, n := range c.Nodes {
			if n != old && n.Srv.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	if _, err := leader.Srv.SetPaused(ctx(t), true); err != nil {
		t.Fatalf("majority write: %v", err)
	}
	// The isolated node cannot commit: it either stepped down or its
	// write fails for lack of quorum.
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := old.Srv.SetPaused(short, false); err == nil {
		t.Fatal("minority side committed a write")
	}
	c.Heal()
	c.Eventually(wait, "isolated node to rejoin and catch up", func() bool {
		st, _ := old.Srv.State(context.Background(), false)
		return st.Paused && !old.Srv.IsLeader() || st.Paused && old == c.WaitLeader(wait)
	})
}

func TestCluster_RemoveLeader(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	old := c.WaitLeader(wait)
	if _, err := old.Srv.RemoveMember(ctx(t), old.ID, false); err != nil {
		t.Fatalf("remove leader: %v", err)
	}
	c.Crash(old)
	leader := c.WaitLeader(wait)
	c.Eventually(wait, "removed leader gone from raft and fsm", func() bool {
		st, _ := leader.Srv.State(context.Background(), false)
		_, inRaft := raftServers(t, leader)[old.ID]
		return len(raftServers(t, leader)) == 2 && !inRaft && fsm.FindMember(st, old.ID) == nil
	})
}

// TestCluster_RemovedMemberStaysRemoved: a member removed while its node
// keeps running (or comes back with an empty data directory and a join
// list) stays out of the Raft configuration and the FSM, because its
// node's own registration is refused; only an explicit add (what `ctl
// members add` sends) brings it back.
func TestCluster_RemovedMemberStaysRemoved(t *testing.T) {
	tests := []struct {
		name  string
		after func(t *testing.T, c *servertest.Cluster, gone *servertest.Node)
	}{
		{"keeps running", func(*testing.T, *servertest.Cluster, *servertest.Node) {}},
		{"restarted empty with a join list", func(t *testing.T, c *servertest.Cluster, gone *servertest.Node) {
			c.Kill(gone)
			if err := os.RemoveAll(gone.DataDir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(gone.DataDir, 0o700); err != nil {
				t.Fatal(err)
			}
			gone.Opts.InitialCluster = nil
			gone.Opts.Join = nil
			for _, n := range c.Nodes {
				if n != gone {
					gone.Opts.Join = append(gone.Opts.Join, n.GRPCAddr)
				}
			}
			c.Start(gone)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { testRemovedMemberStaysRemoved(t, tc.after) })
	}
}

func testRemovedMemberStaysRemoved(t *testing.T, after func(*testing.T, *servertest.Cluster, *servertest.Node)) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	leader := c.WaitLeader(wait)
	gone := c.Followers()[0]
	if _, err := c.Client(leader).RemoveMember(ctx(t), &pb.RemoveMemberRequest{Id: gone.ID}); err != nil {
		t.Fatalf("remove %s: %v", gone.ID, err)
	}
	after(t, c, gone)
	// out reports whether every other node has gone out of its Raft
	// configuration and member list, with a tombstone in its place.
	out := func() (bool, string) {
		for _, n := range c.Nodes {
			if n == gone || !n.Running() {
				continue
			}
			st, err := n.Srv.State(context.Background(), false)
			if err != nil {
				return false, err.Error()
			}
			if _, inRaft := raftServers(t, n)[gone.ID]; inRaft {
				return false, n.ID + " has it in its raft configuration"
			}
			if fsm.FindMember(st, gone.ID) != nil || fsm.FindTombstone(st, gone.ID) == nil {
				return false, n.ID + " has it as a member, or no tombstone"
			}
		}
		return true, ""
	}
	c.Eventually(wait, "the removal everywhere", func() bool { ok, _ := out(); return ok })
	// The removed node keeps running through many loop waits (it used to
	// be back within one) and must stay out all along.
	for until := time.Now().Add(20 * servertest.Timing.LoopWait); time.Now().Before(until); {
		if ok, why := out(); !ok {
			t.Fatalf("removed member came back: %s", why)
		}
		if !gone.Running() {
			t.Fatal("the removed node stopped; it should keep running for an operator to decide")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its own kind of request, without readmit, is refused by name.
	self := &pb.Member{Id: gone.ID, RaftAddr: gone.RaftAddr, GrpcAddr: gone.GRPCAddr, PgAddr: gone.Opts.PGAddr,
		Role: pb.MemberRole_MEMBER_ROLE_POSTGRES, Suffrage: pb.Suffrage_SUFFRAGE_VOTER}
	_, err := c.Client(leader).Join(ctx(t), &pb.JoinRequest{ClusterName: "test", Member: self})
	if status.Code(err) != codes.FailedPrecondition || !errors.Is(server.FromStatus(err), fsm.ErrMemberRemoved) {
		t.Fatalf("join of a removed member: %v, want FailedPrecondition MEMBER_REMOVED", err)
	}
	// An explicit add, sent to a follower (forwarded), brings it back.
	var via *servertest.Node
	for _, n := range c.Followers() {
		if n != gone {
			via = n
		}
	}
	if _, err := c.Client(via).Join(ctx(t), &pb.JoinRequest{ClusterName: "test", Member: self, Readmit: true}); err != nil {
		t.Fatalf("explicit add: %v", err)
	}
	st := converged(t, c, 3)
	if fsm.FindTombstone(st, gone.ID) != nil {
		t.Fatalf("tombstone kept after the explicit add: %v", st.Tombstones)
	}
	c.Eventually(wait, "the member back in the raft configuration", func() bool {
		_, ok := raftServers(t, c.WaitLeader(wait))[gone.ID]
		return ok
	})
	// Added back, the node registers its own record again (the add's
	// record has no version).
	c.Eventually(wait, "the node's own registration after the add", func() bool {
		st, err := c.WaitLeader(wait).Srv.State(context.Background(), false)
		m := fsm.FindMember(st, gone.ID)
		return err == nil && m != nil && m.Version == gone.Opts.Version
	})
}

func TestCluster_QuorumGuard(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	leader := c.WaitLeader(wait)
	f := c.Followers()
	dead, alive := f[0], f[1]
	c.Kill(dead)
	time.Sleep(2 * servertest.Timing.TTL) // let the dead node's last contact age past the health window
	_, err := leader.Srv.RemoveMember(ctx(t), alive.ID, false)
	if !errors.Is(err, server.ErrQuorumRisk) {
		t.Fatalf("removing a healthy voter while another is dead: err = %v, want ErrQuorumRisk", err)
	}
	// Through gRPC the refusal is FAILED_PRECONDITION with its reason.
	_, err = c.Client(leader).RemoveMember(ctx(t), &pb.RemoveMemberRequest{Id: alive.ID})
	if status.Code(err) != codes.FailedPrecondition || !errors.Is(server.FromStatus(err), server.ErrQuorumRisk) {
		t.Fatalf("gRPC remove: %v", err)
	}
	if _, err := leader.Srv.RemoveMember(ctx(t), dead.ID, false); err != nil {
		t.Fatalf("removing the dead voter must be allowed: %v", err)
	}
	_, err = c.Client(leader).RemoveMember(ctx(t), &pb.RemoveMemberRequest{Id: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("remove unknown: %v, want NotFound", err)
	}
}

// Force skips the quorum guard: the removal is attempted even though the
// cluster may then be unable to commit (that is what force means).
func TestCluster_ForceRemove(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	leader := c.WaitLeader(wait)
	f := c.Followers()
	c.Kill(f[0])
	time.Sleep(2 * servertest.Timing.TTL)
	short, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := leader.Srv.RemoveMember(short, f[1].ID, true); errors.Is(err, server.ErrQuorumRisk) {
		t.Fatalf("forced removal still guarded: %v", err)
	}
}

func TestCluster_JoinNonVoterAndWitness(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	follower := c.Followers()[0]
	nv := c.AddNode("n4", follower) // joins through a follower: forwarded
	nv.Opts.NonVoter = true
	c.Start(nv)
	w := c.AddNode("w5", c.Nodes[0])
	w.Opts.Role = pb.MemberRole_MEMBER_ROLE_WITNESS
	w.Opts.PGAddr = ""
	c.Start(w)
	st := converged(t, c, 5)
	leader := c.WaitLeader(wait)
	srvs := raftServers(t, leader)
	if srvs["n4"].Suffrage != raft.Nonvoter || srvs["w5"].Suffrage != raft.Voter {
		t.Fatalf("raft suffrage: %v", srvs)
	}
	if m := fsm.FindMember(st, "w5"); m.Role != pb.MemberRole_MEMBER_ROLE_WITNESS {
		t.Fatalf("witness role = %v", m.Role)
	}
}

func TestCluster_JoinWithChangedAddress(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	n := c.Followers()[0]
	c.Kill(n)
	n.RaftAddr = "raft-" + n.ID + "-moved"
	n.Opts.Join = []string{c.Nodes[0].GRPCAddr, c.Nodes[1].GRPCAddr, c.Nodes[2].GRPCAddr}
	c.Start(n)
	c.Eventually(wait, "raft config to hold the new address once", func() bool {
		l := c.WaitLeader(wait)
		srvs := raftServers(t, l)
		st, _ := l.Srv.State(context.Background(), false)
		m := fsm.FindMember(st, n.ID)
		return len(srvs) == 3 && string(srvs[n.ID].Address) == n.RaftAddr && m != nil && m.RaftAddr == n.RaftAddr
	})
	converged(t, c, 3)
}

func TestCluster_RestartKeepsState(t *testing.T) {
	c := servertest.New(t, 3)
	before := converged(t, c, 3)
	if _, err := c.WaitLeader(wait).Srv.SetPaused(ctx(t), true); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		c.Kill(n)
	}
	for _, n := range c.Nodes {
		c.Start(n)
	}
	after := converged(t, c, 3)
	if after.Identity.Uuid != before.Identity.Uuid || !after.Paused {
		t.Fatalf("state lost across restart: before %v after %v", before.Identity, after)
	}
}

func TestServer_RefusesForeignDataDir(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	n := c.Nodes[2]
	c.Kill(n)
	opts := n.Opts
	opts.ClusterName = "other"
	_, err := server.New(opts)
	if !errors.Is(err, server.ErrDataDir) || !errors.Is(err, server.ErrWrongCluster) {
		t.Fatalf("foreign data dir: err = %v", err)
	}
	opts = n.Opts
	opts.NodeID = "n9"
	if _, err := server.New(opts); !errors.Is(err, server.ErrDataDir) {
		t.Fatalf("data dir of another node: err = %v", err)
	}
}

// TestServer_OtherClusterUUIDExits: a data directory whose identity file
// names another cluster UUID than the quorum's makes the node exit with
// an error naming the directory, instead of running in the wrong cluster.
func TestServer_OtherClusterUUIDExits(t *testing.T) {
	c := servertest.New(t, 3)
	st := converged(t, c, 3)
	n := c.Nodes[2]
	path := filepath.Join(n.DataDir, "cluster.json")
	c.Eventually(wait, "the cluster uuid recorded in "+path, func() bool {
		b, err := os.ReadFile(path)
		return err == nil && bytes.Contains(b, []byte(st.Identity.Uuid))
	})
	c.Kill(n)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	other := "00000000-0000-4000-8000-000000000000"
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte(st.Identity.Uuid), []byte(other)), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Start(n)
	err = c.WaitExit(n, wait)
	if !errors.Is(err, server.ErrWrongCluster) || !strings.Contains(err.Error(), n.DataDir) || !strings.Contains(err.Error(), other) {
		t.Fatalf("node with another cluster's uuid: exit err = %v, want ErrWrongCluster naming %s and %s", err, n.DataDir, other)
	}
}

// TestServer_RaftStoreWithoutIdentityRefused: a Raft store whose identity
// file is gone belongs to an unknown cluster; the node refuses to start,
// names both paths, and writes no fresh identity over it.
func TestServer_RaftStoreWithoutIdentityRefused(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	n := c.Nodes[2]
	c.Kill(n)
	ident := filepath.Join(n.DataDir, "cluster.json")
	if err := os.Remove(ident); err != nil {
		t.Fatal(err)
	}
	_, err := server.New(n.Opts)
	store := filepath.Join(n.DataDir, "raft", "raft.db")
	if !errors.Is(err, server.ErrDataDir) || !strings.Contains(err.Error(), store) || !strings.Contains(err.Error(), ident) {
		t.Fatalf("raft store without identity: err = %v, want ErrDataDir naming %s and %s", err, store, ident)
	}
	if _, err := os.Stat(ident); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an identity file was written over the unknown raft store: %v", err)
	}
}

func TestServer_JoinWrongClusterRefused(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	_, err := c.Client(c.Followers()[0]).Join(ctx(t), &pb.JoinRequest{
		ClusterName: "other",
		Member:      &pb.Member{Id: "x", RaftAddr: "raft-x", GrpcAddr: "127.0.0.1:1"},
	})
	if status.Code(err) != codes.FailedPrecondition || !errors.Is(server.FromStatus(err), server.ErrWrongCluster) {
		t.Fatalf("join of another cluster: %v", err)
	}
	_, err = c.Client(c.Nodes[0]).Join(ctx(t), &pb.JoinRequest{ClusterName: "test", Member: &pb.Member{Id: "x"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("join without addresses: %v, want InvalidArgument", err)
	}
}

func TestWatch_SnapshotThenDeltasAndResume(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	follower := c.Followers()[0]
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	stream, err := c.Client(follower).Watch(wctx, &pb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetSnapshot() == nil {
		t.Fatalf("first event = %v, %v; want a snapshot", first, err)
	}
	leader := c.WaitLeader(wait)
	idx, err := leader.Srv.SetPaused(ctx(t), true)
	if err != nil {
		t.Fatal(err)
	}
	var st *pb.ClusterState
	st = fsm.ApplyEvent(st, first)
	for st.Index < idx {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		st = fsm.ApplyEvent(st, ev)
	}
	if !st.Paused {
		t.Fatal("watcher did not see pause")
	}
	cancel()
	// Resume from the index we have: only later changes arrive, as deltas.
	if _, err := leader.Srv.SetPaused(ctx(t), false); err != nil {
		t.Fatal(err)
	}
	stream2, err := c.Client(follower).Watch(ctx(t), &pb.WatchRequest{FromIndex: st.Index})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream2.Recv()
	if err != nil || ev.GetDelta() == nil || ev.GetDelta().Paused == nil || *ev.GetDelta().Paused {
		t.Fatalf("resumed watch got %v, %v; want the unpause delta", ev, err)
	}
}

func TestForwarding_WritesToFollowerReachLeader(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	f := c.Followers()[0]
	st, err := c.Client(f).GetState(ctx(t), &pb.GetStateRequest{Linearizable: true})
	if err != nil || st.Identity.Uuid == "" {
		t.Fatalf("linearizable read via follower: %v %v", st, err)
	}
	if _, err := c.Client(f).Heartbeat(ctx(t), &pb.HeartbeatRequest{MemberId: f.ID}); err != nil {
		t.Fatalf("heartbeat via follower: %v", err)
	}
}

func TestCluster_BootstrapExpect(t *testing.T) {
	c := servertest.NewExpect(t, 3)
	st := converged(t, c, 3)
	if st.Identity.Uuid == "" {
		t.Fatal("no cluster identity after bootstrap-expect")
	}
	// A fourth node joining later through the same addresses joins the
	// existing cluster instead of bootstrapping a new one.
	n4 := c.AddNode("n4", c.Nodes...)
	n4.Opts.Expect = 3
	c.Start(n4)
	converged(t, c, 4)
}

// TestServer_CorruptRaftStoreRefusedUntouched: a Raft store that cannot be
// read stops the node with a message naming the file, and the file is
// left as it was (invariant 9: never wipe data to make an error go away).
func TestServer_CorruptRaftStoreRefusedUntouched(t *testing.T) {
	c := servertest.New(t, 3)
	converged(t, c, 3)
	n := c.Nodes[2]
	c.Kill(n)
	path := filepath.Join(n.DataDir, "raft", "raft.db")
	garbage := bytes.Repeat([]byte("not a bolt database "), 512)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := server.New(n.Opts)
	if !errors.Is(err, server.ErrDataDir) || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt raft store: err = %v, want ErrDataDir naming %s", err, path)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, garbage) {
		t.Fatal("the corrupt raft store was modified")
	}
}

// TestCluster_InterruptedRemovalIsFinished: an operator's removal whose
// tombstone committed but whose Raft removal never happened (the leader
// died in between) leaves the server a voter. The leader finishes the
// removal after a grace (a readmit passes through that state for a
// moment); when the removed server itself is elected, it hands the
// leadership over instead of leading without a member record.
func TestCluster_InterruptedRemovalIsFinished(t *testing.T) {
	for _, removeLeader := range []bool{false, true} {
		t.Run(map[bool]string{false: "a follower", true: "the leader"}[removeLeader], func(t *testing.T) {
			c := servertest.New(t, 3)
			converged(t, c, 3)
			leader := c.WaitLeader(wait)
			gone := c.Followers()[0]
			if removeLeader {
				gone = leader
			}
			if err := leader.Srv.ProposeForTest(ctx(t), &pb.RemoveMember{Id: gone.ID, Tombstone: true}); err != nil {
				t.Fatal(err)
			}
			c.Eventually(wait, gone.ID+" out of every Raft configuration", func() bool {
				for _, n := range c.Nodes {
					if n == gone || !n.Running() {
						continue
					}
					if _, in := raftServers(t, n)[gone.ID]; in {
						return false
					}
				}
				return true
			})
			if l := c.WaitLeader(wait); l == gone {
				t.Fatalf("the removed member %s still leads", gone.ID)
			}
		})
	}
}
