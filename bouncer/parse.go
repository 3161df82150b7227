package bouncer

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseInclude reads an include file written by Render back into entries, so
// a restarted agent adopts the routes and epochs it left behind. A fenced
// entry comes back with an empty Route.Host. Blank lines and other comments
// are skipped; anything else Render would not write is an error naming the
// line, since rewriting such a file would silently drop its databases.
func ParseInclude(data []byte) ([]Entry, error) {
	var (
		out     []Entry
		pending *Entry // set by a state comment, completed by the next line
		lineNo  int
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if line[0] == ';' || line[0] == '#' {
			if e, ok := parseStateComment(line); ok {
				pending = &e
			}
			continue
		}
		if pending == nil {
			return nil, fmt.Errorf("bouncer: include line %d: database line without a pgquorum state comment (not written by pgquorum?): %q", lineNo, line)
		}
		e, err := parseDBLine(*pending, line)
		if err != nil {
			return nil, fmt.Errorf("bouncer: include line %d: %w", lineNo, err)
		}
		out = append(out, e)
		pending = nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bouncer: read include: %w", err)
	}
	return out, nil
}

// parseStateComment reads "; exposed epoch=N" or "; fenced epoch=N".
func parseStateComment(line string) (Entry, bool) {
	f := strings.Fields(strings.TrimLeft(line, ";# "))
	if len(f) != 2 || (f[0] != "exposed" && f[0] != "fenced") || !strings.HasPrefix(f[1], "epoch=") {
		return Entry{}, false
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(f[1], "epoch="), 10, 64)
	if err != nil {
		return Entry{}, false
	}
	return Entry{Fenced: f[0] == "fenced", Epoch: n}, true
}

func parseDBLine(e Entry, line string) (Entry, error) {
	name, connstr, ok := strings.Cut(line, "=")
	if !ok {
		return e, fmt.Errorf("no '=' in %q", line)
	}
	e.Name = strings.TrimSpace(name)
	if err := ValidateName(e.Name); err != nil {
		return e, err
	}
	seen := map[string]bool{}
	for kv := range strings.FieldsSeq(connstr) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || seen[k] {
			return e, fmt.Errorf("database %q: bad or repeated key in %q", e.Name, kv)
		}
		seen[k] = true
		var err error
		r := &e.Route
		switch k {
		case "host":
			r.Host = v
		case "port":
			r.Port, err = strconv.Atoi(v)
		case "dbname":
			r.DBName = v
		case "user":
			r.User = v
		case "pool_mode":
			r.Pool.Mode = v
		case "pool_size":
			r.Pool.Size, err = strconv.Atoi(v)
		case "min_pool_size":
			r.Pool.MinSize, err = strconv.Atoi(v)
		case "reserve_pool":
			r.Pool.Reserve, err = strconv.Atoi(v)
		case "max_db_connections":
			r.Pool.MaxDBConnections, err = strconv.Atoi(v)
		default:
			return e, fmt.Errorf("database %q: key %q is not one pgquorum writes", e.Name, k)
		}
		if err != nil {
			return e, fmt.Errorf("database %q: %s: %w", e.Name, k, err)
		}
	}
	if e.Fenced {
		if e.Route.Host != FencedHost {
			return e, fmt.Errorf("database %q: marked fenced but host is %q", e.Name, e.Route.Host)
		}
		e.Route.Host = ""
	}
	if err := e.Route.validate(e.Name, !e.Fenced); err != nil {
		return e, err
	}
	return e, nil
}
