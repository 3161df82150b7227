//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

func joinComma(s []string) string { return strings.Join(s, ",") }

// execOutput runs a command in the root namespace and returns its
// combined output.
func execOutput(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// dialOK reports whether a TCP connection to ip:port succeeds.
func dialOK(ip string, port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", ip, port), time.Second)
	if err == nil {
		_ = c.Close()
	}
	return err
}

// hostOf strips the "/32" that inet_server_addr()::text carries.
func hostOf(inet string) string {
	h, _, _ := strings.Cut(inet, "/")
	return h
}
