package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/rpc"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// ctlEnv names the environment variable with the default endpoints.
const ctlEnv = "PGQUORUMCTL_ENDPOINTS"

// ctl holds the flags shared by every ctl verb.
type ctl struct {
	endpoints []string
	output    string
	timeout   time.Duration
	tls       ctlTLS
	pool      *rpc.Pool
	out       io.Writer
}

func ctlCmd() *cobra.Command {
	c := &ctl{}
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Administer a running cluster over gRPC",
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if len(c.endpoints) == 0 {
				if env := os.Getenv(ctlEnv); env != "" {
					c.endpoints = strings.Split(env, ",")
				}
			}
			if len(c.endpoints) == 0 {
				return fmt.Errorf("--endpoints: no member address given (flag or $%s)", ctlEnv)
			}
			if c.output != "table" && c.output != "json" && c.output != "yaml" {
				return fmt.Errorf("-o: %q is not table, json or yaml", c.output)
			}
			creds, err := c.tls.credentials(cmd.Flags())
			if err != nil {
				return err
			}
			c.pool = rpc.NewPool(creds)
			c.out = cmd.OutOrStdout()
			return nil
		},
		PersistentPostRun: func(*cobra.Command, []string) {
			if c.pool != nil {
				c.pool.Close()
			}
		},
	}
	f := cmd.PersistentFlags()
	f.StringSliceVar(&c.endpoints, "endpoints", nil, "gRPC addresses of members, tried in turn (default $"+ctlEnv+")")
	f.StringVarP(&c.output, "output", "o", "table", "output format: table, json or yaml")
	f.DurationVar(&c.timeout, "timeout", 5*time.Second, "timeout of each call")
	c.tls.flags(f)
	cmd.AddCommand(c.statusCmd(), c.membersCmd(), c.watchCmd(), c.listCmd(), c.switchoverCmd(), c.failoverCmd(),
		c.pauseCmd(true), c.pauseCmd(false), c.historyCmd(), c.showConfigCmd(), c.editConfigCmd(),
		c.restartCmd(), c.reloadCmd(), c.reinitCmd(), c.flushCmd(), c.topologyCmd(), c.versionCmd())
	return cmd
}

// call runs fn against each endpoint in turn until one answers. Only
// "cannot reach" errors move on to the next endpoint; an answer that is an
// error is final.
func (c *ctl) call(ctx context.Context, fn func(context.Context, pb.AdminClient) error) error {
	var errs []error
	for _, ep := range c.endpoints {
		cl, err := c.pool.Client(ep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		err = fn(cctx, cl)
		cancel()
		if err == nil {
			return nil
		}
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			return describe(err)
		}
		errs = append(errs, fmt.Errorf("%s: %s", ep, status.Convert(err).Message()))
	}
	return fmt.Errorf("no member answered: %w", errors.Join(errs...))
}

// describe turns a gRPC error into "CODE: message".
func describe(err error) error {
	st := status.Convert(err)
	return fmt.Errorf("%s: %s", st.Code(), st.Message())
}

// structured reports whether -o asks for JSON or YAML instead of tables.
// memberStatus asks the member at addr for its status, bounded by the
// client's timeout.
func (c *ctl) memberStatus(ctx context.Context, addr string) (*pb.NodeStatus, error) {
	cl, err := c.pool.Client(addr)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return cl.Status(cctx, &pb.StatusRequest{})
}

func (c *ctl) structured() bool { return c.output == "json" || c.output == "yaml" }

// printJSON prints messages in the -o format (JSON or YAML): one message
// as an object, several as one array.
func (c *ctl) printJSON(msgs ...proto.Message) error {
	opts := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}
	if len(msgs) == 1 {
		b, err := opts.Marshal(msgs[0])
		if err != nil {
			return err
		}
		return c.emit(b)
	}
	parts := make([]string, 0, len(msgs))
	for _, m := range msgs {
		b, err := opts.Marshal(m)
		if err != nil {
			return err
		}
		parts = append(parts, string(b))
	}
	return c.emit([]byte("[" + strings.Join(parts, ",\n") + "]"))
}

// printList prints a list of messages as one array in the -o format.
func printList[T proto.Message](c *ctl, items []T) error {
	msgs := make([]proto.Message, len(items))
	for i, m := range items {
		msgs[i] = m
	}
	if len(msgs) == 1 {
		// One item is still a list.
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(msgs[0])
		if err != nil {
			return err
		}
		return c.emit([]byte("[" + string(b) + "]"))
	}
	if len(msgs) == 0 {
		return c.emit([]byte("[]"))
	}
	return c.printJSON(msgs...)
}

// printValue prints a Go value (maps, slices, json.RawMessage of
// messages) in the -o format.
func (c *ctl) printValue(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return c.emit(b)
}

// emit writes JSON text as is for -o json, or converted to YAML for
// -o yaml (keys keep their order; block style throughout).
func (c *ctl) emit(jsonText []byte) error {
	if c.output != "yaml" {
		_, err := fmt.Fprintln(c.out, string(jsonText))
		return err
	}
	y, err := jsonToYAML(jsonText)
	if err != nil {
		return err
	}
	_, err = c.out.Write(y)
	return err
}

var yaml11Bool = map[string]bool{"y": true, "yes": true, "n": true, "no": true, "on": true, "off": true}

// jsonToYAML re-encodes JSON as YAML. JSON is YAML, so the YAML parser
// reads it into nodes in document order; clearing the styles makes the
// encoder write block style and plain scalars.
func jsonToYAML(jsonText []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(jsonText, &n); err != nil {
		return nil, fmt.Errorf("convert to YAML: %w", err)
	}
	// Scalars lose their JSON quotes too: the encoder quotes a string
	// again where YAML would read it as something else ("2", "true").
	// YAML 1.1 readers (PyYAML, for one) take yes/no/on/off for booleans,
	// so such strings keep their quotes.
	var clear func(*yaml.Node)
	clear = func(n *yaml.Node) {
		n.Style = 0
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && yaml11Bool[strings.ToLower(n.Value)] {
			n.Style = yaml.DoubleQuotedStyle
		}
		for _, c := range n.Content {
			clear(c)
		}
	}
	clear(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("convert to YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (c *ctl) table(header ...string) *tabwriter.Writer {
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(header, "\t"))
	return w
}

func (c *ctl) state(ctx context.Context) (*pb.ClusterState, error) {
	var st *pb.ClusterState
	err := c.call(ctx, func(ctx context.Context, cl pb.AdminClient) error {
		var err error
		st, err = cl.GetState(ctx, &pb.GetStateRequest{})
		return err
	})
	return st, err
}

// stateCmd is a read verb without arguments that starts from the cluster
// state.
func (c *ctl) stateCmd(use, short string, run func(ctx context.Context, st *pb.ClusterState) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := c.state(ctx)
			if err != nil {
				return err
			}
			return run(ctx, st)
		},
	}
}

func (c *ctl) statusCmd() *cobra.Command {
	return c.stateCmd("status", "Raft view of every member: role, term, leader, commit/applied index, last contact", func(ctx context.Context, st *pb.ClusterState) error {
		var (
			leader  *pb.NodeStatus
			byID    = map[string]*pb.NodeStatus{}
			missing = map[string]error{}
		)
		for _, m := range st.Members {
			ns, err := c.memberStatus(ctx, m.GrpcAddr)
			if err != nil {
				missing[m.Id] = err
				continue
			}
			byID[m.Id] = ns
			if ns.RaftState == "Leader" {
				leader = ns
			}
		}
		if c.structured() {
			return c.printStatuses(st.Members, byID, missing)
		}
		contact := map[string]int64{}
		if leader != nil {
			for _, p := range leader.Peers {
				contact[p.Id] = p.LastContactMs
			}
		}
		w := c.table("MEMBER", "RAFT", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST CONTACT", "GRPC")
		for _, m := range st.Members {
			ns, ok := byID[m.Id]
			if !ok {
				fmt.Fprintf(w, "%s\tunreachable\t-\t-\t-\t-\t-\t%s (%s)\n", m.Id, m.GrpcAddr, status.Convert(missing[m.Id]).Message())
				continue
			}
			last := "-"
			if ms, ok := contact[m.Id]; ok && ms >= 0 {
				last = (time.Duration(ms) * time.Millisecond).String()
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n", m.Id, ns.RaftState, ns.Term, ns.LeaderId, ns.CommitIndex, ns.AppliedIndex, last, m.GrpcAddr)
		}
		return w.Flush()
	})
}

// unreachableStatus stands in `status -o json` for a member that did not
// answer, so a script sees it with the reason instead of a shorter list.
type unreachableStatus struct {
	NodeID   string `json:"nodeId"`
	GrpcAddr string `json:"grpcAddr"`
	Error    string `json:"error"`
}

// printStatuses prints one entry per member, in member order: its status,
// or an unreachableStatus.
func (c *ctl) printStatuses(members []*pb.Member, byID map[string]*pb.NodeStatus, missing map[string]error) error {
	items := make([]json.RawMessage, 0, len(members))
	for _, m := range members {
		var b []byte
		var err error
		if ns, ok := byID[m.Id]; ok {
			b, err = protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(ns)
		} else {
			b, err = json.Marshal(unreachableStatus{NodeID: m.Id, GrpcAddr: m.GrpcAddr, Error: status.Convert(missing[m.Id]).Message()})
		}
		if err != nil {
			return err
		}
		items = append(items, b)
	}
	return c.printValue(items)
}

func (c *ctl) membersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List members; add or remove one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := c.state(cmd.Context())
			if err != nil {
				return err
			}
			if c.structured() {
				return printList(c, st.Members)
			}
			w := c.table("MEMBER", "ROLE", "SUFFRAGE", "PRIMARY", "RAFT", "GRPC", "POSTGRES", "TAGS")
			for _, m := range st.Members {
				primary := ""
				if m.Id == st.Primary.GetMemberId() {
					primary = fmt.Sprintf("yes (epoch %d)", st.Primary.Epoch)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Id, roleName(m.Role), suffrageName(m.Suffrage),
					primary, m.RaftAddr, m.GrpcAddr, dash(m.PgAddr), tagString(m.Tags))
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(c.membersAddCmd(), c.membersRemoveCmd())
	return cmd
}

func (c *ctl) membersAddCmd() *cobra.Command {
	var raftAddr, grpcAddr, pgAddr, cluster string
	var nonvoter, witness bool
	cmd := &cobra.Command{
		Use:   "add ID --raft-addr HOST:PORT --grpc-addr HOST:PORT",
		Short: "Add a member to the Raft configuration before (or while) it starts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m := &pb.Member{Id: args[0], RaftAddr: raftAddr, GrpcAddr: grpcAddr, PgAddr: pgAddr,
				Role: pb.MemberRole_MEMBER_ROLE_POSTGRES, Suffrage: pb.Suffrage_SUFFRAGE_VOTER, Tags: &pb.Tags{FailoverPriority: 1}}
			if witness {
				m.Role = pb.MemberRole_MEMBER_ROLE_WITNESS
			}
			if nonvoter {
				m.Suffrage = pb.Suffrage_SUFFRAGE_NONVOTER
			}
			if cluster == "" {
				st, err := c.state(cmd.Context())
				if err != nil {
					return err
				}
				cluster = st.Identity.GetName()
			}
			var resp *pb.JoinResponse
			err := c.call(cmd.Context(), func(ctx context.Context, cl pb.AdminClient) error {
				var err error
				// Readmit: an operator's add may bring back a removed member.
				resp, err = cl.Join(ctx, &pb.JoinRequest{ClusterName: cluster, Member: m, Readmit: true})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "member %s added at index %d\n", m.Id, resp.Index)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&raftAddr, "raft-addr", "", "the member's Raft address (required)")
	f.StringVar(&grpcAddr, "grpc-addr", "", "the member's gRPC address (required)")
	f.StringVar(&pgAddr, "pg-addr", "", "the member's PostgreSQL host:port")
	f.StringVar(&cluster, "cluster", "", "cluster name (default: the cluster's own)")
	f.BoolVar(&nonvoter, "nonvoter", false, "add as a Raft non-voter")
	f.BoolVar(&witness, "witness", false, "the member is a witness (votes, runs no PostgreSQL)")
	return cmd
}

func (c *ctl) membersRemoveCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a member; refused when the healthy voters left would not form a quorum, unless --force",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *pb.RemoveMemberResponse
			err := c.call(cmd.Context(), func(ctx context.Context, cl pb.AdminClient) error {
				var err error
				resp, err = cl.RemoveMember(ctx, &pb.RemoveMemberRequest{Id: args[0], Force: force})
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "member %s removed at index %d\n", args[0], resp.Index)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove even if quorum may be lost")
	return cmd
}

func (c *ctl) watchCmd() *cobra.Command {
	var from uint64
	var count int
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Stream cluster changes: a snapshot, then every change (one JSON object per line with -o json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			seen := 0
			for _, ep := range c.endpoints {
				cl, err := c.pool.Client(ep)
				if err != nil {
					continue
				}
				stream, err := cl.Watch(ctx, &pb.WatchRequest{FromIndex: from})
				if err != nil {
					continue
				}
				for {
					ev, err := stream.Recv()
					if err != nil {
						if status.Code(err) == codes.Unavailable {
							break // try the next endpoint, resuming from what we saw
						}
						return describe(err)
					}
					from = ev.Index
					if err := c.printEvent(ev); err != nil {
						return err
					}
					seen++
					if count > 0 && seen >= count {
						return nil
					}
				}
			}
			return fmt.Errorf("no member answered the watch")
		},
	}
	cmd.Flags().Uint64Var(&from, "from-index", 0, "resume after this Raft index (0: start with a snapshot)")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many events (0: run until interrupted)")
	return cmd
}

func (c *ctl) printEvent(ev *pb.WatchEvent) error {
	switch c.output {
	case "json":
		b, err := protojson.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.out, string(b))
		return err
	case "yaml":
		// One YAML document per event.
		if _, err := fmt.Fprintln(c.out, "---"); err != nil {
			return err
		}
		return c.printJSON(ev)
	}
	if s := ev.GetSnapshot(); s != nil {
		_, err := fmt.Fprintf(c.out, "index %d snapshot: cluster %s, %d members, primary %s (epoch %d), config v%d, paused=%v\n",
			ev.Index, s.Identity.GetName(), len(s.Members), dash(s.Primary.GetMemberId()), s.Primary.GetEpoch(), s.Config.GetVersion(), s.Paused)
		return err
	}
	d := ev.GetDelta()
	var parts []string
	for _, m := range d.UpsertedMembers {
		parts = append(parts, "member "+m.Id+" updated")
	}
	for _, id := range d.RemovedMembers {
		parts = append(parts, "member "+id+" removed")
	}
	if d.Primary != nil {
		parts = append(parts, fmt.Sprintf("primary %s epoch %d (%s)", d.Primary.MemberId, d.Primary.Epoch, d.Primary.Reason))
	}
	if d.Config != nil {
		parts = append(parts, fmt.Sprintf("config v%d", d.Config.Version))
	}
	if d.Sync != nil {
		parts = append(parts, fmt.Sprintf("sync standbys %v", d.Sync.Members))
	}
	if d.Paused != nil {
		parts = append(parts, fmt.Sprintf("paused=%v", *d.Paused))
	}
	if d.Identity != nil {
		parts = append(parts, "identity "+d.Identity.Name+" "+d.Identity.Uuid)
	}
	_, err := fmt.Fprintf(c.out, "index %d: %s\n", ev.Index, strings.Join(parts, "; "))
	return err
}

func roleName(r pb.MemberRole) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "MEMBER_ROLE_"))
}

func suffrageName(s pb.Suffrage) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SUFFRAGE_"))
}

func tagString(t *pb.Tags) string {
	var parts []string
	if t.GetNofailover() {
		parts = append(parts, "nofailover")
	}
	if t.GetNoloadbalance() {
		parts = append(parts, "noloadbalance")
	}
	if t.GetClonefrom() {
		parts = append(parts, "clonefrom")
	}
	parts = append(parts, fmt.Sprintf("priority=%d", t.GetFailoverPriority()))
	return strings.Join(parts, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
