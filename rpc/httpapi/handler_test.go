package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestHandler_Methods(t *testing.T) {
	h := newHandler(t, newFake("n1", primaryHealth()), nil)
	tests := []struct {
		method, target string
		want           int
	}{
		{http.MethodPost, "/primary", http.StatusMethodNotAllowed},
		{http.MethodPut, "/cluster", http.StatusMethodNotAllowed},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/primary/", ok},
		{http.MethodOptions, "/", ok},
		{http.MethodOptions, "/replica", down},
		{http.MethodOptions, "/cluster", ok},
		{http.MethodHead, "/patroni", ok},
	}
	for _, tt := range tests {
		if rec := do(t, h, tt.method, tt.target); rec.Code != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.target, rec.Code, tt.want)
		}
	}
}

func TestHandler_StatusJSON(t *testing.T) {
	t.Run("primary", func(t *testing.T) {
		rec := do(t, newHandler(t, newFake("n1", primaryHealth()), nil), http.MethodGet, "/patroni")
		var s statusJSON
		decode(t, rec.Body.String(), &s)
		if rec.Code != ok || s.State != "running" || s.Role != rolePrimary || s.Xlog.GetLocation() != primaryWAL ||
			len(s.Replication) != 2 || s.Patroni.Scope != "demo" || s.Patroni.Name != "n1" || s.Pgquorum.Epoch != epoch ||
			s.DatabaseSystemIdentifier != "7000000000000000001" || s.Pgquorum.RaftState != "Leader" {
			t.Fatalf("got %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("replica answering / gets 503 with the reason", func(t *testing.T) {
		h := newHandler(t, newFake("n3", standbyHealth(primaryWAL-4096)), nil)
		do(t, h, http.MethodGet, "/replica?lag=1MB") // learns the primary's position
		rec := do(t, h, http.MethodGet, "/")
		var s statusJSON
		decode(t, rec.Body.String(), &s)
		if rec.Code != down || s.Role != roleReplica || s.ReplicationState != "streaming" || s.CheckFailed == "" ||
			s.Xlog.GetReplayedLocation() != primaryWAL-4096 || s.Pgquorum.LagBytes == nil || *s.Pgquorum.LagBytes != 4096 {
			t.Fatalf("got %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("witness", func(t *testing.T) {
		rec := do(t, newHandler(t, newFake("w1", nil), nil), http.MethodGet, "/patroni")
		var s statusJSON
		decode(t, rec.Body.String(), &s)
		if rec.Code != ok || s.Role != roleWitness || s.State != "none" || s.Xlog != nil {
			t.Fatalf("got %d %s", rec.Code, rec.Body)
		}
	})
}

func (x *xlogJSON) GetLocation() uint64 {
	if x == nil {
		return 0
	}
	return x.Location
}

func (x *xlogJSON) GetReplayedLocation() uint64 {
	if x == nil {
		return 0
	}
	return x.ReplayedLocation
}

func TestHandler_Cluster(t *testing.T) {
	p := newProbe()
	delete(p.health, "n2:7101")
	rec := do(t, newHandler(t, newFake("n3", standbyHealth(primaryWAL-4096)), p), http.MethodGet, "/cluster")
	var c struct {
		Members []struct {
			Name, Role, State, Host string
			APIURL                  string `json:"api_url"`
			Port                    int
			Lag                     *uint64
			Member                  map[string]any
			Postgres                map[string]any
		}
		Epoch uint64
		Sync  map[string]any
	}
	decode(t, rec.Body.String(), &c)
	if rec.Code != ok || len(c.Members) != 4 || c.Epoch != epoch || c.Sync == nil {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	want := map[string]string{"n1": "leader/running", "n2": "sync_standby/unreachable", "n3": "replica/streaming", "w1": "witness/none"}
	for _, m := range c.Members {
		if got := m.Role + "/" + m.State; got != want[m.Name] {
			t.Errorf("%s: %s, want %s", m.Name, got, want[m.Name])
		}
		if m.Member["id"] != m.Name {
			t.Errorf("%s: member record %v", m.Name, m.Member)
		}
	}
	n1, n3 := c.Members[0], c.Members[2]
	if n1.Host != "10.0.0.1" || n1.Port != 5432 || n1.APIURL != "http://10.0.0.1:8008/patroni" || n1.Lag != nil {
		t.Errorf("n1: %+v", n1)
	}
	if n3.Lag == nil || *n3.Lag != 4096 || n3.Postgres["in_recovery"] != true {
		t.Errorf("n3: %+v", n3)
	}
}

func TestHandler_History(t *testing.T) {
	rec := do(t, newHandler(t, newFake("n2", standbyHealth(primaryWAL)), nil), http.MethodGet, "/history")
	var hist []map[string]any
	decode(t, rec.Body.String(), &hist)
	if rec.Code != ok || len(hist) != 3 || hist[2]["reason"] != "switchover from n2" || hist[1]["new_member"] != "n2" {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
}

func TestHandler_Metrics(t *testing.T) {
	tests := []struct {
		name   string
		node   *fakeNode
		want   []string
		absent []string
	}{
		{name: "primary, raft leader", node: newFake("n1", primaryHealth()), want: []string{
			`pgquorum_node_info{cluster="demo",node_id="n1",version="v0.test"} 1`,
			`pgquorum_role{role="primary"} 1`,
			`pgquorum_role{role="replica"} 0`,
			`pgquorum_epoch 3`,
			`pgquorum_lease_age_seconds 1`,
			`pgquorum_raft_term 4`,
			`pgquorum_raft_state{state="leader"} 1`,
			`pgquorum_raft_commit_index 42`,
			`pgquorum_raft_applied_index 42`,
			`pgquorum_raft_leader_known 1`,
			`pgquorum_postgres_up 1`,
			`pgquorum_postgres_state{state="running"} 1`,
			`pgquorum_postgres_in_recovery 0`,
			`pgquorum_postgres_timeline 2`,
			`pgquorum_postgres_wal_lsn 5.24288e+06`,
			`pgquorum_replica_lag_bytes{application_name="n3",sync_state="async"} 4096`,
			`pgquorum_cluster_members{role="postgres"} 3`,
			`pgquorum_cluster_members{role="witness"} 1`,
			`pgquorum_cluster_members_healthy 3`,
			`pgquorum_failovers_total 1`,
			`pgquorum_primary_changes_total 3`,
			`pgquorum_paused 0`,
			`pgquorum_fenced 0`,
			`go_goroutines`,
		}, absent: []string{"pgquorum_replication_lag_bytes"}},
		{name: "replica", node: newFake("n3", standbyHealth(primaryWAL-4096)), want: []string{
			`pgquorum_role{role="replica"} 1`,
			`pgquorum_raft_state{state="follower"} 1`,
			`pgquorum_postgres_in_recovery 1`,
			`pgquorum_replication_lag_bytes 4096`,
			`pgquorum_sync_standby 0`,
		}, absent: []string{"pgquorum_cluster_members_healthy", "pgquorum_replica_lag_bytes"}},
		{name: "witness", node: newFake("w1", nil), want: []string{
			`pgquorum_role{role="witness"} 1`,
		}, absent: []string{"pgquorum_postgres_up", "pgquorum_postgres_timeline"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(t, newHandler(t, tt.node, nil), http.MethodGet, "/metrics")
			body := rec.Body.String()
			if rec.Code != ok {
				t.Fatalf("got %d %s", rec.Code, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("missing %q", w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(body, a+" ") || strings.Contains(body, a+"{") {
					t.Errorf("unexpected %q", a)
				}
			}
		})
	}
}

func TestHandler_NoProbe(t *testing.T) {
	// Without a Dial nor a Probe the primary's position stays unknown.
	n := newFake("n3", standbyHealth(primaryWAL))
	h := New(n, Config{})
	if rec := do(t, h, http.MethodGet, "/replica?lag=1MB"); rec.Code != down {
		t.Fatalf("no way to learn the primary's position: got %d", rec.Code)
	}
	if rec := do(t, h, http.MethodGet, "/replica"); rec.Code != ok {
		t.Fatalf("got %d", rec.Code)
	}
}

func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
}
