package server_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/servertest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pending reports whether node id's PostgreSQL has a pending restart.
func (f *fo) pending(id string) bool {
	h, err := f.node(id).Srv.Probe(ctx(f.t))
	return err == nil && h.PendingRestart
}

// setPG commits a PostgreSQL parameter through the leader.
func (f *fo) setPG(name, value string) {
	f.t.Helper()
	st := f.state()
	cfg := st.Config
	if cfg.PostgresParameters == nil {
		cfg.PostgresParameters = map[string]string{}
	}
	cfg.PostgresParameters[name] = value
	if _, err := f.leader().Srv.SetConfig(ctx(f.t), &pb.SetConfig{ExpectedVersion: cfg.Version, Config: cfg}); err != nil {
		f.t.Fatalf("set %s=%s: %v", name, value, err)
	}
}

// onLeader calls fn on the current leader, again while leadership moves
// (an election under -race on two cores).
func onLeader[T any](f *fo, fn func(*server.Server) (T, error)) (T, error) {
	f.t.Helper()
	deadline := time.Now().Add(failoverWait)
	for {
		out, err := fn(f.leader().Srv)
		if !errors.Is(err, server.ErrNotLeader) || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(tm.LoopWait)
	}
}

// whileNoLeader calls fn again while it fails with UNAVAILABLE (an
// election under -race on a loaded machine), for up to failoverWait.
func whileNoLeader(fn func() error) error {
	deadline := time.Now().Add(failoverWait)
	for {
		err := fn()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		time.Sleep(tm.LoopWait)
	}
}

func (f *fo) restartReq(req *pb.RestartRequest) (*pb.ActionResponse, error) {
	return onLeader(f, func(s *server.Server) (*pb.ActionResponse, error) { return s.Restart(ctx(f.t), req) })
}

func (f *fo) flush() (*pb.ActionResponse, error) {
	return onLeader(f, func(s *server.Server) (*pb.ActionResponse, error) { return s.Flush(ctx(f.t), &pb.FlushRequest{}) })
}

// TestRestart_RollingReplicasFirstPrimaryKeepsLease: a restart-only
// parameter shows as pending everywhere; `restart --pending` restarts
// the replicas one at a time, then the primary in place; the primary stays
// primary at the same epoch (its lease never lapsed), nobody else ever
// accepted writes, and nothing is pending afterwards.
func TestRestart_RollingReplicasFirstPrimaryKeepsLease(t *testing.T) {
	f := newFO(t)
	p := f.bootstrap()

	// Nothing pending: --pending skips everyone.
	resp, err := f.restartReq(&pb.RestartRequest{PendingOnly: true})
	if err != nil {
		t.Fatalf("restart --pending with nothing pending: %v", err)
	}
	for _, r := range resp.Results {
		if r.Done || r.Skipped != "no pending restart" {
			t.Errorf("nothing pending: result %v, want skipped", r)
		}
	}

	f.setPG("max_connections", "200")
	all := append([]string{p.MemberId}, f.others(p.MemberId)...)
	for _, id := range all {
		f.c.Eventually(failoverWait, id+" has a pending restart", func() bool { return f.pending(id) })
	}
	historyBefore := len(f.state().History)
	began := len(f.w.Events())

	resp, err = f.restartReq(&pb.RestartRequest{PendingOnly: true})
	if err != nil {
		t.Fatalf("restart --pending: %v", err)
	}
	replicas := f.others(p.MemberId)
	slices.Sort(replicas)
	wantOrder := append(replicas, p.MemberId)
	var got []string
	for _, r := range resp.Results {
		got = append(got, r.Member)
		if !r.Done || r.Error != "" {
			t.Errorf("result %v: want done", r)
		}
	}
	if !slices.Equal(got, wantOrder) {
		t.Errorf("restart order %v, want %v (replicas first, the primary last)", got, wantOrder)
	}

	// One at a time: each member stops and starts before the next stops.
	var seq []string
	for _, e := range f.w.Events()[began:] {
		if e.What == "stop-fast" || e.What == "start" {
			seq = append(seq, e.Server+":"+e.What)
		}
	}
	var want []string
	for _, id := range wantOrder {
		want = append(want, id+":stop-fast", id+":start")
	}
	if !slices.Equal(seq, want) {
		t.Errorf("stops and starts %v, want %v", seq, want)
	}

	st := f.state()
	if st.Primary.MemberId != p.MemberId || st.Primary.Epoch != p.Epoch {
		t.Errorf("primary after restart = %s epoch %d, want %s epoch %d", st.Primary.MemberId, st.Primary.Epoch, p.MemberId, p.Epoch)
	}
	if len(st.History) != historyBefore {
		t.Errorf("history grew from %d to %d entries: a restart is no primary change", historyBefore, len(st.History))
	}
	for _, id := range all {
		if f.pending(id) {
			t.Errorf("%s still has a pending restart", id)
		}
	}
	f.waitStreaming(p.MemberId, replicas...)
	f.checkAcked(p.MemberId)
}

// TestRestart_RoleFilterAndRefusals: --role picks members; a restart is
// refused while a switchover is pending; a scheduled restart is held until
// flushed; unknown members and witnesses are refused with the field.
func TestRestart_RoleFilterAndRefusals(t *testing.T) {
	f := newFO(t)
	p := f.bootstrap()

	resp, err := f.restartReq(&pb.RestartRequest{Role: pb.RestartRole_RESTART_ROLE_PRIMARY})
	if err != nil {
		t.Fatalf("restart --role primary: %v", err)
	}
	if len(resp.Results) != 1 || resp.Results[0].Member != p.MemberId || !resp.Results[0].Done {
		t.Fatalf("restart --role primary: %v", resp.Results)
	}
	if st := f.state(); st.Primary.MemberId != p.MemberId || st.Primary.Epoch != p.Epoch {
		t.Fatalf("primary changed by its restart: %v", st.Primary)
	}
	one := f.others(p.MemberId)[0]
	resp, err = f.restartReq(&pb.RestartRequest{Members: []string{one, p.MemberId}, Role: pb.RestartRole_RESTART_ROLE_REPLICA})
	if err != nil || len(resp.Results) != 1 || resp.Results[0].Member != one {
		t.Fatalf("restart %s %s --role replica: %v, %v", one, p.MemberId, resp, err)
	}

	if _, err := f.restartReq(&pb.RestartRequest{Members: []string{"nope"}}); !errors.Is(err, server.ErrNotFound) {
		t.Errorf("unknown member: err = %v, want ErrNotFound", err)
	}
	if _, err := f.restartReq(&pb.RestartRequest{Role: 7}); !errors.Is(err, server.ErrInvalid) || !strings.Contains(err.Error(), "role") {
		t.Errorf("bad role: err = %v, want ErrInvalid naming role", err)
	}

	later := time.Now().Add(time.Hour).UnixMilli()
	resp, err = f.restartReq(&pb.RestartRequest{ScheduledAtUnixMs: later})
	if err != nil || !strings.Contains(resp.Message, "scheduled") {
		t.Fatalf("scheduled restart: %v, %v", resp, err)
	}
	if _, err := f.restartReq(&pb.RestartRequest{ScheduledAtUnixMs: later}); !errors.Is(err, server.ErrPrecondition) {
		t.Errorf("second scheduled restart: err = %v, want ErrPrecondition", err)
	}
	f.c.Eventually(failoverWait, "scheduled switchover accepted", func() bool {
		_, err := f.leader().Srv.Switchover(ctx(t), &pb.SwitchoverRequest{ScheduledAtUnixMs: later})
		return err == nil
	})
	if _, err := f.restartReq(&pb.RestartRequest{}); !errors.Is(err, server.ErrPrecondition) || !strings.Contains(err.Error(), "switchover") {
		t.Errorf("restart with a switchover pending: err = %v, want ErrPrecondition about the switchover", err)
	}
	resp, err = f.flush()
	if err != nil || !strings.Contains(resp.Message, "restart") || !strings.Contains(resp.Message, "switchover") {
		t.Fatalf("flush: %v, %v; want both cancelled", resp, err)
	}
	if f.state().Switchover != nil {
		t.Errorf("switchover still pending after flush")
	}
	if resp, err = f.flush(); err != nil || resp.Message != "nothing was scheduled" {
		t.Errorf("second flush: %v, %v", resp, err)
	}
}

// TestReinit_ReplicaClonedAgainPrimaryRefused: reinit clones a replica
// again, which then streams again; the primary is refused.
func TestReinit_ReplicaClonedAgainPrimaryRefused(t *testing.T) {
	f := newFO(t)
	p := f.bootstrap()
	n := f.node(f.others(p.MemberId)[0])
	cl := f.c.Client(n)

	_, err := cl.Reinit(ctx(t), &pb.ReinitRequest{Member: p.MemberId})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "primary") {
		t.Errorf("reinit of the primary: %v, want FailedPrecondition", err)
	}
	if _, err := cl.Reinit(ctx(t), &pb.ReinitRequest{}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "member") {
		t.Errorf("reinit without member: %v, want InvalidArgument naming member", err)
	}
	if _, err := cl.Reinit(ctx(t), &pb.ReinitRequest{Member: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("reinit of an unknown member: %v, want NotFound", err)
	}
	if err := whileNoLeader(func() error {
		_, err := cl.Restart(ctx(t), &pb.RestartRequest{Members: []string{"nope"}})
		return err
	}); status.Code(err) != codes.NotFound {
		t.Errorf("restart of an unknown member: %v, want NotFound", err)
	}
	if _, err := cl.Reload(ctx(t), &pb.ReloadRequest{Members: []string{""}}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "members") {
		t.Errorf("reload of an empty ID: %v, want InvalidArgument naming members", err)
	}
	if _, err := cl.LocalAction(ctx(t), &pb.LocalActionRequest{}); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "action") {
		t.Errorf("local action without action: %v, want InvalidArgument naming action", err)
	}

	began := len(f.w.Events())
	resp, err := cl.Reinit(ctx(t), &pb.ReinitRequest{Member: n.ID})
	if err != nil {
		t.Fatalf("reinit %s: %v", n.ID, err)
	}
	if len(resp.Results) != 1 || !resp.Results[0].Done {
		t.Errorf("reinit result %v", resp.Results)
	}
	cloned := false
	for _, e := range f.w.Events()[began:] {
		cloned = cloned || (e.Server == n.ID && e.What == "clone")
	}
	if !cloned {
		t.Errorf("%s was not cloned again", n.ID)
	}
	f.waitStreaming(p.MemberId, n.ID)

	resp, err = cl.Reload(ctx(t), &pb.ReloadRequest{})
	if err != nil || len(resp.Results) != 3 {
		t.Fatalf("reload: %v, %v", resp, err)
	}
	for _, r := range resp.Results {
		if !r.Done {
			t.Errorf("reload result %v", r)
		}
	}
}

// TestRestart_ReadOnlyIdentityRefused: the new state-changing RPCs need
// the admin role; LocalAction only a node.
func TestRestart_ReadOnlyIdentityRefused(t *testing.T) {
	c, pki := servertest.NewTLS(t, 3)
	n := c.WaitLeader(10 * time.Second)
	ro := c.ClientAs(n, pki.ReadOnly)
	admin := c.ClientAs(n, pki.Admin)
	calls := map[string]func() error{
		"Restart": func() error { _, err := ro.Restart(ctx(t), &pb.RestartRequest{}); return err },
		"Reload":  func() error { _, err := ro.Reload(ctx(t), &pb.ReloadRequest{}); return err },
		"Reinit":  func() error { _, err := ro.Reinit(ctx(t), &pb.ReinitRequest{Member: "n1"}); return err },
		"Flush":   func() error { _, err := ro.Flush(ctx(t), &pb.FlushRequest{}); return err },
		"LocalAction (admin)": func() error {
			_, err := admin.LocalAction(ctx(t), &pb.LocalActionRequest{Action: pb.LocalActionKind_LOCAL_ACTION_RELOAD})
			return err
		},
	}
	for name, call := range calls {
		if err := call(); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", name, err)
		}
	}
	// The admin passes authorization (and gets the server's answer).
	if err := whileNoLeader(func() error { _, err := admin.Flush(ctx(t), &pb.FlushRequest{}); return err }); err != nil {
		t.Errorf("admin flush: %v", err)
	}
}

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCallbacks_RoleChangeRecordedHangingScriptDoesNotDelayFailover: every
// node runs an on_role_change script that records its arguments, and an
// on_stop script that hangs far longer than a failover takes. The primary
// host dies; the failover happens within the usual bound, the new primary's
// callback records "on_role_change primary test", and the hanging script
// is killed after its timeout.
func TestCallbacks_RoleChangeRecordedHangingScriptDoesNotDelayFailover(t *testing.T) {
	dir := t.TempDir()
	record := writeScript(t, dir, "record", `echo "$1 $2 $3" >> "`+dir+`/calls"`+"\n")
	hang := writeScript(t, dir, "hang", "sleep 600\n")
	f := newFO(t, func(o *server.Options) {
		o.Callbacks = server.Callbacks{OnRoleChange: record, OnStop: hang, OnStart: hang, Timeout: 3 * time.Second}
	})
	p := f.bootstrap()
	old := f.node(p.MemberId)
	// The old primary's host dies: agent and PostgreSQL.
	f.c.Kill(old)
	f.w.Crash(p.MemberId)
	began := time.Now()
	np := f.waitPrimary(p.Epoch+1, p.MemberId)
	took := time.Since(began)
	if took > failoverWait/2 {
		t.Errorf("failover took %v with hanging callbacks", took)
	}
	f.c.Eventually(failoverWait, "on_role_change recorded", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "calls"))
		return strings.Contains(string(b), "on_role_change primary test")
	})
	t.Logf("failover to %s took %v while on_start/on_stop scripts hang", np.MemberId, took)
}

// TestRestart_StopsAtAMemberThatDoesNotComeBack: the first replica cannot
// start again; the rolling restart stops there and leaves the others (the
// primary included) alone. With --force it goes on.
func TestRestart_StopsAtAMemberThatDoesNotComeBack(t *testing.T) {
	f := newFO(t)
	p := f.bootstrap()
	replicas := f.others(p.MemberId)
	slices.Sort(replicas)
	bad := replicas[0]
	f.w.FailStart(bad, true)
	resp, err := f.restartReq(&pb.RestartRequest{})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if len(resp.Results) != 3 || resp.Results[0].Member != bad || resp.Results[0].Error == "" {
		t.Fatalf("results %v: want %s failed first", resp.Results, bad)
	}
	for _, r := range resp.Results[1:] {
		if r.Done || !strings.HasPrefix(r.Skipped, "not started") {
			t.Errorf("after a failure: %v, want not started", r)
		}
	}
	if !strings.Contains(resp.Message, "stopped at "+bad) {
		t.Errorf("message %q", resp.Message)
	}
	if !f.w.Running(p.MemberId) || f.w.Starts(p.MemberId) != 1 {
		t.Errorf("the primary was touched (running %v, starts %d)", f.w.Running(p.MemberId), f.w.Starts(p.MemberId))
	}
	// --force: the broken member is reported, the others restart.
	resp, err = f.restartReq(&pb.RestartRequest{Force: true})
	if err != nil {
		t.Fatalf("restart --force: %v", err)
	}
	done := 0
	for _, r := range resp.Results {
		if r.Done {
			done++
		}
	}
	if done != 2 || resp.Results[0].Error == "" {
		t.Errorf("restart --force: %v; want %s failed and the other two done", resp.Results, bad)
	}
	f.w.FailStart(bad, false)
	f.waitStreaming(p.MemberId, bad)
}

// TestRestart_PrimaryRestartedThenAgentDiesGuardFences: right after an
// in-place restart of the primary its agent dies. The fence guard was
// re-armed for the new postmaster (the old deadline named the old PID), so
// the new postmaster is killed before a replica is promoted: never two
// writers.
func TestRestart_PrimaryRestartedThenAgentDiesGuardFences(t *testing.T) {
	f := newFO(t)
	p := f.bootstrap()
	resp, err := f.restartReq(&pb.RestartRequest{Role: pb.RestartRole_RESTART_ROLE_PRIMARY})
	if err != nil || len(resp.Results) != 1 || !resp.Results[0].Done {
		t.Fatalf("restart of the primary: %v, %v", resp, err)
	}
	if f.w.Starts(p.MemberId) != 2 {
		t.Fatalf("primary started %d times, want 2 (bootstrap, restart)", f.w.Starts(p.MemberId))
	}
	n := f.node(p.MemberId)
	f.c.Kill(n)
	np := f.waitPrimary(p.Epoch+1, n.ID)
	killed := f.lastPeriod(n.ID)
	if killed.ToSeq == 0 || killed.ToSeq > f.lastPeriod(np.MemberId).FromSeq {
		t.Fatalf("restarted primary %s stopped at %v, after %s was promoted", n.ID, killed.To, np.MemberId)
	}
}
