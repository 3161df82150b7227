package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config tunes a Handler; the zero value works.
type Config struct {
	Logger *slog.Logger
	// Probe asks another member for its PostgreSQL health (for a
	// replica's lag and for /cluster). Default: gRPC Probe through the
	// node's Options().Dial.
	Probe ProbeFunc
	// ProbeTimeout bounds the probe of the primary a health check may
	// make. Default 1s, below HAProxy's usual check timeout.
	ProbeTimeout time.Duration
	// Now is the clock; tests set it.
	Now func() time.Time
}

// Handler serves the endpoint of one node.
type Handler struct {
	node    Node
	log     *slog.Logger
	probe   ProbeFunc
	now     func() time.Time
	wal     *walCache
	timeout time.Duration // of a /cluster probe
	metrics http.Handler
}

// New returns the handler of node's endpoint, with its own Prometheus
// registry.
func New(node Node, cfg Config) *Handler {
	o := node.Options()
	h := &Handler{node: node, log: cfg.Logger, probe: cfg.Probe, now: cfg.Now, timeout: o.Timing.RetryTimeout}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.probe == nil && o.Dial != nil {
		h.probe = dialProbe(o.Dial)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.timeout <= 0 {
		h.timeout = 2 * time.Second
	}
	// One probe of the primary per loop_wait at most, and never more
	// than one a second, whatever the rate of health checks.
	h.wal = &walCache{probe: h.probe, refresh: max(o.Timing.LoopWait, time.Second), timeout: cfg.ProbeTimeout}
	if h.wal.timeout <= 0 {
		h.wal.timeout = time.Second
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(h),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{h.log}})
	return h
}

// dialProbe probes a member through its gRPC Probe.
func dialProbe(dial func(string) (pb.AdminClient, error)) ProbeFunc {
	return func(ctx context.Context, addr string) (*pb.PostgresHealth, error) {
		c, err := dial(addr)
		if err != nil {
			return nil, err
		}
		return c.Probe(ctx, &pb.ProbeRequest{})
	}
}

// ServeHTTP routes a request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	if c, ok := checkPaths[path]; ok {
		if allow(w, r, http.MethodGet, http.MethodHead, http.MethodOptions) {
			h.serveCheck(w, r, c)
		}
		return
	}
	var serve func(http.ResponseWriter, *http.Request)
	switch path {
	case "/patroni":
		serve = h.servePatroni
	case "/cluster":
		serve = h.serveCluster
	case "/history":
		serve = h.serveHistory
	case "/metrics":
		serve = h.metrics.ServeHTTP
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		w.WriteHeader(http.StatusOK)
		return
	}
	if allow(w, r, http.MethodGet, http.MethodHead) {
		serve(w, r)
	}
}

// allow answers 405 to a method not listed.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// serveCheck answers a health check: 200 or 503 and, for GET, the node's
// status with the reason of a failure. HEAD and OPTIONS (what HAProxy's
// "option httpchk" sends) get the code alone, as from Patroni.
func (h *Handler) serveCheck(w http.ResponseWriter, r *http.Request, c check) {
	q, err := parseQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	f := gather(ctx, h.node)
	ok, why := h.evaluate(ctx, c, f, q)
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	switch {
	case r.Method != http.MethodGet:
		w.WriteHeader(code)
	case c == checkLiveness || c == checkReadiness:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		if !ok {
			_, _ = w.Write([]byte(why + "\n"))
		}
	default:
		body := h.status(f)
		if !ok {
			body.CheckFailed = why
		}
		writeJSON(w, code, body)
	}
}

// servePatroni answers the node's status, always 200.
func (h *Handler) servePatroni(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.status(gather(r.Context(), h.node)))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

// slogPrinter lets promhttp log through slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics", "err", fmt.Sprint(v...)) }
