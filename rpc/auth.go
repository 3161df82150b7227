package rpc

import (
	"context"

	"github.com/pgquorum/pgquorum/internal/mtls"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Metadata a node adds when it forwards a call to the leader: who called
// it and with which roles. The leader believes them only from a node.
const (
	forwardedIdentityKey = "pgquorum-forwarded-identity"
	forwardedRolesKey    = "pgquorum-forwarded-roles"
)

// anyone is every role: the read verbs.
const anyone = mtls.RoleNode | mtls.RoleAdmin | mtls.RoleReadOnly | mtls.RoleBouncer

// methodRoles says which roles may call each RPC (any one of them). A
// method missing here is refused.
var methodRoles = map[string]mtls.Role{
	pb.Admin_GetState_FullMethodName: anyone,
	pb.Admin_Status_FullMethodName:   anyone,
	pb.Admin_Watch_FullMethodName:    anyone,

	// Nodes join through it; operators add members with `ctl members add`.
	pb.Admin_Join_FullMethodName:         mtls.RoleNode | mtls.RoleAdmin,
	pb.Admin_RemoveMember_FullMethodName: mtls.RoleAdmin,

	pb.Admin_Heartbeat_FullMethodName:    mtls.RoleNode,
	pb.Admin_RenewLease_FullMethodName:   mtls.RoleNode,
	pb.Admin_ReleaseLease_FullMethodName: mtls.RoleNode,
	pb.Admin_SetSync_FullMethodName:      mtls.RoleNode,
	// Anyone may read a node's health (`ctl list`); a probe that asks for
	// a checkpoint is for nodes only (see Admin.Probe).
	pb.Admin_Probe_FullMethodName: anyone,

	pb.Admin_Switchover_FullMethodName: mtls.RoleAdmin,
	pb.Admin_Failover_FullMethodName:   mtls.RoleAdmin,
	pb.Admin_SetPaused_FullMethodName:  mtls.RoleAdmin,
	pb.Admin_SetConfig_FullMethodName:  mtls.RoleAdmin,
	pb.Admin_Restart_FullMethodName:    mtls.RoleAdmin,
	pb.Admin_Reload_FullMethodName:     mtls.RoleAdmin,
	pb.Admin_Reinit_FullMethodName:     mtls.RoleAdmin,
	pb.Admin_Flush_FullMethodName:      mtls.RoleAdmin,
	// Only nodes: the leader (or the node serving Reload or Reinit) sends
	// it after checking the operator's request.
	pb.Admin_LocalAction_FullMethodName: mtls.RoleNode,

	pb.Admin_BouncerHeartbeat_FullMethodName:  mtls.RoleBouncer | mtls.RoleNode,
	pb.Admin_UnregisterBouncer_FullMethodName: mtls.RoleAdmin,
}

// Caller is the authenticated identity behind a call.
type Caller struct {
	mtls.Identity
	// Via names the node that forwarded the call; empty for direct calls.
	Via string
}

// String is "name (roles)", with " via NODE" for forwarded calls.
func (c Caller) String() string {
	if c.Via == "" {
		return c.Identity.String()
	}
	return c.Identity.String() + " via " + c.Via
}

type callerKey struct{}

// CallerFrom returns the caller the authorization interceptor found; false
// when the server runs without TLS.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// callerOf reads the verified client certificate of the call. A node may
// speak for the caller it forwards.
func callerOf(ctx context.Context) (Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Caller{}, status.Error(codes.Unauthenticated, "no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Caller{}, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	id := mtls.IdentityOf(info.State.VerifiedChains[0][0])
	if !id.Roles.Has(mtls.RoleNode) {
		return Caller{Identity: id}, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	roles := md.Get(forwardedRolesKey)
	if len(roles) == 0 {
		return Caller{Identity: id}, nil
	}
	orig := mtls.Identity{Name: "(unnamed)", Roles: mtls.ParseRoles(roles[0])}
	if names := md.Get(forwardedIdentityKey); len(names) > 0 {
		orig.Name = names[0]
	}
	return Caller{Identity: orig, Via: id.Name}, nil
}

// authorize finds the caller and checks it may call method.
func authorize(ctx context.Context, method string) (context.Context, error) {
	c, err := callerOf(ctx)
	if err != nil {
		return ctx, err
	}
	need, known := methodRoles[method]
	if !known {
		return ctx, status.Errorf(codes.PermissionDenied, "%s: %s is not an RPC pgquorum serves", c, method)
	}
	if !c.Roles.Has(need) {
		return ctx, status.Errorf(codes.PermissionDenied, "%s may not call %s: it needs role %s", c, method, need)
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

// authorizeReadmit checks that a Join with readmit comes from an operator:
// a node may register itself, but only an admin may bring back a member
// that was removed (`ctl members add`). Without TLS there is no caller to
// check.
func authorizeReadmit(ctx context.Context) error {
	c, ok := CallerFrom(ctx)
	if !ok || c.Roles.Has(mtls.RoleAdmin) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s may not readmit a removed member: it needs role %s", c, mtls.RoleAdmin)
}

// forwardedMetadata returns what a forwarding node tells the leader about
// the caller of ctx (nothing without TLS).
func forwardedMetadata(ctx context.Context) []string {
	c, ok := CallerFrom(ctx)
	if !ok {
		return nil
	}
	return []string{forwardedIdentityKey, c.Name, forwardedRolesKey, c.Roles.String()}
}

// UnaryAuth is the authorization interceptor of unary calls.
func UnaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// StreamAuth is the authorization interceptor of streaming calls.
func StreamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &authStream{ServerStream: ss, ctx: ctx})
}

type authStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authStream) Context() context.Context { return s.ctx }

// ServerOptions returns the gRPC server options of a node: mutual TLS with
// the cluster CA and per-call authorization. With a nil bundle (insecure:
// true) there is neither.
func ServerOptions(b *mtls.Bundle) []grpc.ServerOption {
	if b == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(b.ServerConfig(0))),
		grpc.ChainUnaryInterceptor(UnaryAuth),
		grpc.ChainStreamInterceptor(StreamAuth),
	}
}

// ClientCredentials returns the credentials a Pool dials with: this
// certificate, and only servers with a node certificate of the cluster CA.
// A nil bundle gives nil (plaintext).
func ClientCredentials(b *mtls.Bundle) credentials.TransportCredentials {
	if b == nil {
		return nil
	}
	return credentials.NewTLS(b.ClientConfig())
}
