package pgnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Node manages the PostgreSQL server of one data directory. Its methods
// are safe for concurrent use; operations that change the server or its
// files run one at a time.
type Node struct {
	cfg Config
	log *slog.Logger
	os  osIdentity

	opMu sync.Mutex // serialises operations that change the server or its files

	mu   sync.Mutex // guards the fields below and process fields
	proc *process
	// params are the parameters the next write of pgquorum.conf uses
	// (see UseParameters); accepted is the set last applied by
	// SetParameters or a server started with (at first
	// Config.Parameters), rejected the last set the running server
	// refused.
	params, accepted, rejected map[string]string

	connMu sync.Mutex // guards idle, busy, freed and writeConn
	// idle holds up to maxIdle local connections kept between probes
	// (see withConn).
	idle []*pgx.Conn
	// busy counts the acquired connections not yet released; freed
	// wakes an acquire waiting for one (see acquire).
	busy  int
	freed chan struct{}
	// writeConn is WriteProbe's connection, kept between its calls.
	writeConn *pgx.Conn

	// replies measures the standbys' reply ages across probes.
	replies replyTracker
}

// New validates cfg (after applying defaults) and returns a Node. It does
// not touch the data directory or the server; call Inspect, Adopt or Start.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	id, err := lookupOSUser(cfg.OSUser)
	if err != nil {
		return nil, err
	}
	params := make(map[string]string, len(cfg.Parameters))
	for k, v := range cfg.Parameters {
		params[k] = v
	}
	return &Node{
		cfg:      cfg,
		log:      log.With("component", "pgnode", "data_dir", cfg.DataDir),
		os:       id,
		params:   params,
		accepted: params,
	}, nil
}

// Config returns the Node's configuration with defaults applied.
func (n *Node) Config() Config { return n.cfg }

// PGAddr returns host:port other members use to reach this server.
func (n *Node) PGAddr() string { return fmt.Sprintf("%s:%d", n.cfg.Host, n.cfg.Port) }

// AsUpstream returns the Upstream that followers of this node use, with
// the given slot.
func (n *Node) AsUpstream(slot string) Upstream {
	return Upstream{Host: n.cfg.Host, Port: n.cfg.Port, SlotName: slot}
}

func (n *Node) bin(name string) string { return filepath.Join(n.cfg.BinDir, name) }

func (n *Node) currentParams() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.params
}

// Role is the role to start a server in.
type Role int

// Roles for StartOptions.
const (
	// RoleAsIs starts the server with the files as they are: as a standby if
	// standby.signal exists, with the standby settings last written.
	RoleAsIs Role = iota
	// RolePrimary starts without standby.signal. Never start a former
	// primary this way after a failover: it would come up writable.
	RolePrimary
	// RoleStandby starts with standby.signal and Upstream's settings.
	RoleStandby
)

// String returns the role's name.
func (r Role) String() string {
	switch r {
	case RoleAsIs:
		return "as-is"
	case RolePrimary:
		return "primary"
	case RoleStandby:
		return "standby"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// StartOptions say how to start the server.
type StartOptions struct {
	Role Role
	// Upstream is the primary a RoleStandby server follows; nil starts a
	// standby that follows nobody (it replays local WAL and waits).
	Upstream *Upstream
	// ExpectSystemID, if not 0, makes Start refuse (ErrForeignDataDir) a
	// data directory with another system identifier, running or not.
	ExpectSystemID uint64
}

// Start brings the server up in the requested role and waits until it
// accepts connections (StartTimeout). It is idempotent: if a postmaster
// already runs for the data directory it is adopted, not restarted; its
// node-local and standby settings are rewritten and reloaded if they
// changed, and a role different from the one requested returns
// ErrRoleMismatch (use Promote or Demote). Before starting it rewrites the
// managed configuration and waits for backends of a crashed postmaster to
// exit. A server that does not become ready within StartTimeout is left
// running and ErrStartFailed (with the log's tail) is returned; a later
// Start adopts it and waits again.
func (n *Node) Start(ctx context.Context, opts StartOptions) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	return n.startLocked(ctx, opts)
}

func (n *Node) startLocked(ctx context.Context, opts StartOptions) error {
	if opts.Upstream != nil {
		if opts.Role != RoleStandby {
			return fmt.Errorf("%w: an upstream needs RoleStandby, got %s", ErrInvalidConfig, opts.Role)
		}
		if err := opts.Upstream.validate(); err != nil {
			return err
		}
	}
	info, err := n.Inspect(ctx)
	if err != nil {
		return err
	}
	if !info.Initialized {
		return fmt.Errorf("%w: %s", ErrNotInitialized, info.Path)
	}
	if opts.ExpectSystemID != 0 && info.SystemIdentifier != opts.ExpectSystemID {
		return fmt.Errorf("%w: %s has system identifier %d, cluster expects %d", ErrForeignDataDir, info.Path, info.SystemIdentifier, opts.ExpectSystemID)
	}
	if info.Running {
		return n.startRunning(ctx, info, opts)
	}
	if err := n.prepareDirs(); err != nil {
		return err
	}
	params := n.currentParams()
	if _, err := n.writeLocalConfig(params); err != nil {
		return err
	}
	switch opts.Role {
	case RolePrimary:
		if _, err := n.writeRecoveryConf(nil); err != nil {
			return err
		}
		if err := n.setStandbySignal(false); err != nil {
			return err
		}
	case RoleStandby:
		if _, err := n.writeRecoveryConf(opts.Upstream); err != nil {
			return err
		}
		if err := n.setStandbySignal(true); err != nil {
			return err
		}
	}
	if info.StalePIDFile {
		pf, _, _ := readPIDFile(n.cfg.DataDir)
		n.waitOrphans(ctx, pf.shmID, 30*time.Second)
	}
	if err := n.spawnAndWait(ctx); err != nil {
		return err
	}
	n.acceptParams(params)
	return nil
}

// startRunning handles Start on a running server.
func (n *Node) startRunning(ctx context.Context, info DataDirInfo, opts StartOptions) error {
	if err := n.adoptPID(info.PostmasterPID); err != nil {
		return err
	}
	// The managed files go first, with a SIGHUP: the agent logs in with
	// the superuser's password, and a server set up by hand may allow its
	// local connections only by peer or ident until it reads our
	// pg_hba.conf. (Role-independent: pg_hba.conf and pgquorum.conf.)
	changed, err := n.writeLocalConfig(n.currentParams())
	if err != nil {
		return err
	}
	if changed {
		// Best effort: the reload through SQL below follows anyway once
		// the agent can log in.
		if err := syscall.Kill(info.PostmasterPID, syscall.SIGHUP); err != nil {
			n.log.Warn("could not signal the postmaster to reload", "pid", info.PostmasterPID, "err", err)
		}
	}
	if err := n.waitReady(ctx, n.currentProc()); err != nil {
		return err
	}
	inRecovery, err := n.inRecovery(ctx)
	if err != nil {
		return err
	}
	switch {
	case opts.Role == RolePrimary && inRecovery:
		return fmt.Errorf("%w: %s runs as a standby, primary requested (use Promote)", ErrRoleMismatch, n.cfg.DataDir)
	case opts.Role == RoleStandby && !inRecovery:
		return fmt.Errorf("%w: %s runs as a primary, standby requested (use Demote)", ErrRoleMismatch, n.cfg.DataDir)
	}
	if opts.Role == RoleStandby {
		c, err := n.writeRecoveryConf(opts.Upstream)
		if err != nil {
			return err
		}
		changed = changed || c
	}
	if changed {
		n.log.Info("settings changed on running server, reloading")
		return n.reloadLocked(ctx)
	}
	return nil
}

// prepareDirs makes sure the socket directory exists and the OS user can
// reach the data directory and write the log.
func (n *Node) prepareDirs() error {
	if err := n.os.ensureDir(n.cfg.SocketDir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(n.cfg.LogFile), 0o755); err != nil {
		return fmt.Errorf("create log directory for %s: %w", n.cfg.LogFile, err)
	}
	return n.os.checkReachable(filepath.Dir(n.cfg.DataDir))
}

// spawnAndWait starts the postmaster and waits until it accepts
// connections.
func (n *Node) spawnAndWait(ctx context.Context) error {
	p, err := n.spawn()
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	return n.waitReady(ctx, p)
}

func (n *Node) currentProc() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// waitReady waits until the postmaster reports ready (or standby) in
// postmaster.pid and answers a query, it exits, or StartTimeout passes.
func (n *Node) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if p.exited() {
			n.markExited(p)
			return fmt.Errorf("%w: postmaster %d of %s exited: %s", ErrStartFailed, p.pid, n.cfg.DataDir, p.logTail(3000))
		}
		pf, ok, _ := readPIDFile(n.cfg.DataDir)
		if ok && pf.pid == p.pid && (pf.status == "ready" || pf.status == "standby") {
			if lastErr = n.ping(ctx); lastErr == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: postmaster %d of %s not ready after %s (status %q, last error %v): %s",
				ErrStartFailed, p.pid, n.cfg.DataDir, n.cfg.StartTimeout, pf.status, lastErr, p.logTail(3000))
		case <-tick.C:
		}
	}
}

// adoptPID makes pid (the data directory's live postmaster) the tracked
// process unless it already is.
func (n *Node) adoptPID(pid int) error {
	if !isPostmasterOf(pid, n.cfg.DataDir) {
		return fmt.Errorf("%w: pid %d in %s", ErrForeignProcess, pid, filepath.Join(n.cfg.DataDir, "postmaster.pid"))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && n.proc.pid == pid && n.proc.exitedAt.IsZero() {
		return nil
	}
	pf, _, _ := readPIDFile(n.cfg.DataDir)
	started := pf.startTime
	if started.IsZero() {
		started = time.Now()
	}
	n.proc = &process{pid: pid, adopted: true, startedAt: started, logPath: n.cfg.LogFile}
	if fi, err := os.Stat(n.cfg.LogFile); err == nil {
		n.proc.logOffset = fi.Size()
	}
	n.log.Info("adopted running postmaster", "pid", pid)
	return nil
}

// Adopt finds the postmaster already running for the data directory (from
// postmaster.pid, checked against the process's working directory) and
// manages it as it is, without restarting it or rewriting its files. It
// returns ErrNotRunning if there is none. An agent that restarts calls
// Adopt (or Start, which adopts too) so PostgreSQL keeps running.
func (n *Node) Adopt(ctx context.Context) (ProcessInfo, error) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	pf, ok, err := readPIDFile(n.cfg.DataDir)
	if err != nil {
		return ProcessInfo{}, err
	}
	if !ok || !isPostmasterOf(pf.pid, n.cfg.DataDir) {
		return ProcessInfo{}, fmt.Errorf("%w: no live postmaster for %s", ErrNotRunning, n.cfg.DataDir)
	}
	if err := n.adoptPID(pf.pid); err != nil {
		return ProcessInfo{}, err
	}
	return n.Process(), nil
}

// Stop shuts the server down with mode and waits; a fast or smart shutdown
// that outlasts StopTimeout escalates to immediate, then SIGKILL (always
// reaped). Stopping a stopped server is a no-op. It also stops a
// postmaster this Node did not start.
func (n *Node) Stop(ctx context.Context, mode StopMode) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	return n.stopLocked(ctx, mode)
}

func (n *Node) stopLocked(ctx context.Context, mode StopMode) error {
	p := n.currentProc()
	if p == nil || p.exited() {
		pf, ok, err := readPIDFile(n.cfg.DataDir)
		if err != nil {
			return err
		}
		if !ok || !isPostmasterOf(pf.pid, n.cfg.DataDir) {
			if p != nil {
				n.markExited(p)
			}
			return nil
		}
		if err := n.adoptPID(pf.pid); err != nil {
			return err
		}
		p = n.currentProc()
	}
	return n.stopProcess(ctx, p, mode)
}

// Restart stops the server (fast) and starts it again in the role its
// files describe, for example to apply a parameter that needs a restart.
func (n *Node) Restart(ctx context.Context) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if err := n.stopLocked(ctx, StopFast); err != nil {
		return err
	}
	return n.startLocked(ctx, StartOptions{Role: RoleAsIs})
}

// Reload rewrites the node-local configuration and makes the server re-read
// its configuration files, waiting until it has.
func (n *Node) Reload(ctx context.Context) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if _, err := n.writeLocalConfig(n.currentParams()); err != nil {
		return err
	}
	return n.reloadLocked(ctx)
}

// Bootstrap creates a new cluster in an empty (or missing) data directory:
// initdb as the OS user with the superuser's password, the managed
// configuration, a start as primary, and the replication and rewind roles.
// It leaves the server running and returns its system identifier. It
// refuses a data directory that is initialized (ErrAlreadyInitialized) or
// holds anything (ErrDataDirNotEmpty).
func (n *Node) Bootstrap(ctx context.Context) (uint64, error) {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if err := n.requireEmptyDataDir(ctx); err != nil {
		return 0, err
	}
	if err := n.prepareDirs(); err != nil {
		return 0, err
	}
	if err := n.os.ensureDir(n.cfg.DataDir, 0o700); err != nil {
		return 0, err
	}
	pw, err := os.CreateTemp("", "pgquorum-pw-*")
	if err != nil {
		return 0, fmt.Errorf("create password file: %w", err)
	}
	defer os.Remove(pw.Name())
	_, werr := pw.WriteString(n.cfg.Superuser.Password + "\n")
	if err := errors.Join(werr, pw.Close(), n.os.chown(pw.Name())); err != nil {
		return 0, fmt.Errorf("write password file %s: %w", pw.Name(), err)
	}
	args := []string{"-D", n.cfg.DataDir, "-U", n.cfg.Superuser.Username, "--pwfile=" + pw.Name(),
		"--auth-local=scram-sha-256", "--auth-host=scram-sha-256"}
	args = append(args, n.cfg.InitdbArgs...)
	n.log.Info("running initdb", "args", args)
	if _, err := n.os.run(ctx, "/", nil, n.bin("initdb"), args...); err != nil {
		return 0, err
	}
	if _, err := n.writeSyncConf(""); err != nil {
		return 0, err
	}
	if err := n.startLocked(ctx, StartOptions{Role: RolePrimary}); err != nil {
		return 0, err
	}
	if err := n.ensureRoles(ctx); err != nil {
		return 0, err
	}
	info, err := n.Inspect(ctx)
	if err != nil {
		return 0, err
	}
	n.log.Info("bootstrapped cluster", "system_identifier", info.SystemIdentifier)
	return info.SystemIdentifier, nil
}

// requireEmptyDataDir refuses an initialized or non-empty data directory.
func (n *Node) requireEmptyDataDir(ctx context.Context) error {
	info, err := n.Inspect(ctx)
	if err != nil {
		return err
	}
	if info.Initialized {
		return fmt.Errorf("%w: %s (system identifier %d)", ErrAlreadyInitialized, info.Path, info.SystemIdentifier)
	}
	if info.Exists && !info.Empty {
		return fmt.Errorf("%w: %s", ErrDataDirNotEmpty, info.Path)
	}
	return nil
}
