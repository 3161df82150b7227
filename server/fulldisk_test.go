package server_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/pgquorum/pgquorum/server"
	"github.com/pgquorum/pgquorum/server/servertest"
	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// TestFullDisk_RaftDirOfTheLeader puts n3's data directory on a small
// tmpfs, makes n3 the Raft leader and fills the file system while the
// cluster commits large entries. The leader that cannot store its log must
// step down; n1 and n2 go on committing (with the primary, n1, untouched);
// n3 keeps running, and its Bolt store passes a consistency check. Once
// space is freed and n3 restarted, it catches up and its state equals the
// others'.
func TestFullDisk_RaftDirOfTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := mountTmpfs(t, "16m") // registered before the cluster: unmounted after it stops
	f := newFO(t, func(o *server.Options) {
		if o.NodeID == "n3" {
			o.DataDir = mnt
		}
	})
	p := f.bootstrap()
	if p.MemberId == "n3" {
		t.Fatalf("n3 became the primary; the test wants it a standby")
	}
	n3 := f.node("n3")
	f.moveLeader(func(n *servertest.Node) bool { return n == n3 })

	filler := fillDisk(t, mnt)
	// Large entries make Bolt grow: n3 cannot store them.
	big := strings.Repeat("x", 256<<10)
	var full error
	for i := 0; i < 40 && full == nil; i++ {
		full = setBigParam(f, i, big)
	}
	if full == nil {
		t.Fatalf("40 entries of 256 KiB committed on a full tmpfs (filler %s)", filler)
	}
	t.Logf("n3 leading on a full disk: %v", full)

	l := f.c.WaitLeader(failoverWait)
	f.c.Eventually(failoverWait, "a leader other than n3", func() bool {
		l = f.leader()
		return l != n3
	})
	var committed int
	f.c.Eventually(failoverWait, "the majority commits without n3", func() bool {
		if err := setBigParam(f, 100+committed, "small"); err != nil {
			t.Logf("commit: %v", err)
			return false
		}
		committed++
		return committed >= 5
	})
	if !n3.Running() {
		t.Fatal("n3 stopped on a full disk")
	}
	cpu := cpuDuring(3 * time.Second)
	t.Logf("while n3's disk is full: process CPU %v over 3s; n3 at index %d, leader %s at %d",
		cpu, stateOf(n3).Index, l.ID, stateOf(l).Index)
	if cpu > 4*time.Second { // 2 cores: more than two thirds of both busy
		t.Errorf("the cluster spins while n3's disk is full: %v of CPU in 3s", cpu)
	}
	if got := f.state().Primary; got.MemberId != p.MemberId || got.Epoch != p.Epoch {
		t.Errorf("the primary changed because n3's disk filled: %v, was %v", got, p)
	}

	// Free the space, stop n3, check its store, start it again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	f.c.Kill(n3)
	checkBolt(t, filepath.Join(mnt, "raft", "raft.db"))
	f.restart(n3)
	f.c.Eventually(failoverWait, "n3's state equal to the leader's", func() bool {
		a := stateOf(n3)
		b := stateOf(f.leader())
		return a != nil && b != nil && a.Index == b.Index && proto.Equal(a, b)
	})
	if err := setBigParam(f, 200, "after"); err != nil {
		t.Fatalf("commit after n3 came back: %v", err)
	}
}

// mountTmpfs mounts a tmpfs of size under a temporary directory and
// unmounts it when the test ends (lazily, if something still holds it).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "raftfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s; unmounting lazily", mnt, err, out)
			_ = exec.Command("umount", "-l", mnt).Run()
		}
	})
	return mnt
}

// fillDisk writes a file under dir until the file system is full and
// returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := fh.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// The last partial chunk may have left a few bytes: take them too.
	for {
		if _, err := fh.Write(chunk[:512]); err != nil {
			break
		}
	}
	return path
}

// setBigParam commits a dynamic configuration with parameter pgq_fill.N
// set to value, through the current leader.
func setBigParam(f *fo, n int, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l := f.leader()
	st, err := l.Srv.State(ctx, false)
	if err != nil {
		return err
	}
	cfg := proto.Clone(st.Config).(*pb.DynamicConfig)
	if cfg.PostgresParameters == nil {
		cfg.PostgresParameters = map[string]string{}
	}
	cfg.PostgresParameters[fmt.Sprintf("pgq_fill.p%d", n)] = value
	_, err = l.Srv.SetConfig(ctx, &pb.SetConfig{Config: cfg, ExpectedVersion: cfg.Version})
	return err
}

func stateOf(n *servertest.Node) *pb.ClusterState {
	if !n.Running() {
		return nil
	}
	st, err := n.Srv.State(context.Background(), false)
	if err != nil {
		return nil
	}
	return st
}

// cpuDuring returns the CPU time (user and system) this process used
// during d.
func cpuDuring(d time.Duration) time.Duration {
	use := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := use()
	time.Sleep(d)
	return use() - before
}

// checkBolt opens a Bolt file read-only and runs its consistency check.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("open %s after the full disk: %v", path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			errs = append(errs, e)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatalf("Bolt store %s is inconsistent after the full disk: %v", path, err)
	}
}
