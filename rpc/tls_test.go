package rpc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/internal/mtls"
	"github.com/pgquorum/pgquorum/internal/mtls/mtlstest"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server/servertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestTLS_Clients runs a three-node cluster with mutual TLS everywhere and
// checks who may do what, directly and through a follower.
func TestTLS_Clients(t *testing.T) {
	c, pki := servertest.NewTLS(t, 3)
	leader := c.WaitLeader(10 * time.Second)
	follower := c.Followers()[0]
	c.Eventually(10*time.Second, "three members registered", func() bool {
		st, err := c.Client(leader).GetState(callCtx(t), &pb.GetStateRequest{})
		return err == nil && len(st.Members) == 3
	})

	t.Run("no certificate: no state, no watch", func(t *testing.T) {
		cl := c.ClientWithoutCert(follower, pki.CA)
		if _, err := cl.GetState(callCtx(t), &pb.GetStateRequest{}); err == nil {
			t.Fatal("GetState without a certificate went through")
		}
		if err := firstWatchEvent(t, cl); err == nil {
			t.Fatal("Watch without a certificate went through")
		}
	})
	t.Run("a certificate of another CA: refused", func(t *testing.T) {
		other := mtlstest.NewCA(t, "other")
		cl := c.ClientAs(follower, other.Bundle(t, "mallory", mtls.OrgAdmin))
		if _, err := cl.GetState(callCtx(t), &pb.GetStateRequest{}); err == nil {
			t.Fatal("GetState with a foreign certificate went through")
		}
		if _, err := cl.SetPaused(callCtx(t), &pb.SetPausedRequest{Paused: true}); err == nil {
			t.Fatal("SetPaused with a foreign certificate went through")
		}
		if err := firstWatchEvent(t, cl); err == nil {
			t.Fatal("Watch with a foreign certificate went through")
		}
	})
	t.Run("a certificate without a role reads nothing", func(t *testing.T) {
		cl := c.ClientAs(follower, pki.CA.Bundle(t, "nobody", "acme"))
		_, err := cl.GetState(callCtx(t), &pb.GetStateRequest{})
		wantDenied(t, err, "nobody")
		wantDenied(t, firstWatchEvent(t, cl), "nobody")
	})
	t.Run("readonly reads and watches, cannot switch over", func(t *testing.T) {
		for _, n := range []*servertest.Node{leader, follower} {
			cl := c.ClientAs(n, pki.ReadOnly)
			if _, err := cl.GetState(callCtx(t), &pb.GetStateRequest{}); err != nil {
				t.Fatalf("GetState on %s: %v", n.ID, err)
			}
			if err := firstWatchEvent(t, cl); err != nil {
				t.Fatalf("Watch on %s: %v", n.ID, err)
			}
			_, err := cl.Switchover(callCtx(t), &pb.SwitchoverRequest{})
			wantDenied(t, err, "reader (readonly) may not call /pgquorum.v1.Admin/Switchover: it needs role admin")
			_, err = cl.SetPaused(callCtx(t), &pb.SetPausedRequest{Paused: true})
			wantDenied(t, err, "reader")
			// Health is readable (ctl list); a checkpoint is not.
			if _, err := cl.Probe(callCtx(t), &pb.ProbeRequest{}); status.Code(err) == codes.PermissionDenied || status.Code(err) == codes.Unauthenticated {
				t.Fatalf("Probe on %s as readonly: %v", n.ID, err)
			}
			_, err = cl.Probe(callCtx(t), &pb.ProbeRequest{Checkpoint: true})
			wantDenied(t, err, "reader (readonly) may not ask for a checkpoint")
		}
	})
	t.Run("a bouncer reads, cannot act as a node or an admin", func(t *testing.T) {
		cl := c.ClientAs(follower, pki.Bouncer)
		if _, err := cl.GetState(callCtx(t), &pb.GetStateRequest{}); err != nil {
			t.Fatal(err)
		}
		_, err := cl.RenewLease(callCtx(t), &pb.RenewLeaseRequest{MemberId: leader.ID, Epoch: 1})
		wantDenied(t, err, "bouncer (bouncer)")
		_, err = cl.SetPaused(callCtx(t), &pb.SetPausedRequest{Paused: true})
		wantDenied(t, err, "bouncer (bouncer)")
	})
	t.Run("a node is not an admin", func(t *testing.T) {
		cl := c.ClientAs(follower, pki.CA.Bundle(t, "n7", mtls.OrgNode))
		_, err := cl.SetPaused(callCtx(t), &pb.SetPausedRequest{Paused: true})
		wantDenied(t, err, "n7 (node)")
	})
	t.Run("admin acts through a follower: the leader accepts the forwarded call", func(t *testing.T) {
		for i, paused := range []bool{true, false} {
			cl := c.ClientAs(follower, pki.Admin)
			if _, err := cl.SetPaused(callCtx(t), &pb.SetPausedRequest{Paused: paused}); err != nil {
				t.Fatalf("SetPaused(%v) #%d through follower %s: %v", paused, i, follower.ID, err)
			}
			st, err := c.ClientAs(leader, pki.ReadOnly).GetState(callCtx(t), &pb.GetStateRequest{Linearizable: true})
			if err != nil || st.Paused != paused {
				t.Fatalf("paused=%v on the leader after SetPaused(%v): %v", st.GetPaused(), paused, err)
			}
		}
		// Switchover is allowed to an admin; with no primary it is refused
		// for that reason, never for the caller.
		_, err := c.ClientAs(follower, pki.Admin).Switchover(callCtx(t), &pb.SwitchoverRequest{})
		if code := status.Code(err); code == codes.PermissionDenied || code == codes.Unauthenticated {
			t.Fatalf("admin switchover: %v", err)
		}
	})
}

// TestTLS_ForeignNodeCannotJoinOrVote starts a node whose certificate comes
// from another CA: it cannot join through gRPC, and when it bootstraps a
// configuration naming the cluster's voters and campaigns, its vote
// requests are refused by the Raft transport: the cluster keeps its leader
// and term, and neither node learns the cluster's log.
func TestTLS_ForeignNodeCannotJoinOrVote(t *testing.T) {
	c, _ := servertest.NewTLS(t, 3)
	leader := c.WaitLeader(10 * time.Second)
	c.Eventually(10*time.Second, "three members registered", func() bool {
		st, err := c.Client(leader).GetState(callCtx(t), &pb.GetStateRequest{})
		return err == nil && len(st.Members) == 3
	})
	leader = c.WaitLeader(10 * time.Second)
	before := leader.Srv.Status()
	other := mtlstest.NewCA(t, "other")

	joiner := c.AddTLSNode("n4", other.Bundle(t, "n4", mtls.OrgNode), leader)
	c.Start(joiner)

	rogue := c.AddTLSNode("n5", other.Bundle(t, "n5", mtls.OrgNode))
	rogue.Opts.InitialCluster = append(leader.Opts.InitialCluster, raftServer(rogue))
	c.Start(rogue)
	// It campaigns again and again (pre-vote keeps its term), and every
	// vote request fails at the TLS handshake.
	campaigns := 0
	c.Eventually(15*time.Second, "the rogue node to campaign", func() bool {
		if rogue.Srv.Status().RaftState == "Candidate" {
			campaigns++
		}
		return campaigns >= 10
	})

	now := c.WaitLeader(5 * time.Second)
	if now != leader || leader.Srv.Status().Term != before.Term {
		t.Fatalf("leader %s term %d, before %s term %d: the rogue node disrupted the cluster",
			now.ID, leader.Srv.Status().Term, leader.ID, before.Term)
	}
	for _, n := range []*servertest.Node{joiner, rogue} {
		if n.Srv == nil {
			continue
		}
		if st := n.Srv.Status(); st.LeaderId != "" || st.HasState && st.AppliedIndex > 3 {
			t.Fatalf("%s learned the cluster: %+v", n.ID, st)
		}
	}
	st, err := c.Client(leader).GetState(callCtx(t), &pb.GetStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		if m.Id == "n4" || m.Id == "n5" {
			t.Fatalf("%s became a member", m.Id)
		}
	}
}

func wantDenied(t *testing.T, err error, msg string) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("got %v, want PermissionDenied containing %q", err, msg)
	}
}

func firstWatchEvent(t *testing.T, cl pb.AdminClient) error {
	stream, err := cl.Watch(callCtx(t), &pb.WatchRequest{})
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

func raftServer(n *servertest.Node) raft.Server {
	return raft.Server{ID: raft.ServerID(n.ID), Address: raft.ServerAddress(n.RaftAddr), Suffrage: raft.Voter}
}
