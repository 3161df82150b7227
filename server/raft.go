package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// raftParts are the stores and transport that Raft runs on.
type raftParts struct {
	logs   raft.LogStore
	stable raft.StableStore
	snaps  raft.SnapshotStore
	trans  raft.Transport
	bolt   *raftboltdb.BoltStore
	closeT func() error
}

func (p *raftParts) close() {
	if p.closeT != nil {
		_ = p.closeT()
	}
	if p.bolt != nil {
		_ = p.bolt.Close()
	}
}

// openRaftParts opens the Bolt log/stable store and the file snapshot
// store under dataDir/raft, and binds the TCP transport (over mutual TLS
// when Options.RaftTLS is set). It never creates
// or deletes anything but missing directories: a store it cannot read is an
// error that names the file, so an operator decides what happens to it.
func (s *Server) openRaftParts() (*raftParts, error) {
	o := &s.opts
	p := &raftParts{}
	if o.DataDir == "" {
		store := raft.NewInmemStore()
		p.logs, p.stable, p.snaps = store, store, raft.NewInmemSnapshotStore()
	} else {
		dir := filepath.Join(o.DataDir, "raft")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDataDir, err)
		}
		path := filepath.Join(dir, "raft.db")
		bolt, err := raftboltdb.New(raftboltdb.Options{
			Path:        path,
			BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true},
		})
		if err != nil {
			if errors.Is(err, bbolt.ErrTimeout) {
				return nil, fmt.Errorf("%w: %s is locked: another pgquorum process uses this data_dir", ErrDataDir, path)
			}
			return nil, fmt.Errorf("%w: cannot open raft store %s: %v (the file is left untouched)", ErrDataDir, path, err)
		}
		p.bolt, p.logs, p.stable = bolt, bolt, bolt
		snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, o.SnapshotRetain, newRaftLogger(s.log))
		if err != nil {
			p.close()
			return nil, fmt.Errorf("%w: snapshot store in %s: %v", ErrDataDir, dir, err)
		}
		p.snaps = snaps
	}
	if o.Transport != nil {
		p.trans = o.Transport
		return p, nil
	}
	adv, err := net.ResolveTCPAddr("tcp", o.RaftAdvertiseAddr)
	if err != nil {
		p.close()
		return nil, fmt.Errorf("%w: raft advertise address %q: %v", ErrInvalid, o.RaftAdvertiseAddr, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		p.close()
		return nil, fmt.Errorf("%w: raft advertise address %q is not reachable by peers", ErrInvalid, o.RaftAdvertiseAddr)
	}
	timeout := 5 * o.Timing.RaftHeartbeat
	timeout = max(time.Second, min(timeout, 10*time.Second))
	tc := &raft.NetworkTransportConfig{MaxPool: 3, Timeout: timeout, Logger: newRaftLogger(s.log)}
	var trans *raft.NetworkTransport
	if o.RaftTLS != nil {
		var stream *tlsStream
		stream, err = newTLSStream(o.RaftBindAddr, adv, o.RaftTLS, timeout)
		if err == nil {
			tc.Stream = stream
			trans = raft.NewNetworkTransportWithConfig(tc)
		}
	} else {
		trans, err = raft.NewTCPTransportWithConfig(o.RaftBindAddr, adv, tc)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("raft.bind_addr: cannot listen on %s: %w", o.RaftBindAddr, err)
	}
	p.trans, p.closeT = trans, trans.Close
	return p, nil
}

func (s *Server) raftConfig() *raft.Config {
	o := &s.opts
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(o.NodeID)
	c.HeartbeatTimeout = o.Timing.RaftHeartbeat
	c.ElectionTimeout = o.Timing.RaftElection
	c.LeaderLeaseTimeout = o.Timing.RaftLeaderLease
	if o.Timing.RaftCommit > 0 {
		c.CommitTimeout = o.Timing.RaftCommit
	}
	if o.SnapshotThreshold > 0 {
		c.SnapshotThreshold = o.SnapshotThreshold
	}
	if o.SnapshotInterval > 0 {
		c.SnapshotInterval = o.SnapshotInterval
	}
	if o.TrailingLogs > 0 {
		c.TrailingLogs = o.TrailingLogs
	}
	c.NotifyCh = s.leaderNotify
	c.Logger = newRaftLogger(s.log)
	return c
}
