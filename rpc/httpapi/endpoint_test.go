package httpapi

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestEndpoint_ServeAndStop(t *testing.T) {
	e, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.Start(newHandler(t, newFake("n1", primaryHealth()), nil))
	t.Cleanup(func() { e.Stop(time.Second) })
	resp, err := http.Get("http://" + e.Addr().String() + "/primary")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != ok {
		t.Fatalf("got %d", resp.StatusCode)
	}
	e.Stop(time.Second)
	if _, err := net.DialTimeout("tcp", e.Addr().String(), time.Second); err == nil {
		t.Fatal("still listening after Stop")
	}
	select {
	case err := <-e.Err():
		t.Fatalf("Stop reported as a failure: %v", err)
	default:
	}
}

func TestEndpoint_PortInUse(t *testing.T) {
	e, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Stop(0) })
	if _, err := Listen(e.Addr().String()); err == nil {
		t.Fatal("second Listen on the same port succeeded")
	}
}

func TestEndpoint_Disabled(t *testing.T) {
	e, err := Listen("")
	if err != nil {
		t.Fatal(err)
	}
	e.Start(http.NotFoundHandler())
	if e.Addr() != nil || e.Err() != nil {
		t.Fatal("a disabled endpoint listens")
	}
	e.Stop(time.Second)
}
