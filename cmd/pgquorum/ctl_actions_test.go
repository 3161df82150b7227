package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/servertest"
	"go.yaml.in/yaml/v3"
)

// fakeCtl runs ctl verbs against three in-process nodes driving fake
// PostgreSQL servers (internal/e2e runs them against real ones).
type fakeCtl struct {
	t *testing.T
	c *servertest.Cluster
	w *servertest.World
}

func newFakeCtl(t *testing.T) *fakeCtl {
	t.Helper()
	w := servertest.NewWorld()
	// Slower Raft timing than servertest's: this test checks ctl, not
	// elections, and a loaded two-core machine under -race otherwise
	// moves the leader (and with it the scheduled restart) now and then.
	c := servertest.New(t, 3, servertest.WithFakePostgres(w), func(o *server.Options) {
		o.Tags = &pb.Tags{FailoverPriority: 1}
		o.Timing.TTL = 5 * time.Second
		o.Timing.RaftHeartbeat, o.Timing.RaftElection, o.Timing.RaftLeaderLease = time.Second, time.Second, 500*time.Millisecond
	})
	f := &fakeCtl{t: t, c: c, w: w}
	c.Eventually(30*time.Second, "a primary and two streaming standbys", func() bool {
		p := f.primary()
		if p == "" || !slices.Equal(w.Accepting(), []string{p}) {
			return false
		}
		for _, n := range c.Nodes {
			if n.ID != p && !w.StreamingFrom(n.ID, p) {
				return false
			}
		}
		st, _ := c.Nodes[0].Srv.State(context.Background(), false)
		return st.Identity.GetSystemIdentifier() != 0
	})
	return f
}

func (f *fakeCtl) primary() string {
	st, _ := f.c.WaitLeader(20*time.Second).Srv.State(context.Background(), false)
	return st.Primary.GetMemberId()
}

func (f *fakeCtl) run(args ...string) (string, error) {
	var eps []string
	for _, n := range f.c.Nodes {
		eps = append(eps, n.GRPCAddr)
	}
	var out bytes.Buffer
	root := rootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"ctl", "--insecure", "--endpoints", strings.Join(eps, ","), "--timeout", "10s"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// must runs a verb that has to succeed, again while no member answers
// (an election under -race on a loaded machine: nothing was done then).
func (f *fakeCtl) must(args ...string) string {
	f.t.Helper()
	out, err := f.run(args...)
	for deadline := time.Now().Add(20 * time.Second); err != nil && strings.Contains(err.Error(), "no member answered") && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		out, err = f.run(args...)
	}
	if err != nil {
		f.t.Fatalf("ctl %v: %v\n%s", args, err, out)
	}
	return out
}

// TestCtl_ActionsAndOutputFormats runs the new verbs and -o yaml through
// the real command line against an in-process cluster.
func TestCtl_ActionsAndOutputFormats(t *testing.T) {
	f := newFakeCtl(t)
	p := f.primary()

	// list -o json: one object per member, health nested.
	var list struct {
		Primary string `json:"primary"`
		Members []struct {
			ID          string         `json:"id"`
			CurrentRole string         `json:"currentRole"`
			Health      map[string]any `json:"health"`
		} `json:"members"`
		BouncerAgents []any `json:"bouncerAgents"`
	}
	out := f.must("list", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list -o json is not one JSON object: %v\n%s", err, out)
	}
	if list.Primary != p || len(list.Members) != 3 || list.BouncerAgents == nil {
		t.Fatalf("list -o json = %+v", list)
	}
	for _, m := range list.Members {
		if m.Health == nil || m.Health["state"] != "PG_STATE_RUNNING" {
			t.Errorf("member %s: health %v", m.ID, m.Health)
		}
		if (m.ID == p) != (m.CurrentRole == "primary") {
			t.Errorf("member %s: currentRole %q (primary is %s)", m.ID, m.CurrentRole, p)
		}
	}
	// The same document in YAML.
	var y map[string]any
	out = f.must("list", "-o", "yaml")
	if err := yaml.Unmarshal([]byte(out), &y); err != nil || y["primary"] != p || len(y["members"].([]any)) != 3 {
		t.Fatalf("list -o yaml: %v\n%s", err, out)
	}
	if strings.Contains(out, "{") {
		t.Errorf("list -o yaml uses flow style:\n%s", out)
	}
	for _, verb := range [][]string{{"history"}, {"status"}, {"members"}, {"show-config"}, {"topology"}, {"version"}} {
		out := f.must(append(verb, "-o", "yaml")...)
		var v any
		if err := yaml.Unmarshal([]byte(out), &v); err != nil || v == nil {
			t.Errorf("%v -o yaml: %v\n%s", verb, err, out)
		}
	}

	out = f.must("topology")
	if !strings.HasPrefix(strings.Split(out, "\n")[1], p+"  primary") || strings.Count(out, "── ") != 2 || strings.Count(out, " streaming") != 2 {
		t.Errorf("topology:\n%s", out)
	}
	if out = f.must("version"); !strings.Contains(out, "client: pgquorum") || strings.Count(out, "test") != 3 {
		t.Errorf("version:\n%s", out)
	}

	if out = f.must("restart", "--role", "replica"); !strings.Contains(out, "restarted 2 of 2 members") {
		t.Errorf("restart --role replica:\n%s", out)
	}
	if out = f.must("reload"); !strings.Contains(out, "reloaded 3 of 3 members") {
		t.Errorf("reload:\n%s", out)
	}
	if out, err := f.run("reinit", p); err == nil || !strings.Contains(err.Error(), "FailedPrecondition") {
		t.Errorf("reinit of the primary: %v\n%s", err, out)
	}
	if out, err := f.run("restart", "--role", "leader"); err == nil || !strings.Contains(err.Error(), "--role") {
		t.Errorf("restart --role leader: %v\n%s", err, out)
	}
	if out, err := f.run("restart", "nope"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("restart of an unknown member: %v\n%s", err, out)
	}
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out = f.must("restart", "--scheduled", later); !strings.Contains(out, "scheduled at") {
		t.Errorf("restart --scheduled:\n%s", out)
	}
	if out = f.must("list"); !strings.Contains(out, "[restart of every member scheduled at "+later+"]") {
		t.Errorf("list does not show the scheduled restart:\n%s", out)
	}
	if out = f.must("flush"); !strings.Contains(out, "scheduled restart of every member") || !strings.Contains(out, "cancelled") {
		t.Errorf("flush:\n%s", out)
	}
	if out = f.must("flush"); !strings.Contains(out, "nothing was scheduled") {
		t.Errorf("second flush:\n%s", out)
	}
	if out = f.must("pause", "--wait"); !strings.Contains(out, "cluster paused") {
		t.Errorf("pause --wait:\n%s", out)
	}
	for _, n := range f.c.Nodes {
		if st, _ := n.Srv.State(context.Background(), false); !st.Paused {
			t.Errorf("%s has not applied the pause after pause --wait", n.ID)
		}
	}
	f.must("resume", "--wait")
	if f.primary() != p {
		t.Errorf("primary moved from %s to %s", p, f.primary())
	}
}

func TestCtl_JSONToYAMLKeepsOrderAndQuotes(t *testing.T) {
	got, err := jsonToYAML([]byte(`{"b": 1, "a": {"on": "on", "list": [1, "2"]}, "empty": []}`))
	if err != nil {
		t.Fatal(err)
	}
	want := "b: 1\na:\n  \"on\": \"on\"\n  list:\n    - 1\n    - \"2\"\nempty: []\n"
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestCompletion_Shells(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		var out bytes.Buffer
		root := rootCmd()
		root.SetOut(&out)
		root.SetArgs([]string{"completion", sh})
		if err := root.Execute(); err != nil || !strings.Contains(out.String(), "pgquorum") {
			t.Errorf("completion %s: %v, %d bytes", sh, err, out.Len())
		}
	}
}
