package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgquorum/pgquorum/server/config"
)

// runRoot runs the pgquorum command line in-process and returns its output.
func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := rootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.Execute()
	return out.String(), err
}

// stubBinDir makes a directory with the PostgreSQL programs validation
// looks for, so the test does not need PostgreSQL installed.
func stubBinDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range config.RequiredPrograms {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestGenConfig_EveryHostValidates generates the files of a three-host
// cluster and of the witness variant, installs what they reference the
// way docs/deploy.md says (certificates from scripts/gen-certs.sh, password
// files), and checks every node file with `pgquorum validate-config` and
// the bouncer agent file with the agent's loader.
func TestGenConfig_EveryHostValidates(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is missing (scripts/install-deps.sh): scripts/gen-certs.sh needs it")
	}
	for _, tc := range []struct {
		name    string
		hosts   []string
		witness string
	}{
		{"three hosts", []string{"n1=127.0.0.11", "n2=127.0.0.12", "n3=127.0.0.13"}, ""},
		{"two hosts and a witness", []string{"pg-a=127.0.0.21", "pg-b=127.0.0.22"}, "w1=127.0.0.23"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			etc, out := filepath.Join(tmp, "etc"), filepath.Join(tmp, "out")
			args := []string{"gen-config", "--cluster", "main", "--out", out,
				"--etc-dir", etc, "--data-dir", filepath.Join(tmp, "{name}", "raft"),
				"--pg-data-dir", filepath.Join(tmp, "{name}", "pg"), "--pg-bin-dir", stubBinDir(t),
				"--pgbouncer-dir", filepath.Join(tmp, "pgbouncer"), "--bouncer-state-dir", filepath.Join(tmp, "bouncer"),
				"--bouncer", "pgb1=127.0.0.30", "--database", "app=postgres"}
			if tc.witness != "" {
				args = append(args, "--witness", tc.witness)
			}
			args = append(args, tc.hosts...)
			msg, err := runRoot(t, args...)
			if err != nil {
				t.Fatalf("gen-config: %v\n%s", err, msg)
			}
			all := append(append([]string{}, tc.hosts...), tc.witness)
			var names, addrs []string
			for _, h := range all {
				if name, addr, ok := strings.Cut(h, "="); ok {
					names, addrs = append(names, name), append(addrs, addr)
				}
			}
			// Install what the configs reference, as an operator would.
			certs := exec.Command("bash", append([]string{"../../scripts/gen-certs.sh", "--out", filepath.Join(etc, "tls")}, addrs...)...)
			if b, err := certs.CombinedOutput(); err != nil {
				t.Fatalf("gen-certs.sh: %v\n%s", err, b)
			}
			for _, s := range []string{"superuser", "replication", "rewind", "pgbouncer"} {
				writeFile(t, filepath.Join(etc, "secrets", s+".password"), "secret-"+s+"\n")
			}
			for _, n := range names {
				if err := os.MkdirAll(filepath.Join(tmp, n), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for i, n := range names {
				file := filepath.Join(out, n, "pgquorum.yaml")
				msg, err := runRoot(t, "validate-config", file)
				if err != nil {
					t.Fatalf("validate-config %s: %v\n%s", n, err, msg)
				}
				cfg, err := config.Load(file, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				witness := tc.witness != "" && i == len(names)-1
				if (cfg.Role == config.RoleWitness) != witness || len(cfg.Bootstrap.InitialCluster) != len(names) {
					t.Errorf("%s: role %s, initial_cluster %v", n, cfg.Role, cfg.Bootstrap.InitialCluster)
				}
				if !strings.HasSuffix(cfg.TLS.CertFile, "node-"+addrs[i]+".pem") || cfg.Postgres.Superuser.Password != "" {
					t.Errorf("%s: cert %s, inline password %q", n, cfg.TLS.CertFile, cfg.Postgres.Superuser.Password)
				}
			}
			// The PgBouncer config goes where the agent's config_path says.
			ini, err := os.ReadFile(filepath.Join(out, "pgb1", "pgbouncer.ini"))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(tmp, "pgbouncer", "pgbouncer.ini"), string(ini))
			if err := os.MkdirAll(filepath.Join(tmp, "bouncer"), 0o755); err != nil {
				t.Fatal(err)
			}
			bc, err := config.LoadBouncer(filepath.Join(out, "pgb1", "bouncer.yaml"), nil, nil)
			if err != nil {
				t.Fatalf("bouncer.yaml: %v", err)
			}
			if got := len(bc.Clusters[0].Endpoints); got != len(names) {
				t.Errorf("bouncer endpoints: %d, want %d", got, len(names))
			}
			if !strings.Contains(string(ini), "%include "+bc.PgBouncer.IncludePath) || !strings.Contains(string(ini), "listen_addr = 127.0.0.30,127.0.0.1") {
				t.Errorf("pgbouncer.ini does not include %s or listen on the bouncer's address:\n%s", bc.PgBouncer.IncludePath, ini)
			}
		})
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestGenConfig_RefusesBadInput: host lists and flags that cannot give a
// working cluster are refused before anything is written.
func TestGenConfig_RefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no address", []string{"n1"}, "want NAME=ADDRESS"},
		{"port in address", []string{"n1=10.0.0.1:5432"}, "without a port"},
		{"bad name", []string{"N1=10.0.0.1"}, "not a valid name"},
		{"name twice", []string{"n1=10.0.0.1", "n1=10.0.0.2"}, "used twice"},
		{"address twice", []string{"n1=10.0.0.1", "n2=10.0.0.1"}, "used twice"},
		{"witness only", []string{"--witness", "w=10.0.0.3"}, "requires at least 1 arg"},
		{"unspecified address", []string{"n1=0.0.0.0"}, "cannot be dialed"},
		{"relative dir", []string{"--data-dir", "raft", "n1=10.0.0.1"}, "not an absolute path"},
		{"bad profile", []string{"--profile", "turbo", "n1=10.0.0.1"}, "timing.profile"},
		{"bad database", []string{"--database", "a b", "n1=10.0.0.1"}, "not a valid database name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			msg, err := runRoot(t, append([]string{"gen-config", "--cluster", "main", "--out", out, "--pg-bin-dir", stubBinDir(t)}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q\n%s", err, tc.want, msg)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Errorf("%s was created although the input was refused", out)
			}
		})
	}
}

// TestGenConfig_KeepsExistingFiles: a second run does not overwrite what
// the first wrote unless --force says so.
func TestGenConfig_KeepsExistingFiles(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	args := []string{"gen-config", "--cluster", "main", "--out", out, "--pg-bin-dir", stubBinDir(t), "n1=10.0.0.1", "n2=10.0.0.2", "n3=10.0.0.3"}
	if msg, err := runRoot(t, args...); err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	file := filepath.Join(out, "n1", "pgquorum.yaml")
	writeFile(t, file, "# edited by hand\n")
	if _, err := runRoot(t, args...); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second run: err = %v, want a refusal naming --force", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "# edited by hand\n" {
		t.Fatalf("the hand-edited file was overwritten")
	}
	if msg, err := runRoot(t, append(args[:1:1], append([]string{"--force"}, args[1:]...)...)...); err != nil {
		t.Fatalf("--force: %v\n%s", err, msg)
	}
	if b, _ := os.ReadFile(file); !strings.Contains(string(b), "node_id: n1") {
		t.Fatalf("--force did not rewrite the file:\n%s", b)
	}
}

// TestYAMLScalar_ReadsBackAsString: values that YAML would read as numbers,
// booleans or null, or that contain syntax, are quoted; the rest stay plain.
func TestYAMLScalar_ReadsBackAsString(t *testing.T) {
	for in, want := range map[string]string{
		"n1":                "n1",
		"10.0.0.1:7001":     "10.0.0.1:7001",
		"n1=10.0.0.1:7001":  "n1=10.0.0.1:7001",
		"/etc/pgquorum/tls": "/etc/pgquorum/tls",
		"1":                 `"1"`,
		"1.5":               `"1.5"`,
		"on":                `"on"`,
		"No":                `"No"`,
		"null":              `"null"`,
		"":                  `""`,
		"::1":               `"::1"`,
		"/a b/c":            `"/a b/c"`,
		"a#b":               `"a#b"`,
		"{name}":            `"{name}"`,
	} {
		if got := yamlScalar(in); got != want {
			t.Errorf("yamlScalar(%q) = %s, want %s", in, got, want)
		}
	}
}
