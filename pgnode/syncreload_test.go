package pgnode

import (
	"testing"
	"time"
)

// TestNode_SetSynchronousStandbysReloadsOnlyOnChange: setting the value
// the server already runs with sends no SIGHUP (right after a promotion
// that reload slowed the new primary's first logins); a new value does.
func TestNode_SetSynchronousStandbysReloadsOnlyOnChange(t *testing.T) {
	requirePG(t)
	t.Parallel()
	ctx := testCtx(t)
	n, _ := bootstrapPrimary(t, ctx, reachableTempDir(t), "r")
	loadTime := func() time.Time {
		t.Helper()
		c, err := n.connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer closeConn(c)
		var at time.Time
		if err := c.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	if err := n.SetSynchronousStandbys(ctx, []string{"x"}, 1); err != nil {
		t.Fatal(err)
	}
	first := loadTime()
	if err := n.SetSynchronousStandbys(ctx, []string{"x"}, 1); err != nil {
		t.Fatal(err)
	}
	if again := loadTime(); !again.Equal(first) {
		t.Fatalf("the same value reloaded the configuration (%v, then %v)", first, again)
	}
	if err := n.SetSynchronousStandbys(ctx, nil, 0); err != nil {
		t.Fatal(err)
	}
	if after := loadTime(); !after.After(first) {
		t.Fatalf("a new value did not reload the configuration (%v, then %v)", first, after)
	}
}
