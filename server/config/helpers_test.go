package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is a temporary directory with a fake PostgreSQL bin directory and
// room for data directories.
type fixture struct {
	dir    string
	bin    string
	data   string
	pgdata string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	f := fixture{dir: dir, bin: filepath.Join(dir, "bin"), data: filepath.Join(dir, "node"), pgdata: filepath.Join(dir, "pg", "data")}
	for _, d := range []string{f.bin, filepath.Dir(f.pgdata)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range RequiredPrograms {
		if err := os.WriteFile(filepath.Join(f.bin, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// yaml returns a valid node configuration file body, with extra appended.
func (f fixture) yaml(extra string) string {
	return `cluster_name: demo
node_id: n1
data_dir: ` + f.data + `
raft:
  bind_addr: 127.0.0.1:7001
grpc:
  listen_addr: 127.0.0.1:7101
http: {listen_addr: 127.0.0.1:8008}
tls: {insecure: true}
bootstrap:
  initial_cluster: ["n1=127.0.0.1:7001", "n2=127.0.0.2:7001", "n3=127.0.0.3:7001"]
postgres:
  bin_dir: ` + f.bin + `
  data_dir: ` + f.pgdata + `
` + extra
}

// write writes body to a file in the fixture and returns its path.
func (f fixture) write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// valid returns a valid configuration built in Go.
func (f fixture) valid(t *testing.T) *Config {
	t.Helper()
	c, err := Default(ProfileDefault)
	if err != nil {
		t.Fatal(err)
	}
	c.ClusterName, c.NodeID, c.DataDir = "demo", "n1", f.data
	c.Raft.BindAddr, c.GRPC.ListenAddr = "127.0.0.1:7001", "127.0.0.1:7101"
	c.Bootstrap.InitialCluster = []string{"n1=127.0.0.1:7001", "n2=127.0.0.2:7001"}
	c.Postgres.BinDir, c.Postgres.DataDir = f.bin, f.pgdata
	c.TLS.Insecure = true
	if err := c.Validate(); err != nil {
		t.Fatalf("fixture config invalid: %v", err)
	}
	return c
}

// keyErrors returns the KeyErrors inside err.
func keyErrors(err error) []*KeyError {
	var out []*KeyError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if ke, ok := e.(*KeyError); ok {
			out = append(out, ke)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		walk(errors.Unwrap(e))
	}
	walk(err)
	return out
}

// wantProblem fails unless err has a KeyError for key whose message contains all of want.
func wantProblem(t *testing.T, err error, key string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a problem with %s, got nil", key)
	}
	for _, ke := range keyErrors(err) {
		if ke.Key != key {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(ke.Error(), w) {
				ok = false
			}
		}
		if ok {
			return
		}
	}
	t.Fatalf("want a problem with %s containing %q, got:\n%v", key, want, err)
}
