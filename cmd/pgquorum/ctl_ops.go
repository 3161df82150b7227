package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// listCmd is patronictl's list: members with role, state, timeline, lag.
func (c *ctl) listCmd() *cobra.Command {
	return c.stateCmd("list", "Members with role, PostgreSQL state, timeline, lag and tags", func(ctx context.Context, st *pb.ClusterState) error {
		health := c.probeAll(ctx, st)
		leader, note := c.leaderStatus(ctx, st)
		if c.structured() {
			return c.printValue(listJSON(st, health, leader, note))
		}
		fmt.Fprintf(c.out, "Cluster: %s (%s)  epoch %d  config v%d%s%s\n", st.Identity.GetName(), st.Identity.GetUuid(),
			st.Primary.GetEpoch(), st.Config.GetVersion(), pausedNote(st), restartNote(leader))
		var primaryLSN uint64
		if h := health[st.Primary.GetMemberId()]; h != nil {
			primaryLSN = h.WalLsn
		}
		sync := map[string]bool{}
		for _, id := range st.Sync.GetMembers() {
			sync[id] = true
		}
		w := c.table("MEMBER", "HOST", "ROLE", "STATE", "TL", "LAG", "PENDING RESTART", "TAGS")
		for _, m := range st.Members {
			h := health[m.Id]
			role := memberRole(st, m, sync)
			state, tl, lag, pending := "unreachable", "-", "-", ""
			if h != nil {
				state = strings.ToLower(strings.TrimPrefix(h.State.String(), "PG_STATE_"))
				if h.Error != "" {
					state += " (" + h.Error + ")"
				}
				tl = fmt.Sprint(h.Timeline)
				if l, ok := lagOf(h, primaryLSN, role); ok {
					lag = fmt.Sprint(l)
				}
				if h.PendingRestart {
					pending = "*"
				}
			}
			if m.Role == pb.MemberRole_MEMBER_ROLE_WITNESS {
				state, tl = "-", "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Id, dash(m.PgAddr), role, state, tl, lag, pending, tagString(m.Tags))
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return c.printBouncers(st, leader, note)
	})
}

// restartNote mentions the restart the leader holds for later.
func restartNote(leader *pb.NodeStatus) string {
	r := leader.GetScheduledRestart()
	if r == nil {
		return ""
	}
	who := "every member"
	if len(r.Members) > 0 {
		who = strings.Join(r.Members, ", ")
	}
	return fmt.Sprintf("  [restart of %s scheduled at %s]", who, time.UnixMilli(r.ScheduledAtUnixMs).UTC().Format(time.RFC3339))
}

// memberRole is a member's role as `ctl list` shows it.
func memberRole(st *pb.ClusterState, m *pb.Member, sync map[string]bool) string {
	switch {
	case m.Role == pb.MemberRole_MEMBER_ROLE_WITNESS:
		return "witness"
	case m.Id == st.Primary.GetMemberId():
		return "primary"
	case sync[m.Id]:
		return "sync standby"
	}
	return "replica"
}

// lagOf is how many bytes a standby is behind the primary's WAL position.
func lagOf(h *pb.PostgresHealth, primaryLSN uint64, role string) (uint64, bool) {
	if h == nil || role == "primary" || !h.InRecovery || primaryLSN < h.WalLsn {
		return 0, false
	}
	return primaryLSN - h.WalLsn, true
}

// listJSON is `ctl list -o json|yaml`: the cluster, one object per member
// (its FSM record, its role now, its lag and its health nested), and the
// bouncer agents as the leader knows them.
func listJSON(st *pb.ClusterState, health map[string]*pb.PostgresHealth, leader *pb.NodeStatus, note string) map[string]any {
	sync := map[string]bool{}
	for _, id := range st.Sync.GetMembers() {
		sync[id] = true
	}
	var primaryLSN uint64
	if h := health[st.Primary.GetMemberId()]; h != nil {
		primaryLSN = h.WalLsn
	}
	members := []map[string]any{}
	for _, m := range st.Members {
		obj := protoObject(m)
		role := memberRole(st, m, sync)
		obj["currentRole"] = role
		obj["health"] = nil
		obj["lagBytes"] = nil
		if h := health[m.Id]; h != nil {
			obj["health"] = protoObject(h)
			if l, ok := lagOf(h, primaryLSN, role); ok {
				obj["lagBytes"] = l
			}
		}
		members = append(members, obj)
	}
	agents := []map[string]any{}
	epoch := st.Primary.GetEpoch()
	if leader != nil {
		for _, b := range leader.Bouncers {
			behind := uint64(0)
			if epoch > b.AckedEpoch {
				behind = epoch - b.AckedEpoch
			}
			agents = append(agents, map[string]any{
				"id": b.Id, "appliedEpoch": b.AckedEpoch, "epochsBehind": behind,
				"lastContactMs": b.LastContactMs, "contactLeaseMs": b.ContactLeaseMs, "state": bouncerState(b, epoch),
			})
		}
	} else {
		for _, b := range st.Bouncers {
			agents = append(agents, map[string]any{"id": b.Id, "state": "unknown: " + note})
		}
	}
	return map[string]any{
		"cluster": st.Identity.GetName(), "uuid": st.Identity.GetUuid(), "epoch": epoch,
		"primary": st.Primary.GetMemberId(), "configVersion": st.Config.GetVersion(), "paused": st.Paused,
		"switchover": protoObject(st.Switchover), "scheduledRestart": protoObject(leader.GetScheduledRestart()),
		"members": members, "bouncerAgents": agents,
	}
}

// protoObject is a message as a JSON object (nil for a nil message), so it
// can be nested in other output.
func protoObject(m proto.Message) map[string]any {
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil
	}
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return map[string]any{"error": err.Error()}
	}
	return out
}

// leaderStatus finds the Raft leader's status (only the leader tracks
// bouncer agents' acks); note says why when none answered.
func (c *ctl) leaderStatus(ctx context.Context, st *pb.ClusterState) (*pb.NodeStatus, string) {
	var seen []string
	for _, m := range st.Members {
		cl, err := c.pool.Client(m.GrpcAddr)
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s: %v", m.Id, err))
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		ns, err := cl.Status(cctx, &pb.StatusRequest{})
		cancel()
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s: %s", m.Id, status.Convert(err).Message()))
			continue
		}
		if ns.RaftState == "Leader" {
			return ns, ""
		}
		seen = append(seen, fmt.Sprintf("%s: %s", m.Id, ns.RaftState))
	}
	return nil, "no leader answered (" + strings.Join(seen, "; ") + ")"
}

// bouncerState says whether an agent is up to date with epoch.
func bouncerState(b *pb.BouncerStatus, epoch uint64) string {
	if b.LastContactMs < 0 {
		return "no contact"
	}
	switch {
	case time.Duration(b.LastContactMs) > time.Duration(b.ContactLeaseMs):
		return "lost (self-fenced)"
	case b.AckedEpoch >= epoch:
		return "ok"
	}
	return fmt.Sprintf("fencing (epoch %d)", epoch)
}

// printBouncers adds the BOUNCER AGENTS table under `ctl list`: what the
// leader knows of each registered agent, and how many epochs it is behind.
func (c *ctl) printBouncers(st *pb.ClusterState, leader *pb.NodeStatus, note string) error {
	if len(st.Bouncers) == 0 {
		return nil
	}
	fmt.Fprintln(c.out)
	if leader == nil {
		fmt.Fprintf(c.out, "BOUNCER AGENTS: %d registered; %s, acks unknown\n", len(st.Bouncers), note)
		return nil
	}
	epoch := st.Primary.GetEpoch()
	w := c.table("BOUNCER AGENT", "APPLIED EPOCH", "BEHIND", "LAST CONTACT", "CONTACT LEASE", "STATE")
	for _, b := range leader.Bouncers {
		lease := time.Duration(b.ContactLeaseMs) * time.Millisecond
		last := "never"
		if b.LastContactMs >= 0 {
			last = (time.Duration(b.LastContactMs) * time.Millisecond).Round(time.Millisecond).String() + " ago"
		}
		behind := uint64(0)
		if epoch > b.AckedEpoch {
			behind = epoch - b.AckedEpoch
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\t%s\n", b.Id, b.AckedEpoch, behind, last, lease, bouncerState(b, epoch))
	}
	return w.Flush()
}

func pausedNote(st *pb.ClusterState) string {
	note := ""
	if st.Paused {
		note += "  [PAUSED: no automatic failover]"
	}
	if sw := st.Switchover; sw != nil {
		note += fmt.Sprintf("  [switchover pending: %s -> %s]", sw.From, dash(sw.To))
	}
	return note
}

// probeAll asks every PostgreSQL member for its health, in turn.
func (c *ctl) probeAll(ctx context.Context, st *pb.ClusterState) map[string]*pb.PostgresHealth {
	out := map[string]*pb.PostgresHealth{}
	for _, m := range st.Members {
		if m.Role == pb.MemberRole_MEMBER_ROLE_WITNESS {
			continue
		}
		cl, err := c.pool.Client(m.GrpcAddr)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		h, err := cl.Probe(cctx, &pb.ProbeRequest{})
		cancel()
		if err == nil {
			out[m.Id] = h
		}
	}
	return out
}

func (c *ctl) switchoverCmd() *cobra.Command {
	var leader, candidate, scheduled string
	var cancelIt, wait bool
	cmd := &cobra.Command{
		Use:   "switchover [--candidate MEMBER] [--scheduled TIME]",
		Short: "Hand the primary role over to a replica without losing writes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &pb.SwitchoverRequest{Leader: leader, Candidate: candidate, Cancel: cancelIt}
			if scheduled != "" {
				t, err := time.Parse(time.RFC3339, scheduled)
				if err != nil {
					return fmt.Errorf("--scheduled: %q is not an RFC 3339 time (like 2026-11-26T22:00:00Z): %v", scheduled, err)
				}
				req.ScheduledAtUnixMs = t.UnixMilli()
			}
			before, err := c.state(cmd.Context())
			if err != nil {
				return err
			}
			var resp *pb.SwitchoverResponse
			if err := c.call(cmd.Context(), func(ctx context.Context, cl pb.AdminClient) error {
				resp, err = cl.Switchover(ctx, req)
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintln(c.out, resp.Message)
			if wait && !cancelIt && scheduled == "" {
				return c.waitEpoch(cmd.Context(), before.Primary.GetEpoch())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&leader, "leader", "", "the current primary (refused if it is not)")
	f.StringVar(&candidate, "candidate", "", "member to promote (default: the best one)")
	f.StringVar(&scheduled, "scheduled", "", "start at this RFC 3339 time")
	f.BoolVar(&cancelIt, "cancel", false, "cancel the pending switchover")
	f.BoolVar(&wait, "wait", true, "wait until the new primary is assigned")
	return cmd
}

// waitEpoch waits until a primary with a newer epoch than before exists.
func (c *ctl) waitEpoch(ctx context.Context, before uint64) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st, err := c.state(ctx)
		if err == nil && st.Primary.GetEpoch() > before {
			fmt.Fprintf(c.out, "primary is now %s (epoch %d)\n", st.Primary.MemberId, st.Primary.Epoch)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("no new primary within 60s; see `pgquorum ctl list`")
}

func (c *ctl) failoverCmd() *cobra.Command {
	var candidate string
	cmd := &cobra.Command{
		Use:   "failover --candidate MEMBER",
		Short: "Promote a named replica when there is no healthy primary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *pb.SwitchoverResponse
			err := c.call(cmd.Context(), func(ctx context.Context, cl pb.AdminClient) error {
				var err error
				resp, err = cl.Failover(ctx, &pb.FailoverRequest{Candidate: candidate})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.out, resp.Message)
			return nil
		},
	}
	cmd.Flags().StringVar(&candidate, "candidate", "", "member to promote (required)")
	return cmd
}

func (c *ctl) pauseCmd(paused bool) *cobra.Command {
	use, short := "pause", "Maintenance mode: nothing is started, stopped or promoted automatically"
	if !paused {
		use, short = "resume", "Leave maintenance mode"
	}
	var wait bool
	cmd := &cobra.Command{
		Use:   use + " [--wait]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *pb.SetPausedResponse
			err := c.call(cmd.Context(), func(ctx context.Context, cl pb.AdminClient) error {
				var err error
				resp, err = cl.SetPaused(ctx, &pb.SetPausedRequest{Paused: paused})
				return err
			})
			if err != nil {
				return err
			}
			if wait {
				if err := c.waitApplied(cmd.Context(), resp.Index); err != nil {
					return err
				}
			}
			fmt.Fprintf(c.out, "cluster %sd\n", use)
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until every member has applied the change")
	return cmd
}

// waitApplied waits until every member reports a Raft applied index of
// at least index, so each one acts on the change.
func (c *ctl) waitApplied(ctx context.Context, index uint64) error {
	st, err := c.state(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, m := range st.Members {
		for {
			ns, err := c.memberStatus(ctx, m.GrpcAddr)
			if err == nil && ns.AppliedIndex >= index {
				break
			}
			if err == nil {
				err = fmt.Errorf("applied index %d, want %d", ns.AppliedIndex, index)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("member %s has not applied the change within 60s: %v", m.Id, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func (c *ctl) historyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "history",
		Short: "Every change of primary: epoch, time, old and new member, timeline, reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := c.state(cmd.Context())
			if err != nil {
				return err
			}
			if c.structured() {
				return printList(c, st.History)
			}
			w := c.table("EPOCH", "TIME", "OLD", "NEW", "TL", "REASON")
			for _, h := range st.History {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%s\n", h.Epoch, time.UnixMilli(h.AtUnixMs).UTC().Format(time.RFC3339),
					dash(h.OldMember), h.NewMember, h.Timeline, h.Reason)
			}
			return w.Flush()
		},
	}
}
