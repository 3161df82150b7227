package pgnode

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Files pgnode owns inside the data directory. postgresql.conf includes
// confFile, which includes the other two; each is rewritten on its own so
// that changing parameters never touches the standby settings and back.
const (
	confFile         = "pgquorum.conf"
	syncConfFile     = "pgquorum.sync.conf"
	recoveryConfFile = "pgquorum.recovery.conf"
	includeLine      = "include_if_exists = '" + confFile + "'"
	managedHeader    = "# Managed by pgquorum; edits are overwritten.\n"
)

// replicationDefaults are written before Config.Parameters, which may
// override them. wal_receiver_status_interval is ReceiverStatusInterval:
// the PostgreSQL default (10 s) would make an idle, healthy standby look
// silent to a primary that judges it by its reply age.
var replicationDefaults = map[string]string{
	"wal_level":                    "replica",
	"max_wal_senders":              "10",
	"max_replication_slots":        "10",
	"wal_keep_size":                "256MB",
	"wal_log_hints":                "on",
	"wal_receiver_status_interval": fmt.Sprintf("%ds", int(ReceiverStatusInterval/time.Second)),
}

// quoteConf quotes v for postgresql.conf.
func quoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// quoteConninfo quotes v for a libpq keyword/value connection string.
func quoteConninfo(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
}

// writeFileAtomic writes data to path (mode 0600, owned by the OS user)
// through a temporary file and a rename. It reports whether the content
// changed.
func (n *Node) writeFileAtomic(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	tmp := path + ".pgquorum.tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return false, fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := n.os.chown(tmp); err != nil {
		os.Remove(tmp)
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("rename %s: %w", path, err)
	}
	return true, nil
}

// renderBaseConf renders pgquorum.conf: replication defaults, the cluster
// parameters, then the node-local settings the agent owns.
func (n *Node) renderBaseConf(params map[string]string) []byte {
	var b strings.Builder
	b.WriteString(managedHeader)
	merged := make(map[string]string, len(replicationDefaults)+len(params))
	for k, v := range replicationDefaults {
		merged[k] = v
	}
	for k, v := range params {
		merged[strings.ToLower(k)] = v
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("\n# cluster parameters\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(merged[k]))
	}
	b.WriteString("\n# node-local settings\n")
	fmt.Fprintf(&b, "listen_addresses = %s\n", quoteConf(n.cfg.ListenAddresses))
	fmt.Fprintf(&b, "port = %d\n", n.cfg.Port)
	fmt.Fprintf(&b, "unix_socket_directories = %s\n", quoteConf(n.cfg.SocketDir))
	fmt.Fprintf(&b, "cluster_name = %s\n", quoteConf(n.cfg.ClusterName))
	b.WriteString("hot_standby = on\n")
	b.WriteString("\n# synchronous replication and standby settings, rewritten separately\n")
	fmt.Fprintf(&b, "include_if_exists = '%s'\n", syncConfFile)
	fmt.Fprintf(&b, "include_if_exists = '%s'\n", recoveryConfFile)
	return []byte(b.String())
}

// renderHBA renders pg_hba.conf.
func (n *Node) renderHBA() []byte {
	var b strings.Builder
	b.WriteString(managedHeader)
	for _, l := range n.cfg.HBAExtra {
		b.WriteString(l + "\n")
	}
	b.WriteString("local all all scram-sha-256\n")
	b.WriteString("host all all 127.0.0.1/32 scram-sha-256\n")
	b.WriteString("host all all ::1/128 scram-sha-256\n")
	for _, net := range n.cfg.AllowedNetworks {
		fmt.Fprintf(&b, "host replication %s %s scram-sha-256\n", n.cfg.Replication.Username, net)
	}
	for _, net := range n.cfg.AllowedNetworks {
		fmt.Fprintf(&b, "host all all %s scram-sha-256\n", net)
	}
	return []byte(b.String())
}

// writeLocalConfig (re)writes everything node-local: pgquorum.conf with
// params, the include line in postgresql.conf, pg_hba.conf, and removes
// settings the agent owns from postgresql.auto.conf (which would override
// them, and which pg_basebackup and pg_rewind copy from the source). It
// reports whether anything changed.
func (n *Node) writeLocalConfig(params map[string]string) (bool, error) {
	dir := n.cfg.DataDir
	c1, err := n.writeFileAtomic(filepath.Join(dir, confFile), n.renderBaseConf(params))
	if err != nil {
		return false, err
	}
	c2, err := n.writeFileAtomic(filepath.Join(dir, "pg_hba.conf"), n.renderHBA())
	if err != nil {
		return false, err
	}
	c3, err := n.ensureInclude()
	if err != nil {
		return false, err
	}
	c4, err := n.sanitizeAutoConf(localParams)
	if err != nil {
		return false, err
	}
	for _, f := range []string{syncConfFile, recoveryConfFile} {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			if _, err := n.writeFileAtomic(p, []byte(managedHeader)); err != nil {
				return false, err
			}
		}
	}
	return c1 || c2 || c3 || c4, nil
}

// ensureInclude appends the include of pgquorum.conf to postgresql.conf
// unless it is there.
func (n *Node) ensureInclude() (bool, error) {
	path := filepath.Join(n.cfg.DataDir, "postgresql.conf")
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == includeLine {
			return false, nil
		}
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	b = append(b, "\n# pgquorum: managed settings, keep this line last\n"+includeLine+"\n"...)
	return n.writeFileAtomic(path, b)
}

// Managed settings by the file that owns them. sanitizeAutoConf removes a
// group from postgresql.auto.conf only when pgnode writes that group, so an
// adopted standby set up with pg_basebackup -R keeps following its primary
// until pgnode is told whom to follow.
var (
	localParams    = []string{"listen_addresses", "port", "cluster_name", "hot_standby", "unix_socket_directories", "data_directory", "hba_file", "ident_file", "config_file"}
	recoveryParams = []string{"primary_conninfo", "primary_slot_name", "recovery_target_timeline"}
	syncParams     = []string{"synchronous_standby_names"}
)

// sanitizeAutoConf drops lines setting any of keys from
// postgresql.auto.conf (written by ALTER SYSTEM and pg_basebackup -R, read
// after postgresql.conf, so it would override pgnode's files).
func (n *Node) sanitizeAutoConf(keys []string) (bool, error) {
	path := filepath.Join(n.cfg.DataDir, "postgresql.auto.conf")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	var out []string
	dropped := false
	for _, l := range strings.Split(string(b), "\n") {
		name, _, ok := strings.Cut(strings.TrimSpace(l), "=")
		if ok && slices.Contains(keys, strings.ToLower(strings.TrimSpace(name))) {
			n.log.Info("removing managed setting from postgresql.auto.conf", "path", path, "parameter", strings.TrimSpace(name))
			dropped = true
			continue
		}
		out = append(out, l)
	}
	if !dropped {
		return false, nil
	}
	return n.writeFileAtomic(path, []byte(strings.Join(out, "\n")))
}

// primaryConninfo builds primary_conninfo for up, naming this member as the
// application so synchronous_standby_names can refer to it.
func (n *Node) primaryConninfo(up Upstream, withPassword bool) string {
	user, pw := up.User, up.Password
	if user == "" {
		user, pw = n.cfg.Replication.Username, n.cfg.Replication.Password
	}
	parts := []string{
		"host=" + quoteConninfo(up.Host),
		"port=" + strconv.Itoa(up.Port),
		"user=" + quoteConninfo(user),
	}
	if withPassword {
		parts = append(parts, "password="+quoteConninfo(pw))
	}
	parts = append(parts,
		"application_name="+quoteConninfo(n.cfg.Name),
		"connect_timeout=5",
		"keepalives=1", "keepalives_idle=5", "keepalives_interval=2", "keepalives_count=3",
	)
	return strings.Join(parts, " ")
}

// writeRecoveryConf writes the standby settings for up (nil: a standby that
// follows nobody, or a primary). It reports whether they changed.
func (n *Node) writeRecoveryConf(up *Upstream) (bool, error) {
	conninfo, c0, err := n.writeUpstreamConninfo(up)
	if err != nil {
		return false, err
	}
	var b strings.Builder
	b.WriteString(managedHeader)
	if up != nil {
		fmt.Fprintf(&b, "primary_conninfo = %s\n", quoteConf(conninfo))
		fmt.Fprintf(&b, "primary_slot_name = %s\n", quoteConf(up.SlotName))
		b.WriteString("recovery_target_timeline = 'latest'\n")
	}
	c1, err := n.sanitizeAutoConf(recoveryParams)
	if err != nil {
		return false, err
	}
	c2, err := n.writeFileAtomic(filepath.Join(n.cfg.DataDir, recoveryConfFile), []byte(b.String()))
	return c0 || c1 || c2, err
}

// writeSyncConf writes synchronous_standby_names.
func (n *Node) writeSyncConf(value string) (bool, error) {
	data := managedHeader + "synchronous_standby_names = " + quoteConf(value) + "\n"
	c1, err := n.sanitizeAutoConf(syncParams)
	if err != nil {
		return false, err
	}
	c2, err := n.writeFileAtomic(filepath.Join(n.cfg.DataDir, syncConfFile), []byte(data))
	return c1 || c2, err
}

// setStandbySignal creates or removes standby.signal.
func (n *Node) setStandbySignal(on bool) error {
	path := filepath.Join(n.cfg.DataDir, "standby.signal")
	if !on {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		return nil
	}
	_, err := n.writeFileAtomic(path, []byte{})
	return err
}
