//go:build chaos

package chaos

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerDir holds one file per live topology, named by its prefix and
// holding the PID of the test process that built it. A topology whose
// owner is dead is a leftover of a crashed run and is swept.
const ownerDir = "/run/pgquorum-chaos"

// prefixRE matches the names this harness gives to namespaces, links and
// cgroups: "pqc" and four hex digits.
var prefixRE = regexp.MustCompile(`^pqc[0-9a-f]{4}`)

// Host is one network namespace of the topology.
type Host struct {
	Name string // short name: n1, n2, n3, pgb
	NS   string // namespace name: <prefix>-<Name>
	IP   string
}

// Net is the topology of one run: a bridge in its own namespace, one
// namespace per host with a veth on the bridge, and a veth from the root
// namespace (the observer: the test's clients and probes, never
// partitioned) onto the same bridge.
type Net struct {
	Prefix   string
	Subnet   string // "10.231.K"
	Hosts    []*Host
	Observer string // the root namespace's address on the bridge
	brNS     string
	rootLink string
}

// run runs a command and returns its error with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NewNet builds the topology for hosts. It records its owner before it
// creates anything, so a crash at any point leaves only what a later
// Sweep removes. Call Close (even after an error) to remove it.
func NewNet(hosts ...string) (*Net, error) {
	var b [2]byte
	_, _ = rand.Read(b[:])
	n := &Net{Prefix: "pqc" + hex.EncodeToString(b[:])}
	if err := os.MkdirAll(ownerDir, 0o755); err != nil {
		return n, err
	}
	if err := os.WriteFile(filepath.Join(ownerDir, n.Prefix), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return n, err
	}
	subnet, err := freeSubnet()
	if err != nil {
		return n, err
	}
	n.Subnet = subnet
	n.brNS = n.Prefix + "-br"
	n.rootLink = n.Prefix + "o"
	n.Observer = subnet + ".254"
	if err := run("ip", "netns", "add", n.brNS); err != nil {
		return n, err
	}
	steps := [][]string{
		{"ip", "-n", n.brNS, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", n.brNS, "link", "set", "br0", "up"},
		{"ip", "-n", n.brNS, "link", "set", "lo", "up"},
		{"ip", "link", "add", n.rootLink, "type", "veth", "peer", "name", n.Prefix + "ob"},
		{"ip", "link", "set", n.Prefix + "ob", "netns", n.brNS},
		{"ip", "-n", n.brNS, "link", "set", n.Prefix + "ob", "master", "br0", "up"},
		{"ip", "addr", "add", n.Observer + "/24", "dev", n.rootLink},
		{"ip", "link", "set", n.rootLink, "up"},
	}
	for i, name := range hosts {
		h := &Host{Name: name, NS: n.Prefix + "-" + name, IP: fmt.Sprintf("%s.%d", subnet, 11+i)}
		n.Hosts = append(n.Hosts, h)
		a, z := fmt.Sprintf("%s%da", n.Prefix, i), fmt.Sprintf("%s%db", n.Prefix, i)
		steps = append(steps,
			[]string{"ip", "netns", "add", h.NS},
			[]string{"ip", "link", "add", a, "type", "veth", "peer", "name", z},
			[]string{"ip", "link", "set", a, "netns", h.NS},
			[]string{"ip", "link", "set", z, "netns", n.brNS},
			[]string{"ip", "-n", n.brNS, "link", "set", z, "master", "br0", "up"},
			[]string{"ip", "-n", h.NS, "link", "set", a, "name", "eth0"},
			[]string{"ip", "-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
			[]string{"ip", "-n", h.NS, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", h.NS, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return n, err
		}
	}
	return n, nil
}

// freeSubnet picks a 10.231.K.0/24 that no interface of the root
// namespace uses (another run's observer would).
func freeSubnet() (string, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr").Output()
	if err != nil {
		return "", err
	}
	var b [1]byte
	for range 50 {
		_, _ = rand.Read(b[:])
		k := 1 + int(b[0])%250
		s := fmt.Sprintf("10.231.%d", k)
		if !strings.Contains(string(out), " "+s+".") {
			return s, nil
		}
	}
	return "", errors.New("no free 10.231.K.0/24 subnet")
}

// Host returns the host named name.
func (n *Net) Host(name string) *Host {
	for _, h := range n.Hosts {
		if h.Name == name {
			return h
		}
	}
	panic("chaos: no host " + name)
}

// Exec returns a command that runs in h's namespace; `ip netns exec`
// execs in place, so the started PID is the command's.
func (h *Host) Exec(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Firewall runs iptables in h's namespace.
func (h *Host) Firewall(args ...string) error {
	return run("ip", append([]string{"netns", "exec", h.NS, "iptables", "-w"}, args...)...)
}

// Drop makes h discard every packet from (in) and to (out) the given
// peers.
func (h *Host) Drop(in, out bool, peers ...*Host) error {
	for _, p := range peers {
		if in {
			if err := h.Firewall("-A", "INPUT", "-s", p.IP, "-j", "DROP"); err != nil {
				return err
			}
		}
		if out {
			if err := h.Firewall("-A", "OUTPUT", "-d", p.IP, "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Heal removes every rule of h's firewall.
func (h *Host) Heal() error {
	if err := h.Firewall("-F", "INPUT"); err != nil {
		return err
	}
	return h.Firewall("-F", "OUTPUT")
}

// Pids lists the processes in h's namespace.
func (h *Host) Pids() []int {
	out, _ := exec.Command("ip", "netns", "pids", h.NS).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Close kills whatever still runs in the namespaces (by PID), removes
// the namespaces, the root link and the owner record. It keeps going
// after errors and returns them all.
func (n *Net) Close() error {
	var errs []error
	removeCgroups(n.Prefix) // frozen processes die only once thawed
	for _, h := range n.Hosts {
		killAll(h.NS)
		if err := run("ip", "netns", "del", h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if n.brNS != "" {
		if err := run("ip", "netns", "del", n.brNS); err != nil {
			errs = append(errs, err)
		}
	}
	if n.rootLink != "" {
		_ = run("ip", "link", "del", n.rootLink) // gone with its peer, normally
	}
	_ = os.Remove(filepath.Join(ownerDir, n.Prefix))
	return errors.Join(errs...)
}

// killAll SIGKILLs every process in namespace ns and waits up to 10 s
// for them to go.
func killAll(ns string) {
	h := &Host{NS: ns}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pids := slices.DeleteFunc(h.Pids(), func(pid int) bool { return pid == os.Getpid() })
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			if pid == os.Getpid() {
				continue // never the test itself, whatever its threads did
			}
			_ = syscall.Kill(pid, syscall.SIGCONT) // a stopped process dies only when it runs
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Sweep removes the topologies of this harness whose owning test process
// is gone: their processes (by PID, found in their namespaces), cgroups,
// namespaces, root links and owner records. It returns the prefixes it
// swept.
func Sweep() []string {
	owners := map[string]bool{} // prefix -> owner alive
	entries, _ := os.ReadDir(ownerDir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(ownerDir, e.Name()))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		owners[e.Name()] = pid > 0 && syscall.Kill(pid, 0) == nil
	}
	dead := map[string]bool{}
	for p, alive := range owners {
		if !alive {
			dead[p] = true
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	var nss []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		p := prefixRE.FindString(f[0])
		if p == "" {
			continue
		}
		if alive, known := owners[p]; !known || !alive {
			dead[p] = true
			nss = append(nss, f[0])
		}
	}
	for p := range dead {
		removeCgroups(p) // frozen processes die only once thawed
	}
	for _, ns := range nss {
		killAll(ns)
	}
	for p := range dead {
		unmountLeftovers(p)
	}
	for _, ns := range nss {
		_ = run("ip", "netns", "del", ns)
	}
	var swept []string
	for p := range dead {
		_ = run("ip", "link", "del", p+"o")
		_ = os.Remove(filepath.Join(ownerDir, p))
		swept = append(swept, p)
	}
	return swept
}
