package pgnode

import (
	"errors"
	"testing"
)

func TestValidateParameters_Refused(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
		ok     bool
	}{
		{"plain", map[string]string{"work_mem": "8MB"}, true},
		{"extension prefix", map[string]string{"auto_explain.log_min_duration": "1s"}, true},
		{"agent-owned, other case", map[string]string{"Port": "5433"}, false},
		{"hot_standby", map[string]string{"HOT_STANDBY": "off"}, false},
		{"include", map[string]string{"include": "/etc/x.conf"}, false},
		{"include_dir", map[string]string{"Include_Dir": "conf.d"}, false},
		{"not a GUC name", map[string]string{"work mem": "8MB"}, false},
		{"newline in value", map[string]string{"work_mem": "8MB\nport = 1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateParameters(tt.params)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidParameter)) {
				t.Fatalf("ValidateParameters(%v) = %v", tt.params, err)
			}
		})
	}
}

// TestNode_UseParametersAtStart: parameters given to UseParameters are in
// force from the next start of a stopped server (a restart-only one
// included), and a set the running server rejected is not used, so the
// next start does not fail on it.
func TestNode_UseParametersAtStart(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	n, _ := bootstrapPrimary(t, ctx, reachableTempDir(t), "p")
	show := func(name string) string {
		t.Helper()
		var v string
		if err := sqlConn(t, ctx, n).QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := n.Stop(ctx, StopFast); err != nil {
		t.Fatal(err)
	}
	if err := n.UseParameters(map[string]string{"port": "1"}); !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("UseParameters(port) = %v, want ErrInvalidParameter", err)
	}
	good := map[string]string{"max_locks_per_transaction": "128"}
	if err := n.UseParameters(good); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx, StartOptions{Role: RoleAsIs}); err != nil {
		t.Fatal(err)
	}
	if got := show("max_locks_per_transaction"); got != "128" {
		t.Fatalf("max_locks_per_transaction after the start = %s, want 128", got)
	}

	bad := map[string]string{"max_locks_per_transaction": "128", "work_mem": "lots"}
	if _, err := n.SetParameters(ctx, bad); !errors.Is(err, ErrInvalidParameter) {
		t.Fatalf("SetParameters(work_mem=lots) = %v, want ErrInvalidParameter", err)
	}
	if err := n.UseParameters(bad); err != nil {
		t.Fatal(err)
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatalf("restart after a rejected set was offered again: %v", err)
	}
	if got := show("max_locks_per_transaction"); got != "128" {
		t.Fatalf("max_locks_per_transaction after the restart = %s, want 128", got)
	}
}
