package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// State returns the committed cluster state from the first node that
// answers (a gRPC GetState, as `ctl` does).
func (c *Cluster) State() (*pb.ClusterState, error) {
	var errs []error
	for _, n := range c.Nodes {
		if !n.running() {
			continue
		}
		cl, err := c.pool.Client(n.GRPCAddr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cl.GetState(ctx, &pb.GetStateRequest{})
		cancel()
		if err == nil && st.GetIdentity().GetUuid() != "" {
			return st, nil
		}
		errs = append(errs, fmt.Errorf("%s: state %v, err %v", n.ID, st.GetIdentity(), err))
	}
	return nil, fmt.Errorf("no node answered GetState: %w", errors.Join(errs...))
}

// Member is one row of `ctl list -o json`: the member and, unless its
// agent did not answer, its PostgreSQL health.
type Member struct {
	*pb.Member
	Health *pb.PostgresHealth
}

// List runs `ctl list -o json` and parses it.
func (c *Cluster) List() ([]Member, error) {
	out, err := c.Ctl("list", "-o", "json")
	if err != nil {
		return nil, err
	}
	return parseList(out)
}

// parseList reads ctl list's JSON: one object whose members each carry
// their health nested (null when the agent did not answer).
func parseList(out string) ([]Member, error) {
	var doc struct {
		Members []map[string]json.RawMessage `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("ctl list -o json: %w\n%s", err, out)
	}
	lax := protojson.UnmarshalOptions{DiscardUnknown: true}
	var ms []Member
	for _, obj := range doc.Members {
		health := obj["health"]
		delete(obj, "health")
		b, _ := json.Marshal(obj)
		m := &pb.Member{}
		if err := lax.Unmarshal(b, m); err != nil {
			return nil, fmt.Errorf("ctl list member: %w", err)
		}
		row := Member{Member: m}
		if len(health) > 0 && string(health) != "null" {
			row.Health = &pb.PostgresHealth{}
			if err := protojson.Unmarshal(health, row.Health); err != nil {
				return nil, fmt.Errorf("ctl list health of %s: %w", m.Id, err)
			}
		}
		ms = append(ms, row)
	}
	return ms, nil
}

// Primary returns the assigned primary and its epoch ("" when none is
// assigned or its lease was released).
func (c *Cluster) Primary() (string, uint64, error) {
	st, err := c.State()
	if err != nil {
		return "", 0, err
	}
	p := st.GetPrimary()
	if p.GetReleased() {
		return "", p.GetEpoch(), nil
	}
	return p.GetMemberId(), p.GetEpoch(), nil
}

// WaitPrimary waits until a primary is assigned and its PostgreSQL
// accepts a write, and returns it with its epoch.
func (c *Cluster) WaitPrimary(timeout time.Duration) (string, uint64) {
	c.t.Helper()
	var id string
	var epoch uint64
	Eventually(c.t, timeout, "a writable primary", func() error {
		var err error
		id, epoch, err = c.Primary()
		if err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("no primary assigned (epoch %d)", epoch)
		}
		return c.writable(id)
	})
	return id, epoch
}

// writable checks that id's PostgreSQL takes a write.
func (c *Cluster) writable(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := c.DB(ctx, id)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS e2e_probe (id int); TRUNCATE e2e_probe")
	return err
}

// WaitHealthy waits until every running PostgreSQL member converged to
// the current epoch: the assigned primary runs and is not in recovery,
// every other member runs as a standby streaming from it on its
// timeline, and no member reports an error. It returns the primary and
// the epoch.
func (c *Cluster) WaitHealthy(timeout time.Duration) (string, uint64) {
	c.t.Helper()
	var primary string
	var epoch uint64
	Eventually(c.t, timeout, "a healthy cluster", func() error {
		var err error
		primary, epoch, err = c.healthy()
		return err
	})
	return primary, epoch
}

func (c *Cluster) healthy() (string, uint64, error) {
	primary, epoch, err := c.Primary()
	if err != nil {
		return "", 0, err
	}
	if primary == "" {
		return "", 0, errors.New("no primary")
	}
	ms, err := c.List()
	if err != nil {
		return "", 0, err
	}
	var tl uint32
	for _, m := range ms {
		if m.Id == primary && m.Health != nil {
			tl = m.Health.Timeline
		}
	}
	for _, m := range ms {
		if m.Role != pb.MemberRole_MEMBER_ROLE_POSTGRES {
			continue
		}
		h := m.Health
		switch {
		case h == nil:
			return "", 0, fmt.Errorf("%s: agent did not answer", m.Id)
		case h.State != pb.PgState_PG_STATE_RUNNING || h.Error != "":
			return "", 0, fmt.Errorf("%s: %s %s", m.Id, h.State, h.Error)
		case h.AppliedEpoch != epoch:
			return "", 0, fmt.Errorf("%s: applied epoch %d, current %d", m.Id, h.AppliedEpoch, epoch)
		case h.InRecovery != (m.Id != primary):
			return "", 0, fmt.Errorf("%s: in_recovery=%v, primary is %s", m.Id, h.InRecovery, primary)
		case h.Timeline != tl:
			return "", 0, fmt.Errorf("%s: timeline %d, primary's is %d", m.Id, h.Timeline, tl)
		}
	}
	return primary, epoch, c.streaming(primary)
}

// streaming checks that every other PostgreSQL member streams from
// primary (pg_stat_replication, application_name = member ID).
func (c *Cluster) streaming(primary string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	names, err := c.QueryStrings(ctx, primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
	if err != nil {
		return err
	}
	for _, id := range c.PostgresNodes() {
		if id != primary && c.Node(id).running() && !slices.Contains(names, id) {
			return fmt.Errorf("%s does not stream from %s (streaming: %v)", id, primary, names)
		}
	}
	return nil
}

// Switchover asks for a switchover to candidate over gRPC, from this
// process, at the first node that takes the request (as `ctl switchover
// --wait=false` does). The switchover benchmark uses it instead of Ctl:
// starting a pgquorum process costs about 75 ms of CPU on the test
// machines, and the waiting ctl process then polled and exited during
// the very stall being measured, on the two cores the cluster shares.
func (c *Cluster) Switchover(candidate string) error {
	var errs []error
	for _, n := range c.Nodes {
		if !n.running() {
			continue
		}
		cl, err := c.pool.Client(n.GRPCAddr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = cl.Switchover(ctx, &pb.SwitchoverRequest{Candidate: candidate})
		cancel()
		if err == nil {
			return nil
		}
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded {
			return fmt.Errorf("switchover to %s at %s: %w", candidate, n.ID, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.ID, err))
	}
	return fmt.Errorf("no node took the switchover request: %w", errors.Join(errs...))
}
