// Package server is one pgquorum node: it runs Raft over the FSM, keeps
// the leader's loop (bootstrap, membership, deciding) while this node
// leads, and the node loop (registration, heartbeats) on every node.
//
// The server never speaks gRPC itself: package rpc maps requests onto its
// methods, and the server reaches other members through the pb.AdminClient
// that Options.Dial returns.
package server
