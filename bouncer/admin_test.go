package bouncer

import (
	"errors"
	"testing"
	"time"
)

func TestAdmin_CommandsAgainstPgBouncer(t *testing.T) {
	pg := newPG(t)
	e := newEnv(t)
	ctx := ctxT(t, 60*time.Second)
	if err := e.router.Expose(ctx, "app", 1, routeTo(pg)); err != nil {
		t.Fatal(err)
	}

	v, err := e.admin.Version(ctx)
	if err != nil || !v.AtLeast(1, 0) {
		t.Fatalf("Version = %v, %v", v, err)
	}
	caps, err := e.admin.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PgBouncer %v, capabilities %+v", v, caps)
	if v.Major == 1 && v.Minor == 18 && (caps.ShowState || caps.BareKill || caps.KillClient) {
		t.Fatalf("1.18 capabilities wrong: %+v", caps)
	}

	paused := func() bool {
		t.Helper()
		d, err := e.admin.Database(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		return d.Paused
	}
	for i := range 2 { // idempotent
		if err := e.admin.Pause(ctx, "app"); err != nil {
			t.Fatalf("Pause #%d: %v", i+1, err)
		}
	}
	if !paused() {
		t.Fatal("not paused after Pause")
	}
	for i := range 2 {
		if err := e.admin.Resume(ctx, "app"); err != nil {
			t.Fatalf("Resume #%d: %v", i+1, err)
		}
	}
	if paused() {
		t.Fatal("paused after Resume")
	}
	if err := e.admin.Kill(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if !paused() {
		t.Fatal("KILL did not leave the database paused")
	}
	if err := e.admin.Resume(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := e.admin.Reconnect(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if port, err := serverPort(ctx, e.pgb.DSN("app")); err != nil || port != pg.Port {
		t.Fatalf("client after resume: port %d, %v", port, err)
	}
	pools, err := e.admin.Pools(ctx)
	if err != nil || len(pools) == 0 {
		t.Fatalf("Pools = %v, %v", pools, err)
	}
	if _, err := e.admin.Servers(ctx); err != nil {
		t.Fatal(err)
	}

	for _, op := range []func() error{
		func() error { return e.admin.Pause(ctx, "nosuch") },
		func() error { return e.admin.Resume(ctx, "nosuch") },
		func() error { return e.admin.Kill(ctx, "nosuch") },
	} {
		if err := op(); !errors.Is(err, ErrUnknownDatabase) {
			t.Fatalf("unknown db: %v, want ErrUnknownDatabase", err)
		}
	}
	if err := e.admin.Pause(ctx, "app; SHUTDOWN"); !errors.Is(err, ErrInvalidRoute) {
		t.Fatalf("injected db name: %v", err)
	}

	if err := e.admin.Set(ctx, "server_login_retry", "0.5"); err != nil {
		t.Fatalf("Set decimal: %v", err)
	}
	cfg, err := e.admin.Config(ctx)
	if err != nil || cfg["server_login_retry"] != "0.5" {
		t.Fatalf("server_login_retry = %q, %v", cfg["server_login_retry"], err)
	}
	if err := e.admin.Set(ctx, "server_login_retry", "1'; SHUTDOWN; --"); !errors.Is(err, ErrInvalidSetting) {
		t.Fatalf("bad value: %v", err)
	}
	if err := e.admin.KillAll(ctx); err != nil {
		t.Fatalf("KillAll: %v", err)
	}
	if err := e.admin.Resume(ctx, "app"); err != nil {
		t.Fatal(err)
	}
}

func TestAdmin_ReconnectsAfterBrokenConnection(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	if _, err := e.admin.Version(ctx); err != nil {
		t.Fatal(err)
	}
	// Break the pooled connection underneath pgx, as a PgBouncer restart would.
	e.admin.mu.Lock()
	if len(e.admin.idle) != 1 {
		e.admin.mu.Unlock()
		t.Fatalf("idle conns = %d, want 1", len(e.admin.idle))
	}
	_ = e.admin.idle[0].PgConn().Conn().Close()
	e.admin.mu.Unlock()
	if _, err := e.admin.Databases(ctx); err != nil {
		t.Fatalf("command after broken connection: %v", err)
	}
}
