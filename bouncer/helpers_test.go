package bouncer

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgquorum/pgquorum/internal/pgtest"
)

// testLogger logs to stderr with -v and is silent otherwise.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is one PgBouncer with an Admin and a Router on its include file.
type env struct {
	pgb    *pgtest.PgBouncer
	admin  *Admin
	router *Router
}

func newEnv(t testing.TB) *env {
	t.Helper()
	pgb := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{})
	admin, err := NewAdmin(pgb.AdminDSN(), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	router, err := NewRouter(RouterOptions{IncludePath: pgb.IncludePath, Admin: admin, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return &env{pgb: pgb, admin: admin, router: router}
}

// routeTo routes to pg's database "postgres".
func routeTo(pg *pgtest.Postgres) Route {
	return Route{Host: pg.Host, Port: pg.Port, DBName: "postgres"}
}

// exposedOnA starts two Postgres servers and a tuned PgBouncer environment
// whose database "app" is exposed on the first at epoch 1.
func exposedOnA(t *testing.T) (a, b *pgtest.Postgres, e *env, ctx context.Context) {
	t.Helper()
	a, b = newPG(t), newPG(t)
	e = newEnv(t)
	ctx = ctxT(t, 60*time.Second)
	if err := e.router.Tune(ctx, TuneOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.router.Expose(ctx, "app", 1, routeTo(a)); err != nil {
		t.Fatal(err)
	}
	return a, b, e, ctx
}

// newPG starts a Postgres with the writes table.
func newPG(t testing.TB) *pgtest.Postgres {
	t.Helper()
	pg := pgtest.StartPostgres(t, pgtest.PostgresOptions{})
	pg.Exec("postgres", "CREATE TABLE w (g int, n int, at timestamptz DEFAULT clock_timestamp())")
	return pg
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// connect opens a client connection through PgBouncer (simple protocol, as
// transaction pooling needs).
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return pgx.ConnectConfig(ctx, cfg)
}

// serverPort asks the server behind dsn which port it listens on.
func serverPort(ctx context.Context, dsn string) (int, error) {
	c, err := connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var port int
	err = c.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port)
	return port, err
}

// load is writers inserting through PgBouncer in a loop.
type load struct {
	mu        sync.Mutex
	successes []time.Time
	ports     []int // server port of each success
	errors    []error
	errTimes  []time.Time
	wg        sync.WaitGroup
}

// startLoad runs n writers against dsn until ctx ends. Each writer keeps one
// connection and reconnects after an error; every statement has a client-side
// timeout.
func startLoad(ctx context.Context, dsn string, n int) *load {
	l := &load{}
	for g := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var conn *pgx.Conn
			defer func() {
				if conn != nil {
					_ = conn.Close(context.Background())
				}
			}()
			for seq := 0; ctx.Err() == nil; seq++ {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				var err error
				var port int
				if conn == nil {
					conn, err = connect(sctx, dsn)
				}
				if err == nil {
					err = conn.QueryRow(sctx, "INSERT INTO w (g, n) VALUES ($1, $2) RETURNING current_setting('port')::int",
						g, seq).Scan(&port)
				}
				cancel()
				now := time.Now()
				if ctx.Err() != nil {
					return // the load ended mid-statement; not a client error
				}
				l.mu.Lock()
				if err == nil {
					l.successes = append(l.successes, now)
					l.ports = append(l.ports, port)
				} else {
					l.errors = append(l.errors, err)
					l.errTimes = append(l.errTimes, now)
				}
				l.mu.Unlock()
				if err != nil {
					if conn != nil {
						_ = conn.Close(context.Background())
						conn = nil
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	return l
}

func (l *load) wait() { l.wg.Wait() }

// maxGap is the longest time between two successful writes (any writer) in
// [from, to], counting from `from` to the first success after it.
func (l *load) maxGap(from, to time.Time) time.Duration {
	l.mu.Lock()
	s := slices.Clone(l.successes)
	l.mu.Unlock()
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	prev := from
	for _, ts := range s {
		if ts.Before(from) {
			prev = ts
			continue
		}
		gap = max(gap, ts.Sub(prev))
		prev = ts
		if ts.After(to) {
			break
		}
	}
	return gap
}

// firstSuccessOn returns the first successful write on the server listening
// on port (0: any) at or after t0.
func (l *load) firstSuccessOn(port int, t0 time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for i, ts := range l.successes {
		if (port == 0 || l.ports[i] == port) && !ts.Before(t0) && (first.IsZero() || ts.Before(first)) {
			first = ts
		}
	}
	return first, !first.IsZero()
}

func (l *load) counts() (ok, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.successes), len(l.errors)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lastSuccessOn returns the last successful write on the server at port.
func (l *load) lastSuccessOn(port int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last time.Time
	for i, ts := range l.successes {
		if l.ports[i] == port && ts.After(last) {
			last = ts
		}
	}
	return last
}
