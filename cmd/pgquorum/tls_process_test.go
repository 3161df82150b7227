package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgquorum/pgquorum/internal/mtls"
	"github.com/pgquorum/pgquorum/server/config"
)

// genCerts runs scripts/gen-certs.sh into a temporary directory.
func genCerts(t *testing.T, hosts ...string) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl missing (scripts/install-deps.sh installs it)")
	}
	dir := filepath.Join(t.TempDir(), "tls")
	out, err := exec.Command("../../scripts/gen-certs.sh", append([]string{"--out", dir}, hosts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("gen-certs.sh: %v\n%s", err, out)
	}
	return dir
}

// TestGenCerts_Script checks that the script's certificates load, carry
// their roles and names, complete a mutual TLS handshake, and that a second
// run keeps what exists and adds new hosts.
func TestGenCerts_Script(t *testing.T) {
	dir := genCerts(t, "127.0.0.1", "db1.example.com")
	ca := filepath.Join(dir, "ca.pem")
	load := func(name string) *mtls.Bundle {
		t.Helper()
		b, err := mtls.Load(ca, filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, role := range map[string]mtls.Role{
		"node-127.0.0.1": mtls.RoleNode, "node-db1.example.com": mtls.RoleNode,
		"admin": mtls.RoleAdmin, "readonly": mtls.RoleReadOnly, "bouncer": mtls.RoleBouncer,
	} {
		if b := load(name); b.Identity.Roles != role {
			t.Errorf("%s: roles %s, want %s", name, b.Identity.Roles, role)
		}
		if st, err := os.Stat(filepath.Join(dir, name+"-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s key: %v mode %v", name, err, st.Mode())
		}
	}
	if err := load("node-db1.example.com").Cert.Leaf.VerifyHostname("db1.example.com"); err != nil {
		t.Error(err)
	}
	if err := load("node-127.0.0.1").Cert.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}

	// A node serves, the admin dials 127.0.0.1: both sides verify.
	node, admin := load("node-127.0.0.1"), load("admin")
	if err := handshake(node.ServerConfig(0), admin.ClientConfig(), "127.0.0.1"); err != nil {
		t.Fatalf("node/admin handshake: %v", err)
	}
	// The admin cannot pose as a node.
	if err := handshake(admin.ServerConfig(0), node.ClientConfig(), "127.0.0.1"); err == nil {
		t.Fatal("a client accepted an admin certificate as a server")
	}

	before, _ := os.ReadFile(filepath.Join(dir, "admin.pem"))
	out, err := exec.Command("../../scripts/gen-certs.sh", "--out", dir, "127.0.0.1", "10.0.0.3").CombinedOutput()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "admin.pem"))
	if !bytes.Equal(before, after) || !strings.Contains(string(out), "admin.pem exists; kept") {
		t.Fatalf("second run replaced admin.pem:\n%s", out)
	}
	if b := load("node-10.0.0.3"); b.Cert.Leaf.VerifyHostname("10.0.0.3") != nil {
		t.Fatal("node-10.0.0.3 lacks its IP")
	}
}

// handshake runs a TLS handshake between server and client configs over a
// pipe.
func handshake(server, client *tls.Config, name string) error {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	client = client.Clone()
	client.ServerName = name
	errc := make(chan error, 1)
	go func() {
		s := tls.Server(a, server)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3: the server checks the client's certificate after
			// the client finished; read to see the verdict.
			_, err = s.Write([]byte{1})
		}
		errc <- err
		_ = a.Close()
	}()
	c := tls.Client(b, client)
	err := c.Handshake()
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	if serr := <-errc; err == nil {
		err = serr
	}
	return err
}

func TestLoadTLS_InsecureWarnsAndRoleIsChecked(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	b, err := loadTLS(config.TLS{Insecure: true}, mtls.RoleNode, log)
	if b != nil || err != nil || !strings.Contains(buf.String(), "running without TLS") || !strings.Contains(buf.String(), "controls the database") {
		t.Fatalf("insecure: %v %v %q", b, err, buf.String())
	}
	dir := genCerts(t, "127.0.0.1")
	_, err = loadTLS(config.TLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "admin.pem"), KeyFile: filepath.Join(dir, "admin-key.pem")}, mtls.RoleNode, log)
	if err == nil || !strings.Contains(err.Error(), "needs a node certificate") {
		t.Fatalf("admin cert for a node: %v", err)
	}
}

// TestProcesses_TLS runs three witness processes with the certificates of
// scripts/gen-certs.sh: ctl needs a certificate, a read-only one cannot
// pause, an admin can (through whichever member answers first).
func TestProcesses_TLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	certs := genCerts(t, "127.0.0.1")
	as := func(name string) []string {
		return []string{"--cacert", certs + "/ca.pem", "--cert", certs + "/" + name + ".pem", "--key", certs + "/" + name + "-key.pem"}
	}
	c := startProcClusterTLS(t, 3,
		fmt.Sprintf("{ca_file: %[1]s/ca.pem, cert_file: %[1]s/node-127.0.0.1.pem, key_file: %[1]s/node-127.0.0.1-key.pem}", certs),
		as("admin"))
	eventually(t, 30*time.Second, "three members and a leader", func() bool {
		out, err := c.ctl("members")
		return err == nil && strings.Count(out, " voter ") == 3 && c.leader() != ""
	})

	c.ctlFlags = []string{"--insecure"}
	if out, err := c.ctl("members"); err == nil {
		t.Fatalf("plaintext ctl got an answer:\n%s", out)
	}
	c.ctlFlags = nil
	if _, err := c.ctl("members"); err == nil || !strings.Contains(err.Error(), "--cacert, --cert and --key are required") {
		t.Fatalf("ctl without TLS flags: %v", err)
	}

	c.ctlFlags = as("readonly")
	if out, err := c.ctl("members"); err != nil || strings.Count(out, " voter ") != 3 {
		t.Fatalf("readonly members: %v\n%s", err, out)
	}
	out, err := c.ctl("pause")
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") || !strings.Contains(err.Error(), "readonly (readonly)") {
		t.Fatalf("readonly pause: %v\n%s", err, out)
	}

	c.ctlFlags = as("admin")
	for _, verb := range []string{"pause", "resume"} {
		if out, err := c.ctl(verb); err != nil {
			t.Fatalf("admin %s: %v\n%s", verb, err, out)
		}
	}
	// The same through a follower only: the leader accepts the forwarded call.
	leader := c.leader()
	var follower *proc
	for _, p := range c.nodes {
		if p.id != leader {
			follower = p
		}
	}
	all := c.nodes
	c.nodes = []*proc{follower}
	out, err = c.ctl("pause")
	c.nodes = all
	if err != nil {
		t.Fatalf("admin pause through follower %s: %v\n%s", follower.id, err, out)
	}
	c.kill(c.nodes[0], syscall.SIGTERM) // its log is written until it exits
	if !strings.Contains(c.nodes[0].log.String(), "mutual TLS") {
		t.Fatalf("n1 does not say it runs mutual TLS:\n%s", c.nodes[0].log.String())
	}
}
