package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks the whole configuration and returns every problem at once
// (joined with errors.Join), each a *KeyError wrapping ErrInvalid that names
// the key, the value and the rule. It reads the file system (directories,
// programs, password files) but changes nothing.
func (c *Config) Validate() error {
	var v problems
	checkName(&v, "cluster_name", c.ClusterName)
	checkName(&v, "node_id", c.NodeID)
	checkParentExists(&v, "data_dir", c.DataDir)
	switch c.Role {
	case RolePostgres:
	case RoleWitness:
		if !c.Voter {
			v.addf("voter", "a witness must be a voter: its only job is to vote")
		}
	default:
		v.addf("role", "%q is not one of postgres|witness", string(c.Role))
	}
	if c.Tags.FailoverPriority < 0 {
		v.addf("tags.failover_priority", "%d is negative; use 0 or more", c.Tags.FailoverPriority)
	}
	c.validateListeners(&v)
	c.TLS.validate(&v)
	c.validateRaft(&v)
	c.validateBootstrap(&v)
	c.Timing.validate(&v)
	if c.Role == RolePostgres {
		c.validatePostgres(&v)
	}
	c.Callbacks.validate(&v)
	oneOf(&v, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(&v, "log.format", c.Log.Format, "text", "json")
	return v.err()
}

// validate checks that each callback names an executable file by an
// absolute path (the agent's working directory is not the operator's) and
// that the timeout is sane.
func (cb Callbacks) validate(v *problems) {
	for _, s := range []struct{ key, path string }{
		{"callbacks.on_start", cb.OnStart}, {"callbacks.on_stop", cb.OnStop}, {"callbacks.on_restart", cb.OnRestart},
		{"callbacks.on_reload", cb.OnReload}, {"callbacks.on_role_change", cb.OnRoleChange},
	} {
		if s.path == "" {
			continue
		}
		if !filepath.IsAbs(s.path) {
			v.addf(s.key, "%q is not an absolute path", s.path)
			continue
		}
		fi, err := os.Stat(s.path)
		switch {
		case err != nil:
			v.addf(s.key, "%q: %v", s.path, unwrapPathError(err))
		case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
			v.addf(s.key, "%q is not an executable file", s.path)
		}
	}
	if cb.Timeout < time.Second || cb.Timeout > 10*time.Minute {
		v.addf("callbacks.timeout", "%s is outside 1s to 10m", cb.Timeout)
	}
}

func (c *Config) validateListeners(v *problems) {
	if checkListen(v, "raft.bind_addr", c.Raft.BindAddr, true) && c.Raft.AdvertiseAddr == "" {
		v.addf("raft.advertise_addr", "is required because raft.bind_addr %q listens on all interfaces", c.Raft.BindAddr)
	}
	if c.Raft.AdvertiseAddr != "" {
		checkAdvertise(v, "raft.advertise_addr", c.Raft.AdvertiseAddr)
	}
	if checkListen(v, "grpc.listen_addr", c.GRPC.ListenAddr, true) && c.GRPC.AdvertiseAddr == "" {
		v.addf("grpc.advertise_addr", "is required because grpc.listen_addr %q listens on all interfaces", c.GRPC.ListenAddr)
	}
	if c.GRPC.AdvertiseAddr != "" {
		checkAdvertise(v, "grpc.advertise_addr", c.GRPC.AdvertiseAddr)
	}
	checkListen(v, "http.listen_addr", c.HTTP.ListenAddr, false)
	// Two listeners of this node on one address cannot both start.
	seen := map[string]string{}
	for _, l := range [][2]string{{"raft.bind_addr", c.Raft.BindAddr}, {"grpc.listen_addr", c.GRPC.ListenAddr}, {"http.listen_addr", c.HTTP.ListenAddr}} {
		if l[1] == "" {
			continue
		}
		if other, dup := seen[l[1]]; dup {
			v.addf(l[0], "%q is also %s", l[1], other)
		}
		seen[l[1]] = l[0]
	}
}

func (c *Config) validateRaft(v *problems) {
	r := c.Raft
	if r.SnapshotThreshold < 1 {
		v.addf("raft.snapshot_threshold", "%d is below 1", r.SnapshotThreshold)
	}
	if r.SnapshotInterval < 1e9 {
		v.addf("raft.snapshot_interval", "%s is below 1s", r.SnapshotInterval)
	}
	if r.SnapshotRetain < 1 {
		v.addf("raft.snapshot_retain", "%d is below 1", r.SnapshotRetain)
	}
	if r.TrailingLogs < 0 {
		v.addf("raft.trailing_logs", "%d is negative", r.TrailingLogs)
	}
}

// Peer is one entry of bootstrap.initial_cluster.
type Peer struct {
	// NodeID is the member's node_id.
	NodeID string
	// RaftAddr is the member's Raft address.
	RaftAddr string
}

// Peers parses bootstrap.initial_cluster. Entries that are not id=host:port
// are skipped (Validate refuses them).
func (b Bootstrap) Peers() []Peer {
	var out []Peer
	for _, e := range b.InitialCluster {
		id, addr, ok := strings.Cut(e, "=")
		if ok && id != "" && addr != "" {
			out = append(out, Peer{NodeID: strings.TrimSpace(id), RaftAddr: strings.TrimSpace(addr)})
		}
	}
	return out
}

func (c *Config) validateBootstrap(v *problems) {
	b := c.Bootstrap
	ids, addrs := map[string]bool{}, map[string]bool{}
	self := false
	for _, e := range b.InitialCluster {
		id, addr, ok := strings.Cut(e, "=")
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if !ok {
			v.addf("bootstrap.initial_cluster", "%q is not id=raft_host:port", e)
			continue
		}
		if !nameRE.MatchString(id) {
			v.addf("bootstrap.initial_cluster", "%q: %q is not a valid node ID", e, id)
		}
		if _, err := splitAddr(addr); err != nil {
			v.addf("bootstrap.initial_cluster", "%q: %s", e, err)
		} else if host, _, _ := net.SplitHostPort(addr); unspecified(host) {
			v.addf("bootstrap.initial_cluster", "%q: %q is an unspecified address", e, addr)
		}
		if ids[id] {
			v.addf("bootstrap.initial_cluster", "node ID %q is listed twice", id)
		}
		if addrs[addr] {
			v.addf("bootstrap.initial_cluster", "address %q is listed twice", addr)
		}
		ids[id], addrs[addr] = true, true
		if id == c.NodeID {
			self = true
			if addr != c.RaftAddr() {
				v.addf("bootstrap.initial_cluster", "%q does not match this node's raft address %q", e, c.RaftAddr())
			}
		}
	}
	if len(b.InitialCluster) > 0 && !self && len(b.Join) == 0 {
		v.addf("bootstrap.initial_cluster", "does not contain node_id %q; list this node or set bootstrap.join", c.NodeID)
	}
	if b.Expect < 0 {
		v.addf("bootstrap.expect", "%d is negative", b.Expect)
	}
	if b.Expect > 0 && len(b.InitialCluster) > 0 {
		v.addf("bootstrap.expect", "and bootstrap.initial_cluster are both set; use one")
	}
	if b.Expect > 1 && len(b.Join) == 0 {
		v.addf("bootstrap.join", "is required with bootstrap.expect %d: it lists the peers' gRPC addresses", b.Expect)
	} else if peers := len(without(b.Join, c.GRPCAddr())); b.Expect > 1 && peers < b.Expect-1 {
		// Bootstrap waits for exactly expect voters: with fewer peers
		// listed it would wait forever.
		v.addf("bootstrap.join", "lists %d peer address(es) besides this node; bootstrap.expect %d needs the other %d voters' gRPC addresses",
			peers, b.Expect, b.Expect-1)
	}
	seen := map[string]bool{}
	for _, j := range b.Join {
		if _, err := splitAddr(j); err != nil {
			v.addf("bootstrap.join", "%s", err)
		}
		if seen[j] {
			v.addf("bootstrap.join", "%q is listed twice", j)
		}
		seen[j] = true
	}
	if !c.Voter {
		if self {
			v.addf("voter", "false, but node_id %q is in bootstrap.initial_cluster, whose members are voters", c.NodeID)
		}
		if b.Expect > 0 {
			v.addf("voter", "false, but bootstrap.expect is set: a non-voter cannot bootstrap; use bootstrap.join")
		}
	}
}

// managedParameters are set by pgquorum and cannot be overridden.
var managedParameters = []string{
	"data_directory", "listen_addresses", "port", "primary_conninfo", "primary_slot_name",
	"synchronous_standby_names", "unix_socket_directories", "cluster_name", "hot_standby",
	"recovery_target_timeline", "hba_file", "ident_file", "config_file", "include", "include_if_exists", "include_dir",
}

var parameterRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$`)

// RequiredPrograms are the programs validation requires in
// postgres.bin_dir: the ones pgnode runs (it starts postgres itself, not
// through pg_ctl). Deployment helpers check for the same list.
var RequiredPrograms = []string{"postgres", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata"}

func (c *Config) validatePostgres(v *problems) {
	p := &c.Postgres
	if p.BinDir == "" {
		v.addf("postgres.bin_dir", "is required")
	} else if st, err := os.Stat(p.BinDir); err != nil || !st.IsDir() {
		v.addf("postgres.bin_dir", "%q does not exist or is not a directory", p.BinDir)
	} else {
		for _, prog := range RequiredPrograms {
			st, err := os.Stat(filepath.Join(p.BinDir, prog))
			if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
				v.addf("postgres.bin_dir", "%q has no executable %s", p.BinDir, prog)
			}
		}
	}
	checkParentExists(v, "postgres.data_dir", p.DataDir)
	if p.DataDir != "" && c.DataDir != "" && (within(p.DataDir, c.DataDir) || within(c.DataDir, p.DataDir)) {
		v.addf("postgres.data_dir", "%q overlaps data_dir %q; keep them apart", p.DataDir, c.DataDir)
	}
	hosts := strings.Split(p.ListenAddresses, ",")
	for _, h := range hosts {
		if h = strings.TrimSpace(h); h == "" || strings.ContainsAny(h, " \t") {
			v.addf("postgres.listen_addresses", "%q is not a comma-separated list of hosts", p.ListenAddresses)
			break
		}
	}
	if p.Port < 1 || p.Port > 65535 {
		v.addf("postgres.port", "%d is not a port (1-65535)", p.Port)
	}
	if p.ConnectAddress != "" {
		checkAdvertise(v, "postgres.connect_address", p.ConnectAddress)
	} else if unspecified(strings.TrimSpace(hosts[0])) {
		v.addf("postgres.connect_address", "is required because postgres.listen_addresses %q starts with an unspecified address", p.ListenAddresses)
	}
	if p.SocketDir != "" && !filepath.IsAbs(p.SocketDir) {
		v.addf("postgres.socket_dir", "%q is not an absolute path", p.SocketDir)
	}
	if p.OSUser == "" {
		v.addf("postgres.os_user", "is required")
	}
	validateInitdb(v, p)
	p.Superuser.validate(v, "postgres.superuser", true)
	p.Replication.validate(v, "postgres.replication", true)
	p.Rewind.validate(v, "postgres.rewind", true)
	names := make([]string, 0, len(p.Parameters))
	for name := range p.Parameters {
		names = append(names, name)
	}
	slices.Sort(names)
	lowered := map[string]string{}
	for _, name := range names {
		lower := strings.ToLower(name)
		if other, dup := lowered[lower]; dup {
			v.addf("postgres.parameters", "%s and %s name the same parameter", other, name)
		}
		lowered[lower] = name
		switch {
		case !parameterRE.MatchString(lower):
			v.addf("postgres.parameters", "%q is not a parameter name", name)
		case slices.Contains(managedParameters, lower):
			v.addf("postgres.parameters", "%s is managed by pgquorum; set it through its own key or not at all", name)
		}
	}
}

// validateInitdb refuses an initdb list without data checksums unless
// wal_log_hints is on in the node-local parameters: the list replaces the
// defaults, so leaving out --data-checksums would silently turn checksums
// off, and pg_rewind needs one or the other (docs/FACTS.md).
func validateInitdb(v *problems, p *Postgres) {
	if p.Initdb == nil || slices.ContainsFunc(p.Initdb, func(a string) bool { return a == "-k" || a == "--data-checksums" }) {
		return
	}
	for name, value := range p.Parameters {
		if strings.EqualFold(name, "wal_log_hints") && slices.Contains([]string{"on", "true", "yes", "1"}, strings.ToLower(strings.TrimSpace(value))) {
			return
		}
	}
	v.addf("postgres.initdb", "%q has no --data-checksums (-k): the list replaces the defaults, so checksums would be off; "+
		"add --data-checksums, or set postgres.parameters.wal_log_hints: on to run without them (pg_rewind needs one of the two)", p.Initdb)
}

// Addr returns the host:port others use to reach this PostgreSQL:
// connect_address, or the first host of listen_addresses with port.
func (p *Postgres) Addr() string {
	if p.ConnectAddress != "" {
		return p.ConnectAddress
	}
	host, _, _ := strings.Cut(p.ListenAddresses, ",")
	return net.JoinHostPort(strings.TrimSpace(host), strconv.Itoa(p.Port))
}

// SocketDirectory returns socket_dir, or the parent of data_dir when it is empty.
func (p *Postgres) SocketDirectory() string {
	if p.SocketDir != "" {
		return p.SocketDir
	}
	if p.DataDir == "" {
		return ""
	}
	return filepath.Dir(filepath.Clean(p.DataDir))
}

// EnsureDataDir creates data_dir with mode 0700 if it does not exist. It
// never creates the parent and never changes an existing directory.
func (c *Config) EnsureDataDir() error {
	err := os.Mkdir(c.DataDir, 0o700)
	if err == nil || os.IsExist(err) {
		if st, serr := os.Stat(c.DataDir); serr != nil || !st.IsDir() {
			return fmt.Errorf("config: data_dir %q is not a directory: %w", c.DataDir, ErrInvalid)
		}
		return nil
	}
	return fmt.Errorf("config: create data_dir: %w", err)
}

// without returns the distinct entries of list other than drop.
func without(list []string, drop string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range list {
		if x != drop && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
