//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"
)

// nsDialer returns a pgx DialFunc whose sockets are created in network
// namespace ns, so the workload's clients sit on a host of their own (the
// client namespace) that nemeses can cut off, while the test process and
// its observer stay in the root namespace.
//
// A socket belongs to the namespace of the thread that created it, for
// its whole life. Each dial runs on a goroutine locked to its OS thread,
// moves that thread into ns, dials, and moves the thread back before it
// unlocks it. The way back matters: the goroutine may run on the main
// thread, whose namespace is the one `ip netns pids` reports for the whole
// process (and Net.Close kills what it lists). If the way back fails the
// goroutine exits locked, and the runtime retires the thread.
func nsDialer(ns string) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			conn net.Conn
			err  error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			c, back, err := dialIn(ctx, ns, network, addr)
			if back {
				runtime.UnlockOSThread()
			}
			ch <- result{c, err}
		}()
		r := <-ch
		return r.conn, r.err
	}
}

// dialIn dials from namespace ns on the current (locked) thread; back
// reports whether the thread is in its own namespace again.
func dialIn(ctx context.Context, ns, network, addr string) (c net.Conn, back bool, err error) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, err
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return nil, true, err
	}
	err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
	_ = target.Close()
	if err != nil {
		return nil, true, fmt.Errorf("setns %s: %w", ns, err)
	}
	var d net.Dialer
	c, err = d.DialContext(ctx, network, addr)
	return c, unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil, err
}
