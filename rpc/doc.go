// Package rpc serves pgquorum's gRPC API. It validates requests, calls the
// server, forwards writes that reach a follower to the leader (once), and
// maps errors to gRPC status codes with a machine-readable reason.
package rpc
