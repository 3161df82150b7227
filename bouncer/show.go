package bouncer

import (
	"context"
	"fmt"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// row is one SHOW result row: column name → text value ("" for NULL).
type row map[string]string

func (r row) int(col string) int {
	n, _ := strconv.Atoi(r[col])
	return n
}

// show runs a SHOW command and returns its rows by column name, so columns
// added by newer PgBouncer versions do not break parsing.
func (a *Admin) show(ctx context.Context, what string) ([]row, error) {
	sql := "SHOW " + what
	var out []row
	err := a.withConn(ctx, sql, func(c *pgx.Conn) error {
		out = out[:0]
		rows, err := c.Query(ctx, sql)
		if err != nil {
			return err
		}
		defer rows.Close()
		fields := rows.FieldDescriptions()
		for rows.Next() {
			raw := rows.RawValues()
			r := make(row, len(fields))
			for i, f := range fields {
				r[f.Name] = string(raw[i])
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// Database is one row of SHOW DATABASES.
type Database struct {
	Name               string
	Host               string
	Port               int
	DBName             string // "database" column
	ForceUser          string
	PoolSize           int
	PoolMode           string
	CurrentConnections int
	Paused             bool
	Disabled           bool
}

// Databases runs SHOW DATABASES.
func (a *Admin) Databases(ctx context.Context) ([]Database, error) {
	rows, err := a.show(ctx, "DATABASES")
	if err != nil {
		return nil, err
	}
	out := make([]Database, 0, len(rows))
	for _, r := range rows {
		out = append(out, Database{
			Name: r["name"], Host: r["host"], Port: r.int("port"), DBName: r["database"],
			ForceUser: r["force_user"], PoolSize: r.int("pool_size"), PoolMode: r["pool_mode"],
			CurrentConnections: r.int("current_connections"),
			Paused:             r.int("paused") != 0, Disabled: r.int("disabled") != 0,
		})
	}
	return out, nil
}

// Database returns the SHOW DATABASES row of db, or ErrUnknownDatabase.
func (a *Admin) Database(ctx context.Context, db string) (Database, error) {
	dbs, err := a.Databases(ctx)
	if err != nil {
		return Database{}, err
	}
	for _, d := range dbs {
		if d.Name == db {
			return d, nil
		}
	}
	return Database{}, fmt.Errorf("bouncer: database %q: %w", db, ErrUnknownDatabase)
}

// Pool is one row of SHOW POOLS.
type Pool struct {
	Database  string
	User      string
	ClActive  int
	ClWaiting int
	SvActive  int
	SvIdle    int
	SvUsed    int
	SvTested  int
	SvLogin   int
	MaxWaitUS int64 // maxwait*1e6 + maxwait_us
	PoolMode  string
}

// Pools runs SHOW POOLS.
func (a *Admin) Pools(ctx context.Context) ([]Pool, error) {
	rows, err := a.show(ctx, "POOLS")
	if err != nil {
		return nil, err
	}
	out := make([]Pool, 0, len(rows))
	for _, r := range rows {
		out = append(out, Pool{
			Database: r["database"], User: r["user"],
			ClActive: r.int("cl_active"), ClWaiting: r.int("cl_waiting"),
			SvActive: r.int("sv_active"), SvIdle: r.int("sv_idle"), SvUsed: r.int("sv_used"),
			SvTested: r.int("sv_tested"), SvLogin: r.int("sv_login"),
			MaxWaitUS: int64(r.int("maxwait"))*1_000_000 + int64(r.int("maxwait_us")),
			PoolMode:  r["pool_mode"],
		})
	}
	return out, nil
}

// Server is one row of SHOW SERVERS.
type Server struct {
	Type      string // "S"
	User      string
	Database  string
	State     string // active, idle, used, tested, new, ...
	Addr      string
	Port      int
	RemotePID int
}

// Servers runs SHOW SERVERS.
func (a *Admin) Servers(ctx context.Context) ([]Server, error) {
	rows, err := a.show(ctx, "SERVERS")
	if err != nil {
		return nil, err
	}
	out := make([]Server, 0, len(rows))
	for _, r := range rows {
		out = append(out, Server{
			Type: r["type"], User: r["user"], Database: r["database"], State: r["state"],
			Addr: r["addr"], Port: r.int("port"), RemotePID: r.int("remote_pid"),
		})
	}
	return out, nil
}

// Config runs SHOW CONFIG and returns key → current value.
func (a *Admin) Config(ctx context.Context) (map[string]string, error) {
	rows, err := a.show(ctx, "CONFIG")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r["key"]] = r["value"]
	}
	return out, nil
}

// Version is a PgBouncer release number.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v ≥ major.minor.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

var versionRe = regexp.MustCompile(`PgBouncer (\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads a SHOW VERSION string such as "PgBouncer 1.18.0".
func ParseVersion(s string) (Version, error) {
	m := versionRe.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("bouncer: unrecognised version %q", s)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	return v, nil
}

// Version runs SHOW VERSION.
func (a *Admin) Version(ctx context.Context) (Version, error) {
	rows, err := a.show(ctx, "VERSION")
	if err != nil {
		return Version{}, err
	}
	if len(rows) != 1 {
		return Version{}, fmt.Errorf("bouncer: SHOW VERSION returned %d rows", len(rows))
	}
	return ParseVersion(rows[0]["version"])
}

// Capabilities says which console features the running PgBouncer has.
type Capabilities struct {
	Version    Version
	ShowState  bool // SHOW STATE (1.19)
	KillClient bool // KILL_CLIENT (1.24)
	BareKill   bool // KILL without a database (1.25)
}

// CapabilitiesFor derives the feature set of version v.
func CapabilitiesFor(v Version) Capabilities {
	return Capabilities{
		Version:    v,
		ShowState:  v.AtLeast(1, 19),
		KillClient: v.AtLeast(1, 24),
		BareKill:   v.AtLeast(1, 25),
	}
}

// Capabilities detects the feature set once from SHOW VERSION and caches it.
func (a *Admin) Capabilities(ctx context.Context) (Capabilities, error) {
	a.mu.Lock()
	c := a.caps
	a.mu.Unlock()
	if c != nil {
		return *c, nil
	}
	v, err := a.Version(ctx)
	if err != nil {
		return Capabilities{}, err
	}
	caps := CapabilitiesFor(v)
	a.mu.Lock()
	a.caps = &caps
	a.mu.Unlock()
	return caps, nil
}
