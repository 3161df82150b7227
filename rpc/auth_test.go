package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/pgquorum/pgquorum/internal/mtls"
	"github.com/pgquorum/pgquorum/internal/mtls/mtlstest"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// TestAuth_EveryMethodHasRoles fails when an RPC is added without a line
// in methodRoles (it would be refused to everyone).
func TestAuth_EveryMethodHasRoles(t *testing.T) {
	names := map[string]bool{}
	for _, m := range pb.Admin_ServiceDesc.Methods {
		names["/"+pb.Admin_ServiceDesc.ServiceName+"/"+m.MethodName] = true
	}
	for _, s := range pb.Admin_ServiceDesc.Streams {
		names["/"+pb.Admin_ServiceDesc.ServiceName+"/"+s.StreamName] = true
	}
	for n := range names {
		if methodRoles[n] == 0 {
			t.Errorf("%s has no roles in methodRoles", n)
		}
	}
	for n := range methodRoles {
		if !names[n] {
			t.Errorf("methodRoles lists %s, which the service does not have", n)
		}
	}
}

// tlsCtx is the context of a call over TLS from a client with cert.
func tlsCtx(cert *x509.Certificate, md ...string) context.Context {
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}},
	}})
	if len(md) > 0 {
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(md...))
	}
	return ctx
}

func TestAuth_Table(t *testing.T) {
	ca := mtlstest.NewCA(t, "cluster")
	certs := map[string]*x509.Certificate{}
	for name, org := range map[string]string{
		"node": mtls.OrgNode, "admin": mtls.OrgAdmin, "readonly": mtls.OrgReadOnly, "bouncer": mtls.OrgBouncer, "nobody": "acme",
	} {
		certs[name] = ca.Issue(t, name+"-1", []string{org}).Leaf
	}
	const (
		N = 1 << iota // node
		A             // admin
		R             // readonly
		B             // bouncer
	)
	allowed := map[string]int{
		pb.Admin_GetState_FullMethodName:          N | A | R | B,
		pb.Admin_Status_FullMethodName:            N | A | R | B,
		pb.Admin_Watch_FullMethodName:             N | A | R | B,
		pb.Admin_Join_FullMethodName:              N | A,
		pb.Admin_RemoveMember_FullMethodName:      A,
		pb.Admin_Heartbeat_FullMethodName:         N,
		pb.Admin_RenewLease_FullMethodName:        N,
		pb.Admin_ReleaseLease_FullMethodName:      N,
		pb.Admin_SetSync_FullMethodName:           N,
		pb.Admin_Probe_FullMethodName:             N | A | R | B,
		pb.Admin_Switchover_FullMethodName:        A,
		pb.Admin_Failover_FullMethodName:          A,
		pb.Admin_SetPaused_FullMethodName:         A,
		pb.Admin_SetConfig_FullMethodName:         A,
		pb.Admin_BouncerHeartbeat_FullMethodName:  N | B,
		pb.Admin_UnregisterBouncer_FullMethodName: A,
		pb.Admin_Restart_FullMethodName:           A,
		pb.Admin_Reload_FullMethodName:            A,
		pb.Admin_Reinit_FullMethodName:            A,
		pb.Admin_Flush_FullMethodName:             A,
		pb.Admin_LocalAction_FullMethodName:       N,
		"/pgquorum.v1.Admin/Nope":                 0,
	}
	bits := map[string]int{"node": N, "admin": A, "readonly": R, "bouncer": B, "nobody": 0}
	for method, mask := range allowed {
		for who, bit := range bits {
			ctx, err := authorize(tlsCtx(certs[who]), method)
			want := mask&bit != 0
			if want != (err == nil) {
				t.Errorf("%s calling %s: allowed=%v, want %v (err %v)", who, method, err == nil, want, err)
				continue
			}
			if err != nil {
				if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), who+"-1") {
					t.Errorf("%s calling %s: %v; want PermissionDenied naming the identity", who, method, err)
				}
				continue
			}
			if c, ok := CallerFrom(ctx); !ok || c.Name != who+"-1" {
				t.Errorf("%s calling %s: caller %v in context", who, method, c)
			}
		}
	}
}

func TestAuth_RefusalNamesIdentityAndRole(t *testing.T) {
	ca := mtlstest.NewCA(t, "cluster")
	ro := ca.Issue(t, "rita", []string{mtls.OrgReadOnly}).Leaf
	_, err := authorize(tlsCtx(ro), pb.Admin_Switchover_FullMethodName)
	want := "rita (readonly) may not call /pgquorum.v1.Admin/Switchover: it needs role admin"
	if status.Code(err) != codes.PermissionDenied || status.Convert(err).Message() != want {
		t.Fatalf("got %v, want PermissionDenied %q", err, want)
	}
}

// TestAuth_ReadmitNeedsAdmin: a node may join, but only an operator may
// bring back a removed member, also when a node forwards the call.
func TestAuth_ReadmitNeedsAdmin(t *testing.T) {
	ca := mtlstest.NewCA(t, "cluster")
	node := ca.Issue(t, "n2", []string{mtls.OrgNode}).Leaf
	admin := ca.Issue(t, "ada", []string{mtls.OrgAdmin}).Leaf
	tests := []struct {
		name    string
		ctx     context.Context
		allowed bool
	}{
		{"node", tlsCtx(node), false},
		{"admin", tlsCtx(admin), true},
		{"admin via a node", tlsCtx(node, forwardedIdentityKey, "ada", forwardedRolesKey, mtls.RoleAdmin.String()), true},
		{"node via a node", tlsCtx(node, forwardedIdentityKey, "n3", forwardedRolesKey, mtls.RoleNode.String()), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := authorize(tc.ctx, pb.Admin_Join_FullMethodName)
			if err != nil {
				t.Fatalf("join itself refused: %v", err)
			}
			err = authorizeReadmit(ctx)
			if tc.allowed != (err == nil) {
				t.Fatalf("readmit allowed=%v, want %v (err %v)", err == nil, tc.allowed, err)
			}
			if err != nil && (status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "needs role admin")) {
				t.Fatalf("readmit refusal: %v", err)
			}
		})
	}
	if err := authorizeReadmit(context.Background()); err != nil {
		t.Fatalf("without TLS there is no caller to refuse: %v", err)
	}
}

func TestAuth_NoCertificate(t *testing.T) {
	for name, ctx := range map[string]context.Context{
		"no peer":      context.Background(),
		"no TLS":       peer.NewContext(context.Background(), &peer.Peer{}),
		"not verified": peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}}),
	} {
		if _, err := authorize(ctx, pb.Admin_GetState_FullMethodName); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: got %v, want Unauthenticated", name, err)
		}
	}
}

// A node that forwards a call speaks for its caller; anyone else's
// forwarding metadata is ignored.
func TestAuth_Forwarded(t *testing.T) {
	ca := mtlstest.NewCA(t, "cluster")
	node := ca.Issue(t, "n2", []string{mtls.OrgNode}).Leaf
	ro := ca.Issue(t, "rita", []string{mtls.OrgReadOnly}).Leaf
	fwd := func(name, roles string) []string {
		return []string{forwardedKey, "n2", forwardedIdentityKey, name, forwardedRolesKey, roles}
	}
	cases := []struct {
		name   string
		ctx    context.Context
		method string
		ok     bool
		caller string
	}{
		{"node forwards an admin's switchover", tlsCtx(node, fwd("alice", "admin")...), pb.Admin_Switchover_FullMethodName, true, "alice (admin) via n2"},
		{"node forwards a readonly switchover", tlsCtx(node, fwd("rita", "readonly")...), pb.Admin_Switchover_FullMethodName, false, ""},
		{"node forwards a bouncer heartbeat", tlsCtx(node, fwd("b1", "bouncer")...), pb.Admin_BouncerHeartbeat_FullMethodName, true, "b1 (bouncer) via n2"},
		{"node forwards a node heartbeat", tlsCtx(node, fwd("n3", "node")...), pb.Admin_Heartbeat_FullMethodName, true, "n3 (node) via n2"},
		{"node without caller is itself", tlsCtx(node), pb.Admin_Heartbeat_FullMethodName, true, "n2 (node)"},
		{"readonly claims to forward an admin", tlsCtx(ro, fwd("alice", "admin")...), pb.Admin_Switchover_FullMethodName, false, ""},
		{"forwarded with unknown roles", tlsCtx(node, fwd("x", "root")...), pb.Admin_GetState_FullMethodName, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := authorize(tc.ctx, tc.method)
			if (err == nil) != tc.ok {
				t.Fatalf("allowed=%v, want %v (%v)", err == nil, tc.ok, err)
			}
			if err != nil {
				if status.Code(err) != codes.PermissionDenied {
					t.Fatalf("code %v", status.Code(err))
				}
				return
			}
			c, _ := CallerFrom(ctx)
			if c.String() != tc.caller {
				t.Fatalf("caller %q, want %q", c, tc.caller)
			}
		})
	}
}

// forwardedMetadata passes the caller on; without TLS there is nothing.
func TestAuth_ForwardedMetadata(t *testing.T) {
	if md := forwardedMetadata(context.Background()); md != nil {
		t.Fatalf("insecure: %v", md)
	}
	ctx := context.WithValue(context.Background(), callerKey{}, Caller{Identity: mtls.Identity{Name: "alice", Roles: mtls.RoleAdmin}})
	got := strings.Join(forwardedMetadata(ctx), " ")
	if got != "pgquorum-forwarded-identity alice pgquorum-forwarded-roles admin" {
		t.Fatalf("got %q", got)
	}
}
