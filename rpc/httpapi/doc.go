// Package httpapi serves the HTTP endpoint of a pgquorum node: health
// checks on Patroni's paths and status codes (so an existing HAProxy or
// Kubernetes configuration works unchanged), JSON views of the node, the
// cluster and its history, and Prometheus metrics.
//
// Every answer is computed on request from the node's accessors; the
// package runs no background loop. docs/http.md lists every endpoint with
// its exact rules.
package httpapi
