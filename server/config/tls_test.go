package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigTLS_Rules(t *testing.T) {
	f := newFixture(t)
	pem := filepath.Join(f.dir, "x.pem")
	if err := os.WriteFile(pem, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(f.dir, "missing.pem")
	cases := []struct {
		name string
		tls  TLS
		key  string // "" = valid
		want string
	}{
		{"insecure", TLS{Insecure: true}, "", ""},
		{"files", TLS{CAFile: pem, CertFile: pem, KeyFile: pem}, "", ""},
		{"nothing set", TLS{}, "tls.ca_file", "tls.insecure: true"},
		{"no key", TLS{CAFile: pem, CertFile: pem}, "tls.key_file", "is required"},
		{"missing file", TLS{CAFile: missing, CertFile: pem, KeyFile: pem}, "tls.ca_file", "does not exist"},
		{"insecure with files", TLS{Insecure: true, CertFile: pem}, "tls.cert_file", "not both"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := f.valid(t)
			c.TLS = tc.tls
			err := c.Validate()
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantProblem(t, err, tc.key, tc.want)
			b := validBouncer(t, f)
			b.TLS = tc.tls
			wantProblem(t, b.Validate(), tc.key, tc.want)
		})
	}
}

// A node config without a tls section is refused: running without TLS must
// be asked for.
func TestLoad_TLSMustBeExplicit(t *testing.T) {
	f := newFixture(t)
	body := strings.Replace(f.yaml(""), "tls: {insecure: true}\n", "", 1)
	_, err := Load(f.write(t, "c.yml", body), nil, nil)
	wantProblem(t, err, "tls.cert_file", "is required")
	c, err := Load(f.write(t, "c.yml", body), nil, []string{"PGQUORUM_TLS_INSECURE=true"})
	if err != nil || !c.TLS.Insecure {
		t.Fatalf("insecure from env: %v", err)
	}
}
