package pgnode

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// EnsureRoles makes the roles the Config names match it on a running
// primary: it creates the replication and rewind roles if they are
// missing, else sets their attributes and passwords again, sets the
// superuser's password, and grants the rewind role the functions pg_rewind
// calls and pg_checkpoint. Bootstrap does this for a cluster it creates; a
// primary that pgquorum adopted, or whose Bootstrap failed after initdb and
// was then started through Start, gets its roles only here.
//
// It first reads whether everything is in place already (passwords are
// checked against their SCRAM verifiers) and then writes nothing: an agent
// that restarts calls it again, and a write on a primary whose
// synchronous standbys are all gone would wait for them. A standby returns
// ErrNotPrimary (the roles reach it by replication).
func (n *Node) EnsureRoles(ctx context.Context) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	var inPlace bool
	err := n.withConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var rec bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			return err
		}
		if rec {
			return fmt.Errorf("%w: %s is in recovery, roles are made on the primary", ErrNotPrimary, n.cfg.DataDir)
		}
		var err error
		inPlace, err = n.rolesInPlace(ctx, c)
		return err
	})
	if err != nil {
		return fmt.Errorf("ensure roles on %s: %w", n.cfg.DataDir, err)
	}
	if inPlace {
		n.log.Debug("roles in place", "replication", n.cfg.Replication.Username, "rewind", n.cfg.Rewind.Username)
		return nil
	}
	return n.ensureRoles(ctx)
}

// rewindFunctions are the functions pg_rewind calls on its source as a
// role that is not a superuser (ensureRoles grants them).
var rewindFunctions = []string{
	"pg_catalog.pg_ls_dir(text, boolean, boolean)",
	"pg_catalog.pg_stat_file(text, boolean)",
	"pg_catalog.pg_read_binary_file(text)",
	"pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
}

// rolesInPlace reports whether the superuser, replication and rewind roles
// exist with the attributes, passwords and grants ensureRoles gives them.
func (n *Node) rolesInPlace(ctx context.Context, c *pgx.Conn) (bool, error) {
	for _, r := range []struct {
		cr          Credentials
		replication bool
	}{
		{n.cfg.Superuser, false},
		{n.cfg.Replication, true},
		{n.cfg.Rewind, false},
	} {
		var (
			login, repl, super bool
			secret             *string
		)
		err := c.QueryRow(ctx, "SELECT rolcanlogin, rolreplication, rolsuper, rolpassword FROM pg_authid WHERE rolname = $1",
			r.cr.Username).Scan(&login, &repl, &super, &secret)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !login || (r.replication && !repl && !super) || secret == nil || !scramMatches(*secret, r.cr.Password) {
			return false, nil
		}
	}
	var granted bool
	q := "SELECT pg_has_role($1, 'pg_checkpoint', 'MEMBER')"
	for _, f := range rewindFunctions {
		q += " AND has_function_privilege($1, " + quoteLiteral(f) + ", 'EXECUTE')"
	}
	if err := c.QueryRow(ctx, q, n.cfg.Rewind.Username).Scan(&granted); err != nil {
		return false, err
	}
	return granted, nil
}

// scramMatches reports whether secret, a role's rolpassword, is the
// SCRAM-SHA-256 verifier of password. It is false for any other form (md5,
// clear text) and for a password that is not printable ASCII (the server
// applies SASLprep to those; see scramVerifier), so that such roles are
// set again rather than taken as matching.
func scramMatches(secret, password string) bool {
	for i := 0; i < len(password); i++ {
		if c := password[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
	rest, ok := strings.CutPrefix(secret, "SCRAM-SHA-256$")
	if !ok {
		return false
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	iterStr, saltB64, ok1 := strings.Cut(params, ":")
	storedB64, serverB64, ok2 := strings.Cut(keys, ":")
	iter, err := strconv.Atoi(iterStr)
	if !ok1 || !ok2 || err != nil || iter < 1 {
		return false
	}
	dec := base64.StdEncoding.DecodeString
	salt, err1 := dec(saltB64)
	stored, err2 := dec(storedB64)
	server, err3 := dec(serverB64)
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return false
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	wantStored := sha256.Sum256(mac(salted, "Client Key"))
	return hmac.Equal(stored, wantStored[:]) && hmac.Equal(server, mac(salted, "Server Key"))
}
