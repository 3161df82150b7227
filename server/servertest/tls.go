package servertest

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/internal/mtls"
	"github.com/pgquorum/pgquorum/internal/mtls/mtlstest"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/rpc"
	"github.com/pgquorum/pgquorum/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// PKI is the cluster CA of a TLS cluster and a client certificate of each
// role.
type PKI struct {
	CA                       *mtlstest.CA
	Admin, ReadOnly, Bouncer *mtls.Bundle
}

// NewTLS starts n nodes as New does, but with Raft over loopback TCP with
// mutual TLS (no partitions) and gRPC with mutual TLS and authorization,
// all certificates from one new CA. Cluster.Client dials as the admin.
func NewTLS(t testing.TB, n int, opts ...Option) (*Cluster, *PKI) {
	t.Helper()
	ca := mtlstest.NewCA(t, "pgquorum test CA")
	p := &PKI{
		CA:       ca,
		Admin:    ca.Bundle(t, "admin", mtls.OrgAdmin),
		ReadOnly: ca.Bundle(t, "reader", mtls.OrgReadOnly),
		Bouncer:  ca.Bundle(t, "bouncer", mtls.OrgBouncer),
	}
	c := newCluster(t)
	c.pool.Close()
	c.pool = rpc.NewPool(rpc.ClientCredentials(p.Admin))
	var initial []raft.Server
	for i := 1; i <= n; i++ {
		node := c.AddTLSNode(fmt.Sprintf("n%d", i), ca.Bundle(t, fmt.Sprintf("n%d", i), mtls.OrgNode))
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
	return c, p
}

// AddTLSNode prepares a node with certificate b (of any CA) on a TCP Raft
// transport, joining through joinVia; call Start to run it.
func (c *Cluster) AddTLSNode(id string, b *mtls.Bundle, joinVia ...*Node) *Node {
	n := c.AddNode(id, joinVia...)
	n.tls = b
	n.pool.Close()
	n.pool = rpc.NewPool(rpc.ClientCredentials(b), grpc.WithUnaryInterceptor(c.unaryCut(n)), grpc.WithStreamInterceptor(c.streamCut(n)))
	n.Opts.Dial = n.pool.Client
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	n.RaftAddr = lis.Addr().String()
	_ = lis.Close()
	n.Opts.RaftBindAddr = n.RaftAddr
	n.Opts.RaftTLS = &server.RaftTLS{Server: b.ServerConfig(mtls.RoleNode), Client: b.ClientConfig()}
	return n
}

// ClientAs returns an Admin client for node n that presents b's
// certificate.
func (c *Cluster) ClientAs(n *Node, b *mtls.Bundle) pb.AdminClient {
	return c.clientWith(n, rpc.ClientCredentials(b))
}

// ClientWithoutCert returns an Admin client for node n that trusts ca but
// presents no certificate.
func (c *Cluster) ClientWithoutCert(n *Node, ca *mtlstest.CA) pb.AdminClient {
	return c.clientWith(n, credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}))
}

func (c *Cluster) clientWith(n *Node, creds credentials.TransportCredentials) pb.AdminClient {
	c.t.Helper()
	pool := rpc.NewPool(creds)
	c.t.Cleanup(pool.Close)
	cl, err := pool.Client(n.GRPCAddr)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}
