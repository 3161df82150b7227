package config

import (
	"log/slog"
	"maps"
	"slices"
	"time"
)

// Role says what a node runs besides its Raft voter or non-voter.
type Role string

const (
	// RolePostgres is a node that runs and manages a local PostgreSQL.
	RolePostgres Role = "postgres"
	// RoleWitness is a node that takes part in the quorum and runs no PostgreSQL.
	RoleWitness Role = "witness"
)

// Config is the configuration of one pgquorum node. The mapstructure tags are
// the YAML keys; each leaf key is also an environment variable and a flag (see
// the package documentation). The doc tags feed docs/configuration.md and the
// flag usage strings.
type Config struct {
	ClusterName string    `mapstructure:"cluster_name" doc:"Name of the cluster; every node of one cluster must use the same name. Required; [a-z0-9][a-z0-9_-]{0,62}."`
	NodeID      string    `mapstructure:"node_id" doc:"This node's ID, unique in the cluster and stable for the node's life. Required; same charset as cluster_name."`
	DataDir     string    `mapstructure:"data_dir" doc:"Directory of the Raft log, stable store, snapshots and the node identity file. Required; its parent must exist; created with mode 0700 if missing."`
	Role        Role      `mapstructure:"role" doc:"postgres (runs and manages a local PostgreSQL) or witness (votes in the quorum, runs no PostgreSQL)."`
	Voter       bool      `mapstructure:"voter" doc:"true: a Raft voter. false: a non-voter that follows the log (must join through bootstrap.join). A witness must be a voter."`
	Tags        Tags      `mapstructure:"tags"`
	Raft        Raft      `mapstructure:"raft"`
	GRPC        GRPC      `mapstructure:"grpc"`
	HTTP        HTTP      `mapstructure:"http"`
	TLS         TLS       `mapstructure:"tls"`
	Bootstrap   Bootstrap `mapstructure:"bootstrap"`
	Timing      Timing    `mapstructure:"timing"`
	Postgres    Postgres  `mapstructure:"postgres"`
	Callbacks   Callbacks `mapstructure:"callbacks"`
	Log         Log       `mapstructure:"log"`
}

// Callbacks are scripts run on PostgreSQL events, with Patroni's arguments:
// the action (on_start, ...), the role (primary or replica) and the cluster
// name. They run one at a time per node, in the background: a failing or
// hanging script is logged and killed after the timeout, and never delays
// the agent (failover included).
type Callbacks struct {
	OnStart      string        `mapstructure:"on_start" doc:"Executable run after the agent started PostgreSQL. Empty = none. Must be an absolute path to an executable file."`
	OnStop       string        `mapstructure:"on_stop" doc:"Executable run after the agent stopped PostgreSQL. Same rules as on_start."`
	OnRestart    string        `mapstructure:"on_restart" doc:"Executable run after an operator's restart (ctl restart). Same rules as on_start."`
	OnReload     string        `mapstructure:"on_reload" doc:"Executable run after a configuration reload (ctl reload). Same rules as on_start."`
	OnRoleChange string        `mapstructure:"on_role_change" doc:"Executable run after this member became primary (promotion) or replica (demotion). Same rules as on_start."`
	Timeout      time.Duration `mapstructure:"timeout" doc:"How long a callback may run before it is killed (with its process group). 1s to 10m."`
}

// Tags are the member's scheduling hints, known from Patroni.
type Tags struct {
	NoFailover       bool `mapstructure:"nofailover" doc:"Never promote this member automatically."`
	NoLoadBalance    bool `mapstructure:"noloadbalance" doc:"Health checks report this member as not available for read traffic."`
	CloneFrom        bool `mapstructure:"clonefrom" doc:"Prefer this member as the source when a new replica is cloned."`
	FailoverPriority int  `mapstructure:"failover_priority" doc:"Among equally good candidates the higher priority is promoted; 0 behaves like nofailover. >= 0."`
}

// Raft holds the Raft transport and log compaction settings. Raft timeouts
// are not here: they are derived from Timing (see Timing.RaftTimeouts).
type Raft struct {
	BindAddr          string        `mapstructure:"bind_addr" doc:"host:port the Raft transport listens on. Required."`
	AdvertiseAddr     string        `mapstructure:"advertise_addr" doc:"host:port other nodes use to reach this node's Raft transport. Default: bind_addr. Must not be an unspecified address (0.0.0.0, ::); required when bind_addr is one."`
	SnapshotThreshold int           `mapstructure:"snapshot_threshold" doc:"Number of new log entries that triggers a Raft snapshot. >= 1."`
	SnapshotInterval  time.Duration `mapstructure:"snapshot_interval" doc:"How often Raft checks whether a snapshot is due. >= 1s."`
	SnapshotRetain    int           `mapstructure:"snapshot_retain" doc:"Number of snapshots kept on disk. >= 1."`
	TrailingLogs      int           `mapstructure:"trailing_logs" doc:"Log entries kept after a snapshot so that slow followers can catch up without a snapshot install. >= 0."`
}

// GRPC holds the gRPC listener (admin API, member RPCs, watch streams).
type GRPC struct {
	ListenAddr    string `mapstructure:"listen_addr" doc:"host:port the gRPC server listens on. Required."`
	AdvertiseAddr string `mapstructure:"advertise_addr" doc:"host:port others use to reach this node's gRPC server. Default: listen_addr; same rules as raft.advertise_addr."`
}

// HTTP holds the health check and metrics listener.
type HTTP struct {
	ListenAddr string `mapstructure:"listen_addr" doc:"host:port of the HTTP health checks (Patroni paths) and /metrics. Empty disables the listener."`
}

// Bootstrap says how a node that has no Raft state yet finds its cluster. A
// node that already has Raft state ignores it.
type Bootstrap struct {
	InitialCluster []string `mapstructure:"initial_cluster" doc:"The founding voters as id=raft_host:port. Must contain node_id unless bootstrap.join is set; IDs and addresses unique. Excludes bootstrap.expect."`
	Expect         int      `mapstructure:"expect" doc:"Bootstrap-expect: wait until exactly this many voters of this cluster have found each other through bootstrap.join (their gRPC addresses), then bootstrap. 0 = off. Excludes bootstrap.initial_cluster."`
	Join           []string `mapstructure:"join" doc:"gRPC host:port addresses of existing members to join through (or, with bootstrap.expect, of the peers to discover)."`
}

// Log configures the process log (log/slog).
type Log struct {
	Level  string `mapstructure:"level" doc:"debug, info, warn or error."`
	Format string `mapstructure:"format" doc:"text or json."`
}

// SlogLevel returns the slog level named by l.Level; unknown names give
// slog.LevelInfo (Validate refuses them).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Postgres configures the local PostgreSQL of a node with role postgres.
type Postgres struct {
	BinDir               string            `mapstructure:"bin_dir" doc:"Directory of the PostgreSQL programs; must contain postgres, initdb, pg_basebackup, pg_rewind and pg_controldata (role postgres)."`
	DataDir              string            `mapstructure:"data_dir" doc:"PostgreSQL data directory. Required for role postgres; its parent must exist; must not overlap data_dir."`
	ListenAddresses      string            `mapstructure:"listen_addresses" doc:"PostgreSQL listen_addresses (comma-separated hosts)."`
	ConnectAddress       string            `mapstructure:"connect_address" doc:"host:port other members and bouncers use to reach this PostgreSQL. Default: the first listen_addresses host and port; required when that host is * or unspecified."`
	Port                 int               `mapstructure:"port" doc:"PostgreSQL port, 1-65535."`
	SocketDir            string            `mapstructure:"socket_dir" doc:"Unix socket directory. Default: the parent of postgres.data_dir."`
	OSUser               string            `mapstructure:"os_user" doc:"OS user that runs PostgreSQL when pgquorum runs as root (PostgreSQL refuses to run as root)."`
	Superuser            Credentials       `mapstructure:"superuser"`
	Replication          Credentials       `mapstructure:"replication"`
	Rewind               Credentials       `mapstructure:"rewind"`
	Initdb               []string          `mapstructure:"initdb" doc:"initdb arguments used when this node initialises a new cluster. They replace the defaults: keep --data-checksums, or set parameters.wal_log_hints to on (pg_rewind needs one of them)."`
	Parameters           map[string]string `mapstructure:"parameters" doc:"Local postgresql.conf overrides (names are case-insensitive and stored in lower case). Parameters pgquorum manages (port, listen_addresses, data_directory, unix_socket_directories, primary_conninfo, primary_slot_name, synchronous_standby_names) are refused."`
	CreateReplicaCommand string            `mapstructure:"create_replica_command" doc:"Command that creates a replica's data directory instead of pg_basebackup. Empty = pg_basebackup."`
}

// Credentials are a PostgreSQL role's name and password. Password and
// PasswordFile exclude each other; use Resolve to get the password.
type Credentials struct {
	Username     string `mapstructure:"username" doc:"Role name."`
	Password     string `mapstructure:"password" doc:"Password (prefer password_file). Never logged."`
	PasswordFile string `mapstructure:"password_file" doc:"File holding the password (trailing newline ignored); must exist. Excludes password."`
}

// Default returns the built-in configuration with the timing of profile p.
// Required keys (cluster_name, node_id, data_dir, raft.bind_addr,
// grpc.listen_addr, postgres.data_dir) are left empty.
func Default(p Profile) (*Config, error) {
	t, err := ProfileTiming(p)
	if err != nil {
		return nil, err
	}
	return &Config{
		Role:  RolePostgres,
		Voter: true,
		Tags:  Tags{FailoverPriority: 1},
		Raft: Raft{
			SnapshotThreshold: 8192,
			SnapshotInterval:  30 * time.Second,
			SnapshotRetain:    2,
			TrailingLogs:      10240,
		},
		HTTP:      HTTP{ListenAddr: "127.0.0.1:8008"},
		Bootstrap: Bootstrap{InitialCluster: []string{}, Join: []string{}},
		Timing:    t,
		Postgres: Postgres{
			BinDir:          "/usr/lib/postgresql/15/bin",
			ListenAddresses: "127.0.0.1",
			Port:            5432,
			OSUser:          "postgres",
			Superuser:       Credentials{Username: "postgres"},
			Replication:     Credentials{Username: "replicator"},
			Rewind:          Credentials{Username: "rewind_user"},
			Initdb:          []string{"--data-checksums", "--encoding=UTF8", "--locale=C"},
			Parameters:      map[string]string{},
		},
		Callbacks: Callbacks{Timeout: 30 * time.Second},
		Log:       Log{Level: "info", Format: "text"},
	}, nil
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	cp := *c
	cp.Bootstrap.InitialCluster = slices.Clone(c.Bootstrap.InitialCluster)
	cp.Bootstrap.Join = slices.Clone(c.Bootstrap.Join)
	cp.Postgres.Initdb = slices.Clone(c.Postgres.Initdb)
	cp.Postgres.Parameters = maps.Clone(c.Postgres.Parameters)
	return &cp
}

// Redacted returns a deep copy of c with every non-empty password replaced by
// "***", for printing and logging.
func (c *Config) Redacted() *Config {
	cp := c.Clone()
	cp.Postgres.Superuser = cp.Postgres.Superuser.redacted()
	cp.Postgres.Replication = cp.Postgres.Replication.redacted()
	cp.Postgres.Rewind = cp.Postgres.Rewind.redacted()
	return cp
}

// RaftAddr returns the address other nodes use for this node's Raft
// transport: raft.advertise_addr, or raft.bind_addr when that is empty.
func (c *Config) RaftAddr() string {
	if c.Raft.AdvertiseAddr != "" {
		return c.Raft.AdvertiseAddr
	}
	return c.Raft.BindAddr
}

// GRPCAddr returns the address others use for this node's gRPC server:
// grpc.advertise_addr, or grpc.listen_addr when that is empty.
func (c *Config) GRPCAddr() string {
	if c.GRPC.AdvertiseAddr != "" {
		return c.GRPC.AdvertiseAddr
	}
	return c.GRPC.ListenAddr
}

// PGAddr returns the host:port others use to reach this node's PostgreSQL:
// postgres.connect_address, or the first host of postgres.listen_addresses
// with postgres.port.
func (c *Config) PGAddr() string {
	return c.Postgres.Addr()
}
