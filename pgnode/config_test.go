package pgnode

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validConfig() Config {
	return Config{
		Name:        "n1",
		DataDir:     "/var/lib/pgquorum/data",
		Superuser:   Credentials{Password: "s"},
		Replication: Credentials{Password: "r"},
		Rewind:      Credentials{Password: "w"},
	}.WithDefaults()
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.Name = "" }, "Name is required"},
		{"relative data dir", func(c *Config) { c.DataDir = "data" }, "DataDir"},
		{"root data dir", func(c *Config) { c.DataDir = "/" }, "DataDir must not be /"},
		{"log inside data dir", func(c *Config) { c.LogFile = c.DataDir + "/pg.log" }, "outside DataDir"},
		{"bad port", func(c *Config) { c.Port = 70000 }, "Port"},
		{"root OS user", func(c *Config) { c.OSUser = "root" }, "must not be root"},
		{"missing password", func(c *Config) { c.Replication.Password = "" }, "Replication.Password"},
		{"odd role name", func(c *Config) { c.Rewind.Username = "bad-name" }, "Rewind.Username"},
		{"same roles", func(c *Config) { c.Replication.Username = c.Superuser.Username }, "must differ"},
		{"bad CIDR", func(c *Config) { c.AllowedNetworks = []string{"10.0.0.0/99"} }, "AllowedNetworks"},
		{"managed parameter", func(c *Config) { c.Parameters = map[string]string{"port": "1"} }, "managed by pgquorum"},
		{"newline in value", func(c *Config) { c.Parameters = map[string]string{"work_mem": "1\n"} }, "newline"},
		{"long socket path", func(c *Config) { c.SocketDir = "/" + strings.Repeat("x", 100) }, "too long"},
		{"bad slot prefix", func(c *Config) { c.SlotPrefix = "Pg-" }, "SlotPrefix"},
		{"quote in listen", func(c *Config) { c.ListenAddresses = "x'y" }, "ListenAddresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestConfig_Defaults(t *testing.T) {
	c := validConfig()
	if c.LogFile != "/var/lib/pgquorum/data.log" || c.Host != "127.0.0.1" || c.Port != 5432 || c.OSUser != "postgres" ||
		c.Replication.Username != "replicator" || c.SlotPrefix != "pgq_" || len(c.InitdbArgs) != 3 {
		t.Fatalf("defaults: %+v", c)
	}
	c = Config{ListenAddresses: "*"}.WithDefaults()
	if c.Host != "127.0.0.1" {
		t.Fatalf("Host for listen '*': %q", c.Host)
	}
}

func TestLSN_ParseAndString(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		l, err := ParseLSN(s)
		if err != nil || l.String() != s {
			t.Errorf("ParseLSN(%q) = %v (%s), %v", s, uint64(l), l, err)
		}
	}
	if l, _ := ParseLSN("1/0"); l != 1<<32 {
		t.Errorf("1/0 = %d", l)
	}
	for _, s := range []string{"", "12", "x/1", "1/100000000"} {
		if _, err := ParseLSN(s); err == nil {
			t.Errorf("ParseLSN(%q) accepted", s)
		}
	}
}

func TestSyncStandbyNames(t *testing.T) {
	tests := []struct {
		names []string
		count int
		want  string
		err   bool
	}{
		{nil, 1, "", false},
		{[]string{"a", "b"}, 0, "", false},
		{[]string{"a"}, 1, `FIRST 1 ("a")`, false},
		{[]string{"n-2", "N3"}, 1, `FIRST 1 ("n-2", "N3")`, false},
		{[]string{"a"}, 2, "", true},
		{[]string{`a"b`}, 1, "", true},
		{[]string{""}, 1, "", true},
	}
	for _, tt := range tests {
		got, err := SyncStandbyNames(tt.names, tt.count)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("SyncStandbyNames(%q, %d) = %q, %v; want %q (error %v)", tt.names, tt.count, got, err, tt.want, tt.err)
		}
	}
}

func TestSlotName(t *testing.T) {
	for in, want := range map[string]string{
		"node1":                 "pgq_node1",
		"DB-2.example.com":      "pgq_db_2_example_com",
		strings.Repeat("x", 80): "pgq_" + strings.Repeat("x", 59),
	} {
		got := SlotName("pgq_", in)
		if got != want || !slotNameRE.MatchString(got) {
			t.Errorf("SlotName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestQuoting(t *testing.T) {
	if got := quoteConf(`it's a \ path`); got != `'it''s a \\ path'` {
		t.Errorf("quoteConf = %s", got)
	}
	if got := quoteConninfo(`pa'ss\w`); got != `'pa\'ss\\w'` {
		t.Errorf("quoteConninfo = %s", got)
	}
	if got := quoteLiteral(`o'k`); got != `'o''k'` {
		t.Errorf("quoteLiteral = %s", got)
	}
}

func TestNode_RenderedConfig(t *testing.T) {
	c := validConfig()
	c.Port = 6543
	c.ClusterName = "main"
	c.HBAExtra = []string{"host all all 10.1.0.0/16 reject"}
	n := &Node{cfg: c}
	conf := string(n.renderBaseConf(map[string]string{"wal_keep_size": "1GB", "Work_Mem": "4MB"}))
	for _, want := range []string{"port = 6543\n", "cluster_name = 'main'\n", "wal_keep_size = '1GB'\n", "work_mem = '4MB'\n",
		"wal_level = 'replica'\n", "hot_standby = on\n", "include_if_exists = 'pgquorum.recovery.conf'\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("pgquorum.conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Count(conf, "wal_keep_size") != 1 {
		t.Errorf("parameter override duplicated:\n%s", conf)
	}
	hba := string(n.renderHBA())
	if !strings.HasPrefix(hba, managedHeader+"host all all 10.1.0.0/16 reject\n") || !strings.Contains(hba, "host replication replicator 0.0.0.0/0 scram-sha-256") {
		t.Errorf("pg_hba.conf:\n%s", hba)
	}
	ci := n.primaryConninfo(Upstream{Host: "10.0.0.2", Port: 5432, SlotName: "pgq_n1"}, false)
	if strings.Contains(ci, "password") || !strings.Contains(ci, "application_name='n1'") {
		t.Errorf("conninfo without password: %s", ci)
	}
}

// TestNode_SetParametersKeepsLocal: the dynamic parameters never drop the
// node-local ones (postgres.parameters), which also win on a conflict.
// Before the fix, the first SetParameters from the actuator removed the
// node's max_connections and shared_buffers from pgquorum.conf, leaving
// every member "pending restart" back to the defaults.
func TestNode_SetParametersKeepsLocal(t *testing.T) {
	c := validConfig()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.LogFile = c.DataDir + ".log"
	c.Parameters = map[string]string{"max_connections": "40", "work_mem": "8MB"}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := New(c, nil)
	if err != nil {
		t.Skipf("New: %v", err)
	}
	if _, err := n.SetParameters(context.Background(), map[string]string{"work_mem": "1MB", "Temp_Buffers": "16MB"}); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(c.DataDir, confFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"max_connections = '40'\n", "work_mem = '8MB'\n", "temp_buffers = '16MB'\n"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("pgquorum.conf lacks %q:\n%s", want, conf)
		}
	}
	if got := n.currentParams(); got["max_connections"] != "40" || got["work_mem"] != "8MB" || got["temp_buffers"] != "16MB" {
		t.Errorf("current parameters = %v", got)
	}
}
