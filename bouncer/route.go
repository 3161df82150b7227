package bouncer

import (
	"fmt"
	"strconv"
	"strings"
)

// Route says where PgBouncer sends one database.
type Route struct {
	// Host is a host name, an IP address, an absolute Unix socket directory,
	// or a comma-separated list of those (PgBouncer tries them in order).
	Host string
	// Port is the PostgreSQL port.
	Port int
	// DBName is the PostgreSQL database; empty means the PgBouncer name.
	DBName string
	// User forces the server login user; empty keeps the client's user.
	User string
	// Pool holds per-database pool settings; zero values keep PgBouncer's defaults.
	Pool PoolOptions
}

// PoolOptions are the per-database pool settings the renderer supports.
type PoolOptions struct {
	// Mode is pool_mode: "", "session", "transaction" or "statement".
	Mode string
	// Size is pool_size (0: default_pool_size).
	Size int
	// MinSize is min_pool_size.
	MinSize int
	// Reserve is reserve_pool.
	Reserve int
	// MaxDBConnections is max_db_connections (0: unlimited).
	MaxDBConnections int
}

// FencedHost is the host a fenced database is rendered with. /dev/null is a
// character device, so no socket can ever exist below it: a PgBouncer that
// restarts or reloads while a database is fenced fails its logins at once
// instead of reaching the deposed primary.
const FencedHost = "/dev/null/pgquorum-fenced"

const maxIdentLen = 63 // NAMEDATALEN-1

// ValidateName checks a PgBouncer database name (an ini key in [databases]).
func ValidateName(name string) error {
	switch {
	case name == "":
		return &FieldError{DB: name, Field: "name", Value: name, Reason: "empty"}
	case name == "pgbouncer":
		return &FieldError{DB: name, Field: "name", Value: name, Reason: "reserved for the admin console"}
	case len(name) > maxIdentLen:
		return &FieldError{DB: name, Field: "name", Value: name, Reason: fmt.Sprintf("longer than %d bytes", maxIdentLen)}
	}
	if name[0] == '.' || name[0] == '-' {
		return &FieldError{DB: name, Field: "name", Value: name, Reason: "must start with a letter, digit or '_'"}
	}
	if r := badChar(name, isIdentChar); r != "" {
		return &FieldError{DB: name, Field: "name", Value: name, Reason: r}
	}
	return nil
}

// Validate checks every field of r for database name db.
func (r Route) Validate(db string) error { return r.validate(db, true) }

// validate checks r; fenced entries skip the host, which is not rendered.
func (r Route) validate(db string, checkHost bool) error {
	if checkHost {
		if err := validateHost(db, r.Host); err != nil {
			return err
		}
	}
	if r.Port < 1 || r.Port > 65535 {
		return &FieldError{DB: db, Field: "port", Value: strconv.Itoa(r.Port), Reason: "must be 1..65535"}
	}
	for _, f := range []struct{ field, v string }{{"dbname", r.DBName}, {"user", r.User}} {
		if f.v == "" {
			continue
		}
		if len(f.v) > maxIdentLen {
			return &FieldError{DB: db, Field: f.field, Value: f.v, Reason: fmt.Sprintf("longer than %d bytes", maxIdentLen)}
		}
		if reason := badChar(f.v, isIdentChar); reason != "" {
			return &FieldError{DB: db, Field: f.field, Value: f.v, Reason: reason}
		}
	}
	return r.Pool.validate(db)
}

func (p PoolOptions) validate(db string) error {
	switch p.Mode {
	case "", "session", "transaction", "statement":
	default:
		return &FieldError{DB: db, Field: "pool_mode", Value: p.Mode, Reason: "must be session, transaction or statement"}
	}
	for _, f := range []struct {
		field string
		v     int
	}{{"pool_size", p.Size}, {"min_pool_size", p.MinSize}, {"reserve_pool", p.Reserve}, {"max_db_connections", p.MaxDBConnections}} {
		if f.v < 0 || f.v > 100000 {
			return &FieldError{DB: db, Field: f.field, Value: strconv.Itoa(f.v), Reason: "must be 0..100000"}
		}
	}
	return nil
}

func validateHost(db, host string) error {
	if host == "" {
		return &FieldError{DB: db, Field: "host", Value: host, Reason: "empty"}
	}
	if host == FencedHost {
		return &FieldError{DB: db, Field: "host", Value: host, Reason: "reserved for fenced databases"}
	}
	for part := range strings.SplitSeq(host, ",") {
		if part == "" {
			return &FieldError{DB: db, Field: "host", Value: host, Reason: "empty element in host list"}
		}
		if len(part) > 255 {
			return &FieldError{DB: db, Field: "host", Value: host, Reason: "element longer than 255 bytes"}
		}
		if reason := badChar(part, isHostChar); reason != "" {
			return &FieldError{DB: db, Field: "host", Value: host, Reason: reason}
		}
		if part[0] != '/' && strings.Contains(part, "/") {
			return &FieldError{DB: db, Field: "host", Value: host, Reason: "'/' only allowed in an absolute socket directory"}
		}
	}
	return nil
}

func isIdentChar(r rune) bool {
	return r == '_' || r == '-' || r == '.' || r == '$' ||
		(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

func isHostChar(r rune) bool {
	return r == '.' || r == '-' || r == '_' || r == ':' || r == '/' ||
		(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// badChar describes the first rune of s that ok rejects, or returns "".
func badChar(s string, ok func(rune) bool) string {
	for _, r := range s {
		if ok(r) {
			continue
		}
		switch r {
		case ' ', '\t':
			return "contains whitespace"
		case '\n', '\r':
			return "contains a line break"
		case '\'', '"':
			return "contains a quote"
		case '=':
			return "contains '='"
		default:
			return fmt.Sprintf("contains %q; allowed are letters, digits and _ - . (and : / , in hosts, $ in names)", r)
		}
	}
	return ""
}
