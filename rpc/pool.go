package rpc

import (
	"fmt"
	"sync"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Pool keeps one client connection per member address. gRPC connections
// reconnect by themselves, so a connection is made once and reused.
type Pool struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	creds credentials.TransportCredentials
	opts  []grpc.DialOption
}

// NewPool returns a pool dialing with creds (nil: plaintext, for loopback
// and tests).
func NewPool(creds credentials.TransportCredentials, opts ...grpc.DialOption) *Pool {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	return &Pool{conns: map[string]*grpc.ClientConn{}, creds: creds, opts: opts}
}

// Conn returns the connection to addr.
func (p *Pool) Conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(p.creds)}, p.opts...)
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// Client returns an Admin client for addr. It matches server.Options.Dial.
func (p *Pool) Client(addr string) (pb.AdminClient, error) {
	c, err := p.Conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewAdminClient(c), nil
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		_ = c.Close()
		delete(p.conns, addr)
	}
}
