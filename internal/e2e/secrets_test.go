package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/e2e"
	"github.com/pgquorum/pgquorum/internal/pgtest"
)

// secret is one password of the test and where the operator put it.
type secret struct {
	name, value string
	// fromEnv: the operator gave it to the agent as a PGQUORUM_*
	// variable, so that agent's own environ holds it by the operator's
	// choice, and no other process's may. A secret read from a file may be
	// in no environ at all: pg_basebackup and pg_rewind read a passfile.
	fromEnv bool
}

// TestSecrets_NeverInClear runs three agents whose passwords come from files
// (superuser, rewind) and from the environment (replication), a PgBouncer
// and a bouncer agent whose admin password comes from the environment; it
// clones two standbys (pg_basebackup), fails over and rewinds the old
// primary (pg_rewind). Throughout, every process's command line and
// environment is sampled for the passwords; at the end the agents', guards', PostgreSQL's, PgBouncer's and
// the bouncer agent's logs, ctl's outputs, the HTTP endpoints, the Raft
// directories (log store and snapshots) and the bouncer's include file are
// searched for them. The replication password, which a standby's
// PostgreSQL needs, must be only in the passfile primary_conninfo names
// (pgquorum.pgpass, mode 0600, owned by the PostgreSQL OS user), never in
// primary_conninfo itself nor in postgresql.auto.conf.
func TestSecrets_NeverInClear(t *testing.T) {
	c := e2e.New(t, e2e.Options{DeferStart: true, LogLevel: "debug"}) // debug: every log line a secret could be in
	secrets := []secret{
		{name: "superuser", value: e2e.SuperuserPassword}, // the harness connects with it
		{name: "replication", value: "pgq-leak-repl-" + randHex(t), fromEnv: true},
		{name: "rewind", value: "pgq-leak-rewind-" + randHex(t)},
		{name: "pgbouncer admin", value: "pgq-leak-pgbadmin-" + randHex(t), fromEnv: true},
	}
	su, repl, rew, pgbAdmin := secrets[0], secrets[1], secrets[2], secrets[3]
	for _, n := range c.Nodes {
		if n.Witness {
			continue
		}
		useSecretSources(t, n, su.value, rew.value)
	}
	// PgBouncer first: it inherits this process's environment, which the
	// agents need to hold the replication password (e2e.StartAgent).
	pgb := pgtest.StartPgBouncer(t, pgtest.PgBouncerOptions{AdminPassword: pgbAdmin.value,
		Users: map[string]string{"postgres": su.value}})
	t.Setenv("PGQUORUM_POSTGRES_REPLICATION_PASSWORD", repl.value)

	samp := startSampler(t, secrets)
	c.Start()
	old, epoch := c.WaitHealthy(120 * time.Second)
	// The admin password is not in the agent's config file: it comes from
	// the agent's environment.
	bouncerLog := runBouncerAgent(t, c, pgb, bouncerAgentRun{id: "pgb-secrets", dir: t.TempDir(), logLevel: "debug",
		env: []string{"PGQUORUM_BOUNCER_PGBOUNCER_PASSWORD=" + pgbAdmin.value}})
	e2e.Eventually(t, 30*time.Second, "the include file routes to the primary", func() error {
		b, err := os.ReadFile(pgb.IncludePath)
		if err == nil && !strings.Contains(string(b), "port="+strconv.Itoa(c.Node(old).PGPort)) {
			err = fmt.Errorf("include file:\n%s", b)
		}
		return err
	})

	// Failover, then the old primary comes back through pg_rewind.
	c.KillHost(old)
	e2e.Eventually(t, 90*time.Second, "a new primary", func() error {
		p, e, err := c.Primary()
		if err == nil && (p == "" || p == old || e <= epoch) {
			err = fmt.Errorf("primary %q epoch %d", p, e)
		}
		return err
	})
	c.StartAgent(old)
	// Only the rewind matters here, not how the rejoin ends.
	e2e.Eventually(t, 120*time.Second, old+" runs pg_rewind", func() error {
		if log, _ := os.ReadFile(c.Node(old).LogPath); !strings.Contains(string(log), "pg_rewind done") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	samp.check(t)

	// What operators and load balancers see.
	var outputs []string
	for _, args := range [][]string{
		{"show-config"}, {"show-config", "-o", "json"}, {"list"}, {"list", "-o", "json"},
		{"show-config", "-o", "yaml"}, {"list", "-o", "yaml"},
		{"status"}, {"history"}, {"members", "-o", "json"}, {"topology"}, {"version"},
	} {
		out, err := c.Ctl(args...)
		if err != nil {
			t.Errorf("ctl %v: %v", args, err)
		}
		outputs = append(outputs, fmt.Sprintf("ctl %s", strings.Join(args, " ")), out)
	}
	for _, n := range c.Nodes {
		for _, path := range []string{"/patroni", "/cluster", "/history", "/config", "/metrics", "/health", "/primary", "/replica", "/leader"} {
			outputs = append(outputs, "GET http://"+n.HTTPAddr+path, httpGet(t, "http://"+n.HTTPAddr+path))
		}
	}
	for i := 0; i < len(outputs); i += 2 {
		for _, s := range secrets {
			if strings.Contains(outputs[i+1], s.value) {
				t.Errorf("%s password in the output of %s", s.name, outputs[i])
			}
		}
	}

	// Files: logs, Raft state, the bouncer's include file. Every file of
	// each agent directory is read whole (raft.db, snapshots, guard log).
	files := []string{bouncerLog, pgb.LogPath, pgb.IncludePath}
	for _, n := range c.Nodes {
		files = append(files, n.LogPath)
		if !n.Witness {
			files = append(files, n.PGDataDir+".log")
		}
		files = append(files, walkFiles(t, n.AgentDir)...)
	}
	raftFiles := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Errorf("read %s: %v", f, err)
			continue
		}
		if strings.HasSuffix(f, "raft.db") || strings.Contains(f, "snapshots") {
			raftFiles++
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s.value)) {
				t.Errorf("%s password in clear in %s", s.name, f)
			}
		}
	}
	if raftFiles == 0 {
		t.Errorf("no Raft store found under the agent directories: the FSM was not searched")
	}

	// The data directories: the replication password only in the passfile
	// that primary_conninfo names (0600, the OS user's); no other password.
	primary, _, err := c.Primary()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.PostgresNodes() {
		n := c.Node(id)
		for _, f := range walkFiles(t, n.PGDataDir) {
			b, err := os.ReadFile(f)
			if err != nil {
				continue // a WAL segment recycled under us
			}
			for _, s := range secrets {
				if !bytes.Contains(b, []byte(s.value)) {
					continue
				}
				if s.name == repl.name && filepath.Base(f) == "pgquorum.pgpass" {
					checkPrivate(t, f)
					continue
				}
				t.Errorf("%s password in clear in %s", s.name, f)
			}
		}
		if id != primary {
			b, _ := os.ReadFile(filepath.Join(n.PGDataDir, "pgquorum.recovery.conf"))
			if !bytes.Contains(b, []byte("passfile=")) {
				t.Errorf("standby %s: primary_conninfo names no passfile in pgquorum.recovery.conf:\n%s", id, b)
			}
		}
	}
}

// useSecretSources rewrites node n's config so the superuser's and the
// rewind role's passwords come from files and the replication password
// from the environment.
func useSecretSources(t *testing.T, n *e2e.Node, suPW, rewindPW string) {
	t.Helper()
	b, err := os.ReadFile(n.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(n.Dir, "secrets")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	suFile, rewFile := filepath.Join(dir, "superuser"), filepath.Join(dir, "rewind")
	for f, pw := range map[string]string{suFile: suPW, rewFile: rewindPW} {
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := fmt.Sprintf("  superuser: {password: %q}\n  replication: {password: %q}\n  rewind: {password: %q}\n",
		e2e.SuperuserPassword, e2e.ReplicationPassword, e2e.RewindPassword)
	repl := fmt.Sprintf("  superuser: {password_file: %q}\n  rewind: {password_file: %q}\n", suFile, rewFile)
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("harness config of %s changed shape; cannot move its passwords:\n%s", n.ID, b)
	}
	b = bytes.Replace(b, []byte(old), []byte(repl), 1)
	if err := os.WriteFile(n.ConfigPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// sampler reads /proc/*/cmdline and /proc/*/environ of every process every
// few milliseconds while the cluster runs, so that short-lived children
// (pg_basebackup, pg_rewind, initdb) are seen too.
type sampler struct {
	secrets []secret
	self    int
	stop    context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex
	cmdline  []string            // "secret in cmdline of pid (prog): ..."
	environ  map[string][]string // program -> secrets found in its environ
	programs map[string]bool     // programs seen at all
}

func startSampler(t *testing.T, secrets []secret) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sampler{secrets: secrets, self: os.Getpid(), stop: cancel, done: make(chan struct{}),
		environ: map[string][]string{}, programs: map[string]bool{}}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(15 * time.Millisecond)
		defer tick.Stop()
		for {
			s.scan()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

func (s *sampler) scan() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == s.self {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(cmd) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		prog := programOf(args)
		if prog == "" {
			continue // not one of ours (the test's own go, ctl runs, shells)
		}
		// pg_rewind runs postgres -V and a single-user postgres for
		// crash recovery: name them apart from the postmasters.
		if prog == "postgres" && underRewind(pid) {
			prog = "postgres under pg_rewind"
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		s.mu.Lock()
		s.programs[prog] = true
		for _, sec := range s.secrets {
			if bytes.Contains(cmd, []byte(sec.value)) {
				s.cmdline = append(s.cmdline, fmt.Sprintf("%s password in the command line of pid %d (%s): %q", sec.name, pid, prog, args))
			}
			if bytes.Contains(env, []byte(sec.value)) && !slices.Contains(s.environ[prog], sec.name) {
				s.environ[prog] = append(s.environ[prog], sec.name)
			}
		}
		s.mu.Unlock()
	}
}

// programOf names the process for the report: a PostgreSQL tool by its
// binary, pgquorum by its subcommand; "" for anything else.
func programOf(args []string) string {
	base := filepath.Base(args[0])
	switch {
	case strings.HasPrefix(base, "postgres"), strings.HasPrefix(args[0], "postgres:"):
		return "postgres"
	case slices.Contains([]string{"pg_basebackup", "pg_rewind", "initdb", "pg_controldata", "pg_ctl", "pgbouncer"}, base):
		return base
	case base == "pgquorum" && len(args) > 1 && args[1] != "ctl":
		return "pgquorum " + args[1]
	}
	return ""
}

// underRewind reports whether one of pid's three nearest ancestors is
// pg_rewind (which runs postgres through a shell).
func underRewind(pid int) bool {
	for range 3 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) < 2 {
			return false
		}
		if pid, err = strconv.Atoi(fields[1]); err != nil || pid <= 1 {
			return false
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if prog, _, _ := bytes.Cut(cmd, []byte{0}); filepath.Base(string(prog)) == "pg_rewind" {
			return true
		}
	}
	return false
}

// check stops the sampler and reports what it saw.
func (s *sampler) check(t *testing.T) {
	t.Helper()
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.cmdline {
		t.Error(m)
	}
	progs := slices.Sorted(func(yield func(string) bool) {
		for p := range s.programs {
			if !yield(p) {
				return
			}
		}
	})
	t.Logf("programs sampled: %v; passwords in environ: %v", progs, s.environ)
	for _, p := range []string{"pgquorum serve", "pgquorum fence-guard", "pgquorum bouncer", "postgres", "pgbouncer"} {
		if !s.programs[p] {
			t.Errorf("the sampler never saw %s: the test proves nothing about it", p)
		}
	}
	for prog, names := range s.environ {
		for _, name := range names {
			var sec secret
			for _, x := range s.secrets {
				if x.name == name {
					sec = x
				}
			}
			ownEnv := sec.fromEnv && ((name == "pgbouncer admin") == (prog == "pgquorum bouncer")) &&
				(prog == "pgquorum serve" || prog == "pgquorum bouncer")
			if ownEnv {
				continue
			}
			t.Errorf("%s password in the environment of %s", name, prog)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// walkFiles lists the regular files under dir.
func walkFiles(t *testing.T, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed while we walk
		}
		if d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", dir, err)
	}
	return out
}

// checkPrivate fails unless path is mode 0600 and owned by the PostgreSQL
// OS user, in a directory only that user can enter.
func checkPrivate(t *testing.T, path string) {
	t.Helper()
	for _, p := range []string{path, filepath.Dir(path)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s holds the replication password with mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
			t.Errorf("%s is owned by root, not by the PostgreSQL OS user", p)
		}
	}
}

func randHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
