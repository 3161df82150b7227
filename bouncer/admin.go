package bouncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// maxIdleConns bounds the admin connections kept open between commands. More
// than one lets a PAUSE that waits on a busy pool run beside a KILL or RELOAD
// for another database.
const maxIdleConns = 4

// Admin runs commands on PgBouncer's admin console. It is safe for concurrent
// use: each command takes an idle connection or dials a new one, so a blocking
// PAUSE does not hold up commands for other databases. A command that fails
// because a reused connection broke (PgBouncer restarted, network reset) is
// retried once on a fresh connection; every command it sends is idempotent.
//
// PgBouncer reports every admin error with SQLSTATE 08P01, so errors are not
// told apart by code or by message text: where idempotence matters (RESUME of
// a database that is not paused, commands for unknown databases) Admin checks
// SHOW DATABASES after the error instead.
type Admin struct {
	cfg *pgx.ConnConfig
	log *slog.Logger

	mu     sync.Mutex
	idle   []*pgx.Conn
	closed bool
	caps   *Capabilities
}

// NewAdmin returns an Admin for the console at dsn (database "pgbouncer").
// It does not connect until the first command.
func NewAdmin(dsn string, log *slog.Logger) (*Admin, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("bouncer: admin dsn: %w", err)
	}
	// The console speaks only the simple query protocol, and has no types to load.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.StatementCacheCapacity = 0
	cfg.DescriptionCacheCapacity = 0
	if log == nil {
		log = slog.Default()
	}
	return &Admin{cfg: cfg, log: log.With("component", "bouncer-admin")}, nil
}

// Close closes the idle connections; commands in flight finish on their own.
func (a *Admin) Close() error {
	a.mu.Lock()
	idle := a.idle
	a.idle, a.closed = nil, true
	a.mu.Unlock()
	for _, c := range idle {
		_ = c.Close(context.Background())
	}
	return nil
}

// Pause runs PAUSE db: PgBouncer stops handing out server connections for db
// and waits until the active ones are released (in transaction mode, until
// their transactions end). It blocks until then or until ctx ends; a PAUSE
// whose ctx ends stays in effect. Pausing a paused database succeeds.
func (a *Admin) Pause(ctx context.Context, db string) error {
	return a.dbCommand(ctx, "PAUSE", db)
}

// Resume runs RESUME db. Resuming a database that is not paused succeeds.
func (a *Admin) Resume(ctx context.Context, db string) error {
	err := a.dbCommand(ctx, "RESUME", db)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	// 1.18 sends 08P01 "database X is not paused"; confirm with SHOW DATABASES.
	d, lookErr := a.Database(ctx, db)
	if lookErr != nil {
		return errors.Join(err, lookErr)
	}
	if !d.Paused {
		return nil
	}
	return err
}

// Kill runs KILL db: it drops every client and server connection of db at
// once, even when servers are stuck (where PAUSE would block), and leaves db
// paused until Resume.
//
// KILL can crash PgBouncer, so the Router never sends it: KILL frees the
// database's pools while connections in the middle of a login (a client
// between its startup packet and its password, a server connection still
// authenticating) keep pointing at them, and PgBouncer reads the freed pool
// when such a login goes on. Measured here with 1.18: SIGSEGV in 5 of 40 kill
// -9 failovers fenced with KILL while md5 clients retried their logins (0 of
// 40 with trust auth, which has no login round trip), and within 40 KILLs
// under a login storm even after DISABLE and an empty SHOW SOCKETS login list
// (1.18 checks DISABLE only after the password). Upstream issue #1401 reports
// SIGSEGVs on KILL up to 1.24. Use PauseFlag to stop routing without waiting.
func (a *Admin) Kill(ctx context.Context, db string) error {
	if db == "" {
		return fmt.Errorf("bouncer: KILL needs a database: %w", ErrUnsupported)
	}
	return a.dbCommand(ctx, "KILL", db)
}

// PauseFlag pauses db without waiting for its transactions in flight: PAUSE
// sets PgBouncer's pause flag at once (no new transaction gets a server, no
// new server connection is opened) and only its reply waits until the active
// servers are released. A PAUSE cut short stays in effect, so after pauseWait
// the flag is read back from SHOW DATABASES. A paused db gets no PAUSE.
func (a *Admin) PauseFlag(ctx context.Context, db string) error {
	if d, err := a.Database(ctx, db); err != nil {
		return err
	} else if d.Paused {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, pauseWait)
	err := a.Pause(pctx, db)
	cancel()
	if err == nil || ctx.Err() != nil {
		return err
	}
	d, lookErr := a.Database(ctx, db)
	if lookErr != nil {
		return errors.Join(err, lookErr)
	}
	if !d.Paused {
		return fmt.Errorf("bouncer: %s not paused after PAUSE: %w", db, err)
	}
	return nil
}

// pauseWait is how long PauseFlag waits for PAUSE's reply.
const pauseWait = 100 * time.Millisecond

// KillAll drops the connections of every database (see Kill for why the
// agent does not). PgBouncer 1.25 has a bare
// KILL; older versions get one KILL per database from SHOW DATABASES.
func (a *Admin) KillAll(ctx context.Context) error {
	caps, err := a.Capabilities(ctx)
	if err != nil {
		return err
	}
	if caps.BareKill {
		return a.exec(ctx, "KILL")
	}
	dbs, err := a.Databases(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range dbs {
		if d.Name != "pgbouncer" {
			errs = append(errs, a.Kill(ctx, d.Name))
		}
	}
	return errors.Join(errs...)
}

// Reconnect runs RECONNECT db: server connections of db are closed once
// released and new ones are opened, e.g. to pick up a changed host.
func (a *Admin) Reconnect(ctx context.Context, db string) error {
	return a.dbCommand(ctx, "RECONNECT", db)
}

// Reload runs RELOAD: PgBouncer rereads its configuration, including the
// [databases] include file. RELOAD also resets values changed with SET back to
// the file's values; Router re-applies its tuning after every reload.
func (a *Admin) Reload(ctx context.Context) error {
	return a.exec(ctx, "RELOAD")
}

var (
	setKeyRe   = regexp.MustCompile(`^[a-z_]{1,64}$`)
	setValueRe = regexp.MustCompile(`^[A-Za-z0-9_.,:/ *-]{0,256}$`)
)

// Set runs SET key = 'value'. The value is always quoted, since the console
// accepts decimals like 0.5 only when quoted. Keys are lower-case words;
// values must not contain quotes or control characters.
func (a *Admin) Set(ctx context.Context, key, value string) error {
	if !setKeyRe.MatchString(key) {
		return fmt.Errorf("bouncer: SET key %q: %w", key, ErrInvalidSetting)
	}
	if !setValueRe.MatchString(value) {
		return fmt.Errorf("bouncer: SET %s value %q: %w", key, value, ErrInvalidSetting)
	}
	return a.exec(ctx, fmt.Sprintf("SET %s = '%s'", key, value))
}

// dbCommand runs "VERB db" after validating db, and maps PgBouncer's error
// for a database it does not know to ErrUnknownDatabase.
func (a *Admin) dbCommand(ctx context.Context, verb, db string) error {
	if err := ValidateName(db); err != nil {
		return err
	}
	err := a.exec(ctx, verb+" "+db)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	if _, lookErr := a.Database(ctx, db); errors.Is(lookErr, ErrUnknownDatabase) {
		return fmt.Errorf("bouncer: %s %s: %w", verb, db, ErrUnknownDatabase)
	}
	return err
}

// exec runs one console command.
func (a *Admin) exec(ctx context.Context, sql string) error {
	return a.withConn(ctx, sql, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql)
		return err
	})
}

// withConn runs fn on a pooled connection; see Admin for the retry rule.
func (a *Admin) withConn(ctx context.Context, what string, fn func(*pgx.Conn) error) error {
	for attempt := 0; ; attempt++ {
		c, reused, err := a.get(ctx)
		if err != nil {
			return fmt.Errorf("bouncer: admin %s: %w", what, err)
		}
		err = fn(c)
		var pgErr *pgconn.PgError
		if err == nil || errors.As(err, &pgErr) {
			a.put(c) // the console answered: the connection is fine
			if err != nil {
				return fmt.Errorf("bouncer: admin %s: %w", what, err)
			}
			return nil
		}
		_ = c.Close(context.Background())
		a.mu.Lock()
		a.caps = nil // PgBouncer may have been restarted, possibly upgraded
		a.mu.Unlock()
		if !reused || attempt > 0 || ctx.Err() != nil {
			return fmt.Errorf("bouncer: admin %s: %w", what, err)
		}
		a.log.Warn("admin connection broke; retrying on a new one", "command", what, "err", err)
	}
}

func (a *Admin) get(ctx context.Context) (c *pgx.Conn, reused bool, err error) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, false, ErrAdminClosed
	}
	for len(a.idle) > 0 {
		c = a.idle[len(a.idle)-1]
		a.idle = a.idle[:len(a.idle)-1]
		if !c.IsClosed() {
			a.mu.Unlock()
			return c, true, nil
		}
	}
	a.mu.Unlock()
	c, err = pgx.ConnectConfig(ctx, a.cfg)
	return c, false, err
}

func (a *Admin) put(c *pgx.Conn) {
	a.mu.Lock()
	if !a.closed && len(a.idle) < maxIdleConns && !c.IsClosed() {
		a.idle = append(a.idle, c)
		c = nil
	}
	a.mu.Unlock()
	if c != nil {
		_ = c.Close(context.Background())
	}
}
