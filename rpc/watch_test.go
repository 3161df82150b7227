package rpc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/rpc"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/servertest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestWatch_StalledClientGetsResync: a watcher that stops reading does not
// hold the node back (every write still commits in time), and once it
// reads again it gets what was buffered, then ABORTED "resync".
func TestWatch_StalledClientGetsResync(t *testing.T) {
	c := servertest.New(t, 1)
	n := c.Nodes[0]
	c.Eventually(20*time.Second, "the cluster initialized", func() bool {
		st, err := n.Srv.State(context.Background(), false)
		return err == nil && st.Identity.GetUuid() != "" && st.Config.GetVersion() > 0
	})
	// The smallest HTTP/2 windows (64 KiB, no dynamic growth), so that the
	// transport stops taking events soon after the client stops reading.
	conn, err := grpc.NewClient(n.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := pb.NewAdminClient(conn).Watch(ctx, &pb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetSnapshot() == nil {
		t.Fatalf("first event: %v, %v; want the snapshot", first, err)
	}
	// The client reads nothing more. Each write publishes a 4 KiB config
	// delta: 16 fill the window, WatchBuffer more fill the subscription.
	pad := strings.Repeat("x", 4<<10)
	version := first.GetSnapshot().GetConfig().GetVersion()
	writes := rpc.WatchBuffer + 64
	for i := range writes {
		cfg := server.DefaultDynamicConfig()
		cfg.PostgresParameters = map[string]string{"application_name": fmt.Sprintf("w%d-%s", i, pad)}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.Srv.SetConfig(wctx, &pb.SetConfig{ExpectedVersion: version, Config: cfg})
		wcancel()
		if err != nil {
			t.Fatalf("write %d of %d while the watcher stalls: %v", i+1, writes, err)
		}
		version++
	}
	// Reading again: the buffered events, then the cut-off.
	got := 0
	for {
		_, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Aborted || !strings.Contains(status.Convert(err).Message(), "resync") {
				t.Fatalf("after %d events: %v, want ABORTED resync", got, err)
			}
			break
		}
		got++
	}
	if got >= writes {
		t.Fatalf("got %d of %d events before the resync: nothing was dropped", got, writes)
	}
}
