package config

import (
	"errors"
	"os"
	"testing"
	"time"
)

func TestConfigValidate_Callbacks(t *testing.T) {
	f := newFixture(t)
	script := f.write(t, "notify", "#!/bin/sh\n")
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := f.write(t, "plain", "#!/bin/sh\n")
	tests := []struct {
		name   string
		mutate func(c *Callbacks)
		key    string
		want   []string
	}{
		{"all set", func(c *Callbacks) {
			c.OnStart, c.OnStop, c.OnRestart, c.OnReload, c.OnRoleChange = script, script, script, script, script
		}, "", nil},
		{"relative path", func(c *Callbacks) { c.OnRoleChange = "notify" }, "callbacks.on_role_change", []string{`"notify"`, "absolute"}},
		{"missing", func(c *Callbacks) { c.OnStart = "/nope/notify" }, "callbacks.on_start", []string{"/nope/notify", "no such file"}},
		{"not executable", func(c *Callbacks) { c.OnStop = notExec }, "callbacks.on_stop", []string{"not an executable file"}},
		{"a directory", func(c *Callbacks) { c.OnReload = f.dir }, "callbacks.on_reload", []string{"not an executable file"}},
		{"timeout too short", func(c *Callbacks) { c.Timeout = time.Millisecond }, "callbacks.timeout", []string{"1s to 10m"}},
		{"timeout too long", func(c *Callbacks) { c.Timeout = time.Hour }, "callbacks.timeout", []string{"1s to 10m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.valid(t)
			tt.mutate(&c.Callbacks)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			wantProblem(t, err, tt.key, tt.want...)
		})
	}
}
