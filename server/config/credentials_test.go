package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestCredentialsResolve_Sources(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name    string
		c       Credentials
		want    string
		wantErr error
	}{
		{"inline", Credentials{Username: "u", Password: "pw"}, "pw", nil},
		{"none", Credentials{Username: "u"}, "", nil},
		{"file with newline", Credentials{Username: "u", PasswordFile: f.write(t, "a", "s3cret\n")}, "s3cret", nil},
		{"file with CRLF", Credentials{Username: "u", PasswordFile: f.write(t, "b", "s3cret\r\n")}, "s3cret", nil},
		{"file without newline", Credentials{Username: "u", PasswordFile: f.write(t, "c", "s3cret")}, "s3cret", nil},
		{"only the last newline goes", Credentials{Username: "u", PasswordFile: f.write(t, "d", "a b\n\n")}, "a b\n", nil},
		{"missing file", Credentials{Username: "u", PasswordFile: f.dir + "/nope"}, "", os.ErrNotExist},
		{"both set", Credentials{Username: "u", Password: "x", PasswordFile: f.write(t, "e", "y")}, "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Resolve()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("want %v, got %v", tt.wantErr, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestConfigRedacted_HidesPasswords(t *testing.T) {
	f := newFixture(t)
	c := f.valid(t)
	c.Postgres.Superuser.Password = "supersecret"
	c.Postgres.Replication.Password = "replsecret"
	c.Postgres.Rewind.PasswordFile = f.write(t, "pw", "filesecret\n")
	c.Postgres.Parameters["work_mem"] = "4MB"
	r := c.Redacted()
	printed := fmt.Sprintf("%+v %v", r, r)
	for _, secret := range []string{"supersecret", "replsecret", "filesecret"} {
		if strings.Contains(printed, secret) {
			t.Errorf("redacted config shows %q", secret)
		}
	}
	if r.Postgres.Superuser.Password != "***" || r.Postgres.Replication.Password != "***" || r.Postgres.Rewind.Password != "" {
		t.Errorf("redaction wrong: %+v", r.Postgres)
	}
	if r.Postgres.Rewind.PasswordFile != c.Postgres.Rewind.PasswordFile {
		t.Errorf("password_file path should be kept")
	}
	// The original is untouched and shares no maps or slices with the copy.
	if c.Postgres.Superuser.Password != "supersecret" {
		t.Errorf("Redacted changed the original")
	}
	r.Postgres.Parameters["work_mem"] = "1GB"
	r.Bootstrap.InitialCluster[0] = "x"
	if c.Postgres.Parameters["work_mem"] != "4MB" || c.Bootstrap.InitialCluster[0] == "x" {
		t.Errorf("Redacted shares maps or slices with the original")
	}
}

func TestLoad_PasswordFileFromEnv(t *testing.T) {
	f := newFixture(t)
	pw := f.write(t, "pw", "from-file\n")
	p := f.write(t, "c.yml", f.yaml(""))
	c, err := Load(p, nil, []string{"PGQUORUM_POSTGRES_REPLICATION_PASSWORD_FILE=" + pw})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Postgres.Replication.Resolve()
	if err != nil || got != "from-file" {
		t.Fatalf("got %q, %v", got, err)
	}
	_, err = Load(p, nil, []string{"PGQUORUM_POSTGRES_REPLICATION_PASSWORD_FILE=" + pw + ".missing"})
	wantProblem(t, err, "postgres.replication.password_file", "does not exist")
}
