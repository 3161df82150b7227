package httpapi

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgquorum/pgquorum/fsm"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// byteUnits are PostgreSQL's memory units, which Patroni's lag parameter
// takes (1kB = 1024 bytes).
var byteUnits = map[string]float64{
	"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40,
}

// parseBytes reads a byte count such as "1048576", "16kB", "1MB" or
// "1.5 GB". Units are case-insensitive.
func parseBytes(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(s)
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult, ok := byteUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%w: %q is not a byte count (like 1048576, 16kB or 1MB)", ErrBadQuery, s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v*mult >= math.MaxUint64 {
		return 0, fmt.Errorf("%w: %q is not a byte count (like 1048576, 16kB or 1MB)", ErrBadQuery, s)
	}
	return uint64(math.Round(v * mult)), nil
}

// walCache remembers the primary's WAL position, as its agent last
// reported it over gRPC Probe. Followers have no other source: the
// primary's position reaches only the leader, in heartbeats. One probe per
// refresh interval at most; a failed probe keeps the last value of the
// same epoch (as Patroni keeps using the last optime in its DCS).
type walCache struct {
	probe    ProbeFunc
	refresh  time.Duration
	timeout  time.Duration
	fetching sync.Mutex // one probe at a time

	mu     sync.Mutex
	epoch  uint64
	member string
	lsn    uint64
	tried  time.Time // last probe attempt
}

// get returns the primary's WAL position, probing the primary when the
// cached value is older than the refresh interval.
func (c *walCache) get(ctx context.Context, st *pb.ClusterState, now time.Time) (uint64, bool) {
	if lsn, ok, final := c.released(st); final {
		return lsn, ok
	}
	c.fetching.Lock()
	defer c.fetching.Unlock()
	p := st.GetPrimary()
	c.mu.Lock()
	c.reset(p)
	fresh := !c.tried.IsZero() && now.Sub(c.tried) < c.refresh
	lsn, ok := c.lsn, c.lsn > 0
	c.mu.Unlock()
	if fresh || c.probe == nil {
		return lsn, ok
	}
	m := fsm.FindMember(st, p.GetMemberId())
	if m.GetGrpcAddr() == "" {
		return lsn, ok
	}
	pctx, cancel := context.WithTimeout(ctx, c.timeout)
	h, err := c.probe(pctx, m.GetGrpcAddr())
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reset(p)
	c.tried = now
	if err == nil && h.GetState() == pb.PgState_PG_STATE_RUNNING && !h.GetInRecovery() && h.GetWalLsn() > 0 {
		c.lsn = h.GetWalLsn()
	}
	return c.lsn, c.lsn > 0
}

// peek returns the cached position without probing.
func (c *walCache) peek(st *pb.ClusterState) (uint64, bool) {
	if lsn, ok, final := c.released(st); final {
		return lsn, ok
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := st.GetPrimary()
	if p.GetEpoch() != c.epoch || p.GetMemberId() != c.member {
		return 0, false
	}
	return c.lsn, c.lsn > 0
}

// released answers without a probe when the primary gave its lease back
// and recorded where it stopped, or when there is no primary.
func (c *walCache) released(st *pb.ClusterState) (lsn uint64, ok, final bool) {
	p := st.GetPrimary()
	switch {
	case p.GetMemberId() == "":
		return 0, false, true
	case p.GetReleased() && p.GetReleasedLsn() > 0:
		return p.GetReleasedLsn(), true, true
	}
	return 0, false, false
}

// reset forgets what belonged to another epoch. Callers hold mu.
func (c *walCache) reset(p *pb.PrimaryAssignment) {
	if p.GetEpoch() != c.epoch || p.GetMemberId() != c.member {
		c.epoch, c.member = p.GetEpoch(), p.GetMemberId()
		c.lsn, c.tried = 0, time.Time{}
	}
}

// lagBytes is how far pos is behind the primary's position; never
// negative (a cached primary position can be older than pos).
func lagBytes(primary, pos uint64) uint64 {
	if pos >= primary {
		return 0
	}
	return primary - pos
}
