package rpc

import (
	"context"
	"errors"
	"log/slog"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// forwardedKey marks a request that a follower already forwarded, so it
// is forwarded at most once.
const forwardedKey = "pgquorum-forwarded-by"

// WatchBuffer is how many events a watcher may fall behind before it is
// cut off with a resync status.
const WatchBuffer = 256

// Admin implements pb.AdminServer on top of a server.Server.
type Admin struct {
	pb.UnimplementedAdminServer
	srv  *server.Server
	pool *Pool
	log  *slog.Logger
}

// NewAdmin returns the Admin service of srv; pool reaches the leader.
func NewAdmin(srv *server.Server, pool *Pool, log *slog.Logger) *Admin {
	return &Admin{srv: srv, pool: pool, log: log}
}

// Register adds the service to a gRPC server.
func (a *Admin) Register(g *grpc.Server) { pb.RegisterAdminServer(g, a) }

// forward sends a call that this follower cannot serve to the leader,
// once, with this node's certificate and the caller's identity (see
// forwardedMetadata). err is the server's answer; anything but "not the leader" is
// returned as a status.
func forward[Resp any](ctx context.Context, a *Admin, err error, call func(context.Context, pb.AdminClient) (Resp, error)) (Resp, error) {
	var zero Resp
	var nl *server.NotLeaderError
	if !errors.As(err, &nl) || nl.LeaderGRPCAddr == "" || forwarded(ctx) {
		return zero, toStatus(err)
	}
	c, derr := a.pool.Client(nl.LeaderGRPCAddr)
	if derr != nil {
		return zero, toStatus(err)
	}
	octx := metadata.AppendToOutgoingContext(ctx, append([]string{forwardedKey, a.srv.NodeID()}, forwardedMetadata(ctx)...)...)
	return call(octx, c)
}

func forwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// GetState implements pb.AdminServer.
func (a *Admin) GetState(ctx context.Context, req *pb.GetStateRequest) (*pb.ClusterState, error) {
	st, err := a.srv.State(ctx, req.Linearizable)
	if err == nil {
		return st, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.ClusterState, error) {
		return c.GetState(ctx, req)
	})
}

// Status implements pb.AdminServer. It always answers for this node.
func (a *Admin) Status(context.Context, *pb.StatusRequest) (*pb.NodeStatus, error) {
	return a.srv.Status(), nil
}

// Join implements pb.AdminServer. Readmit (bringing back a removed
// member) is for operators only.
func (a *Admin) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	if req.GetReadmit() {
		if err := authorizeReadmit(ctx); err != nil {
			return nil, err
		}
	}
	resp, err := a.srv.Join(ctx, req)
	if err == nil {
		return resp, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.JoinResponse, error) {
		return c.Join(ctx, req)
	})
}

// RemoveMember implements pb.AdminServer.
func (a *Admin) RemoveMember(ctx context.Context, req *pb.RemoveMemberRequest) (*pb.RemoveMemberResponse, error) {
	index, err := a.srv.RemoveMember(ctx, req.Id, req.Force)
	if err == nil {
		return &pb.RemoveMemberResponse{Index: index}, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.RemoveMemberResponse, error) {
		return c.RemoveMember(ctx, req)
	})
}

// Heartbeat implements pb.AdminServer.
func (a *Admin) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	resp, err := a.srv.Heartbeat(ctx, req)
	if err == nil {
		return resp, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.HeartbeatResponse, error) {
		return c.Heartbeat(ctx, req)
	})
}

// Watch implements pb.AdminServer: the events that bring the caller up to
// date (a snapshot, or the deltas after from_index), then every change.
// A watcher that cannot keep up is ended with ABORTED "resync" and should
// call again with from_index 0; the node never waits for it.
func (a *Admin) Watch(req *pb.WatchRequest, stream grpc.ServerStreamingServer[pb.WatchEvent]) error {
	initial, sub := a.srv.Subscribe(req.FromIndex, WatchBuffer)
	defer sub.Close()
	for _, ev := range initial {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ev, ok := <-sub.C:
			if !ok {
				if errors.Is(sub.Err(), fsm.ErrResync) {
					return status.Error(codes.Aborted, "resync: watcher fell behind or the state was restored; watch again from index 0")
				}
				return status.Error(codes.Unavailable, "watch ended: node shutting down")
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}
