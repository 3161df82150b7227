package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Endpoint is a node's HTTP listener. It is bound before the node starts,
// so that a port in use stops the node at once; a disabled Endpoint (empty
// address) does nothing.
type Endpoint struct {
	lis  net.Listener
	srv  *http.Server
	errc chan error
}

// Listen binds addr; an empty addr returns a disabled Endpoint.
func Listen(addr string) (*Endpoint, error) {
	if addr == "" {
		return &Endpoint{}, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Endpoint{lis: lis, errc: make(chan error, 1)}, nil
}

// Addr is the bound address, or nil when disabled.
func (e *Endpoint) Addr() net.Addr {
	if e.lis == nil {
		return nil
	}
	return e.lis.Addr()
}

// Start serves h in the background.
func (e *Endpoint) Start(h http.Handler) {
	if e.lis == nil || e.srv != nil {
		return
	}
	e.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
	}
	go func() {
		if err := e.srv.Serve(e.lis); !errors.Is(err, http.ErrServerClosed) {
			e.errc <- err
		}
	}()
}

// Err delivers an error that stopped serving. It never delivers for a
// disabled Endpoint, nor after Stop.
func (e *Endpoint) Err() <-chan error { return e.errc }

// Stop lets requests in flight finish for up to grace, then closes the
// rest. It also releases the port of an Endpoint that never started.
func (e *Endpoint) Stop(grace time.Duration) {
	switch {
	case e.lis == nil:
	case e.srv == nil:
		_ = e.lis.Close()
	default:
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if e.srv.Shutdown(ctx) != nil {
			_ = e.srv.Close()
		}
	}
}
