package main

import (
	"slices"
	"testing"
)

// TestGuardEnv_DropsSecrets: the fence guard, which outlives the agent,
// inherits no configuration or password variable.
func TestGuardEnv_DropsSecrets(t *testing.T) {
	got := guardEnv([]string{
		"PATH=/usr/bin", "HOME=/root",
		"PGQUORUM_POSTGRES_SUPERUSER_PASSWORD=s", "PGQUORUM_CONFIG=/etc/x.yml",
		"PGQUORUMCTL_TOKEN=t", "PGPASSWORD=p", "PGPASSFILE=/x", "GOTRACEBACK=all",
	})
	want := []string{"PATH=/usr/bin", "HOME=/root", "GOTRACEBACK=all"}
	if !slices.Equal(got, want) {
		t.Fatalf("guardEnv = %q, want %q", got, want)
	}
}
