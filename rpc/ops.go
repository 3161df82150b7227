package rpc

import (
	"context"

	"github.com/pgquorum/pgquorum/internal/mtls"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// RenewLease implements pb.AdminServer.
func (a *Admin) RenewLease(ctx context.Context, req *pb.RenewLeaseRequest) (*pb.LeaseResponse, error) {
	index, err := a.srv.RenewLease(ctx, req.MemberId, req.Epoch)
	if err == nil {
		return &pb.LeaseResponse{Index: index}, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.LeaseResponse, error) {
		return c.RenewLease(ctx, req)
	})
}

// ReleaseLease implements pb.AdminServer.
func (a *Admin) ReleaseLease(ctx context.Context, req *pb.ReleaseLease) (*pb.LeaseResponse, error) {
	index, err := a.srv.ReleaseLease(ctx, req)
	if err == nil {
		return &pb.LeaseResponse{Index: index}, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.LeaseResponse, error) {
		return c.ReleaseLease(ctx, req)
	})
}

// SetSync implements pb.AdminServer.
func (a *Admin) SetSync(ctx context.Context, req *pb.SetSync) (*pb.LeaseResponse, error) {
	index, err := a.srv.SetSync(ctx, req)
	if err == nil {
		return &pb.LeaseResponse{Index: index}, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.LeaseResponse, error) {
		return c.SetSync(ctx, req)
	})
}

// Probe implements pb.AdminServer. It always answers for this node,
// after preparing a planned stop when asked (see server.PrepareStop).
func (a *Admin) Probe(ctx context.Context, req *pb.ProbeRequest) (*pb.PostgresHealth, error) {
	if req.GetCheckpoint() {
		if c, ok := CallerFrom(ctx); ok && !c.Roles.Has(mtls.RoleNode) {
			return nil, status.Errorf(codes.PermissionDenied, "%s may not ask for a checkpoint: it needs role node", c)
		}
		if err := a.srv.PrepareStop(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	h, err := a.srv.Probe(ctx)
	return h, toStatus(err)
}

// Switchover implements pb.AdminServer.
func (a *Admin) Switchover(ctx context.Context, req *pb.SwitchoverRequest) (*pb.SwitchoverResponse, error) {
	resp, err := a.srv.Switchover(ctx, req)
	if err == nil {
		return resp, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.SwitchoverResponse, error) {
		return c.Switchover(ctx, req)
	})
}

// Failover implements pb.AdminServer.
func (a *Admin) Failover(ctx context.Context, req *pb.FailoverRequest) (*pb.SwitchoverResponse, error) {
	resp, err := a.srv.Failover(ctx, req)
	if err == nil {
		return resp, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.SwitchoverResponse, error) {
		return c.Failover(ctx, req)
	})
}

// SetPaused implements pb.AdminServer.
func (a *Admin) SetPaused(ctx context.Context, req *pb.SetPausedRequest) (*pb.SetPausedResponse, error) {
	index, err := a.srv.SetPaused(ctx, req.Paused)
	if err == nil {
		return &pb.SetPausedResponse{Index: index}, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.SetPausedResponse, error) {
		return c.SetPaused(ctx, req)
	})
}

// SetConfig implements pb.AdminServer.
func (a *Admin) SetConfig(ctx context.Context, req *pb.SetConfig) (*pb.SetConfigResponse, error) {
	resp, err := a.srv.SetConfig(ctx, req)
	if err == nil {
		return resp, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.SetConfigResponse, error) {
		return c.SetConfig(ctx, req)
	})
}

// BouncerHeartbeat implements pb.AdminServer.
func (a *Admin) BouncerHeartbeat(ctx context.Context, req *pb.BouncerHeartbeatRequest) (*pb.BouncerHeartbeatResponse, error) {
	resp, err := a.srv.BouncerHeartbeat(ctx, req)
	if err == nil {
		return resp, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.BouncerHeartbeatResponse, error) {
		return c.BouncerHeartbeat(ctx, req)
	})
}

// UnregisterBouncer implements pb.AdminServer.
func (a *Admin) UnregisterBouncer(ctx context.Context, req *pb.UnregisterBouncer) (*pb.LeaseResponse, error) {
	index, err := a.srv.UnregisterBouncer(ctx, req.Id)
	if err == nil {
		return &pb.LeaseResponse{Index: index}, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.LeaseResponse, error) {
		return c.UnregisterBouncer(ctx, req)
	})
}

// Restart implements pb.AdminServer. The leader runs it.
func (a *Admin) Restart(ctx context.Context, req *pb.RestartRequest) (*pb.ActionResponse, error) {
	resp, err := a.srv.Restart(ctx, req)
	if err == nil {
		return resp, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.ActionResponse, error) {
		return c.Restart(ctx, req)
	})
}

// Flush implements pb.AdminServer. The leader runs it.
func (a *Admin) Flush(ctx context.Context, req *pb.FlushRequest) (*pb.ActionResponse, error) {
	resp, err := a.srv.Flush(ctx, req)
	if err == nil {
		return resp, nil
	}
	return forward(ctx, a, err, func(ctx context.Context, c pb.AdminClient) (*pb.ActionResponse, error) {
		return c.Flush(ctx, req)
	})
}

// Reload implements pb.AdminServer. Any node serves it.
func (a *Admin) Reload(ctx context.Context, req *pb.ReloadRequest) (*pb.ActionResponse, error) {
	resp, err := a.srv.Reload(ctx, req)
	return resp, toStatus(err)
}

// Reinit implements pb.AdminServer. Any node serves it.
func (a *Admin) Reinit(ctx context.Context, req *pb.ReinitRequest) (*pb.ActionResponse, error) {
	resp, err := a.srv.Reinit(ctx, req)
	return resp, toStatus(err)
}

// LocalAction implements pb.AdminServer. It always acts on this node.
func (a *Admin) LocalAction(ctx context.Context, req *pb.LocalActionRequest) (*pb.MemberResult, error) {
	resp, err := a.srv.LocalAction(ctx, req)
	return resp, toStatus(err)
}
