package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/pgquorum/pgquorum/server/config"
	"github.com/spf13/cobra"
)

// genPlaceholder in a directory flag stands for the host's name, so that
// hosts sharing one file system (network namespaces, tests) get their own
// directories.
const genPlaceholder = "{name}"

// genHost is one entry of the host list.
type genHost struct {
	Name    string
	Addr    string // IP address or DNS name, no port; for a bouncer it may be empty
	Witness bool
}

// genOptions is everything gen-config needs to render the files.
type genOptions struct {
	Cluster   string
	Hosts     []genHost // Postgres hosts, then the witness if any
	Bouncers  []genHost
	Databases []string // PgBouncer database NAME or NAME=DBNAME
	Profile   string

	RaftPort, GRPCPort, HTTPPort, PGPort, PgBouncerPort int

	EtcDir          string // config files; tls/ and secrets/ below it
	DataDir         string // the node's data_dir
	PGDataDir       string // postgres.data_dir
	PGBinDir        string // postgres.bin_dir
	PgBouncerDir    string // pgbouncer.ini and userlist.txt
	BouncerStateDir string // the agent's include file
}

// genFile is one rendered file, written to OUT/Host/Name.
type genFile struct {
	Host    string
	Name    string
	Kind    string // "node", "bouncer" or "pgbouncer"
	Install string // where it goes on its host
	Data    []byte
}

// genConfigCmd is `pgquorum gen-config`. It turns a host list into the files
// each host needs: a node config per PostgreSQL host and witness, and a
// bouncer agent config plus a PgBouncer config per PgBouncer host, so that
// addresses, certificate names and the initial cluster agree across hosts
// by construction. Every file is checked with the loader `serve` and
// `bouncer` use before anything is written, in a scratch directory where
// the certificates, password files and directories it names exist; on the
// hosts, `pgquorum validate-config` (run by the systemd unit before each
// start) repeats the check against the real files.
func genConfigCmd() *cobra.Command {
	o := &genOptions{}
	var out, witness string
	var bouncers []string
	var force bool
	cmd := &cobra.Command{
		Use:   "gen-config --cluster NAME --out DIR NAME=ADDRESS...",
		Short: "Write the node, bouncer agent and PgBouncer configs of every host from a host list",
		Long: `Write the configuration files of a cluster's hosts from a host list.

Each NAME=ADDRESS is a PostgreSQL host: NAME becomes its node_id, ADDRESS (an IP address or a DNS
name, without port) is where the other hosts reach it. --witness NAME=ADDRESS adds a voter that runs
no PostgreSQL (two PostgreSQL hosts plus a witness). Files land in DIR/NAME/:

  DIR/NAME/pgquorum.yaml        the node config        -> ETC_DIR/pgquorum.yaml on host NAME
  DIR/BOUNCER/bouncer.yaml      the bouncer agent      -> ETC_DIR/bouncer.yaml on the PgBouncer host
  DIR/BOUNCER/pgbouncer.ini     PgBouncer, routed by it -> PGBOUNCER_DIR/pgbouncer.ini

TLS files follow scripts/gen-certs.sh (ETC_DIR/tls/ca.pem, node-ADDRESS.pem, bouncer.pem, ...);
passwords are read from ETC_DIR/secrets/{superuser,replication,rewind,pgbouncer}.password, never
written into a config. Every file is validated before anything is written. A
directory flag may contain {name}, replaced by the host's name. See docs/deploy.md.`,
		Example: `  pgquorum gen-config --cluster main --out gen n1=10.0.0.1 n2=10.0.0.2 n3=10.0.0.3
  pgquorum gen-config --cluster main --out gen --witness w1=10.0.0.3 n1=10.0.0.1 n2=10.0.0.2`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out: give the directory to write the files to")
			}
			hosts, err := parseGenHosts(args, witness, bouncers)
			if err != nil {
				return err
			}
			o.Hosts, o.Bouncers = hosts.nodes, hosts.bouncers
			files, err := o.generate()
			if err != nil {
				return err
			}
			if err := writeGenFiles(out, files, force); err != nil {
				return err
			}
			o.summary(cmd.OutOrStdout(), cmd.ErrOrStderr(), out, files)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Cluster, "cluster", "", "cluster_name of the cluster (required)")
	f.StringVar(&out, "out", "", "directory to write DIR/HOST/<file> into (required)")
	f.StringVar(&witness, "witness", "", "NAME=ADDRESS of a witness: a voter without PostgreSQL")
	f.StringArrayVar(&bouncers, "bouncer", []string{"pgb1"}, "PgBouncer host as NAME or NAME=ADDRESS (PgBouncer then listens on ADDRESS too); repeatable")
	f.StringArrayVar(&o.Databases, "database", []string{"postgres"}, "PgBouncer database NAME or NAME=DBNAME routed to the primary; repeatable")
	f.StringVar(&o.Profile, "profile", string(config.ProfileDefault), "timing.profile: fast, default or conservative")
	f.IntVar(&o.RaftPort, "raft-port", 7001, "Raft port of every node")
	f.IntVar(&o.GRPCPort, "grpc-port", 7101, "gRPC port of every node")
	f.IntVar(&o.HTTPPort, "http-port", 8008, "health check and metrics port of every node; 0 disables it")
	f.IntVar(&o.PGPort, "pg-port", 5432, "PostgreSQL port of every PostgreSQL host")
	f.IntVar(&o.PgBouncerPort, "pgbouncer-port", 6432, "PgBouncer port")
	f.StringVar(&o.EtcDir, "etc-dir", "/etc/pgquorum", "directory of the configs, tls/ and secrets/ on each host")
	f.StringVar(&o.DataDir, "data-dir", "/var/lib/pgquorum/raft", "data_dir (Raft state)")
	f.StringVar(&o.PGDataDir, "pg-data-dir", "/var/lib/pgquorum/pg15", "postgres.data_dir")
	f.StringVar(&o.PGBinDir, "pg-bin-dir", "/usr/lib/postgresql/15/bin", "postgres.bin_dir")
	f.StringVar(&o.PgBouncerDir, "pgbouncer-dir", "/etc/pgbouncer", "directory of pgbouncer.ini and userlist.txt on the PgBouncer host")
	f.StringVar(&o.BouncerStateDir, "bouncer-state-dir", "/var/lib/pgquorum-bouncer", "directory of the include file the bouncer agent rewrites")
	f.BoolVar(&force, "force", false, "overwrite files that exist")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// genHostList is the parsed host list.
type genHostList struct{ nodes, bouncers []genHost }

// genNameRE mirrors the charset config accepts for node IDs, so that a bad
// name is reported against the host list rather than a generated key.
var genNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// parseGenHosts parses NAME=ADDRESS arguments, the witness and the bouncers,
// and refuses duplicate names or node addresses.
func parseGenHosts(args []string, witness string, bouncers []string) (genHostList, error) {
	var l genHostList
	var errs []error
	names, addrs := map[string]bool{}, map[string]bool{}
	add := func(what, s string, needAddr bool) (genHost, bool) {
		name, addr, ok := strings.Cut(s, "=")
		name, addr = strings.TrimSpace(name), strings.TrimSpace(addr)
		switch {
		case needAddr && (!ok || addr == ""):
			errs = append(errs, fmt.Errorf("%s %q: want NAME=ADDRESS", what, s))
			return genHost{}, false
		case !genNameRE.MatchString(name):
			errs = append(errs, fmt.Errorf("%s %q: %q is not a valid name (1-63 of a-z, 0-9, _ and -, starting with a letter or digit)", what, s, name))
			return genHost{}, false
		case names[name]:
			errs = append(errs, fmt.Errorf("%s %q: the name %s is used twice", what, s, name))
			return genHost{}, false
		}
		names[name] = true
		if addr != "" {
			if err := checkGenAddr(addr); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", what, s, err))
				return genHost{}, false
			}
		}
		return genHost{Name: name, Addr: addr}, true
	}
	for _, a := range args {
		if h, ok := add("host", a, true); ok {
			if addrs[h.Addr] {
				errs = append(errs, fmt.Errorf("host %q: the address %s is used twice", a, h.Addr))
			}
			addrs[h.Addr] = true
			l.nodes = append(l.nodes, h)
		}
	}
	if witness != "" {
		if h, ok := add("--witness", witness, true); ok {
			if addrs[h.Addr] {
				errs = append(errs, fmt.Errorf("--witness %q: the address %s is used twice", witness, h.Addr))
			}
			h.Witness = true
			l.nodes = append(l.nodes, h)
		}
	}
	for _, b := range bouncers {
		if h, ok := add("--bouncer", b, false); ok {
			l.bouncers = append(l.bouncers, h)
		}
	}
	return l, errors.Join(errs...)
}

// dnsNameRE is a DNS name: letters, digits, dots and inner hyphens.
var dnsNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// checkGenAddr accepts an IP address or a DNS name; a port is refused
// because ports come from the --*-port flags.
func checkGenAddr(addr string) error {
	if net.ParseIP(addr) != nil {
		if net.ParseIP(addr).IsUnspecified() {
			return fmt.Errorf("%s listens everywhere but cannot be dialed; give the host's own address", addr)
		}
		return nil
	}
	if strings.Contains(addr, ":") {
		return fmt.Errorf("%s: give the address without a port (ports come from --raft-port, --grpc-port, ...)", addr)
	}
	if !dnsNameRE.MatchString(addr) {
		return fmt.Errorf("%s is neither an IP address nor a DNS name", addr)
	}
	return nil
}

// dir expands the {name} placeholder of a directory flag for one host.
func (o *genOptions) dir(d string, h genHost) string {
	return filepath.Clean(strings.ReplaceAll(d, genPlaceholder, h.Name))
}

func (o *genOptions) tlsFile(name string) string { return filepath.Join(o.EtcDir, "tls", name) }

func (o *genOptions) secret(name string) string {
	return filepath.Join(o.EtcDir, "secrets", name+".password")
}

// check refuses options that cannot give valid files, before rendering.
func (o *genOptions) check() error {
	var errs []error
	postgres := 0
	for _, h := range o.Hosts {
		if !h.Witness {
			postgres++
		}
	}
	if postgres == 0 {
		errs = append(errs, errors.New("name at least one PostgreSQL host as NAME=ADDRESS"))
	}
	for _, p := range []struct {
		flag string
		v    int
		zero bool
	}{{"--raft-port", o.RaftPort, false}, {"--grpc-port", o.GRPCPort, false}, {"--http-port", o.HTTPPort, true},
		{"--pg-port", o.PGPort, false}, {"--pgbouncer-port", o.PgBouncerPort, false}} {
		if (p.v != 0 || !p.zero) && (p.v < 1 || p.v > 65535) {
			errs = append(errs, fmt.Errorf("%s %d is not a port (1-65535)", p.flag, p.v))
		}
	}
	if o.RaftPort == o.GRPCPort || o.RaftPort == o.HTTPPort || o.GRPCPort == o.HTTPPort {
		errs = append(errs, errors.New("--raft-port, --grpc-port and --http-port must differ"))
	}
	for _, d := range []struct{ flag, v string }{{"--etc-dir", o.EtcDir}, {"--data-dir", o.DataDir},
		{"--pg-data-dir", o.PGDataDir}, {"--pg-bin-dir", o.PGBinDir}, {"--pgbouncer-dir", o.PgBouncerDir},
		{"--bouncer-state-dir", o.BouncerStateDir}} {
		if !filepath.IsAbs(d.v) {
			errs = append(errs, fmt.Errorf("%s %q is not an absolute path: a service must not depend on its working directory", d.flag, d.v))
		}
	}
	for _, db := range o.Databases {
		if name, _, _ := strings.Cut(db, "="); name == "" {
			errs = append(errs, fmt.Errorf("--database %q: want NAME or NAME=DBNAME", db))
		}
	}
	return errors.Join(errs...)
}

// generate renders every file and validates it; nothing is written.
func (o *genOptions) generate() ([]genFile, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	files := o.render()
	if err := o.validate(); err != nil {
		return nil, err
	}
	return files, nil
}

// render returns the files of every host.
func (o *genOptions) render() []genFile {
	var files []genFile
	for _, h := range o.Hosts {
		files = append(files, genFile{Host: h.Name, Name: "pgquorum.yaml", Kind: "node",
			Install: filepath.Join(o.dir(o.EtcDir, h), "pgquorum.yaml"), Data: o.nodeYAML(h)})
	}
	for _, b := range o.Bouncers {
		files = append(files,
			genFile{Host: b.Name, Name: "bouncer.yaml", Kind: "bouncer",
				Install: filepath.Join(o.dir(o.EtcDir, b), "bouncer.yaml"), Data: o.bouncerYAML(b)},
			genFile{Host: b.Name, Name: "pgbouncer.ini", Kind: "pgbouncer",
				Install: filepath.Join(o.dir(o.PgBouncerDir, b), "pgbouncer.ini"), Data: o.pgbouncerINI(b)})
	}
	return files
}

func (o *genOptions) hostPort(addr string, port int) string {
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// nodeYAML renders the node config of h.
func (o *genOptions) nodeYAML(h genHost) []byte {
	w := &yamlWriter{}
	role := "PostgreSQL host"
	if h.Witness {
		role = "witness (votes, runs no PostgreSQL)"
	}
	w.comment("pgquorum node %s of cluster %s: %s at %s. Generated by `pgquorum gen-config`.", h.Name, o.Cluster, role, h.Addr)
	w.comment("Check it on the host with `pgquorum validate-config %s`.", filepath.Join(o.dir(o.EtcDir, h), "pgquorum.yaml"))
	w.kv(0, "cluster_name", o.Cluster)
	w.kv(0, "node_id", h.Name)
	w.kv(0, "data_dir", o.dir(o.DataDir, h))
	if h.Witness {
		w.kv(0, "role", "witness")
	}
	w.section(0, "raft")
	w.kv(1, "bind_addr", o.hostPort(h.Addr, o.RaftPort))
	w.section(0, "grpc")
	w.kv(1, "listen_addr", o.hostPort(h.Addr, o.GRPCPort))
	w.section(0, "http")
	if o.HTTPPort == 0 {
		w.kv(1, "listen_addr", "")
	} else {
		w.kv(1, "listen_addr", o.hostPort(h.Addr, o.HTTPPort))
	}
	w.section(0, "tls")
	w.kv(1, "ca_file", o.dir(o.tlsFile("ca.pem"), h))
	w.kv(1, "cert_file", o.dir(o.tlsFile("node-"+h.Addr+".pem"), h))
	w.kv(1, "key_file", o.dir(o.tlsFile("node-"+h.Addr+"-key.pem"), h))
	w.section(0, "bootstrap")
	var initial []string
	for _, p := range o.Hosts {
		initial = append(initial, p.Name+"="+o.hostPort(p.Addr, o.RaftPort))
	}
	w.list(1, "initial_cluster", initial)
	w.section(0, "timing")
	w.kv(1, "profile", o.Profile)
	if !h.Witness {
		w.section(0, "postgres")
		w.kv(1, "bin_dir", o.dir(o.PGBinDir, h))
		w.kv(1, "data_dir", o.dir(o.PGDataDir, h))
		w.kv(1, "listen_addresses", h.Addr)
		w.kv(1, "port", o.PGPort)
		for _, c := range []struct{ key, user string }{{"superuser", "postgres"}, {"replication", "replicator"}, {"rewind", "rewind_user"}} {
			w.section(1, c.key)
			w.kv(2, "username", c.user)
			w.kv(2, "password_file", o.dir(o.secret(c.key), h))
		}
	}
	return w.bytes()
}

// endpoints returns the gRPC addresses of every node.
func (o *genOptions) endpoints() []string {
	var eps []string
	for _, h := range o.Hosts {
		eps = append(eps, o.hostPort(h.Addr, o.GRPCPort))
	}
	return eps
}

// bouncerYAML renders the bouncer agent config of PgBouncer host b.
func (o *genOptions) bouncerYAML(b genHost) []byte {
	w := &yamlWriter{}
	w.comment("pgquorum bouncer agent %s beside the PgBouncer of %s. Generated by `pgquorum gen-config`.", b.Name, o.pgbouncerListen(b))
	w.kv(0, "agent_id", b.Name)
	w.kv(0, "contact_lease", "3s")
	w.section(0, "pgbouncer")
	w.kv(1, "host", "127.0.0.1")
	w.kv(1, "port", o.PgBouncerPort)
	w.kv(1, "admin_user", "pgbouncer")
	w.kv(1, "password_file", o.dir(o.secret("pgbouncer"), b))
	w.kv(1, "config_path", filepath.Join(o.dir(o.PgBouncerDir, b), "pgbouncer.ini"))
	w.kv(1, "include_path", o.includePath(b))
	w.section(0, "tls")
	w.kv(1, "ca_file", o.dir(o.tlsFile("ca.pem"), b))
	w.kv(1, "cert_file", o.dir(o.tlsFile("bouncer.pem"), b))
	w.kv(1, "key_file", o.dir(o.tlsFile("bouncer-key.pem"), b))
	w.section(0, "clusters")
	w.line(1, "- name: "+yamlScalar(o.Cluster))
	w.list(2, "endpoints", o.endpoints())
	w.line(2, "databases:")
	for _, db := range o.Databases {
		name, dbname, ok := strings.Cut(db, "=")
		if !ok {
			dbname = name
		}
		w.line(3, fmt.Sprintf("- {name: %s, dbname: %s}", yamlScalar(name), yamlScalar(dbname)))
	}
	return w.bytes()
}

func (o *genOptions) includePath(b genHost) string {
	return filepath.Join(o.dir(o.BouncerStateDir, b), "databases.ini")
}

func (o *genOptions) pgbouncerListen(b genHost) string {
	if b.Addr == "" || b.Addr == "127.0.0.1" {
		return "127.0.0.1"
	}
	return b.Addr + ",127.0.0.1"
}

// pgbouncerINI renders a PgBouncer config whose [databases] come from the
// agent's include file, with the retry settings fast failover needs.
func (o *genOptions) pgbouncerINI(b genHost) []byte {
	var s strings.Builder
	fmt.Fprintf(&s, "; PgBouncer %s, routed by the pgquorum bouncer agent %s. Generated by `pgquorum gen-config`.\n", b.Name, b.Name)
	s.WriteString("; The agent owns the included file; the users and their passwords go into auth_file.\n")
	s.WriteString("[databases]\n")
	fmt.Fprintf(&s, "%%include %s\n\n", o.includePath(b))
	s.WriteString("[pgbouncer]\n")
	fmt.Fprintf(&s, "listen_addr = %s\n", o.pgbouncerListen(b))
	fmt.Fprintf(&s, "listen_port = %d\n", o.PgBouncerPort)
	s.WriteString("unix_socket_dir =\n")
	s.WriteString("auth_type = scram-sha-256\n")
	fmt.Fprintf(&s, "auth_file = %s\n", filepath.Join(o.dir(o.PgBouncerDir, b), "userlist.txt"))
	s.WriteString("admin_users = pgbouncer\n")
	s.WriteString("pool_mode = transaction\n")
	s.WriteString("; A failed login to a dead primary must not block new logins for 15 s (the default).\n")
	s.WriteString("server_login_retry = 0.1\n")
	s.WriteString("server_connect_timeout = 2\n")
	s.WriteString("server_fast_close = 1\n")
	return []byte(s.String())
}

// validate loads every rendered file with config.Load and
// config.LoadBouncer in a scratch directory that mirrors the hosts' file
// systems: the same options, every directory moved below the scratch root,
// and every file and directory the configs name created there.
func (o *genOptions) validate() error {
	root, err := os.MkdirTemp("", "pgquorum-gen-config-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	s := *o
	for _, d := range []*string{&s.EtcDir, &s.DataDir, &s.PGDataDir, &s.PGBinDir, &s.PgBouncerDir, &s.BouncerStateDir} {
		*d = filepath.Join(root, *d)
	}
	var errs []error
	fail := func(what string, err error) {
		// Report paths as they will be on the hosts.
		msg := strings.ReplaceAll(err.Error(), root, "")
		errs = append(errs, fmt.Errorf("generated %s does not validate: %s", what, msg))
	}
	put := func(path string, data []byte, mode os.FileMode) error {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		return os.WriteFile(path, data, mode)
	}
	for _, h := range s.Hosts {
		need := []string{s.dir(s.tlsFile("ca.pem"), h), s.dir(s.tlsFile("node-"+h.Addr+".pem"), h), s.dir(s.tlsFile("node-"+h.Addr+"-key.pem"), h)}
		dirs := []string{filepath.Dir(s.dir(s.DataDir, h))}
		if !h.Witness {
			for _, c := range []string{"superuser", "replication", "rewind"} {
				need = append(need, s.dir(s.secret(c), h))
			}
			dirs = append(dirs, filepath.Dir(s.dir(s.PGDataDir, h)))
			for _, prog := range config.RequiredPrograms {
				need = append(need, filepath.Join(s.dir(s.PGBinDir, h), prog))
			}
		}
		for _, d := range dirs {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		for _, f := range need {
			if err := put(f, nil, 0o700); err != nil {
				return err
			}
		}
		path := filepath.Join(root, "check", h.Name+".yaml")
		if err := put(path, s.nodeYAML(h), 0o600); err != nil {
			return err
		}
		cfg, err := config.Load(path, nil, []string{})
		if err != nil {
			fail("node config of "+h.Name, err)
			continue
		}
		if cfg.NodeID != h.Name || cfg.ClusterName != o.Cluster || (cfg.Role == config.RoleWitness) != h.Witness {
			fail("node config of "+h.Name, fmt.Errorf("loads as node %s (%s) of cluster %s", cfg.NodeID, cfg.Role, cfg.ClusterName))
		}
	}
	for _, b := range s.Bouncers {
		for _, f := range []string{s.dir(s.tlsFile("ca.pem"), b), s.dir(s.tlsFile("bouncer.pem"), b), s.dir(s.tlsFile("bouncer-key.pem"), b), s.dir(s.secret("pgbouncer"), b)} {
			if err := put(f, nil, 0o600); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(s.dir(s.BouncerStateDir, b), 0o755); err != nil {
			return err
		}
		ini := filepath.Join(s.dir(s.PgBouncerDir, b), "pgbouncer.ini")
		if err := put(ini, s.pgbouncerINI(b), 0o644); err != nil {
			return err
		}
		path := filepath.Join(root, "check", "bouncer-"+b.Name+".yaml")
		if err := put(path, s.bouncerYAML(b), 0o600); err != nil {
			return err
		}
		if _, err := config.LoadBouncer(path, nil, []string{}); err != nil {
			fail("bouncer agent config of "+b.Name, err)
		}
	}
	return errors.Join(errs...)
}

// writeGenFiles writes each file to out/HOST/NAME, refusing to overwrite
// an existing file unless force is set. Nothing is written if any target
// exists.
func writeGenFiles(out string, files []genFile, force bool) error {
	if !force {
		var exist []string
		for _, f := range files {
			p := filepath.Join(out, f.Host, f.Name)
			if _, err := os.Lstat(p); err == nil {
				exist = append(exist, p)
			}
		}
		if len(exist) > 0 {
			return fmt.Errorf("%s exist; nothing written (--force overwrites)", strings.Join(exist, ", "))
		}
	}
	for _, f := range files {
		dir := filepath.Join(out, f.Host)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// summary tells the operator where each file goes and what is still
// missing on the hosts.
func (o *genOptions) summary(w, warn io.Writer, out string, files []genFile) {
	voters := len(o.Hosts)
	if voters%2 == 0 {
		fmt.Fprintf(warn, "gen-config: warning: %d voters survive no more failures than %d; add a host or a --witness\n", voters, voters-1)
	}
	for _, f := range files {
		fmt.Fprintf(w, "wrote %s  (%s; install as %s on %s)\n", filepath.Join(out, f.Host, f.Name), f.Kind, f.Install, f.Host)
	}
	var addrs []string
	for _, h := range o.Hosts {
		addrs = append(addrs, h.Addr)
	}
	fmt.Fprintf(w, "\nNext (docs/deploy.md):\n")
	fmt.Fprintf(w, "  certificates: scripts/gen-certs.sh --out %s %s\n", o.tlsFile(""), strings.Join(addrs, " "))
	fmt.Fprintf(w, "  passwords:    one line each in %s/{superuser,replication,rewind,pgbouncer}.password\n", filepath.Join(o.EtcDir, "secrets"))
	fmt.Fprintf(w, "  each host:    pgquorum validate-config %s\n", filepath.Join(o.EtcDir, "pgquorum.yaml"))
}

// yamlWriter writes the small block-style YAML gen-config emits.
type yamlWriter struct{ b strings.Builder }

func (w *yamlWriter) comment(format string, args ...any) {
	fmt.Fprintf(&w.b, "# %s\n", fmt.Sprintf(format, args...))
}

func (w *yamlWriter) line(indent int, s string) {
	w.b.WriteString(strings.Repeat("  ", indent) + s + "\n")
}

func (w *yamlWriter) section(indent int, key string) { w.line(indent, key+":") }

func (w *yamlWriter) kv(indent int, key string, v any) {
	switch v := v.(type) {
	case string:
		w.line(indent, key+": "+yamlScalar(v))
	default:
		w.line(indent, fmt.Sprintf("%s: %v", key, v))
	}
}

func (w *yamlWriter) list(indent int, key string, items []string) {
	w.line(indent, key+":")
	for _, it := range items {
		w.line(indent+1, "- "+yamlScalar(it))
	}
}

func (w *yamlWriter) bytes() []byte { return []byte(w.b.String()) }

// plainRE matches strings that YAML reads back unchanged without quotes.
var plainRE = regexp.MustCompile(`^[A-Za-z0-9_/][A-Za-z0-9_./:=@-]*$`)

// yamlScalar returns s as a YAML scalar that reads back as the string s:
// plain when that is unambiguous, double-quoted (JSON escapes are valid
// YAML) otherwise.
func yamlScalar(s string) string {
	_, numErr := strconv.ParseFloat(s, 64)
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "null", "y", "n":
		return strconv.Quote(s)
	}
	if plainRE.MatchString(s) && numErr != nil {
		return s
	}
	return strconv.Quote(s)
}
