package pgnode

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Credentials name a database role and its password. Passwords arrive
// already resolved (from files, environment or a secret store).
type Credentials struct {
	Username string
	Password string
}

// Config describes the local PostgreSQL server. Zero values are replaced by
// the defaults documented on each field when New is called.
type Config struct {
	// Name is this member's name. It is the application_name standbys use in
	// primary_conninfo, so it is the name synchronous_standby_names refers to.
	Name string
	// BinDir holds initdb, postgres, pg_basebackup, pg_rewind and
	// pg_controldata. Default /usr/lib/postgresql/15/bin.
	BinDir string
	// DataDir is the cluster's data directory (absolute).
	DataDir string
	// LogFile receives the postmaster's stdout and stderr. It lives outside
	// the data directory so pg_basebackup and pg_rewind neither copy nor
	// clobber it. Default DataDir + ".log".
	LogFile string
	// ListenAddresses is written to listen_addresses. Default "127.0.0.1".
	ListenAddresses string
	// Host is the address other members use to reach this server.
	// Default: the first entry of ListenAddresses.
	Host string
	// Port is the TCP port (and the Unix socket's number). Default 5432.
	Port int
	// SocketDir is unix_socket_directories; pgnode itself connects through
	// it. Default /var/run/postgresql.
	SocketDir string
	// OSUser runs PostgreSQL when the agent runs as root (PostgreSQL refuses
	// to run as root). Ignored otherwise. Default "postgres".
	OSUser string
	// ClusterName is written to cluster_name.
	ClusterName string
	// Superuser is the role pgnode connects as. Default user "postgres".
	Superuser Credentials
	// Replication is the role standbys stream with. Default user "replicator".
	Replication Credentials
	// Rewind is the role pg_rewind connects to the source as. It gets only
	// the grants pg_rewind needs. Default user "rewind_user".
	Rewind Credentials
	// InitdbArgs are passed to initdb. Default --data-checksums
	// --encoding=UTF8 --locale=C.
	InitdbArgs []string
	// Parameters are the cluster-wide dynamic settings applied on every node
	// (SetParameters replaces them at run time).
	Parameters map[string]string
	// AllowedNetworks are the CIDRs other members and clients connect from;
	// pg_hba.conf admits the replication and rewind roles, and everyone
	// else with a password, from them. Default 0.0.0.0/0 and ::/0.
	AllowedNetworks []string
	// HBAExtra lines are written to pg_hba.conf before the managed lines,
	// so they take precedence.
	HBAExtra []string
	// CreateReplicaCommand, when set, replaces pg_basebackup in CloneFrom
	// (pgBackRest, WAL-G, ...). It runs with sh -c as OSUser; the environment
	// carries PGQ_DATA_DIR, PGQ_UPSTREAM_HOST, PGQ_UPSTREAM_PORT,
	// PGQ_UPSTREAM_CONNINFO (without password), PGQ_SLOT_NAME, PGHOST,
	// PGPORT, PGUSER and PGPASSWORD.
	CreateReplicaCommand string
	// SlotPrefix marks the replication slots EnsureSlots manages; slots
	// without it are never created or dropped. Default "pgq_".
	SlotPrefix string
	// StartTimeout bounds waiting for the server to accept connections.
	// Default 60s.
	StartTimeout time.Duration
	// StopTimeout bounds a fast shutdown before pgnode escalates to an
	// immediate one (and then SIGKILL). Default 60s.
	StopTimeout time.Duration
	// ProbeTimeout bounds Probe and the internal queries. Default 3s.
	ProbeTimeout time.Duration
	// PromoteTimeout is passed to pg_promote. Default 60s.
	PromoteTimeout time.Duration
}

// Defaults for Config fields.
const (
	DefaultBinDir    = "/usr/lib/postgresql/15/bin"
	DefaultSocketDir = "/var/run/postgresql"
	DefaultOSUser    = "postgres"
)

// managedParams are the settings pgnode writes itself; SetParameters and
// Config.Parameters must not set them.
var managedParams = map[string]bool{
	"listen_addresses":          true,
	"port":                      true,
	"cluster_name":              true,
	"hot_standby":               true,
	"unix_socket_directories":   true,
	"primary_conninfo":          true,
	"primary_slot_name":         true,
	"recovery_target_timeline":  true,
	"synchronous_standby_names": true,
	"data_directory":            true,
	"hba_file":                  true,
	"ident_file":                true,
	"config_file":               true,
	"include":                   true,
	"include_if_exists":         true,
	"include_dir":               true,
}

var (
	paramNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)
	roleNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	slotNameRE  = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
)

// WithDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.BinDir == "" {
		c.BinDir = DefaultBinDir
	}
	if c.DataDir != "" && c.LogFile == "" {
		c.LogFile = filepath.Clean(c.DataDir) + ".log"
	}
	if c.ListenAddresses == "" {
		c.ListenAddresses = "127.0.0.1"
	}
	if c.Host == "" {
		first := strings.TrimSpace(strings.Split(c.ListenAddresses, ",")[0])
		if first == "*" || first == "0.0.0.0" || first == "::" {
			first = "127.0.0.1"
		}
		c.Host = first
	}
	if c.Port == 0 {
		c.Port = 5432
	}
	if c.SocketDir == "" {
		c.SocketDir = DefaultSocketDir
	}
	if c.OSUser == "" {
		c.OSUser = DefaultOSUser
	}
	if c.Superuser.Username == "" {
		c.Superuser.Username = "postgres"
	}
	if c.Replication.Username == "" {
		c.Replication.Username = "replicator"
	}
	if c.Rewind.Username == "" {
		c.Rewind.Username = "rewind_user"
	}
	if c.InitdbArgs == nil {
		c.InitdbArgs = []string{"--data-checksums", "--encoding=UTF8", "--locale=C"}
	}
	if c.AllowedNetworks == nil {
		c.AllowedNetworks = []string{"0.0.0.0/0", "::/0"}
	}
	if c.SlotPrefix == "" {
		c.SlotPrefix = "pgq_"
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 60 * time.Second
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = 3 * time.Second
	}
	if c.PromoteTimeout == 0 {
		c.PromoteTimeout = 60 * time.Second
	}
	params := make(map[string]string, len(c.Parameters))
	for k, v := range c.Parameters {
		params[k] = v
	}
	c.Parameters = params
	return c
}

// Validate reports the first problem with c (after defaults) as an error
// wrapping ErrInvalidConfig that names the field.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Name == "" {
		return bad("Name is required")
	}
	if c.DataDir == "" || !filepath.IsAbs(c.DataDir) {
		return bad("DataDir %q must be an absolute path", c.DataDir)
	}
	if filepath.Clean(c.DataDir) == "/" {
		return bad("DataDir must not be /")
	}
	if !filepath.IsAbs(c.BinDir) {
		return bad("BinDir %q must be an absolute path", c.BinDir)
	}
	if !filepath.IsAbs(c.SocketDir) {
		return bad("SocketDir %q must be an absolute path", c.SocketDir)
	}
	if l := len(filepath.Join(c.SocketDir, fmt.Sprintf(".s.PGSQL.%d", c.Port))); l > 107 {
		return bad("SocketDir %q is too long for a Unix socket path (%d > 107 bytes)", c.SocketDir, l)
	}
	if !filepath.IsAbs(c.LogFile) {
		return bad("LogFile %q must be an absolute path", c.LogFile)
	}
	if rel, err := filepath.Rel(filepath.Clean(c.DataDir), filepath.Clean(c.LogFile)); err == nil && !strings.HasPrefix(rel, "..") {
		return bad("LogFile %q must be outside DataDir %q", c.LogFile, c.DataDir)
	}
	if c.Port < 1 || c.Port > 65535 {
		return bad("Port %d out of range 1..65535", c.Port)
	}
	if strings.ContainsAny(c.ListenAddresses, "'\\\n") {
		return bad("ListenAddresses %q contains a quote, backslash or newline", c.ListenAddresses)
	}
	if c.Host == "" {
		return bad("Host is required")
	}
	if c.OSUser == "root" {
		return bad("OSUser must not be root: PostgreSQL refuses to run as root")
	}
	for field, cr := range map[string]Credentials{"Superuser": c.Superuser, "Replication": c.Replication, "Rewind": c.Rewind} {
		if !roleNameRE.MatchString(cr.Username) {
			return bad("%s.Username %q is not a plain role name", field, cr.Username)
		}
		if cr.Password == "" {
			return bad("%s.Password is required", field)
		}
	}
	if c.Superuser.Username == c.Replication.Username || c.Superuser.Username == c.Rewind.Username {
		return bad("Superuser.Username %q must differ from the replication and rewind roles", c.Superuser.Username)
	}
	if !slotNameRE.MatchString(c.SlotPrefix) {
		return bad("SlotPrefix %q must be lower-case letters, digits and underscores", c.SlotPrefix)
	}
	for _, n := range c.AllowedNetworks {
		if _, _, err := net.ParseCIDR(n); err != nil {
			return bad("AllowedNetworks entry %q: %v", n, err)
		}
	}
	for _, l := range c.HBAExtra {
		if strings.ContainsAny(l, "\n\r") {
			return bad("HBAExtra line %q contains a newline", l)
		}
	}
	if err := validateParams(c.Parameters); err != nil {
		return fmt.Errorf("%w: Parameters: %w", ErrInvalidConfig, err)
	}
	for name, d := range map[string]time.Duration{"StartTimeout": c.StartTimeout, "StopTimeout": c.StopTimeout, "ProbeTimeout": c.ProbeTimeout, "PromoteTimeout": c.PromoteTimeout} {
		if d < 0 {
			return bad("%s must not be negative", name)
		}
	}
	if c.PromoteTimeout < time.Second {
		return bad("PromoteTimeout %s must be at least 1s", c.PromoteTimeout)
	}
	return nil
}

// validateParams rejects names pgnode manages and names or values that
// cannot be written safely to a configuration file.
func validateParams(params map[string]string) error {
	for k, v := range params {
		name := strings.ToLower(k)
		if !paramNameRE.MatchString(k) {
			return fmt.Errorf("%w: %q is not a valid parameter name", ErrInvalidParameter, k)
		}
		if managedParams[name] {
			return fmt.Errorf("%w: %q is managed by pgquorum", ErrInvalidParameter, k)
		}
		if strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("%w: value of %q contains a newline or NUL", ErrInvalidParameter, k)
		}
	}
	return nil
}

// SlotName returns the replication slot name for member: the prefix
// followed by the member name lower-cased, with characters a slot name
// cannot hold replaced by underscores, cut to 63 bytes.
func SlotName(prefix, member string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range strings.ToLower(member) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// Upstream describes a primary to follow, clone from or rewind from.
type Upstream struct {
	// Host and Port reach the upstream's PostgreSQL.
	Host string
	Port int
	// User and Password are the replication credentials; empty means
	// Config.Replication.
	User     string
	Password string
	// SlotName is this member's physical slot on the upstream ("" = none).
	SlotName string
}

func (u Upstream) validate() error {
	if u.Host == "" || u.Port < 1 || u.Port > 65535 {
		return fmt.Errorf("%w: upstream %s:%d needs a host and a port", ErrInvalidConfig, u.Host, u.Port)
	}
	if u.SlotName != "" && !slotNameRE.MatchString(u.SlotName) {
		return fmt.Errorf("%w: upstream slot %q", ErrInvalidSlotName, u.SlotName)
	}
	return nil
}

// String returns host:port and the slot, never the password.
func (u Upstream) String() string {
	s := net.JoinHostPort(u.Host, fmt.Sprint(u.Port))
	if u.SlotName != "" {
		s += " slot " + u.SlotName
	}
	return s
}
