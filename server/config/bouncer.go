package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/spf13/pflag"
)

// BouncerConfig is the configuration of the `pgquorum bouncer` agent that
// runs beside a PgBouncer and routes it to the primaries of one or more
// clusters. It is loaded and validated like Config; its environment
// variables start with PGQUORUM_BOUNCER_.
type BouncerConfig struct {
	AgentID      string           `mapstructure:"agent_id" doc:"ID of this agent, unique among the agents of the clusters it serves. Required; [a-z0-9][a-z0-9_-]{0,62}."`
	PgBouncer    PgBouncer        `mapstructure:"pgbouncer"`
	Clusters     []BouncerCluster `mapstructure:"clusters" doc:"The clusters this PgBouncer routes to. At least one."`
	TLS          TLS              `mapstructure:"tls"`
	ContactLease time.Duration    `mapstructure:"contact_lease" doc:"How long the agent keeps routing without contact with any member of a cluster; then it fences (pauses) that cluster's databases. 500ms-1m."`
	Log          Log              `mapstructure:"log"`
}

// PgBouncer says how the agent reaches and configures its PgBouncer.
type PgBouncer struct {
	Host         string `mapstructure:"host" doc:"Host or Unix socket directory of PgBouncer's admin console."`
	Port         int    `mapstructure:"port" doc:"PgBouncer port, 1-65535."`
	AdminUser    string `mapstructure:"admin_user" doc:"User listed in PgBouncer's admin_users."`
	Password     string `mapstructure:"password" doc:"Password of admin_user (prefer password_file). Never logged."`
	PasswordFile string `mapstructure:"password_file" doc:"File holding admin_user's password; must exist. Excludes password."`
	ConfigPath   string `mapstructure:"config_path" doc:"PgBouncer's main configuration file, which must %include include_path. Optional; when set it must exist."`
	IncludePath  string `mapstructure:"include_path" doc:"File the agent rewrites with the [databases] routing; its directory must exist."`
}

// AdminCredentials returns admin_user and its password settings as
// Credentials, so that Resolve reads the password.
func (p *PgBouncer) AdminCredentials() Credentials {
	return Credentials{Username: p.AdminUser, Password: p.Password, PasswordFile: p.PasswordFile}
}

// BouncerCluster is one cluster the agent routes to.
type BouncerCluster struct {
	Name      string            `mapstructure:"name" doc:"The cluster's cluster_name."`
	Endpoints []string          `mapstructure:"endpoints" doc:"gRPC host:port addresses of the cluster's members; at least one."`
	Databases []BouncerDatabase `mapstructure:"databases" doc:"The PgBouncer databases routed to the cluster's primary; at least one."`
}

// BouncerDatabase is one entry of PgBouncer's [databases] section.
type BouncerDatabase struct {
	Name     string `mapstructure:"name" doc:"Database name clients use in PgBouncer; unique across all clusters."`
	DBName   string `mapstructure:"dbname" doc:"Database on the PostgreSQL server. Default: name."`
	User     string `mapstructure:"user" doc:"Forced server user. Empty: the client's user."`
	PoolMode string `mapstructure:"pool_mode" doc:"session, transaction or statement. Empty: PgBouncer's pool_mode."`
}

// DefaultBouncer returns the built-in bouncer agent configuration.
func DefaultBouncer() *BouncerConfig {
	return &BouncerConfig{
		PgBouncer: PgBouncer{
			Host:      "127.0.0.1",
			Port:      6432,
			AdminUser: "pgbouncer",
		},
		Clusters:     []BouncerCluster{},
		ContactLease: 3 * time.Second,
		Log:          Log{Level: "info", Format: "text"},
	}
}

// LoadBouncer reads the bouncer agent configuration and validates it, like
// Load: flags > PGQUORUM_BOUNCER_* variables > file > built-in defaults. The
// file is path, or $PGQUORUM_BOUNCER_CONFIG when path is empty. Clusters
// given in a variable or flag are YAML or JSON text.
func LoadBouncer(path string, flags *pflag.FlagSet, environ []string) (*BouncerConfig, error) {
	var c BouncerConfig
	err := bouncerSchema().load(path, flags, environ, &c, func(string) (any, error) { return DefaultBouncer(), nil })
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// dbNameRE is the charset of PgBouncer database names pgquorum writes.
var dbNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)

// Validate checks the bouncer agent configuration and returns every problem
// at once, like Config.Validate.
func (c *BouncerConfig) Validate() error {
	var v problems
	checkName(&v, "agent_id", c.AgentID)
	p := &c.PgBouncer
	switch {
	case p.Host == "":
		v.addf("pgbouncer.host", "is required")
	case filepath.IsAbs(p.Host):
		if st, err := os.Stat(p.Host); err != nil || !st.IsDir() {
			v.addf("pgbouncer.host", "socket directory %q does not exist", p.Host)
		}
	}
	if p.Port < 1 || p.Port > 65535 {
		v.addf("pgbouncer.port", "%d is not a port (1-65535)", p.Port)
	}
	cred := p.AdminCredentials()
	cred.validate(&v, "pgbouncer", false)
	if p.AdminUser == "" {
		v.addf("pgbouncer.admin_user", "is required")
	}
	if p.ConfigPath != "" {
		checkFileExists(&v, "pgbouncer.config_path", p.ConfigPath)
	}
	if p.IncludePath == "" {
		v.addf("pgbouncer.include_path", "is required")
	} else if dir := filepath.Dir(filepath.Clean(p.IncludePath)); !isDir(dir) {
		v.addf("pgbouncer.include_path", "directory %q does not exist", dir)
	} else if isDir(p.IncludePath) {
		v.addf("pgbouncer.include_path", "%q is a directory", p.IncludePath)
	}
	if len(c.Clusters) == 0 {
		v.addf("clusters", "at least one cluster is required")
	}
	clusters, dbs := map[string]bool{}, map[string]string{}
	for i, cl := range c.Clusters {
		key := fmt.Sprintf("clusters[%d]", i)
		checkName(&v, key+".name", cl.Name)
		if clusters[cl.Name] {
			v.addf(key+".name", "cluster %q is listed twice", cl.Name)
		}
		clusters[cl.Name] = true
		if len(cl.Endpoints) == 0 {
			v.addf(key+".endpoints", "at least one gRPC address is required")
		}
		for _, e := range cl.Endpoints {
			checkAdvertise(&v, key+".endpoints", e)
		}
		if len(cl.Databases) == 0 {
			v.addf(key+".databases", "at least one database is required")
		}
		for j, db := range cl.Databases {
			dkey := fmt.Sprintf("%s.databases[%d]", key, j)
			if !dbNameRE.MatchString(db.Name) {
				v.addf(dkey+".name", "%q is not a valid database name (1-63 of A-Z, a-z, 0-9, _, . and -)", db.Name)
			}
			if other, dup := dbs[db.Name]; dup {
				v.addf(dkey+".name", "database %q is also routed by cluster %q", db.Name, other)
			}
			dbs[db.Name] = cl.Name
			if db.DBName != "" && !dbNameRE.MatchString(db.DBName) {
				v.addf(dkey+".dbname", "%q is not a valid database name", db.DBName)
			}
			if db.User != "" && !dbNameRE.MatchString(db.User) {
				v.addf(dkey+".user", "%q is not a valid user name", db.User)
			}
			if db.PoolMode != "" {
				oneOf(&v, dkey+".pool_mode", db.PoolMode, "session", "transaction", "statement")
			}
		}
	}
	c.TLS.validate(&v)
	if c.ContactLease < 500*time.Millisecond || c.ContactLease > time.Minute {
		v.addf("contact_lease", "%s is outside 500ms-1m", c.ContactLease)
	}
	oneOf(&v, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(&v, "log.format", c.Log.Format, "text", "json")
	return v.err()
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// Redacted returns a deep copy of c with the password replaced by "***".
func (c *BouncerConfig) Redacted() *BouncerConfig {
	cp := *c
	if cp.PgBouncer.Password != "" {
		cp.PgBouncer.Password = redactedPassword
	}
	cp.Clusters = slices.Clone(c.Clusters)
	for i := range cp.Clusters {
		cp.Clusters[i].Endpoints = slices.Clone(cp.Clusters[i].Endpoints)
		cp.Clusters[i].Databases = slices.Clone(cp.Clusters[i].Databases)
	}
	return &cp
}
