package pgtest

import (
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
)

// Default credentials of the PgBouncer admin console user.
const (
	DefaultAdminUser     = "pgbadmin"
	DefaultAdminPassword = "pgbadmin-test"
)

// PgBouncerOptions configures StartPgBouncer. The zero value is usable.
type PgBouncerOptions struct {
	// AuthType is auth_type: "md5" (default) or "trust".
	AuthType string
	// AdminUser and AdminPassword for the admin console
	// (DefaultAdminUser/DefaultAdminPassword if empty).
	AdminUser, AdminPassword string
	// Users are extra auth_file entries, user → plain-text password. PgBouncer
	// also uses them to log in to PostgreSQL. DefaultUser is always present.
	Users map[string]string
	// PoolMode is pool_mode ("transaction" if empty).
	PoolMode string
	// IncludePath is the databases file pulled in with %include under
	// [databases]. If empty, an empty file in the server's directory is used.
	// An existing file is left as it is; a missing one is created empty.
	IncludePath string
	// Port to listen on (a free port if 0).
	Port int
	// Settings are extra [pgbouncer] keys, written sorted by key.
	Settings map[string]string
}

// PgBouncer is a running throwaway PgBouncer in the foreground.
type PgBouncer struct {
	// Host is always 127.0.0.1.
	Host string
	// Port is the listen port.
	Port int
	// ConfigPath is the pgbouncer.ini.
	ConfigPath string
	// IncludePath is the [databases] include file.
	IncludePath string
	// LogPath is PgBouncer's log file.
	LogPath string
	// AdminUser and AdminPassword log in to the admin console.
	AdminUser, AdminPassword string
	// User and Password are the default client credentials.
	User, Password string

	t    testing.TB
	mu   sync.Mutex
	proc *proc
}

// StartPgBouncer writes a pgbouncer.ini, starts PgBouncer on 127.0.0.1 in the
// foreground, waits for the admin console and stops it in t.Cleanup.
func StartPgBouncer(t testing.TB, opts PgBouncerOptions) *PgBouncer {
	t.Helper()
	SkipIfMissing(t)
	if opts.AuthType == "" {
		opts.AuthType = "md5"
	}
	if opts.AdminUser == "" {
		opts.AdminUser = DefaultAdminUser
	}
	if opts.AdminPassword == "" {
		opts.AdminPassword = DefaultAdminPassword
	}
	if opts.PoolMode == "" {
		opts.PoolMode = "transaction"
	}
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	dir := serverDir(t)
	if opts.IncludePath == "" {
		opts.IncludePath = filepath.Join(dir, "databases.ini")
	}
	b := &PgBouncer{
		Host: "127.0.0.1", Port: opts.Port,
		ConfigPath: filepath.Join(dir, "pgbouncer.ini"), IncludePath: opts.IncludePath,
		LogPath:   filepath.Join(dir, "pgbouncer.log"),
		AdminUser: opts.AdminUser, AdminPassword: opts.AdminPassword,
		User: DefaultUser, Password: DefaultPassword,
		t: t,
	}
	b.writeFiles(dir, opts)
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.proc != nil && b.proc.exited() {
			// Nothing in the tests stops PgBouncer behind the harness's
			// back, so an early exit is a crash worth seeing.
			t.Errorf("pgtest: pgbouncer (pid %d) exited before the test ended: %v\n%s",
				b.proc.pid(), b.proc.err, tailFile(b.LogPath+".stderr", 2000))
		} else if b.proc != nil {
			// SIGTERM is an immediate shutdown in 1.18; SIGINT would wait for clients.
			if err := b.proc.stop(syscall.SIGTERM, 10*time.Second); err != nil {
				t.Errorf("pgtest: stop pgbouncer: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("pgtest: pgbouncer log tail (%s):\n%s", b.LogPath, tailFile(b.LogPath, 4000))
		}
	})
	b.start()
	return b
}

func (b *PgBouncer) writeFiles(dir string, opts PgBouncerOptions) {
	t := b.t
	t.Helper()
	users := map[string]string{DefaultUser: DefaultPassword, opts.AdminUser: opts.AdminPassword}
	maps.Copy(users, opts.Users)
	var auth strings.Builder
	for _, u := range slices.Sorted(maps.Keys(users)) {
		fmt.Fprintf(&auth, "%q %q\n", u, users[u])
	}
	authFile := filepath.Join(dir, "userlist.txt")
	writeOwned(t, authFile, auth.String(), 0o600)

	if _, err := os.Stat(opts.IncludePath); os.IsNotExist(err) {
		writeOwned(t, opts.IncludePath, "", 0o644)
	}
	MakeReachable(t, filepath.Dir(opts.IncludePath))

	settings := map[string]string{
		"listen_addr":     "127.0.0.1",
		"listen_port":     fmt.Sprint(opts.Port),
		"unix_socket_dir": "",
		"auth_type":       opts.AuthType,
		"auth_file":       authFile,
		"admin_users":     opts.AdminUser,
		"pool_mode":       opts.PoolMode,
		"logfile":         b.LogPath,
		"max_client_conn": "200",
	}
	maps.Copy(settings, opts.Settings)
	var ini strings.Builder
	ini.WriteString("[databases]\n%include " + opts.IncludePath + "\n\n[pgbouncer]\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&ini, "%s = %s\n", k, settings[k])
	}
	writeOwned(t, b.ConfigPath, ini.String(), 0o644)
}

func writeOwned(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	Chown(t, path)
}

func (b *PgBouncer) start() {
	t := b.t
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	pr, err := startProc(command(PgBouncerBin(), b.ConfigPath), b.LogPath+".stderr")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	b.proc = pr
	deadline := time.Now().Add(15 * time.Second)
	for {
		if pr.exited() {
			t.Fatalf("pgtest: pgbouncer exited during start-up: %v\n%s\n%s", pr.err,
				tailFile(b.LogPath+".stderr", 2000), tailFile(b.LogPath, 2000))
		}
		if err := ping(b.AdminDSN(), true); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("pgtest: pgbouncer admin console on port %d not ready: %v\n%s", b.Port, err, tailFile(b.LogPath, 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PID returns PgBouncer's PID.
func (b *PgBouncer) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.proc.pid()
}

// AdminDSN returns a connection string for the admin console (database
// "pgbouncer"). The console only speaks the simple query protocol.
func (b *PgBouncer) AdminDSN() string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=pgbouncer sslmode=disable connect_timeout=5",
		b.Host, b.Port, b.AdminUser, b.AdminPassword)
}

// DSN returns a client connection string for database db as the default user.
func (b *PgBouncer) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=5",
		b.Host, b.Port, b.User, b.Password, db)
}
