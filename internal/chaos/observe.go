//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// State returns the committed cluster state as the Raft leader confirms
// it (a linearizable GetState, tried on every node in turn).
func (c *Cluster) State(ctx context.Context) (*pb.ClusterState, error) {
	var errs []error
	for _, n := range c.Nodes {
		cl, err := c.pool.Client(n.GRPCAddr())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cl.GetState(cctx, &pb.GetStateRequest{Linearizable: true})
		cancel()
		if err == nil && st.GetIdentity().GetUuid() != "" {
			return st, nil
		}
		errs = append(errs, fmt.Errorf("%s: %v", n.ID, err))
	}
	return nil, fmt.Errorf("no node answered GetState: %w", errors.Join(errs...))
}

// Primary is the assigned primary ("" when none or released) with its
// epoch, and the recorded synchronous standbys.
func (c *Cluster) Primary(ctx context.Context) (primary string, epoch uint64, sync []string, err error) {
	st, err := c.State(ctx)
	if err != nil {
		return "", 0, nil, err
	}
	p := st.GetPrimary()
	if p.GetReleased() {
		return "", p.GetEpoch(), st.GetSync().GetMembers(), nil
	}
	return p.GetMemberId(), p.GetEpoch(), st.GetSync().GetMembers(), nil
}

// Assignments returns the primary assignments of the FSM history
// (bounded to the newest fsm.HistoryLimit; the campaign polls it every
// cycle and keeps them all), with each member's address and the decision
// time on the campaign clock.
func (c *Cluster) Assignments(ctx context.Context, h *History) ([]Assignment, error) {
	st, err := c.State(ctx)
	if err != nil {
		return nil, err
	}
	var out []Assignment
	for _, e := range st.GetHistory() {
		a := Assignment{Epoch: e.GetEpoch(), Member: e.GetNewMember(), Timeline: e.GetTimeline(),
			At: h.Since(time.UnixMilli(e.GetAtUnixMs()))}
		for _, n := range c.Nodes {
			if n.ID == a.Member {
				a.Server = n.Host.IP
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// Leader is the node that is Raft leader with the highest term among
// those that say so ("" when none answers as leader).
func (c *Cluster) Leader(ctx context.Context) string {
	var leader string
	var term uint64
	for _, n := range c.Nodes {
		cl, err := c.pool.Client(n.GRPCAddr())
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := cl.Status(cctx, &pb.StatusRequest{})
		cancel()
		if err == nil && s.GetRaftState() == "Leader" && s.GetTerm() >= term {
			leader, term = n.ID, s.GetTerm()
		}
	}
	return leader
}

// connect opens a simple-protocol connection (PgBouncer's transaction
// pooling and prepared statements do not mix).
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return pgx.ConnectConfig(ctx, cfg)
}

// nodeQuery runs f on a fresh direct connection to n.
func nodeQuery(ctx context.Context, n *Node, timeout time.Duration, f func(ctx context.Context, conn *pgx.Conn) error) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := connect(cctx, n.DirectDSN())
	if err != nil {
		return fmt.Errorf("%s: %w", n.ID, err)
	}
	defer conn.Close(context.Background())
	if err := f(cctx, conn); err != nil {
		return fmt.Errorf("%s: %w", n.ID, err)
	}
	return nil
}

// InRecovery asks n's PostgreSQL whether it is a standby.
func (c *Cluster) InRecovery(ctx context.Context, n *Node, timeout time.Duration) (bool, error) {
	var rec bool
	err := nodeQuery(ctx, n, timeout, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec)
	})
	return rec, err
}

// Healthy checks that the cluster converged: a primary assigned and
// exposed, its PostgreSQL out of recovery, every other member a standby
// streaming from it, a synchronous standby recorded (not degraded), and
// a write through PgBouncer works. It returns the primary.
func (c *Cluster) Healthy(ctx context.Context) (string, error) {
	st, err := c.State(ctx)
	if err != nil {
		return "", err
	}
	p := st.GetPrimary()
	switch {
	case p.GetMemberId() == "" || p.GetReleased():
		return "", fmt.Errorf("no primary (epoch %d)", p.GetEpoch())
	case !p.GetExposed():
		return "", fmt.Errorf("primary %s epoch %d not exposed", p.GetMemberId(), p.GetEpoch())
	case len(st.GetSync().GetMembers()) == 0 || st.GetSync().GetDegraded():
		return "", fmt.Errorf("no synchronous standby recorded (%v)", st.GetSync())
	}
	for _, n := range c.Nodes {
		if !slices.ContainsFunc(st.GetMembers(), func(m *pb.Member) bool { return m.GetId() == n.ID }) {
			return "", fmt.Errorf("%s is not a member", n.ID)
		}
	}
	primary := c.Node(p.GetMemberId())
	var streaming []string
	err = nodeQuery(ctx, primary, 3*time.Second, func(ctx context.Context, conn *pgx.Conn) error {
		var rec bool
		if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			return err
		}
		if rec {
			return errors.New("assigned primary is in recovery")
		}
		rows, err := conn.Query(ctx, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
		if err != nil {
			return err
		}
		streaming, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return "", err
	}
	for _, n := range c.Nodes {
		if n == primary {
			continue
		}
		if !slices.Contains(streaming, n.ID) {
			return "", fmt.Errorf("%s does not stream from %s (streaming: %v)", n.ID, primary.ID, streaming)
		}
		if rec, err := c.InRecovery(ctx, n, 3*time.Second); err != nil || !rec {
			return "", fmt.Errorf("%s: in recovery %v, %v", n.ID, rec, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := connect(cctx, c.BouncerDSN())
	if err != nil {
		return "", fmt.Errorf("pgbouncer: %w", err)
	}
	defer conn.Close(context.Background())
	var server string
	if err := conn.QueryRow(cctx, "INSERT INTO chaos_probe VALUES (now()) RETURNING inet_server_addr()::text").Scan(&server); err != nil {
		return "", fmt.Errorf("write through pgbouncer: %w", err)
	}
	if hostOf(server) != primary.Host.IP {
		return "", fmt.Errorf("pgbouncer routes to %s, primary %s is %s", server, primary.ID, primary.Host.IP)
	}
	return primary.ID, nil
}

// WaitHealthy polls Healthy until it succeeds or timeout passes.
func (c *Cluster) WaitHealthy(ctx context.Context, timeout time.Duration) (string, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		p, err := c.Healthy(ctx)
		if err == nil {
			return p, time.Since(start), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", time.Since(start), fmt.Errorf("not healthy after %v: %w", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Ctl runs `pgquorum ctl` against every node from the root namespace.
func (c *Cluster) Ctl(ctx context.Context, args ...string) (string, error) {
	return c.CtlVia(ctx, c.Nodes, args...)
}

// AddMember puts n back into the cluster with `ctl members add`, the
// documented way to add a member to the Raft configuration.
func (c *Cluster) AddMember(ctx context.Context, n *Node) error {
	out, err := c.Ctl(ctx, "members", "add", n.ID, "--raft-addr", fmt.Sprintf("%s:%d", n.Host.IP, raftPort),
		"--grpc-addr", n.GRPCAddr(), "--pg-addr", fmt.Sprintf("%s:%d", n.Host.IP, pgPort))
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// CtlVia runs `pgquorum ctl` against the given nodes only (the majority
// side of a partition).
func (c *Cluster) CtlVia(ctx context.Context, nodes []*Node, args ...string) (string, error) {
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.GRPCAddr())
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	full := append([]string{"ctl", "--endpoints", joinComma(eps), "--timeout", "3s", "--insecure"}, args...)
	out, err := execOutput(cctx, c.Bin, full...)
	if err != nil {
		return out, fmt.Errorf("pgquorum ctl %v: %w: %s", args, err, out)
	}
	return out, nil
}
