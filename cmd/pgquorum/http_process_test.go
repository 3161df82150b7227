package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcesses_HTTPEndpoint starts one real node (a witness: no
// PostgreSQL needed) with its HTTP endpoint and checks health checks, the
// metrics, and that a second node on the same HTTP port refuses to start,
// naming http.listen_addr.
func TestProcesses_HTTPEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	config := func(id string) string {
		raft := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfg := filepath.Join(dir, id+".yaml")
		body := fmt.Sprintf(`cluster_name: web
node_id: %s
data_dir: %s
raft: {bind_addr: "%s"}
grpc: {listen_addr: "127.0.0.1:%d"}
http: {listen_addr: "%s"}
timing: {profile: fast}
tls: {insecure: true}
bootstrap: {initial_cluster: [%s=%s]}
role: witness
`, id, filepath.Join(dir, id), raft, freePort(t), httpAddr, id, raft)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	c := &procCluster{t: t}
	p := &proc{id: "n1", cfg: config("n1")}
	c.start(p)
	t.Cleanup(func() { c.kill(p, syscall.SIGTERM) })
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	defer func() {
		if t.Failed() {
			t.Logf("node log:\n%s", p.log)
		}
	}()
	eventually(t, 30*time.Second, "the node to lead and serve metrics", func() bool {
		code, body := get("/metrics")
		return code == http.StatusOK && strings.Contains(body, `pgquorum_raft_state{state="leader"} 1`)
	})
	for path, want := range map[string]int{"/liveness": http.StatusOK, "/readiness": http.StatusOK,
		"/primary": http.StatusServiceUnavailable, "/replica": http.StatusServiceUnavailable, "/patroni": http.StatusOK} {
		if code, body := get(path); code != want {
			t.Errorf("%s = %d, want %d: %s", path, code, want, body)
		}
	}

	cmd := exec.Command(os.Args[0], "serve", "--config", config("n2"))
	cmd.Env = append(os.Environ(), beMain+"=1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("a node on a taken HTTP port did not exit")
	}
	if err == nil || !strings.Contains(string(out), "http.listen_addr: cannot listen") {
		t.Fatalf("taken HTTP port: err=%v out=%s", err, out)
	}
}
