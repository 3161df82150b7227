package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as a YAML file: it may refuse them,
// never panic.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("cluster_name: demo\nnode_id: n1\nraft: {bind_addr: 127.0.0.1:7001}\n"))
	f.Add([]byte("timing:\n  profile: fast\n  ttl: 2\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("postgres: {parameters: {x.y: 1}}\nbootstrap: {initial_cluster: [n1=a:1]}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "c.yml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, nil, nil)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		_, _ = LoadBouncer(p, nil, nil)
		_, _ = parseYAML("fuzz", data, reflect.TypeFor[BouncerConfig]())
	})
}
