package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigValidate_Rules(t *testing.T) {
	f := newFixture(t)
	pwFile := f.write(t, "pw", "secret\n")
	tests := []struct {
		name   string
		mutate func(c *Config)
		key    string   // "" = valid
		want   []string // substrings of the problem
	}{
		{"valid fixture", func(c *Config) {}, "", nil},
		{"cluster_name missing", func(c *Config) { c.ClusterName = "" }, "cluster_name", []string{"is required"}},
		{"cluster_name bad charset", func(c *Config) { c.ClusterName = "Demo" }, "cluster_name", []string{`"Demo"`, "not a valid name"}},
		{"cluster_name starts with dash", func(c *Config) { c.ClusterName = "-demo" }, "cluster_name", []string{"not a valid name"}},
		{"cluster_name 63 chars", func(c *Config) { c.ClusterName = strings.Repeat("a", 63) }, "", nil},
		{"cluster_name 64 chars", func(c *Config) { c.ClusterName = strings.Repeat("a", 64) }, "cluster_name", []string{"not a valid name"}},
		{"node_id with underscore and dash", func(c *Config) { c.NodeID = "n_1-a"; c.Bootstrap.InitialCluster = []string{"n_1-a=127.0.0.1:7001"} }, "", nil},
		{"node_id missing", func(c *Config) { c.NodeID = "" }, "node_id", []string{"is required"}},
		{"node_id bad", func(c *Config) { c.NodeID = "n 1" }, "node_id", []string{"not a valid name"}},
		{"data_dir missing", func(c *Config) { c.DataDir = "" }, "data_dir", []string{"is required"}},
		{"data_dir parent missing", func(c *Config) { c.DataDir = "/nope/n1" }, "data_dir", []string{`parent "/nope" does not exist`}},
		{"data_dir is a file", func(c *Config) { c.DataDir = pwFile }, "data_dir", []string{"is not a directory"}},
		{"data_dir exists", func(c *Config) { c.DataDir = f.bin }, "", nil},
		{"role unknown", func(c *Config) { c.Role = "arbiter" }, "role", []string{`"arbiter"`, "postgres|witness"}},
		{"witness needs no postgres", func(c *Config) { c.Role = RoleWitness; c.Postgres = Postgres{} }, "", nil},
		{"witness non-voter", func(c *Config) {
			c.Role, c.Voter = RoleWitness, false
			c.Bootstrap = Bootstrap{Join: []string{"10.0.0.1:7101"}}
		}, "voter", []string{"witness must be a voter"}},
		{"failover_priority negative", func(c *Config) { c.Tags.FailoverPriority = -1 }, "tags.failover_priority", []string{"-1"}},
		{"failover_priority zero", func(c *Config) { c.Tags.FailoverPriority = 0 }, "", nil},
		{"raft.bind_addr missing", func(c *Config) { c.Raft.BindAddr = "" }, "raft.bind_addr", []string{"is required"}},
		{"raft.bind_addr no port", func(c *Config) { c.Raft.BindAddr = "127.0.0.1" }, "raft.bind_addr", []string{`"127.0.0.1" is not host:port`}},
		{"raft.bind_addr bad port", func(c *Config) { c.Raft.BindAddr = "127.0.0.1:70000" }, "raft.bind_addr", []string{"no valid port"}},
		{"raft.bind_addr unspecified without advertise", func(c *Config) { c.Raft.BindAddr = "0.0.0.0:7001" }, "raft.advertise_addr", []string{"is required", "0.0.0.0:7001"}},
		{"raft.bind_addr empty host without advertise", func(c *Config) { c.Raft.BindAddr = ":7001" }, "raft.advertise_addr", []string{"is required"}},
		{"raft.bind_addr unspecified with advertise", func(c *Config) { c.Raft.BindAddr, c.Raft.AdvertiseAddr = "0.0.0.0:7001", "127.0.0.1:7001" }, "", nil},
		{"raft.advertise_addr unspecified", func(c *Config) { c.Raft.AdvertiseAddr = "[::]:7001" }, "raft.advertise_addr", []string{"unspecified address"}},
		{"raft.advertise_addr host name", func(c *Config) {
			c.Raft.AdvertiseAddr = "db1.example.com:7001"
			c.Bootstrap.InitialCluster = []string{"n1=db1.example.com:7001"}
		}, "", nil},
		{"raft.snapshot_threshold zero", func(c *Config) { c.Raft.SnapshotThreshold = 0 }, "raft.snapshot_threshold", []string{"below 1"}},
		{"raft.snapshot_interval short", func(c *Config) { c.Raft.SnapshotInterval = 10 }, "raft.snapshot_interval", []string{"below 1s"}},
		{"raft.snapshot_retain zero", func(c *Config) { c.Raft.SnapshotRetain = 0 }, "raft.snapshot_retain", []string{"below 1"}},
		{"raft.trailing_logs negative", func(c *Config) { c.Raft.TrailingLogs = -1 }, "raft.trailing_logs", []string{"negative"}},
		{"raft.trailing_logs zero", func(c *Config) { c.Raft.TrailingLogs = 0 }, "", nil},
		{"grpc.listen_addr missing", func(c *Config) { c.GRPC.ListenAddr = "" }, "grpc.listen_addr", []string{"is required"}},
		{"grpc.listen_addr unspecified", func(c *Config) { c.GRPC.ListenAddr = "[::]:7101" }, "grpc.advertise_addr", []string{"is required"}},
		{"grpc.advertise_addr unspecified", func(c *Config) { c.GRPC.AdvertiseAddr = "0.0.0.0:7101" }, "grpc.advertise_addr", []string{"unspecified"}},
		{"grpc.advertise_addr bad", func(c *Config) { c.GRPC.AdvertiseAddr = "host" }, "grpc.advertise_addr", []string{"not host:port"}},
		{"http disabled", func(c *Config) { c.HTTP.ListenAddr = "" }, "", nil},
		{"http all interfaces", func(c *Config) { c.HTTP.ListenAddr = "0.0.0.0:8008" }, "", nil},
		{"http bad", func(c *Config) { c.HTTP.ListenAddr = "8008" }, "http.listen_addr", []string{"not host:port"}},
		{"listeners collide", func(c *Config) { c.GRPC.ListenAddr = c.Raft.BindAddr }, "grpc.listen_addr", []string{"is also raft.bind_addr"}},
		{"initial_cluster entry malformed", func(c *Config) { c.Bootstrap.InitialCluster = append(c.Bootstrap.InitialCluster, "n3") }, "bootstrap.initial_cluster", []string{`"n3" is not id=raft_host:port`}},
		{"initial_cluster bad addr", func(c *Config) { c.Bootstrap.InitialCluster = append(c.Bootstrap.InitialCluster, "n3=x") }, "bootstrap.initial_cluster", []string{"not host:port"}},
		{"initial_cluster bad id", func(c *Config) { c.Bootstrap.InitialCluster = append(c.Bootstrap.InitialCluster, "N3=127.0.0.3:7001") }, "bootstrap.initial_cluster", []string{"not a valid node ID"}},
		{"initial_cluster duplicate id", func(c *Config) { c.Bootstrap.InitialCluster = append(c.Bootstrap.InitialCluster, "n2=127.0.0.9:7001") }, "bootstrap.initial_cluster", []string{`"n2" is listed twice`}},
		{"initial_cluster duplicate addr", func(c *Config) { c.Bootstrap.InitialCluster = append(c.Bootstrap.InitialCluster, "n3=127.0.0.2:7001") }, "bootstrap.initial_cluster", []string{`"127.0.0.2:7001" is listed twice`}},
		{"initial_cluster unspecified addr", func(c *Config) { c.Bootstrap.InitialCluster = append(c.Bootstrap.InitialCluster, "n3=0.0.0.0:7001") }, "bootstrap.initial_cluster", []string{"unspecified"}},
		{"initial_cluster without self", func(c *Config) { c.Bootstrap.InitialCluster = []string{"n2=127.0.0.2:7001"} }, "bootstrap.initial_cluster", []string{`does not contain node_id "n1"`}},
		{"initial_cluster without self in join mode", func(c *Config) {
			c.Bootstrap.InitialCluster = []string{"n2=127.0.0.2:7001"}
			c.Bootstrap.Join = []string{"127.0.0.2:7101"}
		}, "", nil},
		{"initial_cluster self with other addr", func(c *Config) { c.Bootstrap.InitialCluster = []string{"n1=127.0.0.1:7009"} }, "bootstrap.initial_cluster", []string{"does not match", "127.0.0.1:7001"}},
		{"no bootstrap at all (restart)", func(c *Config) { c.Bootstrap = Bootstrap{} }, "", nil},
		{"expect negative", func(c *Config) { c.Bootstrap = Bootstrap{Expect: -1} }, "bootstrap.expect", []string{"negative"}},
		{"expect with initial_cluster", func(c *Config) { c.Bootstrap.Expect = 3; c.Bootstrap.Join = []string{"a:1"} }, "bootstrap.expect", []string{"both set"}},
		{"expect without join", func(c *Config) { c.Bootstrap = Bootstrap{Expect: 3} }, "bootstrap.join", []string{"is required with bootstrap.expect 3"}},
		{"expect 1 alone", func(c *Config) { c.Bootstrap = Bootstrap{Expect: 1} }, "", nil},
		{"expect with join", func(c *Config) {
			c.Bootstrap = Bootstrap{Expect: 3, Join: []string{"127.0.0.2:7101", "127.0.0.3:7101"}}
		}, "", nil},
		{"expect with too few peers", func(c *Config) {
			c.Bootstrap = Bootstrap{Expect: 3, Join: []string{"127.0.0.2:7101"}}
		}, "bootstrap.join", []string{"lists 1 peer address(es)", "bootstrap.expect 3 needs the other 2 voters"}},
		{"expect with self counted as a peer", func(c *Config) {
			c.Bootstrap = Bootstrap{Expect: 3, Join: []string{c.GRPCAddr(), "127.0.0.2:7101"}}
		}, "bootstrap.join", []string{"lists 1 peer address(es)"}},
		{"expect with self listed too", func(c *Config) {
			c.Bootstrap = Bootstrap{Expect: 3, Join: []string{c.GRPCAddr(), "127.0.0.2:7101", "127.0.0.3:7101"}}
		}, "", nil},
		{"join bad", func(c *Config) { c.Bootstrap.Join = []string{"nohost"} }, "bootstrap.join", []string{"not host:port"}},
		{"join duplicate", func(c *Config) { c.Bootstrap.Join = []string{"a:1", "a:1"} }, "bootstrap.join", []string{"listed twice"}},
		{"non-voter in initial_cluster", func(c *Config) { c.Voter = false }, "voter", []string{"in bootstrap.initial_cluster"}},
		{"non-voter with expect", func(c *Config) { c.Voter = false; c.Bootstrap = Bootstrap{Expect: 1} }, "voter", []string{"cannot bootstrap"}},
		{"non-voter joining", func(c *Config) { c.Voter = false; c.Bootstrap = Bootstrap{Join: []string{"127.0.0.2:7101"}} }, "", nil},
		{"timing rule", func(c *Config) { c.Timing.LoopWait = 800e6 }, "timing", []string{"loop_wait (800ms) * 3 > ttl (2s)", "at least three lease renewals must fit in one ttl"}},
		{"bin_dir missing", func(c *Config) { c.Postgres.BinDir = "/nope/bin" }, "postgres.bin_dir", []string{"does not exist"}},
		{"bin_dir empty", func(c *Config) { c.Postgres.BinDir = "" }, "postgres.bin_dir", []string{"is required"}},
		{"bin_dir without initdb", func(c *Config) { c.Postgres.BinDir = f.dir }, "postgres.bin_dir", []string{"no executable initdb"}},
		{"bin_dir without pg_rewind", func(c *Config) { c.Postgres.BinDir = f.dir }, "postgres.bin_dir", []string{"no executable pg_rewind"}},
		{"initdb without checksums", func(c *Config) { c.Postgres.Initdb = []string{"--encoding=UTF8"} }, "postgres.initdb", []string{"no --data-checksums", "wal_log_hints"}},
		{"initdb empty", func(c *Config) { c.Postgres.Initdb = []string{} }, "postgres.initdb", []string{"no --data-checksums"}},
		{"initdb with -k", func(c *Config) { c.Postgres.Initdb = []string{"-k", "--locale=C"} }, "", nil},
		{"initdb without checksums, wal_log_hints on", func(c *Config) {
			c.Postgres.Initdb = []string{"--locale=C"}
			c.Postgres.Parameters = map[string]string{"Wal_Log_Hints": "on"}
		}, "", nil},
		{"initdb without checksums, wal_log_hints off", func(c *Config) {
			c.Postgres.Initdb = []string{"--locale=C"}
			c.Postgres.Parameters = map[string]string{"wal_log_hints": "off"}
		}, "postgres.initdb", []string{"no --data-checksums"}},
		{"postgres.data_dir missing", func(c *Config) { c.Postgres.DataDir = "" }, "postgres.data_dir", []string{"is required"}},
		{"postgres.data_dir parent missing", func(c *Config) { c.Postgres.DataDir = "/nope/pg" }, "postgres.data_dir", []string{`parent "/nope" does not exist`}},
		{"postgres.data_dir inside data_dir", func(c *Config) {
			c.DataDir = f.dir
			c.Postgres.DataDir = f.pgdata
		}, "postgres.data_dir", []string{"overlaps data_dir"}},
		{"postgres.data_dir equals data_dir", func(c *Config) { c.Postgres.DataDir = c.DataDir }, "postgres.data_dir", []string{"overlaps"}},
		{"listen_addresses empty", func(c *Config) { c.Postgres.ListenAddresses = "" }, "postgres.listen_addresses", []string{"not a comma-separated list"}},
		{"listen_addresses star needs connect_address", func(c *Config) { c.Postgres.ListenAddresses = "*" }, "postgres.connect_address", []string{"is required"}},
		{"listen_addresses star with connect_address", func(c *Config) { c.Postgres.ListenAddresses, c.Postgres.ConnectAddress = "*", "10.0.0.1:5432" }, "", nil},
		{"listen_addresses list", func(c *Config) { c.Postgres.ListenAddresses = "127.0.0.1, 10.0.0.1" }, "", nil},
		{"connect_address unspecified", func(c *Config) { c.Postgres.ConnectAddress = "0.0.0.0:5432" }, "postgres.connect_address", []string{"unspecified"}},
		{"port zero", func(c *Config) { c.Postgres.Port = 0 }, "postgres.port", []string{"not a port"}},
		{"port too big", func(c *Config) { c.Postgres.Port = 65536 }, "postgres.port", []string{"not a port"}},
		{"socket_dir relative", func(c *Config) { c.Postgres.SocketDir = "run" }, "postgres.socket_dir", []string{"not an absolute path"}},
		{"os_user empty", func(c *Config) { c.Postgres.OSUser = "" }, "postgres.os_user", []string{"is required"}},
		{"superuser username empty", func(c *Config) { c.Postgres.Superuser.Username = "" }, "postgres.superuser.username", []string{"is required"}},
		{"password and password_file", func(c *Config) {
			c.Postgres.Replication = Credentials{Username: "r", Password: "x", PasswordFile: pwFile}
		}, "postgres.replication", []string{"both set"}},
		{"password_file missing", func(c *Config) { c.Postgres.Rewind.PasswordFile = "/nope/pw" }, "postgres.rewind.password_file", []string{`"/nope/pw" does not exist`}},
		{"password_file present", func(c *Config) { c.Postgres.Superuser.PasswordFile = pwFile }, "", nil},
		{"managed parameter", func(c *Config) { c.Postgres.Parameters = map[string]string{"Port": "5433"} }, "postgres.parameters", []string{"Port is managed by pgquorum"}},
		{"bad parameter name", func(c *Config) { c.Postgres.Parameters = map[string]string{"work mem": "1"} }, "postgres.parameters", []string{"not a parameter name"}},
		{"include directive as a parameter", func(c *Config) { c.Postgres.Parameters = map[string]string{"include_dir": "conf.d"} }, "postgres.parameters", []string{"include_dir is managed by pgquorum"}},
		{"hot_standby as a parameter", func(c *Config) { c.Postgres.Parameters = map[string]string{"hot_standby": "off"} }, "postgres.parameters", []string{"hot_standby is managed by pgquorum"}},
		{"parameter twice in other case", func(c *Config) { c.Postgres.Parameters = map[string]string{"work_mem": "1", "Work_Mem": "2"} }, "postgres.parameters", []string{"Work_Mem and work_mem name the same parameter"}},
		{"dotted parameter", func(c *Config) { c.Postgres.Parameters = map[string]string{"pg_stat_statements.max": "1000"} }, "", nil},
		{"log.level", func(c *Config) { c.Log.Level = "trace" }, "log.level", []string{`"trace" is not one of debug|info|warn|error`}},
		{"log.format", func(c *Config) { c.Log.Format = "xml" }, "log.format", []string{"text|json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.valid(t)
			tt.mutate(c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			wantProblem(t, err, tt.key, tt.want...)
		})
	}
}

func TestConfigValidate_AllProblemsAtOnce(t *testing.T) {
	f := newFixture(t)
	c := f.valid(t)
	c.ClusterName = ""
	c.Raft.BindAddr = "127.0.0.1"
	c.DataDir = "/nope/n1"
	c.Timing.LoopWait = 800e6
	err := c.Validate()
	for _, want := range []string{
		`cluster_name: is required`,
		`raft.bind_addr: "127.0.0.1" is not host:port`,
		`data_dir: parent "/nope" does not exist`,
		`timing: loop_wait (800ms) * 3 > ttl (2s): at least three lease renewals must fit in one ttl`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
	if n := len(keyErrors(err)); n < 4 {
		t.Errorf("want at least 4 problems, got %d", n)
	}
}

func TestConfig_DerivedAddresses(t *testing.T) {
	f := newFixture(t)
	c := f.valid(t)
	if got := c.RaftAddr(); got != "127.0.0.1:7001" {
		t.Errorf("RaftAddr = %q", got)
	}
	if got := c.GRPCAddr(); got != "127.0.0.1:7101" {
		t.Errorf("GRPCAddr = %q", got)
	}
	if got := c.PGAddr(); got != "127.0.0.1:5432" {
		t.Errorf("PGAddr = %q", got)
	}
	if got := c.Postgres.SocketDirectory(); got != filepath.Dir(f.pgdata) {
		t.Errorf("SocketDirectory = %q", got)
	}
	c.Raft.AdvertiseAddr, c.GRPC.AdvertiseAddr, c.Postgres.ConnectAddress, c.Postgres.SocketDir = "a:1", "b:2", "c:3", "/run/pg"
	if c.RaftAddr() != "a:1" || c.GRPCAddr() != "b:2" || c.PGAddr() != "c:3" || c.Postgres.SocketDirectory() != "/run/pg" {
		t.Errorf("advertised addresses not used: %q %q %q %q", c.RaftAddr(), c.GRPCAddr(), c.PGAddr(), c.Postgres.SocketDirectory())
	}
	c.Postgres.ConnectAddress, c.Postgres.ListenAddresses, c.Postgres.Port = "", "::1, 10.0.0.1", 5433
	if got := c.PGAddr(); got != "[::1]:5433" {
		t.Errorf("PGAddr = %q", got)
	}
}

func TestBootstrap_Peers(t *testing.T) {
	b := Bootstrap{InitialCluster: []string{"n1=a:1", " n2 = b:2", "bad", "=c:3"}}
	got := b.Peers()
	want := []Peer{{"n1", "a:1"}, {"n2", "b:2"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Peers = %+v, want %+v", got, want)
	}
}

func TestConfig_EnsureDataDir(t *testing.T) {
	f := newFixture(t)
	c := f.valid(t)
	if err := c.EnsureDataDir(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(c.DataDir)
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Fatalf("data_dir not created 0700: %v %v", st.Mode(), err)
	}
	if err := c.EnsureDataDir(); err != nil {
		t.Fatalf("second call: %v", err)
	}
	c.DataDir = filepath.Join(f.dir, "missing", "n1")
	if err := c.EnsureDataDir(); err == nil {
		t.Fatal("created a data_dir whose parent is missing")
	}
}

func TestLog_SlogLevel(t *testing.T) {
	for level, want := range map[string]string{"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR", "odd": "INFO"} {
		if got := (Log{Level: level}).SlogLevel().String(); got != want {
			t.Errorf("%s: got %s, want %s", level, got, want)
		}
	}
}
