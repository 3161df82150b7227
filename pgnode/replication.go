package pgnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnsureSlots makes the physical replication slots carrying SlotPrefix
// exactly names: it creates missing ones (reserving WAL at once) and drops
// inactive ones not listed. Active unlisted slots are left alone and
// reported in the log; slots without the prefix are never touched. Every
// name must carry the prefix (ErrInvalidSlotName).
func (n *Node) EnsureSlots(ctx context.Context, names []string) error {
	want := make(map[string]bool, len(names))
	for _, s := range names {
		if !slotNameRE.MatchString(s) || !strings.HasPrefix(s, n.cfg.SlotPrefix) {
			return fmt.Errorf("%w: %q (must match [a-z0-9_]{1,63} and start with %q)", ErrInvalidSlotName, s, n.cfg.SlotPrefix)
		}
		want[s] = true
	}
	return n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT slot_name::text, active FROM pg_replication_slots
			WHERE slot_type = 'physical' AND starts_with(slot_name::text, $1)`, n.cfg.SlotPrefix)
		if err != nil {
			return fmt.Errorf("list slots on %s: %w", n.cfg.DataDir, err)
		}
		have := map[string]bool{}
		var name string
		var active bool
		if _, err := pgx.ForEachRow(rows, []any{&name, &active}, func() error { have[name] = active; return nil }); err != nil {
			return fmt.Errorf("list slots on %s: %w", n.cfg.DataDir, err)
		}
		var errs []error
		for s := range want {
			if _, ok := have[s]; ok {
				continue
			}
			if _, err := c.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", s); err != nil {
				errs = append(errs, fmt.Errorf("create slot %s on %s: %w", s, n.cfg.DataDir, err))
				continue
			}
			n.log.Info("created replication slot", "slot", s)
		}
		for s, act := range have {
			if want[s] {
				continue
			}
			if act {
				n.log.Warn("unlisted replication slot is active, keeping it", "slot", s)
				continue
			}
			if _, err := c.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s); err != nil {
				errs = append(errs, fmt.Errorf("drop slot %s on %s: %w", s, n.cfg.DataDir, err))
				continue
			}
			n.log.Info("dropped replication slot", "slot", s)
		}
		return errors.Join(errs...)
	})
}

// SyncStandbyNames renders synchronous_standby_names for names and count:
// "FIRST count (a, b)" with each name double-quoted, or "" (asynchronous)
// when count is 0 or names is empty.
func SyncStandbyNames(names []string, count int) (string, error) {
	if count <= 0 || len(names) == 0 {
		return "", nil
	}
	if count > len(names) {
		return "", fmt.Errorf("%w: %d synchronous standbys requested from %d names", ErrInvalidParameter, count, len(names))
	}
	q := make([]string, len(names))
	for i, s := range names {
		if s == "" || strings.ContainsAny(s, "\"'\\\n") {
			return "", fmt.Errorf("%w: standby name %q", ErrInvalidParameter, s)
		}
		q[i] = `"` + s + `"`
	}
	return fmt.Sprintf("FIRST %d (%s)", count, strings.Join(q, ", ")), nil
}

// SetSynchronousStandbys writes synchronous_standby_names (see
// SyncStandbyNames) to the managed configuration, reloads a running server
// and verifies that new sessions see the value (ErrSettingNotApplied). On
// a standby the value takes effect at promotion, so calling it before
// Promote decides what the new primary waits for; otherwise a promoted
// standby keeps the value its clone or rewind copied from the old primary.
func (n *Node) SetSynchronousStandbys(ctx context.Context, names []string, count int) error {
	value, err := SyncStandbyNames(names, count)
	if err != nil {
		return err
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	changed, err := n.writeSyncConf(value)
	if err != nil {
		return err
	}
	if !n.running() {
		return nil
	}
	var got string
	err = n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		// Reload only when the file changed or the server still runs with
		// another value: a reload makes the postmaster and every backend
		// re-read the configuration, and right after a promotion (when
		// this is called with the value the standby already had) that
		// delayed the new primary's first logins by tens of milliseconds.
		if !changed {
			if err := c.QueryRow(ctx, "SELECT current_setting('synchronous_standby_names')").Scan(&got); err != nil {
				return fmt.Errorf("read synchronous_standby_names on %s: %w", n.cfg.DataDir, err)
			}
			if got == value {
				return nil
			}
		}
		if err := n.reloadOn(ctx, c); err != nil {
			return err
		}
		if err := c.QueryRow(ctx, "SELECT current_setting('synchronous_standby_names')").Scan(&got); err != nil {
			return fmt.Errorf("verify synchronous_standby_names on %s: %w", n.cfg.DataDir, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if got != value {
		return fmt.Errorf("%w: synchronous_standby_names on %s is %q, wrote %q", ErrSettingNotApplied, n.cfg.DataDir, got, value)
	}
	n.log.Info("synchronous standbys set", "synchronous_standby_names", value)
	if value != "" {
		n.nudgeStandbys(ctx)
	}
	return nil
}

// nudgeStandbys commits, on a primary, a tiny transaction that writes and
// flushes WAL (a logical message; synchronous_commit = local, so it waits
// for nobody). Commits already waiting when a standby becomes synchronous
// are released only at that standby's next reply, which comes when new
// WAL reaches it or after wal_receiver_status_interval: without new WAL
// (every writer is waiting) that is up to a second. Best effort, bounded
// by a second: a failure only costs that wait.
func (n *Node) nudgeStandbys(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			var rec bool
			if err := tx.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
				return err
			}
			if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = local"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, 'pgquorum', 'synchronous standbys changed')")
			return err
		})
	})
	if err != nil {
		n.log.Warn("could not write WAL to make the standbys reply", "err", err)
	}
}

// running reports whether a live postmaster serves the data directory.
func (n *Node) running() bool {
	pf, ok, _ := readPIDFile(n.cfg.DataDir)
	return ok && isPostmasterOf(pf.pid, n.cfg.DataDir)
}

// SetParameters replaces the cluster-wide dynamic parameters with params
// (the node-local Config.Parameters stay and win over params of the same
// name): it rewrites pgquorum.conf, asks the running server to check the files
// (pg_file_settings) and restores the previous file if PostgreSQL reports
// an error (ErrInvalidParameter, nothing applied), then reloads. It returns
// the parameters that need a restart to take effect (pg_settings
// pending_restart); pgnode does not restart on its own. Parameters pgnode
// manages itself are refused.
func (n *Node) SetParameters(ctx context.Context, params map[string]string) ([]string, error) {
	if err := validateParams(params); err != nil {
		return nil, err
	}
	cp := make(map[string]string, len(params)+len(n.cfg.Parameters))
	for k, v := range params {
		cp[strings.ToLower(k)] = v
	}
	for k, v := range n.cfg.Parameters {
		cp[strings.ToLower(k)] = v
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	path := filepath.Join(n.cfg.DataDir, confFile)
	old, readErr := os.ReadFile(path)
	if _, err := n.writeLocalConfig(cp); err != nil {
		return nil, err
	}
	if !n.running() {
		n.setParams(cp)
		return nil, nil
	}
	restore := func() {
		if readErr == nil {
			if _, err := n.writeFileAtomic(path, old); err != nil {
				n.log.Error("could not restore configuration", "path", path, "err", err)
			}
		}
	}
	var problems []string
	err := n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		// A changed restart-only parameter is reported as "setting could not
		// be applied" too; that is a pending restart, not an error.
		rows, err := c.Query(ctx, `SELECT coalesce(f.sourcefile, '') || ':' || coalesce(f.sourceline, 0) || ' ' ||
			coalesce(f.name, '') || ': ' || f.error
			FROM pg_file_settings f LEFT JOIN pg_settings s ON s.name = f.name
			WHERE f.error IS NOT NULL AND coalesce(s.context, '') <> 'postmaster'`)
		if err != nil {
			return err
		}
		problems, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		restore()
		return nil, fmt.Errorf("check configuration of %s: %w", n.cfg.DataDir, err)
	}
	if len(problems) > 0 {
		restore()
		n.rejectParams(cp)
		return nil, fmt.Errorf("%w: PostgreSQL rejects the configuration of %s: %s", ErrInvalidParameter, n.cfg.DataDir, strings.Join(problems, "; "))
	}
	n.setParams(cp)
	if err := n.reloadLocked(ctx); err != nil {
		return nil, err
	}
	var pending []string
	err = n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var err error
		pending, err = pendingRestart(ctx, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read pending restarts of %s: %w", n.cfg.DataDir, err)
	}
	sort.Strings(pending)
	if len(pending) > 0 {
		n.log.Info("parameters need a restart", "parameters", pending)
	}
	return pending, nil
}

func (n *Node) setParams(p map[string]string) {
	n.mu.Lock()
	n.params, n.accepted, n.rejected = p, p, nil
	n.mu.Unlock()
}
