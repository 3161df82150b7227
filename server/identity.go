package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// identityFile records which cluster and node a data directory belongs to,
// so a node pointed at another cluster's directory stops with a message
// instead of joining the wrong quorum (invariant 9).
type identityFile struct {
	ClusterName string `json:"cluster_name"`
	ClusterUUID string `json:"cluster_uuid,omitempty"`
	NodeID      string `json:"node_id"`
}

const identityName = "cluster.json"

func (s *Server) identityPath() string { return filepath.Join(s.opts.DataDir, identityName) }

// checkIdentity reads the identity file, refusing a directory that belongs
// to another cluster or node, and writes it when missing. It is written
// before the Raft store is ever created, so a Raft store without it is
// state of an unknown cluster: refused, not adopted under a fresh identity.
func (s *Server) checkIdentity() error {
	if s.opts.DataDir == "" {
		return nil
	}
	path := s.identityPath()
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		store := filepath.Join(s.opts.DataDir, "raft", "raft.db")
		if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s holds Raft state but %s is missing, so the cluster it belongs to is unknown; "+
				"refusing to adopt it under a new identity (restore %s, or move %s away to start this node empty)",
				ErrDataDir, store, path, identityName, filepath.Dir(store))
		}
		s.ident = identityFile{ClusterName: s.opts.ClusterName, NodeID: s.opts.NodeID}
		return s.writeIdentity()
	case err != nil:
		return fmt.Errorf("%w: read %s: %v", ErrDataDir, path, err)
	}
	var id identityFile
	if err := json.Unmarshal(data, &id); err != nil {
		return fmt.Errorf("%w: %s is not a pgquorum identity file: %v (left untouched)", ErrDataDir, path, err)
	}
	if id.ClusterName != s.opts.ClusterName {
		return fmt.Errorf("%w: data_dir %s %w %q, but cluster_name is %q", ErrDataDir, s.opts.DataDir, ErrWrongCluster, id.ClusterName, s.opts.ClusterName)
	}
	if id.NodeID != s.opts.NodeID {
		return fmt.Errorf("%w: data_dir %s belongs to node %q, but node_id is %q", ErrDataDir, s.opts.DataDir, id.NodeID, s.opts.NodeID)
	}
	s.ident = id
	return nil
}

// noteClusterUUID is called once the FSM knows the cluster UUID. A data
// directory that recorded another UUID belongs to another cluster of the
// same name: the node must stop.
func (s *Server) noteClusterUUID(uuid string) error {
	if s.opts.DataDir == "" || uuid == "" {
		return nil
	}
	s.identMu.Lock()
	defer s.identMu.Unlock()
	switch s.ident.ClusterUUID {
	case uuid:
		return nil
	case "":
		s.ident.ClusterUUID = uuid
		return s.writeIdentity()
	}
	return fmt.Errorf("%w: data_dir %s belongs to cluster %s (uuid %s), but the quorum is cluster uuid %s",
		ErrWrongCluster, s.opts.DataDir, s.ident.ClusterName, s.ident.ClusterUUID, uuid)
}

func (s *Server) writeIdentity() error {
	data, err := json.MarshalIndent(s.ident, "", "  ")
	if err != nil {
		return err
	}
	path := s.identityPath()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("%w: write %s: %v", ErrDataDir, tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: rename %s: %v", ErrDataDir, tmp, err)
	}
	return nil
}
