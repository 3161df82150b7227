package bouncer

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// reloads counts the RELOADs PgBouncer has logged.
func reloads(t *testing.T, e *env) int {
	t.Helper()
	b, err := os.ReadFile(e.pgb.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "RELOAD command issued")
}

// includeEntry parses the include file's entry for db.
func includeEntry(t *testing.T, e *env, db string) Entry {
	t.Helper()
	data, err := os.ReadFile(e.pgb.IncludePath)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ParseInclude(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.Name == db {
			return en
		}
	}
	t.Fatalf("no entry for %s in %s", db, data)
	return Entry{}
}

// TestRouter_StagedExposeOnlyResumes: a route staged while the database is
// paused is loaded into PgBouncer but serves nobody, the include file stays
// fenced (a restarted PgBouncer routes nowhere), and the exposure then
// RESUMEs without another RELOAD. A RELOAD by someone else in between
// makes the exposure take the full path.
func TestRouter_StagedExposeOnlyResumes(t *testing.T) {
	a, b, e, ctx := exposedOnA(t)
	client, err := connect(ctx, e.pgb.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close(context.Background())
	if _, err := client.Exec(ctx, "INSERT INTO w (g, n) VALUES (0, 1)"); err != nil {
		t.Fatal(err)
	}

	if err := e.router.Hold(ctx, "app", 1, FencePlanned); err != nil {
		t.Fatal(err)
	}
	if err := e.router.Stage(ctx, "app", 2, routeTo(b)); err != nil {
		t.Fatal(err)
	}
	if d, err := e.admin.Database(ctx, "app"); err != nil || d.Host != b.Host || d.Port != b.Port {
		t.Fatalf("SHOW DATABASES after Stage: %+v, %v; want %s:%d", d, err, b.Host, b.Port)
	}
	if en := includeEntry(t, e, "app"); !en.Fenced {
		t.Fatalf("include file after Stage: %+v, want it fenced", en)
	}
	// Staged, still paused: a write waits.
	done := make(chan error, 1)
	go func() {
		_, err := client.Exec(ctx, "INSERT INTO w (g, n) VALUES (0, 2)")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a write went through while staged: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if countRows(t, b) != 0 {
		t.Fatal("B got a write before the exposure")
	}

	before := reloads(t, e)
	if err := e.router.Expose(ctx, "app", 2, routeTo(b)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting write: %v", err)
	}
	if n := countRows(t, b); n != 1 {
		t.Fatalf("B has %d rows after the exposure, want 1", n)
	}
	if n := reloads(t, e) - before; n != 0 {
		t.Fatalf("the exposure of a staged route RELOADed %d times", n)
	}
	if en := includeEntry(t, e, "app"); en.Fenced || en.Route.Port != b.Port || en.Epoch != 2 {
		t.Fatalf("include file after the exposure: %+v", en)
	}

	// Staged again, then someone RELOADs: PgBouncer forgets the staged
	// route (the file says fenced), and the exposure RELOADs itself.
	if err := e.router.Hold(ctx, "app", 2, FencePlanned); err != nil {
		t.Fatal(err)
	}
	if err := e.router.Stage(ctx, "app", 3, routeTo(a)); err != nil {
		t.Fatal(err)
	}
	if err := e.admin.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.router.Expose(ctx, "app", 3, routeTo(a)); err != nil {
		t.Fatal(err)
	}
	if port, err := serverPort(ctx, e.pgb.DSN("app")); err != nil || port != a.Port {
		t.Fatalf("after the exposure at epoch 3: port %d, %v; want A (%d)", port, err, a.Port)
	}

	// A route with min_pool_size is not staged: PgBouncer would open and
	// drop connections for it while paused.
	if err := e.router.Hold(ctx, "app", 3, FencePlanned); err != nil {
		t.Fatal(err)
	}
	withMin := routeTo(b)
	withMin.Pool.MinSize = 2
	if err := e.router.Stage(ctx, "app", 4, withMin); err != nil {
		t.Fatal(err)
	}
	if d, err := e.admin.Database(ctx, "app"); err != nil || d.Port == b.Port {
		t.Fatalf("a route with min_pool_size was staged: %+v, %v", d, err)
	}
}
