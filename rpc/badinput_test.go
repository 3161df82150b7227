package rpc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/servertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// badCall is one refused Admin call: the code it must get and the words
// its message must hold (the field, the member, or the reason).
type badCall struct {
	name string
	call func(context.Context, pb.AdminClient) error
	code codes.Code
	want []string
}

// TestBadInput_EveryAdminRPC sends every Admin RPC invalid arguments,
// unknown members and requests that conflict with the state, to the
// leader and through a follower (forwarded), and checks the code and
// that the message names the field or the reason. Nothing it sends may
// change the primary.
//
// The cluster: n1 the primary, n2 a standby, n3 a nofailover standby;
// maximum_lag_on_failover is 0 so that one write with n2's replay paused
// makes n2 a lagging candidate.
func TestBadInput_EveryAdminRPC(t *testing.T) {
	w := servertest.NewWorld()
	cfg := server.DefaultDynamicConfig()
	cfg.MaximumLagOnFailoverBytes = 0
	c := servertest.New(t, 3, servertest.WithFakePostgres(w), func(o *server.Options) {
		o.InitialConfig = cfg
		o.Tags = &pb.Tags{FailoverPriority: 1, Nofailover: o.NodeID == "n3"}
	})
	c.Eventually(20*time.Second, "n1 primary, n2 and n3 streaming, system identifier recorded", func() bool {
		st, err := c.Nodes[0].Srv.State(context.Background(), false)
		return err == nil && st.Primary.GetMemberId() == "n1" && st.Identity.GetSystemIdentifier() != 0 &&
			w.StreamingFrom("n2", "n1") && w.StreamingFrom("n3", "n1")
	})
	st, _ := c.Nodes[0].Srv.State(context.Background(), false)
	epoch := st.Primary.Epoch

	member := func(id string) *pb.Member {
		return &pb.Member{Id: id, RaftAddr: "raft-" + id, GrpcAddr: "127.0.0.1:1", Role: pb.MemberRole_MEMBER_ROLE_POSTGRES}
	}
	join := func(req *pb.JoinRequest) func(context.Context, pb.AdminClient) error {
		return func(ctx context.Context, cl pb.AdminClient) error { _, err := cl.Join(ctx, req); return err }
	}
	switchover := func(req *pb.SwitchoverRequest) func(context.Context, pb.AdminClient) error {
		return func(ctx context.Context, cl pb.AdminClient) error { _, err := cl.Switchover(ctx, req); return err }
	}
	setConfig := func(mut func(*pb.DynamicConfig)) func(context.Context, pb.AdminClient) error {
		return func(ctx context.Context, cl pb.AdminClient) error {
			st, err := cl.GetState(ctx, &pb.GetStateRequest{})
			if err != nil {
				return err
			}
			dc := st.Config
			mut(dc)
			_, err = cl.SetConfig(ctx, &pb.SetConfig{Config: dc, ExpectedVersion: st.Config.GetVersion()})
			return err
		}
	}
	calls := []badCall{
		// Join
		{"Join without cluster_name", join(&pb.JoinRequest{Member: member("x")}), codes.InvalidArgument, []string{"cluster_name"}},
		{"Join without member.id", join(&pb.JoinRequest{ClusterName: "test", Member: member("")}), codes.InvalidArgument, []string{"member.id"}},
		{"Join without member.raft_addr", join(&pb.JoinRequest{ClusterName: "test", Member: &pb.Member{Id: "x", GrpcAddr: "a:1"}}), codes.InvalidArgument, []string{"member.raft_addr"}},
		{"Join without member.grpc_addr", join(&pb.JoinRequest{ClusterName: "test", Member: &pb.Member{Id: "x", RaftAddr: "r"}}), codes.InvalidArgument, []string{"member.grpc_addr"}},
		{"Join of a non-voting witness", join(&pb.JoinRequest{ClusterName: "test", Member: &pb.Member{Id: "x", RaftAddr: "r", GrpcAddr: "a:1",
			Role: pb.MemberRole_MEMBER_ROLE_WITNESS, Suffrage: pb.Suffrage_SUFFRAGE_NONVOTER}}), codes.InvalidArgument, []string{"member.suffrage"}},
		{"Join to another cluster", join(&pb.JoinRequest{ClusterName: "other", Member: member("x")}), codes.FailedPrecondition, []string{"other"}},

		// RemoveMember
		{"RemoveMember without id", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.RemoveMember(ctx, &pb.RemoveMemberRequest{})
			return err
		}, codes.InvalidArgument, []string{"id"}},
		{"RemoveMember of an unknown member", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.RemoveMember(ctx, &pb.RemoveMemberRequest{Id: "ghost"})
			return err
		}, codes.NotFound, []string{"ghost"}},
		{"RemoveMember of the primary", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.RemoveMember(ctx, &pb.RemoveMemberRequest{Id: "n1", Force: true})
			return err
		}, codes.FailedPrecondition, []string{"n1", "primary"}},

		// Heartbeat
		{"Heartbeat without member_id", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Heartbeat(ctx, &pb.HeartbeatRequest{})
			return err
		}, codes.InvalidArgument, []string{"member_id"}},
		{"Heartbeat of an unknown member", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Heartbeat(ctx, &pb.HeartbeatRequest{MemberId: "ghost"})
			return err
		}, codes.NotFound, []string{"ghost"}},

		// Leases and the sync set (node-to-node)
		{"RenewLease without member_id", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.RenewLease(ctx, &pb.RenewLeaseRequest{Epoch: epoch})
			return err
		}, codes.InvalidArgument, []string{"member_id"}},
		{"RenewLease without epoch", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.RenewLease(ctx, &pb.RenewLeaseRequest{MemberId: "n1"})
			return err
		}, codes.InvalidArgument, []string{"epoch"}},
		{"RenewLease by a standby", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.RenewLease(ctx, &pb.RenewLeaseRequest{MemberId: "n2", Epoch: epoch})
			return err
		}, codes.FailedPrecondition, []string{"n2"}},
		{"RenewLease of an old epoch", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.RenewLease(ctx, &pb.RenewLeaseRequest{MemberId: "n1", Epoch: epoch + 7})
			return err
		}, codes.Aborted, []string{"epoch"}},
		{"ReleaseLease without member_id", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.ReleaseLease(ctx, &pb.ReleaseLease{Epoch: epoch})
			return err
		}, codes.InvalidArgument, []string{"member_id"}},
		{"ReleaseLease by a standby", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.ReleaseLease(ctx, &pb.ReleaseLease{MemberId: "n2", Epoch: epoch})
			return err
		}, codes.FailedPrecondition, []string{"n2"}},
		{"SetSync without epoch", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.SetSync(ctx, &pb.SetSync{Members: []string{"n2"}})
			return err
		}, codes.InvalidArgument, []string{"epoch"}},
		{"SetSync naming an unknown member", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.SetSync(ctx, &pb.SetSync{Epoch: epoch, Members: []string{"ghost"}})
			return err
		}, codes.NotFound, []string{"ghost"}},
		{"SetSync naming a member twice", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.SetSync(ctx, &pb.SetSync{Epoch: epoch, Members: []string{"n2", "n2"}})
			return err
		}, codes.InvalidArgument, []string{"n2", "twice"}},
		{"SetSync naming the primary", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.SetSync(ctx, &pb.SetSync{Epoch: epoch, Members: []string{"n1"}})
			return err
		}, codes.InvalidArgument, []string{"n1", "primary"}},

		// Switchover and failover
		{"Switchover to an unknown member", switchover(&pb.SwitchoverRequest{Candidate: "ghost"}), codes.NotFound, []string{"candidate", "ghost"}},
		{"Switchover to the primary itself", switchover(&pb.SwitchoverRequest{Candidate: "n1"}), codes.FailedPrecondition, []string{"candidate", "already the primary"}},
		{"Switchover naming the wrong leader", switchover(&pb.SwitchoverRequest{Leader: "n2", Candidate: "n3"}), codes.FailedPrecondition, []string{"leader", "n2", "not the primary"}},
		{"Switchover to a nofailover member", switchover(&pb.SwitchoverRequest{Candidate: "n3"}), codes.FailedPrecondition, []string{"n3", "nofailover"}},
		{"Switchover scheduled before 1970", switchover(&pb.SwitchoverRequest{Candidate: "n2", ScheduledAtUnixMs: -1}), codes.InvalidArgument, []string{"scheduled_at"}},
		{"Switchover cancel with none pending", switchover(&pb.SwitchoverRequest{Cancel: true}), codes.FailedPrecondition, []string{"no switchover"}},
		{"Failover without candidate", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Failover(ctx, &pb.FailoverRequest{})
			return err
		}, codes.InvalidArgument, []string{"candidate"}},
		{"Failover to an unknown member", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Failover(ctx, &pb.FailoverRequest{Candidate: "ghost"})
			return err
		}, codes.NotFound, []string{"candidate", "ghost"}},
		{"Failover while the primary is healthy", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Failover(ctx, &pb.FailoverRequest{Candidate: "n2"})
			return err
		}, codes.FailedPrecondition, []string{"n1", "valid lease", "switchover"}},

		// Dynamic configuration
		{"SetConfig without config", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.SetConfig(ctx, &pb.SetConfig{})
			return err
		}, codes.InvalidArgument, []string{"config"}},
		{"SetConfig with an unknown synchronous_mode", setConfig(func(d *pb.DynamicConfig) { d.SynchronousMode = 42 }), codes.InvalidArgument, []string{"synchronous_mode"}},
		{"SetConfig with synchronous_node_count 0", setConfig(func(d *pb.DynamicConfig) { d.SynchronousNodeCount = 0 }), codes.InvalidArgument, []string{"synchronous_node_count"}},
		{"SetConfig with a negative maximum_lag_on_failover", setConfig(func(d *pb.DynamicConfig) { d.MaximumLagOnFailoverBytes = -1 }), codes.InvalidArgument, []string{"maximum_lag_on_failover"}},
		{"SetConfig with a negative primary_start_timeout", setConfig(func(d *pb.DynamicConfig) { d.PrimaryStartTimeoutMs = -1 }), codes.InvalidArgument, []string{"primary_start_timeout"}},
		{"SetConfig of an agent-owned parameter", setConfig(func(d *pb.DynamicConfig) {
			d.PostgresParameters = map[string]string{"primary_conninfo": "host=evil"}
		}), codes.InvalidArgument, []string{"postgresql.parameters.primary_conninfo"}},
		{"SetConfig of hot_standby", setConfig(func(d *pb.DynamicConfig) {
			d.PostgresParameters = map[string]string{"hot_standby": "off"}
		}), codes.InvalidArgument, []string{"postgresql.parameters.hot_standby", "owned by the agent"}},
		{"SetConfig of cluster_name in capitals", setConfig(func(d *pb.DynamicConfig) {
			d.PostgresParameters = map[string]string{"CLUSTER_NAME": "other"}
		}), codes.InvalidArgument, []string{"postgresql.parameters.CLUSTER_NAME", "owned by the agent"}},
		{"SetConfig of Port", setConfig(func(d *pb.DynamicConfig) {
			d.PostgresParameters = map[string]string{"Port": "5433"}
		}), codes.InvalidArgument, []string{"postgresql.parameters.Port", "owned by the agent"}},
		{"SetConfig with an include directive", setConfig(func(d *pb.DynamicConfig) {
			d.PostgresParameters = map[string]string{"include_if_exists": "/etc/evil.conf"}
		}), codes.InvalidArgument, []string{"postgresql.parameters.include_if_exists"}},
		{"SetConfig with a name that is no parameter", setConfig(func(d *pb.DynamicConfig) {
			d.PostgresParameters = map[string]string{"work mem": "8MB"}
		}), codes.InvalidArgument, []string{"postgresql.parameters.work mem", "not a valid parameter name"}},
		{"SetConfig with a newline in a value", setConfig(func(d *pb.DynamicConfig) {
			d.PostgresParameters = map[string]string{"work_mem": "8MB\nport = 1"}
		}), codes.InvalidArgument, []string{"postgresql.parameters.work_mem", "newline"}},
		{"SetConfig naming a parameter twice", setConfig(func(d *pb.DynamicConfig) {
			d.PostgresParameters = map[string]string{"work_mem": "8MB", "Work_Mem": "16MB"}
		}), codes.InvalidArgument, []string{"Work_Mem and work_mem name the same parameter"}},
		{"SetConfig from a stale version", func(ctx context.Context, cl pb.AdminClient) error {
			st, err := cl.GetState(ctx, &pb.GetStateRequest{})
			if err != nil {
				return err
			}
			_, err = cl.SetConfig(ctx, &pb.SetConfig{Config: st.Config, ExpectedVersion: st.Config.GetVersion() + 5})
			return err
		}, codes.Aborted, []string{"version"}},

		// Restart, reload, reinit and the node-to-node action behind them
		{"Restart with an unknown role", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Restart(ctx, &pb.RestartRequest{Role: 99})
			return err
		}, codes.InvalidArgument, []string{"role"}},
		{"Restart scheduled before 1970", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Restart(ctx, &pb.RestartRequest{ScheduledAtUnixMs: -5})
			return err
		}, codes.InvalidArgument, []string{"scheduled_at_unix_ms"}},
		{"Restart of an unknown member", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Restart(ctx, &pb.RestartRequest{Members: []string{"ghost"}})
			return err
		}, codes.NotFound, []string{"members", "ghost"}},
		{"Restart of an empty member ID", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Restart(ctx, &pb.RestartRequest{Members: []string{""}})
			return err
		}, codes.InvalidArgument, []string{"members"}},
		{"Reload of an unknown member", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Reload(ctx, &pb.ReloadRequest{Members: []string{"n2", "ghost"}})
			return err
		}, codes.NotFound, []string{"members", "ghost"}},
		{"Reinit without member", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Reinit(ctx, &pb.ReinitRequest{})
			return err
		}, codes.InvalidArgument, []string{"member"}},
		{"Reinit of an unknown member", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Reinit(ctx, &pb.ReinitRequest{Member: "ghost"})
			return err
		}, codes.NotFound, []string{"ghost"}},
		{"Reinit of the primary", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.Reinit(ctx, &pb.ReinitRequest{Member: "n1", Force: true})
			return err
		}, codes.FailedPrecondition, []string{"n1", "primary"}},
		{"LocalAction without action", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.LocalAction(ctx, &pb.LocalActionRequest{})
			return err
		}, codes.InvalidArgument, []string{"action"}},

		// Bouncer agents
		{"BouncerHeartbeat without agent_id", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.BouncerHeartbeat(ctx, &pb.BouncerHeartbeatRequest{ClusterName: "test", ContactLeaseMs: 1000})
			return err
		}, codes.InvalidArgument, []string{"agent_id"}},
		{"BouncerHeartbeat without contact_lease_ms", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.BouncerHeartbeat(ctx, &pb.BouncerHeartbeatRequest{AgentId: "b", ClusterName: "test"})
			return err
		}, codes.InvalidArgument, []string{"contact_lease_ms"}},
		{"BouncerHeartbeat for another cluster", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.BouncerHeartbeat(ctx, &pb.BouncerHeartbeatRequest{AgentId: "b", ClusterName: "other", ContactLeaseMs: 1000})
			return err
		}, codes.FailedPrecondition, []string{"other"}},
		{"UnregisterBouncer without id", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.UnregisterBouncer(ctx, &pb.UnregisterBouncer{})
			return err
		}, codes.InvalidArgument, []string{"id"}},
		{"UnregisterBouncer of an unknown agent", func(ctx context.Context, cl pb.AdminClient) error {
			_, err := cl.UnregisterBouncer(ctx, &pb.UnregisterBouncer{Id: "ghost"})
			return err
		}, codes.NotFound, []string{"ghost"}},
	}

	leader := c.WaitLeader(10 * time.Second)
	follower := c.Followers()[0]
	run := func(calls []badCall) {
		for _, bc := range calls {
			for _, n := range []*servertest.Node{leader, follower} {
				err := bc.call(callCtx(t), c.Client(n))
				checkStatus(t, bc.name+" via "+n.ID, err, bc.code, bc.want)
			}
		}
	}
	run(calls)

	// The primary's own node refuses to reinit itself, whoever asks.
	err := func() error {
		_, err := c.Client(c.Nodes[0]).LocalAction(callCtx(t), &pb.LocalActionRequest{Action: pb.LocalActionKind_LOCAL_ACTION_REINIT, Epoch: epoch})
		return err
	}()
	checkStatus(t, "LocalAction reinit on the primary n1", err, codes.FailedPrecondition, []string{"n1", "primary"})

	// A lagging candidate: n2 stops replaying and the primary writes.
	w.PauseReplay("n2", true)
	for range 3 {
		if _, err := w.Write("n1"); err != nil {
			t.Fatal(err)
		}
	}
	// The leader asks the members before accepting: the lag it refuses on
	// is the one of this instant, not of the last heartbeat.
	lagging := switchover(&pb.SwitchoverRequest{Candidate: "n2"})
	run([]badCall{
		{"Switchover to a lagging member", lagging, codes.FailedPrecondition, []string{"n2", "behind", "maximum_lag_on_failover"}},
	})
	w.PauseReplay("n2", false)

	if st, _ := leader.Srv.State(context.Background(), false); st.Primary.GetMemberId() != "n1" || st.Primary.Epoch != epoch || st.Switchover != nil {
		t.Fatalf("refused calls changed the cluster: primary %v, switchover %v", st.Primary, st.Switchover)
	}
}

// checkStatus fails unless err is a status with code whose message holds
// every word of want.
func checkStatus(t *testing.T, what string, err error, code codes.Code, want []string) {
	t.Helper()
	s, _ := status.FromError(err)
	if err == nil || s.Code() != code {
		t.Errorf("%s: got %v (%v), want %v", what, s.Code(), err, code)
		return
	}
	for _, w := range want {
		if !strings.Contains(s.Message(), w) {
			t.Errorf("%s: message %q does not name %q", what, s.Message(), w)
		}
	}
}
