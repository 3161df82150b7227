package httpapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"sync"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// statusJSON is the node's status, shaped like Patroni's GET /patroni
// where the fields mean the same, with pgquorum's own under "pgquorum".
type statusJSON struct {
	State                    string            `json:"state"`
	Role                     string            `json:"role"`
	Timeline                 uint32            `json:"timeline,omitempty"`
	Xlog                     *xlogJSON         `json:"xlog,omitempty"`
	ReplicationState         string            `json:"replication_state,omitempty"`
	Replication              []replicationJSON `json:"replication,omitempty"`
	ClusterUnlocked          bool              `json:"cluster_unlocked,omitempty"`
	Pause                    bool              `json:"pause,omitempty"`
	SyncStandby              bool              `json:"sync_standby,omitempty"`
	Tags                     map[string]any    `json:"tags,omitempty"`
	DatabaseSystemIdentifier string            `json:"database_system_identifier,omitempty"`
	PendingRestart           bool              `json:"pending_restart,omitempty"`
	Patroni                  patroniJSON       `json:"patroni"`
	Pgquorum                 pgquorumJSON      `json:"pgquorum"`
	// CheckFailed says why a health check answered 503.
	CheckFailed string `json:"check_failed,omitempty"`
}

type xlogJSON struct {
	Location         uint64 `json:"location,omitempty"`
	ReceivedLocation uint64 `json:"received_location,omitempty"`
	ReplayedLocation uint64 `json:"replayed_location,omitempty"`
}

type replicationJSON struct {
	ApplicationName string `json:"application_name"`
	State           string `json:"state"`
	SyncState       string `json:"sync_state"`
	FlushLsn        uint64 `json:"flush_lsn"`
	ReplayLsn       uint64 `json:"replay_lsn"`
}

type patroniJSON struct {
	Version string `json:"version"`
	Scope   string `json:"scope"`
	Name    string `json:"name"`
}

type pgquorumJSON struct {
	Epoch         uint64   `json:"epoch"`
	Primary       string   `json:"primary,omitempty"`
	AppliedEpoch  uint64   `json:"applied_epoch,omitempty"`
	Fenced        bool     `json:"fenced,omitempty"`
	LeaseAgeMs    int64    `json:"lease_age_ms"`
	LagBytes      *uint64  `json:"lag_bytes,omitempty"`
	Error         string   `json:"error,omitempty"`
	RaftState     string   `json:"raft_state"`
	Term          uint64   `json:"term"`
	Leader        string   `json:"leader,omitempty"`
	CommitIndex   uint64   `json:"commit_index"`
	AppliedIndex  uint64   `json:"applied_index"`
	PendingParams []string `json:"pending_restart_params,omitempty"`
}

// status builds the node's status from f. The replica's lag is the cached
// one: a status never waits for the primary.
func (h *Handler) status(f facts) *statusJSON {
	pg := f.pg
	s := &statusJSON{
		State: pgState(pg), Role: f.role(), Timeline: pg.GetTimeline(),
		ReplicationState: f.replicationState(),
		ClusterUnlocked:  f.st.GetPrimary().GetMemberId() == "" || f.st.GetPrimary().GetReleased(),
		Pause:            f.st.GetPaused(),
		SyncStandby:      f.syncStandby(),
		Tags:             tagMap(f.tags),
		PendingRestart:   pg.GetPendingRestart(),
		Patroni:          patroniJSON{Version: f.version, Scope: f.cluster, Name: f.id},
		Pgquorum: pgquorumJSON{
			Epoch: f.st.GetPrimary().GetEpoch(), Primary: f.st.GetPrimary().GetMemberId(),
			AppliedEpoch: pg.GetAppliedEpoch(), Fenced: f.fenced(), LeaseAgeMs: f.leaseAge.Milliseconds(),
			Error: pg.GetError(), RaftState: f.ns.GetRaftState(), Term: f.ns.GetTerm(), Leader: f.ns.GetLeaderId(),
			CommitIndex: f.ns.GetCommitIndex(), AppliedIndex: f.ns.GetAppliedIndex(),
			PendingParams: pg.GetPendingRestartParams(),
		},
	}
	if f.witness {
		s.State = "none"
	}
	if id := pg.GetSystemIdentifier(); id != 0 {
		s.DatabaseSystemIdentifier = strconv.FormatUint(id, 10)
	}
	if f.running() {
		if pg.GetInRecovery() {
			s.Xlog = &xlogJSON{ReceivedLocation: pg.GetReceiveLsn(), ReplayedLocation: pg.GetReplayLsn()}
			if p, ok := h.wal.peek(f.st); ok && !f.assigned() {
				lag := lagBytes(p, pg.GetReplayLsn())
				s.Pgquorum.LagBytes = &lag
			}
		} else {
			s.Xlog = &xlogJSON{Location: pg.GetWalLsn()}
		}
	}
	for _, r := range pg.GetReplicas() {
		s.Replication = append(s.Replication, replicationJSON{
			ApplicationName: r.GetApplicationName(), State: r.GetState(), SyncState: r.GetSyncState(),
			FlushLsn: r.GetFlushLsn(), ReplayLsn: r.GetReplayLsn(),
		})
	}
	return s
}

// clusterJSON is GET /cluster, shaped like Patroni's.
type clusterJSON struct {
	Members             []memberJSON    `json:"members"`
	Pause               bool            `json:"pause,omitempty"`
	ScheduledSwitchover json.RawMessage `json:"scheduled_switchover,omitempty"`
	Epoch               uint64          `json:"epoch"`
	Sync                json.RawMessage `json:"sync,omitempty"`
	Identity            json.RawMessage `json:"identity,omitempty"`
}

// memberJSON is one member as `pgquorum ctl list` shows it, with Patroni's
// names (role leader, sync_standby, replica; plus witness), then the
// member record and its PostgreSQL health as protojson.
type memberJSON struct {
	Name     string          `json:"name"`
	Role     string          `json:"role"`
	State    string          `json:"state"`
	APIURL   string          `json:"api_url,omitempty"`
	Host     string          `json:"host,omitempty"`
	Port     int             `json:"port,omitempty"`
	Timeline uint32          `json:"timeline,omitempty"`
	Lag      *uint64         `json:"lag,omitempty"`
	Tags     map[string]any  `json:"tags,omitempty"`
	Member   json.RawMessage `json:"member"`
	Postgres json.RawMessage `json:"postgres,omitempty"`
}

// serveCluster probes every PostgreSQL member (this one from its cache)
// and answers the list.
func (h *Handler) serveCluster(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f := gather(ctx, h.node)
	st := f.st
	health := make([]*pb.PostgresHealth, len(st.GetMembers()))
	var wg sync.WaitGroup
	for i, m := range st.GetMembers() {
		switch {
		case m.GetRole() == pb.MemberRole_MEMBER_ROLE_WITNESS:
		case m.GetId() == f.id:
			health[i] = f.pg
		case h.probe != nil && m.GetGrpcAddr() != "":
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, cancel := context.WithTimeout(ctx, h.timeout)
				defer cancel()
				if ph, err := h.probe(pctx, m.GetGrpcAddr()); err == nil {
					health[i] = ph
				}
			}()
		}
	}
	wg.Wait()
	var primaryLSN uint64
	sync := map[string]bool{}
	if f.syncValid() {
		for _, id := range st.GetSync().GetMembers() {
			sync[id] = true
		}
	}
	for i, m := range st.GetMembers() {
		if m.GetId() == st.GetPrimary().GetMemberId() && health[i] != nil {
			primaryLSN = health[i].GetWalLsn()
		}
	}
	out := clusterJSON{Members: []memberJSON{}, Pause: st.GetPaused(), Epoch: st.GetPrimary().GetEpoch(),
		ScheduledSwitchover: protoJSON(st.GetSwitchover()), Sync: protoJSON(st.GetSync()), Identity: protoJSON(st.GetIdentity())}
	for i, m := range st.GetMembers() {
		hl := health[i]
		mj := memberJSON{Name: m.GetId(), Role: "replica", State: "unreachable", Tags: tagMap(m.GetTags()),
			Member: protoJSON(m), Postgres: protoJSON(hl)}
		switch {
		case m.GetRole() == pb.MemberRole_MEMBER_ROLE_WITNESS:
			mj.Role, mj.State = roleWitness, "none"
		case m.GetId() == st.GetPrimary().GetMemberId():
			mj.Role = "leader"
		case sync[m.GetId()]:
			mj.Role = "sync_standby"
		}
		if m.GetHttpAddr() != "" {
			mj.APIURL = "http://" + m.GetHttpAddr() + "/patroni"
		}
		if host, port, err := net.SplitHostPort(m.GetPgAddr()); err == nil {
			mj.Host = host
			mj.Port, _ = strconv.Atoi(port)
		}
		if hl != nil {
			mj.State, mj.Timeline = pgState(hl), hl.GetTimeline()
			if hl.GetState() == pb.PgState_PG_STATE_RUNNING && hl.GetInRecovery() && hl.GetReceiveLsn() > 0 {
				mj.State = "streaming"
			}
			if mj.Role != "leader" && hl.GetInRecovery() && primaryLSN > 0 {
				lag := lagBytes(primaryLSN, hl.GetReplayLsn())
				mj.Lag = &lag
			}
		}
		out.Members = append(out.Members, mj)
	}
	writeJSON(w, http.StatusOK, out)
}

// serveHistory answers the primary changes, oldest first, as protojson.
func (h *Handler) serveHistory(w http.ResponseWriter, r *http.Request) {
	st, err := h.node.State(r.Context(), false)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	out := []json.RawMessage{}
	for _, e := range st.GetHistory() {
		out = append(out, protoJSON(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// syncValid reports that the recorded synchronous standbys belong to the
// current epoch.
func (f facts) syncValid() bool {
	s := f.st.GetSync()
	return s.GetEpoch() != 0 && s.GetEpoch() == f.st.GetPrimary().GetEpoch()
}

// protoJSON marshals m with field names as in the .proto; nil for none.
func protoJSON(m proto.Message) json.RawMessage {
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil
	}
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil
	}
	return data
}
