// Package scripts holds the bootstrap and demo scripts; this test runs the
// demo end to end so that it cannot rot.
package scripts

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freeBase finds a base port whose demo range (base+1..base+500) looks free.
func freeBase(t *testing.T) int {
	for base := 20000 + os.Getpid()%200*100; base < 60000; base += 1000 {
		ok := true
		for _, off := range []int{1, 2, 3, 101, 102, 103, 201, 202, 203, 301, 302, 303, 432} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+off))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range for the demo")
	return 0
}

// TestDemo runs `scripts/demo.sh start`, checks a write through PgBouncer,
// runs the failover demo, and stops everything.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole cluster")
	}
	if os.Geteuid() != 0 {
		t.Skip("the demo runs PostgreSQL as the postgres user: needs root")
	}
	if _, err := os.Stat("/usr/lib/postgresql/15/bin/postgres"); err != nil {
		t.Skip("PostgreSQL 15 is not installed (make deps)")
	}
	root, _ := filepath.Abs("..")
	dir := filepath.Join(t.TempDir(), "demo")
	env := append(os.Environ(), "DEMO_DIR="+dir, "BASE_PORT="+strconv.Itoa(freeBase(t)),
		"BIN="+pgquorumBinary(t), "NO_BUILD=1")
	run := func(timeout time.Duration, args ...string) string {
		t.Helper()
		cmd := exec.Command("bash", append([]string{filepath.Join(root, "scripts/demo.sh")}, args...)...)
		cmd.Dir, cmd.Env = root, env
		done := make(chan struct{})
		var out []byte
		var err error
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(timeout):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("demo.sh %v did not finish in %v:\n%s", args, timeout, out)
		}
		if err != nil {
			t.Fatalf("demo.sh %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { run(2*time.Minute, "stop") })
	out := run(4*time.Minute, "start")
	if !strings.Contains(out, "primary") || !strings.Contains(out, "Connect through PgBouncer") {
		t.Fatalf("demo start printed no healthy cluster:\n%s", out)
	}
	out = run(3*time.Minute, "failover")
	if !strings.Contains(out, "first successful write") {
		t.Fatalf("demo failover did not recover:\n%s", out)
	}
	t.Logf("demo failover:\n%s", out)
}
