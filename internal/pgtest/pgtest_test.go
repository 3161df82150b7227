package pgtest_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgquorum/pgquorum/internal/pgtest"
)

func TestStart_PostgresBehindPgBouncer(t *testing.T) {
	pg := pgtest.StartPostgres(t, pgtest.PostgresOptions{})
	if pg.PID() == 0 || !pg.Running() {
		t.Fatalf("postgres not running: pid %d", pg.PID())
	}
	bouncer := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{})
	line := fmt.Sprintf("app = host=%s port=%d dbname=postgres\n", pg.Host, pg.Port)
	if err := os.WriteFile(bouncer.IncludePath, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg, err := pgx.ParseConfig(bouncer.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("admin console: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "RELOAD"); err != nil {
		t.Fatalf("RELOAD: %v", err)
	}

	cfg, err = pgx.ParseConfig(bouncer.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	client, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("client through pgbouncer: %v", err)
	}
	defer client.Close(ctx)
	var port int
	if err := client.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port); err != nil {
		t.Fatal(err)
	}
	if port != pg.Port {
		t.Fatalf("routed to port %d, want %d", port, pg.Port)
	}

	pg.Kill9()
	if pg.Running() {
		t.Fatal("postgres still running after Kill9")
	}
	pg.Start()
	pg.Exec("postgres", "CREATE TABLE t (id int)")
}
