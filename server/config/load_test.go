package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestLoad_UnknownKey(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		body  string
		key   string
		where string // suffix of KeyError.Where: ":line"
		want  string
	}{
		{"top level", f.yaml("clustername: x\n"), "clustername", ":15", "did you mean cluster_name?"},
		{"nested", strings.Replace(f.yaml(""), "  bind_addr:", "  bindaddr:", 1), "raft.bindaddr", ":5", "did you mean raft.bind_addr?"},
		{"nested credentials", f.yaml("  superuser: {username: postgres, pasword: x}\n"), "postgres.superuser.pasword", ":15", "did you mean postgres.superuser.password?"},
		{"section unknown", f.yaml("metrics:\n  port: 1\n"), "metrics", ":15", "unknown key"},
		{"far from anything", f.yaml("zzzzzzzzz: 1\n"), "zzzzzzzzz", ":15", "unknown key"},
		{"case differs", f.yaml("Log: {level: info}\n"), "Log", ":15", "did you mean log?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := f.write(t, "c.yml", tt.body)
			_, err := Load(p, nil, nil)
			if !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("want ErrUnknownKey, got %v", err)
			}
			wantProblem(t, err, tt.key, p+tt.where, tt.want)
		})
	}
}

func TestLoad_UnknownEnv(t *testing.T) {
	f := newFixture(t)
	p := f.write(t, "c.yml", f.yaml(""))
	_, err := Load(p, nil, []string{"PGQUORUM_RAFT_BINDADDR=127.0.0.1:7001", "PGQUORUM_NOPE=1", "HOME=/root"})
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("want ErrUnknownKey, got %v", err)
	}
	wantProblem(t, err, "PGQUORUM_RAFT_BINDADDR", "environment", "unknown variable", "did you mean PGQUORUM_RAFT_BIND_ADDR?")
	wantProblem(t, err, "PGQUORUM_NOPE", "unknown variable")

	// Variables of the bouncer agent and the config file variable are not unknown.
	if _, err := Load(p, nil, []string{"PGQUORUM_BOUNCER_AGENT_ID=b1", "PGQUORUM_CONFIG=" + p}); err != nil {
		t.Fatalf("bouncer variable refused: %v", err)
	}
}

func TestLoad_Precedence(t *testing.T) {
	f := newFixture(t)
	p := f.write(t, "c.yml", f.yaml("log: {level: warn}\ntags: {failover_priority: 5}\n"))
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--log.level=error"}); err != nil {
		t.Fatal(err)
	}
	env := []string{"PGQUORUM_LOG_LEVEL=debug", "PGQUORUM_TAGS_FAILOVER_PRIORITY=7", "PGQUORUM_LOG_FORMAT=json"}
	tests := []struct {
		name          string
		flags         *pflag.FlagSet
		env           []string
		level, format string
		priority      int
	}{
		{"file over defaults", nil, nil, "warn", "text", 5},
		{"env over file", nil, env, "debug", "json", 7},
		{"flag over env", fs, env, "error", "json", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(p, tt.flags, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Log.Level != tt.level || c.Log.Format != tt.format || c.Tags.FailoverPriority != tt.priority {
				t.Fatalf("got level %q format %q priority %d", c.Log.Level, c.Log.Format, c.Tags.FailoverPriority)
			}
		})
	}
}

func TestLoad_Profiles(t *testing.T) {
	f := newFixture(t)
	flagSet := func(args ...string) *pflag.FlagSet {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		RegisterFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	tests := []struct {
		name  string
		file  string
		env   []string
		flags *pflag.FlagSet
		want  Timing
	}{
		{"built-in default", "", nil, nil, Timing{ProfileDefault, 2 * time.Second, 500 * ms, time.Second, 300 * ms}},
		{"profile in file", "timing: {profile: fast}\n", nil, nil, Timing{ProfileFast, time.Second, 250 * ms, 500 * ms, 200 * ms}},
		{"profile in env", "timing: {profile: fast}\n", []string{"PGQUORUM_TIMING_PROFILE=conservative"}, nil, Timing{ProfileConservative, 10 * time.Second, 2 * time.Second, 4 * time.Second, time.Second}},
		{"profile in flag", "", []string{"PGQUORUM_TIMING_PROFILE=conservative"}, flagSet("--timing.profile=fast"), Timing{ProfileFast, time.Second, 250 * ms, 500 * ms, 200 * ms}},
		{"explicit key overrides profile", "timing: {profile: conservative, ttl: 12s}\n", nil, nil, Timing{ProfileConservative, 12 * time.Second, 2 * time.Second, 4 * time.Second, time.Second}},
		{"env key overrides profile", "timing: {profile: fast}\n", []string{"PGQUORUM_TIMING_SAFETY_MARGIN=100ms"}, nil, Timing{ProfileFast, time.Second, 250 * ms, 500 * ms, 100 * ms}},
		{"flag key overrides profile", "", nil, flagSet("--timing.loop_wait=400ms"), Timing{ProfileDefault, 2 * time.Second, 400 * ms, time.Second, 300 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := f.write(t, "c.yml", f.yaml(tt.file))
			c, err := Load(p, tt.flags, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Timing != tt.want {
				t.Fatalf("got %+v, want %+v", c.Timing, tt.want)
			}
		})
	}
	t.Run("unknown profile", func(t *testing.T) {
		p := f.write(t, "c.yml", f.yaml("timing: {profile: turbo}\n"))
		_, err := Load(p, nil, nil)
		wantProblem(t, err, "timing.profile", `"turbo" is not one of fast|default|conservative`)
	})
	t.Run("profile override that breaks a rule", func(t *testing.T) {
		p := f.write(t, "c.yml", f.yaml("timing: {profile: fast, loop_wait: 500ms}\n"))
		_, err := Load(p, nil, nil)
		wantProblem(t, err, "timing", "loop_wait (500ms) * 3 > ttl (1s)")
	})
}

func TestLoad_SyntaxErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		body  string
		where string
		want  string
	}{
		{"bad indentation", "cluster_name: demo\nraft:\n  bind_addr: a:1\n grpc: x\n", ":3", "YAML syntax error"},
		{"unclosed flow", "cluster_name: demo\nnode_id: n1\ntags: {nofailover: true\n", ":", "YAML syntax error"},
		{"tab indentation", "raft:\n\tbind_addr: a:1\n", ":2", "YAML syntax error"},
		{"two documents", "cluster_name: a\n---\ncluster_name: b\n", ":2", "more than one YAML document"},
		{"top level list", "- a\n- b\n", ":1", "expected a mapping of keys"},
		{"section is scalar", "raft: 5\n", ":1", "raft: expected a mapping of keys"},
		{"list is scalar", "bootstrap: {join: a:1}\n", ":1", "bootstrap.join: expected a list"},
		{"list of mappings", "bootstrap: {join: [{a: 1}]}\n", ":1", "bootstrap.join[0]: expected a single value"},
		{"duplicate key", "cluster_name: a\nnode_id: n1\ncluster_name: b\n", ":3", "duplicate key (first at line 1)"},
		{"duplicate parameter", "postgres:\n  parameters:\n    a: 1\n    a: 2\n", ":4", "duplicate key (first at line 3)"},
		{"bad bool", "voter: yes\n", ":1", `voter: "yes" is not a boolean`},
		{"bad int", "postgres: {port: 54x}\n", ":1", `postgres.port: "54x" is not an integer`},
		{"duration without unit", "timing: {ttl: 2}\n", ":1", `timing.ttl: "2" has no unit`},
		{"bad duration", "raft: {snapshot_interval: soon}\n", ":1", `"soon" is not a duration`},
		{"parameter value mapping", "postgres: {parameters: {a: {b: 1}}}\n", ":1", "postgres.parameters.a: expected a single value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := f.write(t, "c.yml", tt.body)
			_, err := Load(p, nil, nil)
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("want ErrSyntax, got %v", err)
			}
			if !strings.Contains(err.Error(), p+tt.where) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want %q and %q in:\n%v", p+tt.where, tt.want, err)
			}
		})
	}
}

func TestLoad_EnvAndFlagValues(t *testing.T) {
	f := newFixture(t)
	p := f.write(t, "c.yml", f.yaml("  parameters: {work_mem: 4MB, pg_stat_statements.max: '500'}\n"))
	env := []string{
		"PGQUORUM_BOOTSTRAP_INITIAL_CLUSTER=n1=127.0.0.1:7001, n2=127.0.0.2:7001",
		`PGQUORUM_POSTGRES_PARAMETERS="shared_preload_libraries=pg_stat_statements,auto_explain",auto_explain.log_min_duration=1s`,
		"PGQUORUM_VOTER=true",
		"PGQUORUM_RAFT_SNAPSHOT_RETAIN=3",
		"PGQUORUM_HTTP_LISTEN_ADDR=",
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--postgres.initdb=--data-checksums,--locale=C.UTF-8", "--raft.snapshot_interval=1m", "--tags.nofailover"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, fs, env)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"n1=127.0.0.1:7001", "n2=127.0.0.2:7001"}; !reflect.DeepEqual(c.Bootstrap.InitialCluster, want) {
		t.Errorf("initial_cluster = %q", c.Bootstrap.InitialCluster)
	}
	// A map set in the environment replaces the file's map.
	if want := map[string]string{"shared_preload_libraries": "pg_stat_statements,auto_explain", "auto_explain.log_min_duration": "1s"}; !reflect.DeepEqual(c.Postgres.Parameters, want) {
		t.Errorf("parameters = %q", c.Postgres.Parameters)
	}
	if want := []string{"--data-checksums", "--locale=C.UTF-8"}; !reflect.DeepEqual(c.Postgres.Initdb, want) {
		t.Errorf("initdb = %q", c.Postgres.Initdb)
	}
	if c.Raft.SnapshotRetain != 3 || c.Raft.SnapshotInterval != time.Minute || !c.Tags.NoFailover || c.HTTP.ListenAddr != "" {
		t.Errorf("got retain %d interval %s nofailover %v http %q", c.Raft.SnapshotRetain, c.Raft.SnapshotInterval, c.Tags.NoFailover, c.HTTP.ListenAddr)
	}
}

func TestLoad_DottedParametersFromFile(t *testing.T) {
	f := newFixture(t)
	p := f.write(t, "c.yml", f.yaml("  parameters:\n    pg_stat_statements.max: '1000'\n    Work_Mem: 8MB\n"))
	c, err := Load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"pg_stat_statements.max": "1000", "work_mem": "8MB"}; !reflect.DeepEqual(c.Postgres.Parameters, want) {
		t.Fatalf("parameters = %q", c.Postgres.Parameters)
	}
}

func TestLoad_BadEnvAndFlagValues(t *testing.T) {
	f := newFixture(t)
	p := f.write(t, "c.yml", f.yaml(""))
	tests := []struct {
		name string
		env  []string
		args []string
		key  string
		want string
	}{
		{"env bool", []string{"PGQUORUM_VOTER=maybe"}, nil, "voter", `environment PGQUORUM_VOTER: voter: "maybe" is not a boolean`},
		{"env int", []string{"PGQUORUM_POSTGRES_PORT=x"}, nil, "postgres.port", `"x" is not an integer`},
		{"env duration", []string{"PGQUORUM_TIMING_TTL=2"}, nil, "timing.ttl", `"2" has no unit`},
		{"env map", []string{"PGQUORUM_POSTGRES_PARAMETERS=work_mem"}, nil, "postgres.parameters", `"work_mem" is not name=value`},
		{"flag validated", nil, []string{"--raft.bind_addr=nohost"}, "raft.bind_addr", `"nohost" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p, fs, tt.env)
			wantProblem(t, err, tt.key, tt.want)
		})
	}
}

func TestLoad_FileSources(t *testing.T) {
	f := newFixture(t)
	p := f.write(t, "c.yml", f.yaml(""))
	t.Run("path from PGQUORUM_CONFIG", func(t *testing.T) {
		c, err := Load("", nil, []string{"PGQUORUM_CONFIG=" + p})
		if err != nil || c.NodeID != "n1" {
			t.Fatalf("got %v, %v", c, err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(p+".missing", nil, nil)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), p+".missing") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		_, err := Load(f.write(t, "empty.yml", ""), nil, nil)
		wantProblem(t, err, "cluster_name", "is required")
	})
	t.Run("no file, everything from env", func(t *testing.T) {
		env := []string{
			"PGQUORUM_CLUSTER_NAME=demo", "PGQUORUM_NODE_ID=n1", "PGQUORUM_DATA_DIR=" + f.data,
			"PGQUORUM_RAFT_BIND_ADDR=127.0.0.1:7001", "PGQUORUM_GRPC_LISTEN_ADDR=127.0.0.1:7101",
			"PGQUORUM_POSTGRES_BIN_DIR=" + f.bin, "PGQUORUM_POSTGRES_DATA_DIR=" + f.pgdata, "PGQUORUM_TLS_INSECURE=true",
		}
		c, err := Load("", nil, env)
		if err != nil {
			t.Fatal(err)
		}
		if c.ClusterName != "demo" || c.Timing.Profile != ProfileDefault || c.Postgres.Port != 5432 {
			t.Fatalf("got %+v", c)
		}
	})
	t.Run("no file, nothing set", func(t *testing.T) {
		_, err := Load("", nil, nil)
		for _, key := range []string{"cluster_name", "node_id", "data_dir", "raft.bind_addr", "grpc.listen_addr", "postgres.data_dir"} {
			wantProblem(t, err, key, "is required")
		}
	})
}

func TestLoad_Aliases(t *testing.T) {
	f := newFixture(t)
	body := f.yaml("  superuser: &su {username: admin, password: x}\n  rewind: *su\n")
	c, err := Load(f.write(t, "c.yml", body), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Postgres.Rewind.Username != "admin" {
		t.Fatalf("alias not followed: %+v", c.Postgres.Rewind)
	}
}

func TestRegisterFlags_EveryKey(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	RegisterFlags(fs)
	s := nodeSchema()
	n := 0
	fs.VisitAll(func(pf *pflag.Flag) {
		n++
		if s.byKey[pf.Name] == nil {
			t.Errorf("flag --%s is no key", pf.Name)
		}
		if !strings.Contains(pf.Usage, s.envName(pf.Name)) {
			t.Errorf("usage of --%s does not name its variable: %q", pf.Name, pf.Usage)
		}
	})
	secrets := 0
	for _, f := range s.leaves {
		if isSecretKey(f.key) {
			secrets++
			if fs.Lookup(f.key) != nil {
				t.Errorf("--%s would put a password on the command line", f.key)
			}
		}
	}
	if secrets == 0 || n != len(s.leaves)-secrets {
		t.Fatalf("%d flags for %d keys, %d of them passwords", n, len(s.leaves), secrets)
	}
	for _, want := range []string{"raft.bind_addr", "postgres.superuser.password_file", "timing.ttl", "postgres.parameters", "bootstrap.initial_cluster"} {
		if fs.Lookup(want) == nil {
			t.Errorf("no flag --%s", want)
		}
	}
	// Registering twice, or onto a set that has some of the flags, does not panic.
	RegisterFlags(fs)
}

func TestSchema_EnvNames(t *testing.T) {
	s := nodeSchema()
	for key, want := range map[string]string{
		"raft.bind_addr":                   "PGQUORUM_RAFT_BIND_ADDR",
		"postgres.superuser.password_file": "PGQUORUM_POSTGRES_SUPERUSER_PASSWORD_FILE",
		"cluster_name":                     "PGQUORUM_CLUSTER_NAME",
	} {
		if got := s.envName(key); got != want {
			t.Errorf("envName(%s) = %s, want %s", key, got, want)
		}
	}
	// No node variable may be mistaken for a bouncer one.
	for env := range s.byEnv {
		if strings.HasPrefix(env, "PGQUORUM_BOUNCER_") {
			t.Errorf("%s collides with the bouncer prefix", env)
		}
	}
}

func TestLoad_WitnessFromEnv(t *testing.T) {
	f := newFixture(t)
	env := []string{
		"PGQUORUM_CLUSTER_NAME=demo", "PGQUORUM_NODE_ID=w1", "PGQUORUM_DATA_DIR=" + f.data, "PGQUORUM_ROLE=witness",
		"PGQUORUM_RAFT_BIND_ADDR=0.0.0.0:7001", "PGQUORUM_RAFT_ADVERTISE_ADDR=10.0.0.9:7001",
		"PGQUORUM_GRPC_LISTEN_ADDR=127.0.0.1:7101", "PGQUORUM_BOOTSTRAP_JOIN=10.0.0.1:7101,10.0.0.2:7101",
		"PGQUORUM_POSTGRES_BIN_DIR=/nope", "PGQUORUM_TLS_INSECURE=true",
	}
	c, err := Load("", nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Role != RoleWitness || c.RaftAddr() != "10.0.0.9:7001" || len(c.Bootstrap.Join) != 2 {
		t.Fatalf("got %+v", c)
	}
}

func TestLoadBouncer_ClustersFlag(t *testing.T) {
	f := newFixture(t)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	RegisterBouncerFlags(fs)
	if err := fs.Parse([]string{"--clusters=[{name: c2, endpoints: [10.0.0.1:7101], databases: [{name: d2}]}]"}); err != nil {
		t.Fatal(err)
	}
	c, err := LoadBouncer(f.write(t, "b.yml", bouncerYAML(f, "")), fs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Clusters) != 1 || c.Clusters[0].Name != "c2" {
		t.Fatalf("clusters = %+v", c.Clusters)
	}
}
