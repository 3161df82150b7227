// Package mtls builds the mutual TLS configurations of pgquorum (gRPC and
// the Raft transport) from a cluster CA, a certificate and its key, and reads
// the identity a peer's certificate carries: its name and its roles (node,
// admin, readonly, bouncer), taken from the subject's O and OU. See
// docs/security.md for the model.
package mtls
