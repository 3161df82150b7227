package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// OSUser is the account servers run as when the test process is root.
const OSUser = "postgres"

// PGBinDir returns the PostgreSQL bin directory (PGQUORUM_PGBIN or Debian's
// PostgreSQL 15 location).
func PGBinDir() string {
	if d := os.Getenv("PGQUORUM_PGBIN"); d != "" {
		return d
	}
	return "/usr/lib/postgresql/15/bin"
}

// PgBouncerBin returns the pgbouncer executable (PGQUORUM_PGBOUNCER or
// /usr/sbin/pgbouncer).
func PgBouncerBin() string {
	if b := os.Getenv("PGQUORUM_PGBOUNCER"); b != "" {
		return b
	}
	return "/usr/sbin/pgbouncer"
}

// SkipIfMissing skips the test in -short mode, or when PostgreSQL, PgBouncer,
// setpriv or the postgres OS user needed to run them are missing. The message
// names what is missing and how to get it.
func SkipIfMissing(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("pgtest: skipping real PostgreSQL/PgBouncer test in -short mode")
	}
	var missing []string
	for _, bin := range []string{
		filepath.Join(PGBinDir(), "initdb"),
		filepath.Join(PGBinDir(), "postgres"),
		PgBouncerBin(),
	} {
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("setpriv"); err != nil {
			missing = append(missing, "setpriv (util-linux)")
		}
		if _, err := user.Lookup(OSUser); err != nil {
			missing = append(missing, "OS user "+OSUser)
		}
	}
	if len(missing) > 0 {
		t.Skipf("pgtest: missing %v; install postgresql-15 and pgbouncer (make deps), "+
			"or set PGQUORUM_PGBIN / PGQUORUM_PGBOUNCER", missing)
	}
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and has
// not been handed out before in this process.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pgtest: FreePort: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		portMu.Lock()
		dup := portsUsed[port]
		portsUsed[port] = true
		portMu.Unlock()
		if !dup {
			return port
		}
	}
	t.Fatal("pgtest: FreePort: no unused port after 100 tries")
	return 0
}

// serverDir makes a fresh temporary directory that the server's OS user owns
// and can reach (t.TempDir() is 0700 root).
func serverDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	MakeReachable(t, dir)
	Chown(t, dir)
	return dir
}

// MakeReachable adds o+x to path and each of its parents that lacks it, so the
// postgres OS user can traverse to files below path. It never removes bits.
func MakeReachable(t testing.TB, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	for {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("pgtest: make %s reachable: %v", path, err)
		}
		if fi.IsDir() && fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
				t.Fatalf("pgtest: make %s reachable: %v", path, err)
			}
		}
		parent := filepath.Dir(p)
		if parent == p {
			return
		}
		p = parent
	}
}

// Chown gives path to the server OS user when running as root.
func Chown(t testing.TB, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	uid, gid := osUserIDs(t)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatalf("pgtest: chown %s: %v", path, err)
	}
}

func osUserIDs(t testing.TB) (int, int) {
	t.Helper()
	u, err := user.Lookup(OSUser)
	if err != nil {
		t.Fatalf("pgtest: look up OS user %s: %v", OSUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// command builds an exec.Cmd that runs bin as the server OS user when the
// test runs as root. setpriv execs in place, so the started PID is bin's PID.
// The child gets SIGKILL if the test process dies without cleaning up.
func command(bin string, args ...string) *exec.Cmd {
	if os.Geteuid() != 0 {
		return exec.Command(bin, args...)
	}
	full := append([]string{
		"--reuid=" + OSUser, "--regid=" + OSUser, "--init-groups", "--pdeathsig=KILL", bin,
	}, args...)
	return exec.Command("setpriv", full...)
}

// tailFile returns the last n bytes of a log file for failure messages.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	_, _ = f.ReadAt(buf, off)
	return string(buf)
}
