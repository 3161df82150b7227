package server

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/pgquorum/pgquorum/internal/mtls"
	"github.com/pgquorum/pgquorum/internal/mtls/mtlstest"
)

// tlsTransport starts a Raft network transport over mutual TLS with b's
// certificate on a loopback port. Every RPC it receives is answered with
// success and counted.
func tlsTransport(t *testing.T, b *mtls.Bundle) (*raft.NetworkTransport, chan raft.RPC) {
	t.Helper()
	conf := &RaftTLS{Server: b.ServerConfig(mtls.RoleNode), Client: b.ClientConfig()}
	stream, err := newTLSStream("127.0.0.1:0", nil, conf, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 2, Timeout: 2 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	})
	t.Cleanup(func() { _ = trans.Close() })
	got := make(chan raft.RPC, 16)
	go func() {
		for rpc := range trans.Consumer() {
			switch rpc.Command.(type) {
			case *raft.AppendEntriesRequest:
				rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
			case *raft.RequestVoteRequest:
				rpc.Respond(&raft.RequestVoteResponse{Granted: true}, nil)
			default:
				rpc.Respond(nil, nil)
			}
			got <- rpc
		}
	}()
	return trans, got
}

func TestTLSStream_OnlyNodesOfTheClusterCA(t *testing.T) {
	ca, foreign := mtlstest.NewCA(t, "cluster"), mtlstest.NewCA(t, "other")
	target, got := tlsTransport(t, ca.Bundle(t, "n1", mtls.OrgNode))
	addr := target.LocalAddr()

	vote := func(from *raft.NetworkTransport) error {
		var resp raft.RequestVoteResponse
		return from.RequestVote("n1", addr, &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("x"), Addr: []byte(from.LocalAddr())}, Term: 7}, &resp)
	}
	appendEntries := func(from *raft.NetworkTransport) error {
		var resp raft.AppendEntriesResponse
		return from.AppendEntries("n1", addr, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("x"), Addr: []byte(from.LocalAddr())}, Term: 7}, &resp)
	}

	t.Run("a node of the cluster CA votes and appends", func(t *testing.T) {
		peer, _ := tlsTransport(t, ca.Bundle(t, "n2", mtls.OrgNode))
		if err := vote(peer); err != nil {
			t.Fatalf("vote: %v", err)
		}
		if err := appendEntries(peer); err != nil {
			t.Fatalf("append: %v", err)
		}
		for range 2 {
			<-got
		}
	})
	refused := []struct {
		name string
		b    *mtls.Bundle
	}{
		{"a node of a foreign CA", foreign.Bundle(t, "n9", mtls.OrgNode)},
		{"an admin of the cluster CA", ca.Bundle(t, "alice", mtls.OrgAdmin)},
		{"a bouncer of the cluster CA", ca.Bundle(t, "b1", mtls.OrgBouncer)},
	}
	for _, tc := range refused {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			peer, _ := tlsTransport(t, tc.b)
			if err := vote(peer); err == nil {
				t.Fatal("vote went through")
			}
			if err := appendEntries(peer); err == nil {
				t.Fatal("append went through")
			}
		})
	}
	select {
	case rpc := <-got:
		t.Fatalf("the target received %T from a refused peer", rpc.Command)
	default:
	}

	t.Run("a node does not talk to a server of a foreign CA", func(t *testing.T) {
		impostor, got := tlsTransport(t, foreign.Bundle(t, "n1", mtls.OrgNode))
		self, _ := tlsTransport(t, ca.Bundle(t, "n2", mtls.OrgNode))
		var resp raft.AppendEntriesResponse
		if err := self.AppendEntries("n1", impostor.LocalAddr(), &raft.AppendEntriesRequest{Term: 1}, &resp); err == nil {
			t.Fatal("append to an impostor went through")
		}
		select {
		case <-got:
			t.Fatal("the impostor received the entries")
		default:
		}
	})

	t.Run("a plaintext peer is refused", func(t *testing.T) {
		plain, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 1, time.Second, hclog.New(&hclog.LoggerOptions{Output: io.Discard}))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		if err := vote(plain); err == nil {
			t.Fatal("plaintext vote went through")
		}
	})
}
