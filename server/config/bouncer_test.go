package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func bouncerYAML(f fixture, extra string) string {
	return `agent_id: b1
pgbouncer:
  host: 127.0.0.1
  port: 6432
  admin_user: pgbouncer
  include_path: ` + filepath.Join(f.dir, "pgquorum.ini") + `
tls: {insecure: true}
clusters:
  - name: demo
    endpoints: [127.0.0.1:7101, 127.0.0.2:7101]
    databases:
      - {name: app, dbname: app_db, pool_mode: transaction}
      - {name: reports}
` + extra
}

func validBouncer(t *testing.T, f fixture) *BouncerConfig {
	t.Helper()
	c := DefaultBouncer()
	c.AgentID = "b1"
	c.PgBouncer.IncludePath = filepath.Join(f.dir, "pgquorum.ini")
	c.Clusters = []BouncerCluster{{Name: "demo", Endpoints: []string{"127.0.0.1:7101"}, Databases: []BouncerDatabase{{Name: "app"}}}}
	c.TLS.Insecure = true
	if err := c.Validate(); err != nil {
		t.Fatalf("fixture invalid: %v", err)
	}
	return c
}

func TestLoadBouncer_File(t *testing.T) {
	f := newFixture(t)
	c, err := LoadBouncer(f.write(t, "b.yml", bouncerYAML(f, "")), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.AgentID != "b1" || len(c.Clusters) != 1 || len(c.Clusters[0].Databases) != 2 || c.Clusters[0].Databases[0].DBName != "app_db" {
		t.Fatalf("got %+v", c)
	}
	if c.ContactLease != 3*time.Second || c.Log.Level != "info" {
		t.Fatalf("defaults missing: %+v", c)
	}
}

func TestLoadBouncer_EnvAndFlags(t *testing.T) {
	f := newFixture(t)
	p := f.write(t, "b.yml", bouncerYAML(f, ""))
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	RegisterBouncerFlags(fs)
	if err := fs.Parse([]string{"--contact_lease=5s"}); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PGQUORUM_BOUNCER_CONTACT_LEASE=4s",
		"PGQUORUM_BOUNCER_PGBOUNCER_PORT=6543",
		`PGQUORUM_BOUNCER_CLUSTERS=[{"name": "other", "endpoints": ["10.0.0.1:7101"], "databases": [{"name": "db2"}]}]`,
		"PGQUORUM_RAFT_BIND_ADDR=ignored-by-the-agent",
	}
	c, err := LoadBouncer(p, fs, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.ContactLease != 5*time.Second || c.PgBouncer.Port != 6543 {
		t.Fatalf("got lease %s port %d", c.ContactLease, c.PgBouncer.Port)
	}
	if len(c.Clusters) != 1 || c.Clusters[0].Name != "other" || c.Clusters[0].Databases[0].Name != "db2" {
		t.Fatalf("clusters from env: %+v", c.Clusters)
	}
}

func TestLoadBouncer_UnknownKeys(t *testing.T) {
	f := newFixture(t)
	t.Run("inside a list item", func(t *testing.T) {
		p := f.write(t, "b.yml", bouncerYAML(f, "")+"  - name: x\n    endpoint: [a:1]\n")
		_, err := LoadBouncer(p, nil, nil)
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("want ErrUnknownKey, got %v", err)
		}
		wantProblem(t, err, "clusters[1].endpoint", p+":15", "did you mean clusters[1].endpoints?")
	})
	t.Run("in a database", func(t *testing.T) {
		p := f.write(t, "b.yml", strings.Replace(bouncerYAML(f, ""), "pool_mode:", "poolmode:", 1))
		_, err := LoadBouncer(p, nil, nil)
		wantProblem(t, err, "clusters[0].databases[0].poolmode", "unknown key")
	})
	t.Run("env", func(t *testing.T) {
		p := f.write(t, "b.yml", bouncerYAML(f, ""))
		_, err := LoadBouncer(p, nil, []string{"PGQUORUM_BOUNCER_AGENTID=x"})
		wantProblem(t, err, "PGQUORUM_BOUNCER_AGENTID", "did you mean PGQUORUM_BOUNCER_AGENT_ID?")
	})
	t.Run("env clusters", func(t *testing.T) {
		p := f.write(t, "b.yml", bouncerYAML(f, ""))
		_, err := LoadBouncer(p, nil, []string{`PGQUORUM_BOUNCER_CLUSTERS=[{"nam": "x"}]`})
		wantProblem(t, err, "clusters[0].nam", "environment PGQUORUM_BOUNCER_CLUSTERS:1", "unknown key")
	})
}

func TestBouncerConfigValidate_Rules(t *testing.T) {
	f := newFixture(t)
	pw := f.write(t, "pw", "x\n")
	ini := f.write(t, "pgbouncer.ini", "[pgbouncer]\n")
	tests := []struct {
		name   string
		mutate func(c *BouncerConfig)
		key    string
		want   string
	}{
		{"valid", func(c *BouncerConfig) {}, "", ""},
		{"agent_id missing", func(c *BouncerConfig) { c.AgentID = "" }, "agent_id", "is required"},
		{"agent_id bad", func(c *BouncerConfig) { c.AgentID = "B 1" }, "agent_id", "not a valid name"},
		{"host missing", func(c *BouncerConfig) { c.PgBouncer.Host = "" }, "pgbouncer.host", "is required"},
		{"socket dir", func(c *BouncerConfig) { c.PgBouncer.Host = f.dir }, "", ""},
		{"socket dir missing", func(c *BouncerConfig) { c.PgBouncer.Host = "/nope" }, "pgbouncer.host", `"/nope" does not exist`},
		{"port", func(c *BouncerConfig) { c.PgBouncer.Port = 0 }, "pgbouncer.port", "not a port"},
		{"admin_user", func(c *BouncerConfig) { c.PgBouncer.AdminUser = "" }, "pgbouncer.admin_user", "is required"},
		{"password file", func(c *BouncerConfig) { c.PgBouncer.PasswordFile = pw }, "", ""},
		{"password and file", func(c *BouncerConfig) { c.PgBouncer.PasswordFile, c.PgBouncer.Password = pw, "x" }, "pgbouncer", "both set"},
		{"password file missing", func(c *BouncerConfig) { c.PgBouncer.PasswordFile = pw + "x" }, "pgbouncer.password_file", "does not exist"},
		{"config_path present", func(c *BouncerConfig) { c.PgBouncer.ConfigPath = ini }, "", ""},
		{"config_path missing", func(c *BouncerConfig) { c.PgBouncer.ConfigPath = ini + "x" }, "pgbouncer.config_path", "does not exist"},
		{"include_path missing", func(c *BouncerConfig) { c.PgBouncer.IncludePath = "" }, "pgbouncer.include_path", "is required"},
		{"include_path dir missing", func(c *BouncerConfig) { c.PgBouncer.IncludePath = "/nope/x.ini" }, "pgbouncer.include_path", `directory "/nope" does not exist`},
		{"include_path is dir", func(c *BouncerConfig) { c.PgBouncer.IncludePath = f.dir }, "pgbouncer.include_path", "is a directory"},
		{"no clusters", func(c *BouncerConfig) { c.Clusters = nil }, "clusters", "at least one cluster"},
		{"cluster name", func(c *BouncerConfig) { c.Clusters[0].Name = "" }, "clusters[0].name", "is required"},
		{"cluster twice", func(c *BouncerConfig) {
			c.Clusters = append(c.Clusters, BouncerCluster{Name: "demo", Endpoints: []string{"a:1"}, Databases: []BouncerDatabase{{Name: "x"}}})
		}, "clusters[1].name", `"demo" is listed twice`},
		{"no endpoints", func(c *BouncerConfig) { c.Clusters[0].Endpoints = nil }, "clusters[0].endpoints", "at least one"},
		{"bad endpoint", func(c *BouncerConfig) { c.Clusters[0].Endpoints = []string{"0.0.0.0:7101"} }, "clusters[0].endpoints", "unspecified"},
		{"no databases", func(c *BouncerConfig) { c.Clusters[0].Databases = nil }, "clusters[0].databases", "at least one"},
		{"database name", func(c *BouncerConfig) { c.Clusters[0].Databases[0].Name = "a b" }, "clusters[0].databases[0].name", "not a valid database name"},
		{"database in two clusters", func(c *BouncerConfig) {
			c.Clusters = append(c.Clusters, BouncerCluster{Name: "other", Endpoints: []string{"a:1"}, Databases: []BouncerDatabase{{Name: "app"}}})
		}, "clusters[1].databases[0].name", `"app" is also routed by cluster "demo"`},
		{"pool_mode", func(c *BouncerConfig) { c.Clusters[0].Databases[0].PoolMode = "txn" }, "clusters[0].databases[0].pool_mode", "session|transaction|statement"},
		{"pool_mode ok", func(c *BouncerConfig) { c.Clusters[0].Databases[0].PoolMode = "statement" }, "", ""},
		{"user", func(c *BouncerConfig) { c.Clusters[0].Databases[0].User = "a;b" }, "clusters[0].databases[0].user", "not a valid user name"},
		{"contact_lease short", func(c *BouncerConfig) { c.ContactLease = 100 * time.Millisecond }, "contact_lease", "outside 500ms-1m"},
		{"contact_lease long", func(c *BouncerConfig) { c.ContactLease = time.Hour }, "contact_lease", "outside 500ms-1m"},
		{"log level", func(c *BouncerConfig) { c.Log.Level = "loud" }, "log.level", "not one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validBouncer(t, f)
			tt.mutate(c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			wantProblem(t, err, tt.key, tt.want)
		})
	}
}

func TestBouncerConfig_RedactedAndCredentials(t *testing.T) {
	f := newFixture(t)
	c := validBouncer(t, f)
	c.PgBouncer.Password = "topsecret"
	r := c.Redacted()
	if strings.Contains(fmt.Sprintf("%+v", r), "topsecret") || c.PgBouncer.Password != "topsecret" {
		t.Fatalf("redaction wrong: %+v / %+v", r.PgBouncer, c.PgBouncer)
	}
	r.Clusters[0].Endpoints[0] = "changed:1"
	if c.Clusters[0].Endpoints[0] == "changed:1" {
		t.Fatal("Redacted shares slices with the original")
	}
	cred := c.PgBouncer.AdminCredentials()
	if pw, err := cred.Resolve(); err != nil || pw != "topsecret" || cred.Username != "pgbouncer" {
		t.Fatalf("AdminCredentials: %+v %q %v", cred, pw, err)
	}
}
