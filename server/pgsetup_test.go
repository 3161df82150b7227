package server_test

import (
	"slices"
	"testing"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/servertest"
)

// TestAdopt_HandMadePrimaryGetsRoles: a stopped primary data directory
// made by hand has no replication or rewind role. It becomes the primary,
// its agent makes the roles, and the two empty members clone from it
// (the fake's clone fails without the roles, as pg_basebackup's login
// would).
func TestAdopt_HandMadePrimaryGetsRoles(t *testing.T) {
	w := servertest.NewWorld()
	w.HandMadePrimary("n2")
	c := servertest.New(t, 3, servertest.WithFakePostgres(w),
		func(o *server.Options) { o.Tags = &pb.Tags{FailoverPriority: 1} })
	f := &fo{t: t, c: c, w: w}
	t.Cleanup(f.checkOneWriter)
	p := f.waitPrimary(1, "")
	if p.MemberId != "n2" {
		t.Fatalf("primary is %s, want the hand-made n2", p.MemberId)
	}
	f.waitStreaming("n2", "n1", "n3")
	if !w.HasRoles("n2") {
		t.Fatal("the adopted primary has no replication and rewind roles")
	}
}

// TestBootstrap_StartFailedAfterInitdbRolesOnRetry: the first primary's
// initdb succeeds but its start fails, so Bootstrap made no roles; the
// next rounds start the initialized directory as a primary through the
// plain start path, and the agent still makes the roles the replicas
// clone with.
func TestBootstrap_StartFailedAfterInitdbRolesOnRetry(t *testing.T) {
	w := servertest.NewWorld()
	w.FailStart("n1", true)
	c := servertest.New(t, 3, servertest.WithFakePostgres(w),
		func(o *server.Options) { o.Tags = &pb.Tags{FailoverPriority: 1} })
	f := &fo{t: t, c: c, w: w}
	t.Cleanup(f.checkOneWriter)
	c.Eventually(failoverWait, "n1's bootstrap ran initdb", func() bool {
		return slices.ContainsFunc(w.Events(), func(e servertest.Event) bool { return e.Server == "n1" && e.What == "bootstrap" })
	})
	w.FailStart("n1", false)
	p := f.waitPrimary(1, "")
	if p.MemberId != "n1" {
		t.Fatalf("primary is %s, want n1", p.MemberId)
	}
	f.waitStreaming("n1", "n2", "n3")
	if !w.HasRoles("n1") {
		t.Fatal("n1 has no replication and rewind roles")
	}
}

// TestClone_FromClonefromMemberThenPrimary: a member whose data directory
// is lost clones from the running standby tagged clonefrom, sparing the
// primary; when that standby is down it clones from the primary.
func TestClone_FromClonefromMemberThenPrimary(t *testing.T) {
	f := newFO(t, func(o *server.Options) {
		if o.NodeID == "n2" {
			o.Tags = &pb.Tags{FailoverPriority: 1, Clonefrom: true}
		}
	})
	p := f.bootstrap()
	if p.MemberId != "n1" {
		t.Fatalf("primary is %s, want n1", p.MemberId)
	}
	f.waitStreaming("n1", "n2", "n3")
	tests := []struct {
		name     string
		setup    func()
		wantFrom string
	}{
		{"clonefrom member streams", func() {}, "n2"},
		{"clonefrom member down", func() { f.w.Crash("n2"); f.c.Kill(f.node("n2")) }, "n1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			f.w.Wipe("n3")
			f.c.Eventually(failoverWait, "n3 cloned again and streaming", func() bool {
				return f.w.ClonedFrom("n3") != "" && f.w.StreamingFrom("n3", "n1")
			})
			if got := f.w.ClonedFrom("n3"); got != tt.wantFrom {
				t.Errorf("n3 cloned from %s, want %s", got, tt.wantFrom)
			}
			if !slices.Contains(f.w.Accepting(), "n1") {
				t.Errorf("primary n1 no longer accepts writes: %v", f.w.Accepting())
			}
		})
	}
}

// TestParameters_FreshCloneStartsWithThem: a member whose agent restarts
// with an empty data directory clones and starts with the dynamic
// parameters already in force (a restart-only one included), not only
// after a later reload: PostgreSQL refuses to start a standby whose
// max_connections is below its primary's.
func TestParameters_FreshCloneStartsWithThem(t *testing.T) {
	f := newFO(t)
	p := f.bootstrap()
	replica := f.others(p.MemberId)[0]
	f.setPG("max_connections", "200")
	f.c.Eventually(failoverWait, "pending restart of max_connections on "+replica, func() bool { return f.pending(replica) })
	n := f.node(replica)
	f.c.Kill(n)
	f.w.Wipe(replica)
	f.restart(n)
	f.c.Eventually(failoverWait, replica+" cloned again and streaming", func() bool {
		return f.w.ClonedFrom(replica) != "" && f.w.StreamingFrom(replica, p.MemberId)
	})
	if got := f.w.LiveParam(replica, "max_connections"); got != "200" {
		t.Fatalf("%s started with max_connections %q, want 200", replica, got)
	}
}
