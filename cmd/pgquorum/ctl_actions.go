package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
)

// callFor runs fn like call, but each call may take up to d (or the
// --timeout, if longer): restarts and reinits wait for PostgreSQL.
func (c *ctl) callFor(ctx context.Context, d time.Duration, fn func(context.Context, pb.AdminClient) error) error {
	saved := c.timeout
	c.timeout = max(c.timeout, d)
	defer func() { c.timeout = saved }()
	return c.call(ctx, fn)
}

// printAction prints what an action did, member by member.
func (c *ctl) printAction(resp *pb.ActionResponse) error {
	if c.structured() {
		return c.printJSON(resp)
	}
	if len(resp.Results) > 0 {
		w := c.table("MEMBER", "RESULT", "TOOK")
		for _, r := range resp.Results {
			result, took := "done", "-"
			switch {
			case r.Error != "":
				result = "failed: " + r.Error
			case r.Skipped != "":
				result = "skipped: " + r.Skipped
			}
			if r.Done {
				took = (time.Duration(r.TookMs) * time.Millisecond).String()
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.Member, result, took)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(c.out, resp.Message)
	return err
}

// actionFailed turns member failures into the command's error, so
// scripts see a non-zero exit.
func actionFailed(resp *pb.ActionResponse) error {
	var failed []string
	for _, r := range resp.Results {
		if r.Error != "" {
			failed = append(failed, r.Member)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed on %s", strings.Join(failed, ", "))
	}
	return nil
}

func parseScheduled(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, fmt.Errorf("--scheduled: %q is not an RFC 3339 time (like 2026-11-26T22:00:00Z): %v", s, err)
	}
	return t.UnixMilli(), nil
}

func (c *ctl) restartCmd() *cobra.Command {
	var role, scheduled string
	var pending, force bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "restart [MEMBER...] [--role primary|replica|any] [--pending] [--scheduled TIME] [--force]",
		Short: "Restart PostgreSQL, rolling: replicas first, one at a time, the primary last and in place (it stays primary)",
		Long: `Restart PostgreSQL on the named members (default: all), one at a time: the replicas
first, then the primary, which restarts in place and keeps its lease, so no failover
happens. Each member must be healthy again before the next one restarts. A restart
applies the parameters that need one and clears pending restart. Without --force the
restart stops at the first member that is not healthy before its turn or does not come
back. --scheduled holds it on the Raft leader until then (ctl flush cancels it; a leader
change drops it).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, ok := pb.RestartRole_value["RESTART_ROLE_"+strings.ToUpper(role)]
			if !ok {
				return fmt.Errorf("--role: %q is not primary, replica or any", role)
			}
			at, err := parseScheduled(scheduled)
			if err != nil {
				return err
			}
			req := &pb.RestartRequest{Members: args, Role: pb.RestartRole(r), PendingOnly: pending, ScheduledAtUnixMs: at, Force: force}
			var resp *pb.ActionResponse
			if err := c.callFor(cmd.Context(), wait, func(ctx context.Context, cl pb.AdminClient) error {
				resp, err = cl.Restart(ctx, req)
				return err
			}); err != nil {
				return err
			}
			if err := c.printAction(resp); err != nil {
				return err
			}
			return actionFailed(resp)
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "any", "restart only members with this role: primary, replica or any")
	f.BoolVar(&pending, "pending", false, "restart only members with a pending restart")
	f.StringVar(&scheduled, "scheduled", "", "start at this RFC 3339 time")
	f.BoolVar(&force, "force", false, "go on past members that are not healthy")
	f.DurationVar(&wait, "wait-timeout", 30*time.Minute, "how long the whole rolling restart may take")
	return cmd
}

func (c *ctl) reloadCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reload [MEMBER...]",
		Short: "Make PostgreSQL re-read its configuration on the named members (default: all)",
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *pb.ActionResponse
			if err := c.callFor(cmd.Context(), time.Minute, func(ctx context.Context, cl pb.AdminClient) error {
				var err error
				resp, err = cl.Reload(ctx, &pb.ReloadRequest{Members: args})
				return err
			}); err != nil {
				return err
			}
			if err := c.printAction(resp); err != nil {
				return err
			}
			return actionFailed(resp)
		},
	}
}

func (c *ctl) reinitCmd() *cobra.Command {
	var force bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "reinit MEMBER [--force]",
		Short: "Clone a replica again from the primary (its data directory is moved aside first); refused for the primary",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *pb.ActionResponse
			if err := c.callFor(cmd.Context(), wait, func(ctx context.Context, cl pb.AdminClient) error {
				var err error
				resp, err = cl.Reinit(ctx, &pb.ReinitRequest{Member: args[0], Force: force})
				return err
			}); err != nil {
				return err
			}
			return c.printAction(resp)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "reinit a recorded synchronous standby too")
	cmd.Flags().DurationVar(&wait, "wait-timeout", 2*time.Hour, "how long the clone may take")
	return cmd
}

func (c *ctl) flushCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "flush",
		Short: "Cancel what is scheduled: the planned switchover (unless it started) and the scheduled restart",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp *pb.ActionResponse
			if err := c.call(cmd.Context(), func(ctx context.Context, cl pb.AdminClient) error {
				var err error
				resp, err = cl.Flush(ctx, &pb.FlushRequest{})
				return err
			}); err != nil {
				return err
			}
			return c.printAction(resp)
		},
	}
}

// topologyCmd is patronictl's topology: the primary and its standbys as a
// tree, with lag, and the witnesses.
func (c *ctl) topologyCmd() *cobra.Command {
	return c.stateCmd("topology", "The primary and its standbys as a tree, with state and lag; witnesses", func(ctx context.Context, st *pb.ClusterState) error {
		health := c.probeAll(ctx, st)
		t := topologyOf(st, health)
		if c.structured() {
			return c.printValue(t)
		}
		fmt.Fprintf(c.out, "Cluster: %s  epoch %d%s\n", st.Identity.GetName(), st.Primary.GetEpoch(), pausedNote(st))
		if t.Primary == nil {
			fmt.Fprintln(c.out, "no primary")
		} else {
			fmt.Fprintf(c.out, "%s  primary  %s  TL %s\n", t.Primary.ID, t.Primary.State, t.Primary.Timeline)
			for i, s := range t.Primary.Standbys {
				branch := "├── "
				if i == len(t.Primary.Standbys)-1 {
					branch = "└── "
				}
				lag := "lag -"
				if s.LagBytes != nil {
					lag = fmt.Sprintf("lag %d", *s.LagBytes)
				}
				stream := "not streaming"
				if s.Streaming {
					stream = "streaming"
				}
				fmt.Fprintf(c.out, "%s%s  %s  %s  %s  %s\n", branch, s.ID, s.Role, s.State, stream, lag)
			}
		}
		for _, w := range t.Witnesses {
			fmt.Fprintf(c.out, "%s  witness\n", w)
		}
		return nil
	})
}

// topology is the tree `ctl topology` prints.
type topology struct {
	Cluster   string        `json:"cluster"`
	Epoch     uint64        `json:"epoch"`
	Primary   *topologyNode `json:"primary"`
	Witnesses []string      `json:"witnesses"`
}

type topologyNode struct {
	ID        string          `json:"id"`
	Role      string          `json:"role"`
	State     string          `json:"state"`
	Timeline  string          `json:"timeline"`
	LagBytes  *uint64         `json:"lagBytes"`
	Streaming bool            `json:"streaming"`
	Standbys  []*topologyNode `json:"standbys,omitempty"`
}

func topologyOf(st *pb.ClusterState, health map[string]*pb.PostgresHealth) topology {
	t := topology{Cluster: st.Identity.GetName(), Epoch: st.Primary.GetEpoch(), Witnesses: []string{}}
	sync := map[string]bool{}
	for _, id := range st.Sync.GetMembers() {
		sync[id] = true
	}
	pid := st.Primary.GetMemberId()
	ph := health[pid]
	streaming := map[string]bool{}
	for _, r := range ph.GetReplicas() {
		if r.State == "streaming" {
			streaming[r.ApplicationName] = true
		}
	}
	node := func(m *pb.Member) *topologyNode {
		n := &topologyNode{ID: m.Id, Role: memberRole(st, m, sync), State: "unreachable", Timeline: "-", Streaming: streaming[m.Id]}
		if h := health[m.Id]; h != nil {
			n.State = strings.ToLower(strings.TrimPrefix(h.State.String(), "PG_STATE_"))
			n.Timeline = fmt.Sprint(h.Timeline)
			if l, ok := lagOf(h, ph.GetWalLsn(), n.Role); ok {
				n.LagBytes = &l
			}
		}
		return n
	}
	if m := findMember(st, pid); m != nil {
		t.Primary = node(m)
		t.Primary.Standbys = []*topologyNode{}
	}
	for _, m := range st.Members {
		switch {
		case m.Role == pb.MemberRole_MEMBER_ROLE_WITNESS:
			t.Witnesses = append(t.Witnesses, m.Id)
		case m.Id != pid && t.Primary != nil:
			t.Primary.Standbys = append(t.Primary.Standbys, node(m))
		}
	}
	return t
}

func findMember(st *pb.ClusterState, id string) *pb.Member {
	i := slices.IndexFunc(st.Members, func(m *pb.Member) bool { return m.Id == id })
	if i < 0 {
		return nil
	}
	return st.Members[i]
}

// versionCmd prints the client's version and every member's, as the
// member reports it now (or as it last registered, when unreachable).
func (c *ctl) versionCmd() *cobra.Command {
	return c.stateCmd("version", "The version of this client and of every member", func(ctx context.Context, st *pb.ClusterState) error {
		type memberVersion struct {
			ID        string `json:"id"`
			Version   string `json:"version"`
			Reachable bool   `json:"reachable"`
			Error     string `json:"error,omitempty"`
		}
		var rows []memberVersion
		for _, m := range st.Members {
			row := memberVersion{ID: m.Id, Version: m.Version}
			ns, err := c.memberStatus(ctx, m.GrpcAddr)
			if err == nil {
				row.Version, row.Reachable = ns.Version, true
			} else {
				row.Error = status.Convert(err).Message()
			}
			rows = append(rows, row)
		}
		if c.structured() {
			return c.printValue(map[string]any{"client": version, "members": rows})
		}
		fmt.Fprintf(c.out, "client: pgquorum %s\n", version)
		w := c.table("MEMBER", "VERSION", "")
		for _, r := range rows {
			note := ""
			if !r.Reachable {
				note = "unreachable (" + r.Error + "); version as registered"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.ID, dash(r.Version), note)
		}
		return w.Flush()
	})
}
