package pgnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// osIdentity is the OS account PostgreSQL and its tools run as.
type osIdentity struct {
	switchUser bool // true when the agent is root and must drop privileges
	name       string
	home       string
	uid, gid   uint32
	groups     []uint32
}

// lookupOSUser resolves the account to run PostgreSQL as: name when the
// agent runs as root, otherwise the agent's own account.
func lookupOSUser(name string) (osIdentity, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return osIdentity{}, fmt.Errorf("%w: current OS user: %v", ErrInvalidConfig, err)
		}
		return osIdentity{name: u.Username, home: u.HomeDir, uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return osIdentity{}, fmt.Errorf("%w: OSUser %q: %v", ErrInvalidConfig, name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return osIdentity{}, fmt.Errorf("%w: OSUser %q ids: %v", ErrInvalidConfig, name, err)
	}
	if uid == 0 {
		return osIdentity{}, fmt.Errorf("%w: OSUser %q has uid 0", ErrInvalidConfig, name)
	}
	id := osIdentity{switchUser: true, name: u.Username, home: u.HomeDir, uid: uint32(uid), gid: uint32(gid)}
	gids, err := u.GroupIds()
	if err != nil {
		return osIdentity{}, fmt.Errorf("%w: OSUser %q groups: %v", ErrInvalidConfig, name, err)
	}
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			id.groups = append(id.groups, uint32(n))
		}
	}
	return id, nil
}

// procAttr returns the attributes for a child that runs as the OS user
// (like setpriv --reuid --regid --init-groups, without a wrapper process).
// With newGroup the child leads its own process group, so signals aimed at
// the agent's group (Ctrl-C, systemd stop of the agent) do not reach it.
func (id osIdentity) procAttr(newGroup bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: newGroup}
	if id.switchUser {
		a.Credential = &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: id.groups}
	}
	return a
}

// env is the environment for PostgreSQL and its tools: fixed, English
// messages (pgnode parses pg_controldata), and no PG* variables leaking
// from the agent's own environment.
func (id osIdentity) env(extra ...string) []string {
	e := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LC_ALL=C", "LANG=C",
		"HOME=" + id.home,
		"USER=" + id.name, "LOGNAME=" + id.name,
	}
	if tz, ok := os.LookupEnv("TZ"); ok {
		e = append(e, "TZ="+tz)
	}
	return append(e, extra...)
}

// chown gives path to the OS user when the agent runs as root.
func (id osIdentity) chown(path string) error {
	if !id.switchUser {
		return nil
	}
	if err := os.Lchown(path, int(id.uid), int(id.gid)); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, id.name, err)
	}
	return nil
}

// ensureDir creates dir (and parents) if missing, hands it to the OS user
// with the given mode and checks that the OS user can reach it.
func (id osIdentity) ensureDir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := id.chown(dir); err != nil {
		return err
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return id.checkReachable(filepath.Dir(dir))
}

// checkReachable verifies that the OS user may traverse every directory
// from / down to dir, so PostgreSQL can open paths below it.
func (id osIdentity) checkReachable(dir string) error {
	if !id.switchUser {
		return nil
	}
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		okDir := perm&0o001 != 0
		if ok && st.Uid == id.uid && perm&0o100 != 0 {
			okDir = true
		}
		if ok && perm&0o010 != 0 {
			if st.Gid == id.gid {
				okDir = true
			}
			for _, g := range id.groups {
				if st.Gid == g {
					okDir = true
				}
			}
		}
		if !okDir {
			return fmt.Errorf("%w: OS user %s cannot traverse %s (mode %v): make it reachable (chmod o+x)", ErrInvalidConfig, id.name, d, perm)
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

// run executes a PostgreSQL tool as the OS user and returns its combined
// output. A failure wraps ErrCommandFailed and carries the output's tail.
func (id osIdentity) run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = id.procAttr(true)
	cmd.Env = id.env(env...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	s := out.String()
	if err != nil {
		return s, fmt.Errorf("%w: %s %s: %v: %s", ErrCommandFailed, filepath.Base(name), strings.Join(redactArgs(args), " "), err, tail(s, 2000))
	}
	return s, nil
}

// redactArgs hides password=... fragments in conninfo arguments.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if j := strings.Index(a, "password="); j >= 0 {
			a = a[:j] + "password=***"
		}
		out[i] = a
	}
	return out
}

// tail returns at most n bytes from the end of s, trimmed.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
