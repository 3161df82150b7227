package server

import (
	"os/exec"
	"strings"
	"testing"
)

// TestChildEnv_NoPasswords: a callback script sees the agent's
// environment but no PGQUORUM_* or PGPASS* variable.
func TestChildEnv_NoPasswords(t *testing.T) {
	t.Setenv("PGQUORUM_POSTGRES_SUPERUSER_PASSWORD", "leak-test-su")
	t.Setenv("PGPASSWORD", "leak-test-pg")
	t.Setenv("PGQ_TEST_KEEP", "kept")
	cmd := exec.Command("/bin/sh", "-c", "env")
	cmd.Env = childEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "leak-test") {
		t.Errorf("a password reached the child:\n%s", out)
	}
	if !strings.Contains(string(out), "PGQ_TEST_KEEP=kept") {
		t.Errorf("the rest of the environment did not:\n%s", out)
	}
}
