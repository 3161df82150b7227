package pgtest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Default credentials of the test superuser.
const (
	DefaultUser     = "pgquorum"
	DefaultPassword = "pgquorum-test"
)

// PostgresOptions configures StartPostgres. The zero value is usable.
type PostgresOptions struct {
	// User and Password of the superuser (DefaultUser/DefaultPassword if empty).
	User, Password string
	// HostAuth is the pg_hba method for TCP: "md5" (default), "scram-sha-256"
	// or "trust". Local socket connections are always trusted.
	HostAuth string
	// WALLevel is wal_level ("replica" if empty).
	WALLevel string
	// Port to listen on (a free port if 0).
	Port int
	// Settings are extra postgresql.conf lines, written sorted by key.
	// Values are written as given, so quote strings: {"wal_keep_size": "'256MB'"}.
	Settings map[string]string
}

// Postgres is a running throwaway PostgreSQL server.
type Postgres struct {
	// Host is always 127.0.0.1.
	Host string
	// Port is the TCP port.
	Port int
	// DataDir is the data directory.
	DataDir string
	// SocketDir is the Unix socket directory.
	SocketDir string
	// User and Password are the superuser's credentials.
	User, Password string

	t    testing.TB
	dir  string
	log  string
	mu   sync.Mutex
	proc *proc
}

// StartPostgres runs initdb (with data checksums) and starts PostgreSQL on
// 127.0.0.1, waits until it accepts connections, and stops it in t.Cleanup.
func StartPostgres(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	SkipIfMissing(t)
	if opts.User == "" {
		opts.User = DefaultUser
	}
	if opts.Password == "" {
		opts.Password = DefaultPassword
	}
	if opts.HostAuth == "" {
		opts.HostAuth = "md5"
	}
	if opts.WALLevel == "" {
		opts.WALLevel = "replica"
	}
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	dir := serverDir(t)
	p := &Postgres{
		Host: "127.0.0.1", Port: opts.Port,
		DataDir: filepath.Join(dir, "data"), SocketDir: shortSocketDir(t),
		User: opts.User, Password: opts.Password,
		t: t, dir: dir, log: filepath.Join(dir, "postgres.log"),
	}
	p.initdb(opts)
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("pgtest: stop postgres: %v", err)
		}
		if t.Failed() {
			t.Logf("pgtest: postgres log tail (%s):\n%s", p.log, tailFile(p.log, 4000))
		}
	})
	p.Start()
	return p
}

// shortSocketDir makes a socket directory under /tmp: Unix socket paths are
// limited to about 100 bytes, and t.TempDir() paths with long test names are not.
func shortSocketDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pgt")
	if err != nil {
		t.Fatalf("pgtest: socket dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	Chown(t, d)
	return d
}

func (p *Postgres) initdb(opts PostgresOptions) {
	t := p.t
	t.Helper()
	pwfile := filepath.Join(p.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(opts.Password+"\n"), 0o600); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	Chown(t, pwfile)
	cmd := command(filepath.Join(PGBinDir(), "initdb"),
		"-D", p.DataDir, "-U", opts.User, "--pwfile="+pwfile,
		"--auth-local=trust", "--auth-host="+opts.HostAuth,
		"--data-checksums", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	settings := map[string]string{
		"listen_addresses":        "'127.0.0.1'",
		"port":                    fmt.Sprint(p.Port),
		"unix_socket_directories": "'" + p.SocketDir + "'",
		"wal_level":               opts.WALLevel,
		"max_wal_senders":         "10",
		"max_replication_slots":   "10",
		"hot_standby":             "on",
		"fsync":                   "off", // throwaway data; kill -9 is still safe
		"shared_buffers":          "32MB",
		"logging_collector":       "off",
	}
	maps.Copy(settings, opts.Settings)
	var b strings.Builder
	b.WriteString("\n# pgtest\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&b, "%s = %s\n", k, settings[k])
	}
	conf := filepath.Join(p.DataDir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatalf("pgtest: write %s: %v", conf, err)
	}
}

// Start starts the server (again, after Stop or Kill9) on the same port and
// data directory and waits until it accepts connections. Call it from the
// test goroutine.
func (p *Postgres) Start() {
	t := p.t
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil && !p.proc.exited() {
		t.Fatalf("pgtest: postgres on port %d already running (pid %d)", p.Port, p.proc.pid())
	}
	pr, err := startProc(command(filepath.Join(PGBinDir(), "postgres"), "-D", p.DataDir), p.log)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	p.proc = pr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pr.exited() {
			t.Fatalf("pgtest: postgres exited during start-up: %v\n%s", pr.err, tailFile(p.log, 4000))
		}
		if err := ping(p.DSN("postgres"), false); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("pgtest: postgres on port %d not ready after 30s: %v\n%s", p.Port, err, tailFile(p.log, 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down (fast mode: SIGINT) and reaps it.
func (p *Postgres) Stop() {
	p.t.Helper()
	if err := p.stop(); err != nil {
		p.t.Fatalf("pgtest: stop postgres: %v", err)
	}
}

func (p *Postgres) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return nil
	}
	return p.proc.stop(syscall.SIGINT, 30*time.Second)
}

// Kill9 sends SIGKILL to the postmaster and reaps it. Its backends notice the
// postmaster's death and exit on their own shortly after.
func (p *Postgres) Kill9() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		p.proc.kill9()
	}
}

// PID returns the postmaster's PID (0 if never started).
func (p *Postgres) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return 0
	}
	return p.proc.pid()
}

// Running reports whether the postmaster is running.
func (p *Postgres) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc != nil && !p.proc.exited()
}

// DSN returns a connection string for database db over TCP as the superuser.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=5",
		p.Host, p.Port, p.User, p.Password, db)
}

// Exec runs sql on database db and fails the test on error.
func (p *Postgres) Exec(db, sql string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN(db))
	if err != nil {
		p.t.Fatalf("pgtest: connect %s: %v", db, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		p.t.Fatalf("pgtest: exec %q on %s: %v", sql, db, err)
	}
}

// ping connects once and runs a trivial statement.
func ping(dsn string, simple bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	query := "SELECT 1"
	if simple {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
		query = "SHOW VERSION"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, query)
	return err
}
