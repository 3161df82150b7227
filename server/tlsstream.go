package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// RaftTLS is the mutual TLS of the Raft transport. Server must require and
// verify client certificates (only nodes of the cluster CA may append
// entries or ask for votes); Client presents this node's certificate and
// verifies the peer's.
type RaftTLS struct {
	Server *tls.Config
	Client *tls.Config
}

// tlsStream is a raft.StreamLayer: a TCP listener whose connections speak
// TLS, and a dialer that speaks TLS to the peer.
type tlsStream struct {
	lis       net.Listener
	advertise net.Addr
	conf      *RaftTLS
	// handshake bounds each TLS handshake, so a peer that connects and
	// says nothing does not hold a connection forever.
	handshake time.Duration
}

var _ raft.StreamLayer = (*tlsStream)(nil)

// newTLSStream listens on bind. advertise is what peers dial.
func newTLSStream(bind string, advertise net.Addr, conf *RaftTLS, handshake time.Duration) (*tlsStream, error) {
	if conf == nil || conf.Server == nil || conf.Client == nil {
		return nil, errors.New("raft TLS: server and client configs are required")
	}
	if conf.Server.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("raft TLS: the server config must require and verify client certificates")
	}
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	return &tlsStream{lis: lis, advertise: advertise, conf: conf, handshake: handshake}, nil
}

// Accept implements net.Listener. The handshake happens on the
// connection's first read or write, in Raft's goroutine for the
// connection, never in the accept loop.
func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.lis.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, s.conf.Server), timeout: s.handshake}, nil
}

// Close implements net.Listener.
func (s *tlsStream) Close() error { return s.lis.Close() }

// Addr implements net.Listener: the advertised address.
func (s *tlsStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.lis.Addr()
}

// Dial implements raft.StreamLayer. The certificate of the peer must name
// the host of address (IP or DNS SAN).
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, err
	}
	conf := s.conf.Client.Clone()
	if conf.ServerName == "" {
		conf.ServerName = host
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: conf}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft TLS to %s: %w", address, err)
	}
	return c, nil
}

// serverConn runs the TLS handshake under a deadline before the first read
// or write.
type serverConn struct {
	*tls.Conn
	timeout time.Duration
	once    sync.Once
	err     error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		c.err = c.HandshakeContext(ctx)
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
