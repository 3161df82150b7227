package server

import (
	"errors"
	"slices"
	"testing"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

func TestRestartOrder_ReplicasFirstPrimaryLast(t *testing.T) {
	pg := pb.MemberRole_MEMBER_ROLE_POSTGRES
	st := &pb.ClusterState{
		Members: []*pb.Member{{Id: "a", Role: pg}, {Id: "b", Role: pg}, {Id: "c", Role: pg}, {Id: "w", Role: pb.MemberRole_MEMBER_ROLE_WITNESS}},
		Primary: &pb.PrimaryAssignment{MemberId: "b", Epoch: 4},
	}
	tests := []struct {
		name string
		req  *pb.RestartRequest
		want []string
	}{
		{"all", &pb.RestartRequest{}, []string{"a", "c", "b"}},
		{"named, primary first in the request", &pb.RestartRequest{Members: []string{"b", "c", "a"}}, []string{"a", "c", "b"}},
		{"duplicates", &pb.RestartRequest{Members: []string{"c", "c"}}, []string{"c"}},
		{"replicas", &pb.RestartRequest{Role: pb.RestartRole_RESTART_ROLE_REPLICA}, []string{"a", "c"}},
		{"primary", &pb.RestartRequest{Role: pb.RestartRole_RESTART_ROLE_PRIMARY}, []string{"b"}},
		{"primary role, only replicas named", &pb.RestartRequest{Members: []string{"a"}, Role: pb.RestartRole_RESTART_ROLE_PRIMARY}, nil},
	}
	for _, tt := range tests {
		if got := restartOrder(st, tt.req); !slices.Equal(got, tt.want) {
			t.Errorf("%s: order %v, want %v", tt.name, got, tt.want)
		}
	}
	if err := checkPostgresMembers(st, []string{"w"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("witness: %v, want ErrInvalid", err)
	}
	if err := checkPostgresMembers(st, []string{"x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: %v, want ErrNotFound", err)
	}
}
