package pgnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	testSuperPW = "su-secret'quote"
	testReplPW  = "repl-secret"
	testRwPW    = "rewind-secret"
)

// requirePG skips the test when PostgreSQL 15 is not installed.
func requirePG(t *testing.T) {
	t.Helper()
	for _, b := range []string{"initdb", "postgres", "pg_basebackup", "pg_rewind", "pg_controldata"} {
		if _, err := os.Stat(filepath.Join(DefaultBinDir, b)); err != nil {
			t.Skipf("PostgreSQL binaries missing (%s): install Debian's postgresql-15", filepath.Join(DefaultBinDir, b))
		}
	}
	if os.Geteuid() == 0 {
		if _, err := lookupOSUser(DefaultOSUser); err != nil {
			t.Skipf("running as root but OS user %q is missing: %v", DefaultOSUser, err)
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// reachableTempDir returns t.TempDir() made traversable by the postgres OS
// user (TempDir and its parent are 0700 root).
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != filepath.Clean(os.TempDir()); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testConfig returns a Config for member name under base.
func testConfig(t *testing.T, base, name string) Config {
	t.Helper()
	return Config{
		Name:            name,
		DataDir:         filepath.Join(base, name, "data"),
		SocketDir:       filepath.Join(base, name, "sock"),
		Port:            freePort(t),
		ClusterName:     "pgqtest",
		Superuser:       Credentials{Username: "postgres", Password: testSuperPW},
		Replication:     Credentials{Username: "replicator", Password: testReplPW},
		Rewind:          Credentials{Username: "rewinder", Password: testRwPW},
		Parameters:      map[string]string{"shared_buffers": "16MB", "max_connections": "30", "fsync": "off"},
		AllowedNetworks: []string{"127.0.0.1/32"},
		InitdbArgs:      []string{"--data-checksums", "--encoding=UTF8", "--locale=C", "--no-sync"},
		StartTimeout:    30 * time.Second,
		StopTimeout:     20 * time.Second,
	}
}

// newTestNode creates a Node and registers a cleanup that stops whatever
// postmaster runs for its data directory, by PID.
func newTestNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg, testLogger(t).With("node", cfg.Name))
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() {
		stopByPIDFile(t, n.Config().DataDir)
		// Let the reaper goroutine finish logging before the test ends.
		if p := n.currentProc(); p != nil && p.done != nil {
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
		}
	})
	return n
}

// stopByPIDFile stops the postmaster named in dataDir/postmaster.pid
// (immediate shutdown, then SIGKILL), never by process name.
func stopByPIDFile(t *testing.T, dataDir string) {
	pf, ok, _ := readPIDFile(dataDir)
	if !ok || !isPostmasterOf(pf.pid, dataDir) {
		return
	}
	p, err := os.FindProcess(pf.pid)
	if err != nil {
		return
	}
	_ = p.Signal(syscall.SIGQUIT)
	deadline := time.Now().Add(10 * time.Second)
	for isPostmasterOf(pf.pid, dataDir) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if isPostmasterOf(pf.pid, dataDir) {
		_ = p.Kill()
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sqlConn connects to n over TCP as the superuser.
func sqlConn(t *testing.T, ctx context.Context, n *Node) *pgx.Conn {
	t.Helper()
	c, err := n.connectTo(ctx, "127.0.0.1", n.Config().Port, n.Config().Superuser)
	if err != nil {
		t.Fatalf("connect %s: %v", n.Config().Name, err)
	}
	t.Cleanup(func() { closeConn(c) })
	return c
}

func mustExec(t *testing.T, ctx context.Context, n *Node, sql string, args ...any) {
	t.Helper()
	c, err := n.connectTo(ctx, "127.0.0.1", n.Config().Port, n.Config().Superuser)
	if err != nil {
		t.Fatalf("connect %s: %v", n.Config().Name, err)
	}
	defer closeConn(c)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s on %s: %v", sql, n.Config().Name, err)
	}
}

// ids returns the ids in table t of n, sorted.
func ids(t *testing.T, ctx context.Context, n *Node) []int {
	t.Helper()
	c, err := n.connectTo(ctx, "127.0.0.1", n.Config().Port, n.Config().Superuser)
	if err != nil {
		t.Fatalf("connect %s: %v", n.Config().Name, err)
	}
	defer closeConn(c)
	rows, err := c.Query(ctx, "SELECT id FROM t ORDER BY id")
	if err != nil {
		t.Fatalf("select on %s: %v", n.Config().Name, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatalf("select on %s: %v", n.Config().Name, err)
	}
	return out
}

// eventually polls cond every 50ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s: %v", what, d, err)
}

// waitIDs waits until n has exactly want in table t.
func waitIDs(t *testing.T, ctx context.Context, n *Node, want ...int) {
	t.Helper()
	eventually(t, 20*time.Second, n.Config().Name+" has ids "+fmt.Sprint(want), func() error {
		c, err := n.connectTo(ctx, "127.0.0.1", n.Config().Port, n.Config().Superuser)
		if err != nil {
			return err
		}
		defer closeConn(c)
		rows, err := c.Query(ctx, "SELECT id FROM t ORDER BY id")
		if err != nil {
			return err
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return errors.New("have " + fmt.Sprint(got))
		}
		return nil
	})
}

// bootstrapPrimary creates, bootstraps and returns a primary node.
func bootstrapPrimary(t *testing.T, ctx context.Context, base, name string) (*Node, uint64) {
	t.Helper()
	n := newTestNode(t, testConfig(t, base, name))
	sysid, err := n.Bootstrap(ctx)
	if err != nil {
		t.Fatalf("Bootstrap %s: %v", name, err)
	}
	return n, sysid
}

// streamingStandby clones member name from primary (through a slot the
// primary keeps for it), starts it and waits until primary sees it
// streaming. tweak, when given, adjusts its Config first.
func streamingStandby(t *testing.T, ctx context.Context, primary *Node, base, name string, sysid uint64, tweak func(*Config)) *Node {
	t.Helper()
	slot := SlotName(primary.Config().SlotPrefix, name)
	if err := primary.EnsureSlots(ctx, []string{slot}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, base, name)
	if tweak != nil {
		tweak(&cfg)
	}
	n := newTestNode(t, cfg)
	if err := n.CloneFrom(ctx, primary.AsUpstream(slot)); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx, StartOptions{Role: RoleAsIs, ExpectSystemID: sysid}); err != nil {
		t.Fatal(err)
	}
	waitStreaming(t, ctx, primary, name)
	return n
}
