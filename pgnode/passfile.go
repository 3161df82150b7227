package pgnode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// passFile holds the replication password for primary_conninfo, in the
// data directory (mode 0700) with mode 0600, owned by the OS user.
//
// primary_conninfo itself must not carry the password: PostgreSQL logs
// every changed parameter with its value on reload ("parameter
// "primary_conninfo" changed to ..."), and shows it to anyone with
// pg_read_all_settings. libpq reads the password from passfile instead.
const passFile = "pgquorum.pgpass"

// upstreamCredentials returns the user and password to reach up with.
func (n *Node) upstreamCredentials(up Upstream) (user, password string) {
	if up.User == "" {
		return n.cfg.Replication.Username, n.cfg.Replication.Password
	}
	return up.User, up.Password
}

// renderPassfile renders the one line of passFile for up.
func (n *Node) renderPassfile(up Upstream) (data []byte, ok bool) {
	return passfileLine(n.upstreamCredentials(up))
}

// passfileLine renders a passfile line that gives password to user on any
// host (see https://www.postgresql.org/docs/15/libpq-pgpass.html), or ok
// false when a passfile cannot hold them (a line break).
func passfileLine(user, password string) (data []byte, ok bool) {
	if strings.ContainsAny(password, "\r\n") || strings.ContainsAny(user, "\r\n") {
		return nil, false
	}
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	return []byte("*:*:*:" + esc.Replace(user) + ":" + esc.Replace(password) + "\n"), true
}

// passwordEnv returns the environment that gives a PostgreSQL client tool
// (pg_basebackup, pg_rewind) the password of user: PGPASSFILE naming a
// temporary passfile (0600, owned by the OS user), which done removes. A
// PGPASSWORD variable would sit in the tool's environment and in that of
// the postgres processes pg_rewind starts; a password a passfile cannot
// hold still goes that way.
func (n *Node) passwordEnv(user, password string) (env []string, done func(), err error) {
	line, ok := passfileLine(user, password)
	if !ok {
		return []string{"PGPASSWORD=" + password}, func() {}, nil
	}
	f, err := os.CreateTemp("", "pgquorum-pgpass-*")
	if err != nil {
		return nil, nil, fmt.Errorf("create passfile: %w", err)
	}
	done = func() { _ = os.Remove(f.Name()) }
	_, werr := f.Write(line)
	if err := errors.Join(werr, f.Close(), n.os.chown(f.Name())); err != nil {
		done()
		return nil, nil, fmt.Errorf("write passfile %s: %w", f.Name(), err)
	}
	return []string{"PGPASSFILE=" + f.Name()}, done, nil
}

// writeUpstreamConninfo writes passFile for up (or removes it when up is
// nil) and returns primary_conninfo for up, which names passFile instead of
// the password. A password passFile cannot hold goes into the conninfo.
func (n *Node) writeUpstreamConninfo(up *Upstream) (conninfo string, changed bool, err error) {
	path := filepath.Join(n.cfg.DataDir, passFile)
	if up == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", false, fmt.Errorf("remove %s: %w", path, err)
		} else if err == nil {
			changed = true
		}
		return "", changed, nil
	}
	data, ok := n.renderPassfile(*up)
	if !ok {
		n.log.Warn("the replication password holds a line break: it goes into primary_conninfo, which PostgreSQL logs on reload")
		return n.primaryConninfo(*up, true), false, nil
	}
	changed, err = n.writeFileAtomic(path, data)
	if err != nil {
		return "", false, err
	}
	return n.primaryConninfo(*up, false) + " passfile=" + quoteConninfo(path), changed, nil
}
