package server

import (
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

func TestPlanExpect_Cases(t *testing.T) {
	self := raft.Server{ID: "n1", Address: "r1", Suffrage: raft.Voter}
	peer := func(id string, edit ...func(*pb.NodeStatus)) *pb.NodeStatus {
		st := &pb.NodeStatus{NodeId: id, RaftAddr: "r" + id[1:], GrpcAddr: "g" + id[1:], ClusterName: "c", Suffrage: pb.Suffrage_SUFFRAGE_VOTER}
		for _, e := range edit {
			e(st)
		}
		return st
	}
	otherCluster := func(st *pb.NodeStatus) { st.ClusterName = "other" }
	nonVoter := func(st *pb.NodeStatus) { st.Suffrage = pb.Suffrage_SUFFRAGE_NONVOTER }
	hasState := func(st *pb.NodeStatus) { st.HasState = true }
	tests := []struct {
		name        string
		expect      int
		peers       []*pb.NodeStatus
		wantServers string // IDs bootstrapped, comma-separated; "" when not
		wantJoin    bool
		wantWait    string // in the wait reason
		wantSkipped string // in one skip reason
	}{
		{name: "exactly expect", expect: 3, peers: []*pb.NodeStatus{peer("n3"), peer("n2")}, wantServers: "n1,n2,n3"},
		{name: "too few", expect: 3, peers: []*pb.NodeStatus{peer("n2")}, wantWait: "found 2 voters"},
		{name: "more than expect", expect: 3, peers: []*pb.NodeStatus{peer("n2"), peer("n3"), peer("n4")}, wantWait: "more than expected"},
		{name: "another cluster is not counted", expect: 3, peers: []*pb.NodeStatus{peer("n2"), peer("n3", otherCluster)},
			wantWait: "found 2 voters", wantSkipped: `belongs to cluster "other"`},
		{name: "another cluster's state is not ours to join", expect: 2, peers: []*pb.NodeStatus{peer("n2", otherCluster, hasState), peer("n3")},
			wantServers: "n1,n3", wantSkipped: `belongs to cluster "other"`},
		{name: "a non-voter is not counted", expect: 3, peers: []*pb.NodeStatus{peer("n2"), peer("n3", nonVoter), peer("n4")},
			wantServers: "n1,n2,n4", wantSkipped: "n3 is a non-voter"},
		{name: "a member of this cluster with state: join", expect: 3, peers: []*pb.NodeStatus{peer("n2"), peer("n3", hasState)}, wantJoin: true},
		{name: "a peer with this node's ID", expect: 2, peers: []*pb.NodeStatus{peer("n1", func(st *pb.NodeStatus) { st.RaftAddr = "rx" })},
			wantWait: "found 1 voters", wantSkipped: `this node's ID "n1"`},
		{name: "one ID at two addresses", expect: 3, peers: []*pb.NodeStatus{peer("n2"), peer("n2", func(st *pb.NodeStatus) { st.RaftAddr = "rx" })},
			wantWait: "two Raft addresses"},
		{name: "a peer that does not know itself yet", expect: 2, peers: []*pb.NodeStatus{peer("n2", func(st *pb.NodeStatus) { st.RaftAddr = "" })},
			wantWait: "found 1 voters", wantSkipped: "no node ID or Raft address"},
		{name: "an older peer without suffrage counts as a voter", expect: 2,
			peers: []*pb.NodeStatus{peer("n2", func(st *pb.NodeStatus) { st.Suffrage = pb.Suffrage_SUFFRAGE_UNSPECIFIED })}, wantServers: "n1,n2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := planExpect(self, "c", tc.expect, tc.peers)
			var ids []string
			for _, s := range p.cfg.Servers {
				if s.Suffrage != raft.Voter || s.Address != raft.ServerAddress("r"+string(s.ID)[1:]) {
					t.Errorf("server %v: want a voter at its own address", s)
				}
				ids = append(ids, string(s.ID))
			}
			if got := strings.Join(ids, ","); got != tc.wantServers {
				t.Errorf("bootstrapped %q, want %q", got, tc.wantServers)
			}
			if p.joinInstead != tc.wantJoin {
				t.Errorf("joinInstead = %v, want %v", p.joinInstead, tc.wantJoin)
			}
			if (tc.wantWait == "") != (p.wait == "") || !strings.Contains(p.wait, tc.wantWait) {
				t.Errorf("wait = %q, want %q", p.wait, tc.wantWait)
			}
			if tc.wantSkipped != "" && !strings.Contains(strings.Join(p.skipped, "\n"), tc.wantSkipped) {
				t.Errorf("skipped = %q, want one naming %q", p.skipped, tc.wantSkipped)
			}
		})
	}
}
