package server

import (
	"os"
	"strings"
)

// childEnv is the agent's environment without its configuration variables
// and libpq's password variables, for the programs it runs that are not
// PostgreSQL's (callback scripts). An operator may hand the agent its
// passwords as PGQUORUM_POSTGRES_*_PASSWORD; a notification script, and
// whatever it starts, has no use for them.
func childEnv() []string {
	environ := os.Environ()
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PGQUORUM") || strings.HasPrefix(name, "PGPASS") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
