package pgnode

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Promote turns the running standby into a primary (see promoteOn; it
// waits up to PromoteTimeout), then clears the standby settings.
// (pg_rewind against a source that has not checkpointed since promotion
// wrongly finds "no rewind required": Rewind runs CHECKPOINT on its source
// for that.)
// Promoting a primary is a no-op. The new primary uses the
// synchronous_standby_names in its files: set it with
// SetSynchronousStandbys before promoting.
func (n *Node) Promote(ctx context.Context) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	rec, err := n.inRecovery(ctx)
	if err != nil {
		return fmt.Errorf("promote %s: %w", n.cfg.DataDir, err)
	}
	if rec {
		pctx, cancel := context.WithTimeout(ctx, n.cfg.PromoteTimeout+n.cfg.ProbeTimeout)
		defer cancel()
		conn, _, err := n.acquire(pctx)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrPromoteFailed, n.cfg.DataDir, err)
		}
		start := time.Now()
		err = n.promoteOn(pctx, conn)
		n.release(conn, err)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrPromoteFailed, n.cfg.DataDir, err)
		}
		n.log.Info("promoted", "took", time.Since(start).Round(time.Millisecond))
	}
	if _, err := n.writeRecoveryConf(nil); err != nil {
		return err
	}
	// No CHECKPOINT here: it would hold up the new primary's first writes
	// by a full checkpoint. pg_rewind needs the new timeline in
	// pg_control, and Rewind runs CHECKPOINT on its source first.
	return n.setStandbySignal(false)
}

// promoteOn signals the promotion through c and waits until recovery has
// ended, polling every 10 ms: pg_promote's own wait polls every 100 ms,
// which is most of what a promotion costs, and the new primary is waited
// for on the switchover and failover path.
//
// It signals again every 20 ms while recovery goes on. PostgreSQL 15 can
// notice a promotion while it waits for streamed WAL and then sleep out
// the rest of wal_retrieve_retry_interval (5 s by default) before it ends
// recovery, because the wake-up the signal gave was spent already: a
// standby promoted right after its primary shut down (every switchover)
// took 5 s in two of three tries. A further signal wakes that sleep.
func (n *Node) promoteOn(ctx context.Context, c *pgx.Conn) error {
	if err := signalPromote(ctx, c); err != nil {
		return err
	}
	deadline := time.Now().Add(n.cfg.PromoteTimeout)
	lastSignal := time.Now()
	for {
		var rec bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			return err
		}
		if !rec {
			return n.removePromoteFile()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still in recovery %v after the promotion was signalled", n.cfg.PromoteTimeout)
		}
		if time.Since(lastSignal) >= 20*time.Millisecond {
			if err := signalPromote(ctx, c); err != nil {
				return err
			}
			lastSignal = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// signalPromote asks the server to end recovery without waiting. A server
// that ended recovery in the meantime answers "recovery is not in
// progress", which is success here.
func signalPromote(ctx context.Context, c *pgx.Conn) error {
	var ok bool
	err := c.QueryRow(ctx, "SELECT pg_promote(false)").Scan(&ok)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "55000":
		return nil
	case err != nil:
		return err
	case !ok:
		return errors.New("pg_promote could not signal the postmaster")
	}
	return nil
}

// removePromoteFile removes a promote signal file that a repeated signal
// may leave behind when recovery ended between the check and the signal:
// PostgreSQL ignores it while it runs as a primary, and the file must not
// be there when this data directory starts as a standby again.
func (n *Node) removePromoteFile() error {
	path := filepath.Join(n.cfg.DataDir, "promote")
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// Demote makes the server a standby of up: a running primary is stopped
// (fast) and started with standby.signal and up's settings; a running
// standby just gets the new upstream and a reload; a stopped server is
// started as a standby. It does not rewind: if the old primary's timeline
// diverged from up's, it comes up but cannot stream; stop it and Rewind.
func (n *Node) Demote(ctx context.Context, up Upstream) error {
	if err := up.validate(); err != nil {
		return err
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	if n.running() {
		rec, err := n.inRecovery(ctx)
		if err != nil {
			return fmt.Errorf("demote %s: %w", n.cfg.DataDir, err)
		}
		if !rec {
			n.log.Info("demoting: stopping primary", "upstream", up.String())
			if err := n.stopLocked(ctx, StopFast); err != nil {
				return err
			}
		}
	}
	return n.startLocked(ctx, StartOptions{Role: RoleStandby, Upstream: &up})
}

// Rewind resynchronises the data directory with up after a timeline
// divergence, using pg_rewind --source-server as the OS user with the
// rewind role. A running server is stopped first (fast); a crashed one is
// recovered by pg_rewind itself (single-user mode). A primary shut down
// cleanly before the source's timeline forked off (a planned switchover)
// needs no pg_rewind and only gets the standby settings. Otherwise it
// first runs CHECKPOINT on the source (best effort), and afterwards
// rewrites the node-local configuration (pg_rewind copies the source's
// files) and the standby settings. The server is left stopped; Start it as
// RoleAsIs or RoleStandby.
func (n *Node) Rewind(ctx context.Context, up Upstream) error {
	if err := up.validate(); err != nil {
		return err
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	info, err := n.Inspect(ctx)
	if err != nil {
		return err
	}
	if !info.Initialized {
		return fmt.Errorf("%w: %s", ErrNotInitialized, info.Path)
	}
	if info.Running {
		if err := n.stopLocked(ctx, StopFast); err != nil {
			return err
		}
		// Stopped just now: its shutdown state decides below.
		if info, err = n.Inspect(ctx); err != nil {
			return err
		}
	}
	if conn, err := n.connectTo(ctx, up.Host, up.Port, n.cfg.Rewind); err != nil {
		n.log.Warn("cannot connect to rewind source for CHECKPOINT", "upstream", up.String(), "err", err)
	} else {
		fork, err := n.prepareRewindSource(ctx, conn, info)
		closeConn(conn)
		if errors.Is(err, ErrSourceInRecovery) {
			return fmt.Errorf("rewind %s from %s: %w", n.cfg.DataDir, up, err)
		}
		if err != nil {
			n.log.Warn("CHECKPOINT on rewind source failed", "upstream", up.String(), "err", err)
		}
		if fork > 0 {
			// A planned switchover: nothing to undo, and pg_rewind would
			// cost a CHECKPOINT on the new primary and a few hundred
			// milliseconds of its own while clients wait on it.
			n.log.Info("no rewind needed", "upstream", up.String(), "checkpoint", info.CheckpointLSN.String(), "fork", fork.String())
			return n.writeStandbyFiles(up)
		}
	}
	src := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres connect_timeout=10 application_name=%s",
		quoteConninfo(up.Host), up.Port, quoteConninfo(n.cfg.Rewind.Username), quoteConninfo(n.cfg.Name+"_rewind"))
	n.log.Info("running pg_rewind", "upstream", up.String())
	start := time.Now()
	env, done, err := n.passwordEnv(n.cfg.Rewind.Username, n.cfg.Rewind.Password)
	if err != nil {
		return err
	}
	defer done()
	out, err := n.os.run(ctx, "/", append(env, "PGCONNECT_TIMEOUT=10"),
		n.bin("pg_rewind"), "-D", n.cfg.DataDir, "--source-server="+src)
	if err != nil {
		return err
	}
	n.log.Info("pg_rewind done", "took", time.Since(start).Round(time.Millisecond), "output", tail(out, 400))
	return n.writeStandbyFiles(up)
}

// prepareRewindSource refuses a source still in recovery (a new primary
// whose promotion has not finished: pg_rewind would compare the old
// timeline with itself, find nothing to do, and the old primary would then
// be stuck behind the fork). When the target needs no rewind at all it
// returns the source's fork point; otherwise it runs CHECKPOINT on the
// source so its control file names the new timeline, and returns 0.
func (n *Node) prepareRewindSource(ctx context.Context, c *pgx.Conn, target DataDirInfo) (LSN, error) {
	cctx, cancel := context.WithTimeout(ctx, n.cfg.PromoteTimeout)
	defer cancel()
	var rec bool
	var wal string
	if err := c.QueryRow(cctx, "SELECT pg_is_in_recovery(), pg_walfile_name(pg_current_wal_lsn())").Scan(&rec, &wal); err != nil {
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "55000" {
			return 0, ErrSourceInRecovery // pg_walfile_name refuses during recovery
		}
		return 0, err
	}
	if rec {
		return 0, ErrSourceInRecovery
	}
	if fork, ok := cleanBeforeFork(cctx, c, target, wal); ok {
		return fork, nil
	}
	_, err := c.Exec(cctx, "CHECKPOINT")
	return 0, err
}

// cleanBeforeFork reports whether target, a stopped data directory, holds
// no WAL that the source (whose current WAL file is wal) lacks: it was a
// primary shut down cleanly, so its last record is the shutdown
// checkpoint, and that checkpoint lies before the point where the
// source's timeline forked off the target's. That is every planned
// switchover (the candidate replayed the shutdown checkpoint before it was
// promoted). A standby's "shut down in recovery" does not qualify: it may
// have replayed WAL past its last restartpoint. Anything it cannot read
// counts as "rewind needed", which pg_rewind then settles.
func cleanBeforeFork(ctx context.Context, c *pgx.Conn, target DataDirInfo, wal string) (LSN, bool) {
	if target.ClusterState != "shut down" || target.Timeline == 0 || target.CheckpointLSN == 0 || len(wal) < 8 {
		return 0, false
	}
	upTLI, err := strconv.ParseUint(wal[:8], 16, 32)
	if err != nil || uint32(upTLI) <= target.Timeline {
		return 0, false
	}
	var history []byte
	if err := c.QueryRow(ctx, "SELECT pg_read_binary_file($1)", fmt.Sprintf("pg_wal/%08X.history", upTLI)).Scan(&history); err != nil {
		return 0, false
	}
	fork, ok := forkPoint(string(history), target.Timeline)
	if !ok || target.CheckpointLSN >= fork {
		return 0, false
	}
	return fork, true
}

// writeStandbyFiles re-applies the node-local configuration and makes the
// data directory a standby of up.
func (n *Node) writeStandbyFiles(up Upstream) error {
	if _, err := n.writeLocalConfig(n.currentParams()); err != nil {
		return err
	}
	if _, err := n.writeRecoveryConf(&up); err != nil {
		return err
	}
	return n.setStandbySignal(true)
}

// CloneFrom fills an empty (or missing) data directory from up with
// pg_basebackup -X stream -c fast (using up.SlotName, which must exist on
// up; see EnsureSlots), or with CreateReplicaCommand when configured, then
// writes the node-local configuration and the standby settings. It leaves
// the server stopped. It refuses an initialized or non-empty data
// directory, and on failure removes only what it wrote.
func (n *Node) CloneFrom(ctx context.Context, up Upstream) error {
	if err := up.validate(); err != nil {
		return err
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	return n.cloneLocked(ctx, up)
}

func (n *Node) cloneLocked(ctx context.Context, up Upstream) error {
	if err := n.requireEmptyDataDir(ctx); err != nil {
		return err
	}
	if err := n.prepareDirs(); err != nil {
		return err
	}
	if err := n.os.ensureDir(n.cfg.DataDir, 0o700); err != nil {
		return err
	}
	user, pw := up.User, up.Password
	if user == "" {
		user, pw = n.cfg.Replication.Username, n.cfg.Replication.Password
	}
	start := time.Now()
	var err error
	if n.cfg.CreateReplicaCommand != "" {
		// The custom command's contract (Config.CreateReplicaCommand)
		// includes PGPASSWORD.
		env := []string{"PGPASSWORD=" + pw, "PGCONNECT_TIMEOUT=10",
			"PGQ_DATA_DIR=" + n.cfg.DataDir,
			"PGQ_UPSTREAM_HOST=" + up.Host,
			"PGQ_UPSTREAM_PORT=" + strconv.Itoa(up.Port),
			"PGQ_UPSTREAM_CONNINFO=" + n.primaryConninfo(up, false),
			"PGQ_SLOT_NAME=" + up.SlotName,
			"PGHOST=" + up.Host, "PGPORT=" + strconv.Itoa(up.Port), "PGUSER=" + user,
		}
		n.log.Info("cloning with custom command", "upstream", up.String())
		_, err = n.os.run(ctx, "/", env, "/bin/sh", "-c", n.cfg.CreateReplicaCommand)
	} else {
		conninfo := fmt.Sprintf("host=%s port=%d user=%s application_name=%s",
			quoteConninfo(up.Host), up.Port, quoteConninfo(user), quoteConninfo(n.cfg.Name+"_clone"))
		args := []string{"-D", n.cfg.DataDir, "-d", conninfo, "-X", "stream", "-c", "fast", "--no-password"}
		if up.SlotName != "" {
			args = append(args, "-S", up.SlotName)
		}
		n.log.Info("running pg_basebackup", "upstream", up.String())
		var pwEnv []string
		var done func()
		if pwEnv, done, err = n.passwordEnv(user, pw); err == nil {
			_, err = n.os.run(ctx, "/", append(pwEnv, "PGCONNECT_TIMEOUT=10"), n.bin("pg_basebackup"), args...)
			done()
		}
	}
	if err == nil {
		var info DataDirInfo
		if info, err = n.Inspect(ctx); err == nil && !info.Initialized {
			err = fmt.Errorf("%w: %s holds no cluster after the clone", ErrCommandFailed, n.cfg.DataDir)
		}
	}
	if err != nil {
		if cerr := emptyDir(n.cfg.DataDir); cerr != nil {
			n.log.Error("could not clean up failed clone", "data_dir", n.cfg.DataDir, "err", cerr)
		}
		return err
	}
	n.log.Info("clone done", "took", time.Since(start).Round(time.Millisecond))
	return n.writeStandbyFiles(up)
}

// emptyDir removes everything inside dir, keeping dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}

// Reinit replaces the data directory with a fresh clone of up and starts
// it as a standby. It refuses a running primary (ErrRunningPrimary); a
// running standby is stopped. The old directory is renamed aside (a rename
// costs no space) and deleted only after the clone succeeded and the new
// standby started; if the clone fails, the partial clone is removed and the
// old directory is put back. If the disk cannot hold both copies the clone
// fails and nothing is lost: free space and retry.
func (n *Node) Reinit(ctx context.Context, up Upstream) error {
	if err := up.validate(); err != nil {
		return err
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	info, err := n.Inspect(ctx)
	if err != nil {
		return err
	}
	if info.Running {
		rec, err := n.inRecovery(ctx)
		if err != nil {
			return fmt.Errorf("reinit %s: cannot tell whether the running server is a primary: %w", n.cfg.DataDir, err)
		}
		if !rec {
			return fmt.Errorf("%w: refusing to reinit %s", ErrRunningPrimary, n.cfg.DataDir)
		}
		if err := n.stopLocked(ctx, StopFast); err != nil {
			return err
		}
	}
	aside := ""
	if info.Exists {
		aside = fmt.Sprintf("%s.pgquorum-old-%d", filepath.Clean(n.cfg.DataDir), time.Now().Unix())
		if err := os.Rename(n.cfg.DataDir, aside); err != nil {
			return fmt.Errorf("move %s aside to %s: %w", n.cfg.DataDir, aside, err)
		}
		n.log.Info("moved old data directory aside", "to", aside)
	}
	if err := n.cloneLocked(ctx, up); err != nil {
		if aside != "" {
			rmErr := os.RemoveAll(n.cfg.DataDir)
			if mvErr := os.Rename(aside, n.cfg.DataDir); mvErr != nil {
				return fmt.Errorf("reinit of %s failed (%w) and the old directory stays at %s: %v", n.cfg.DataDir, err, aside, errors.Join(rmErr, mvErr))
			}
		}
		return fmt.Errorf("reinit of %s failed, old directory restored: %w", n.cfg.DataDir, err)
	}
	if err := n.startLocked(ctx, StartOptions{Role: RoleAsIs}); err != nil {
		if aside != "" {
			return fmt.Errorf("reinit of %s: clone done but start failed; old directory kept at %s: %w", n.cfg.DataDir, aside, err)
		}
		return err
	}
	if aside != "" {
		if err := os.RemoveAll(aside); err != nil {
			n.log.Warn("could not remove old data directory", "path", aside, "err", err)
		}
	}
	return nil
}
