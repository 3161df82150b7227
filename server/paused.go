package server

import (
	"context"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// SetPaused switches maintenance mode: while paused, nothing is started,
// stopped or promoted automatically. It runs on the leader.
func (s *Server) SetPaused(ctx context.Context, paused bool) (uint64, error) {
	index, err := s.propose(ctx, &pb.SetPaused{Paused: paused})
	if err == nil {
		s.log.Info("maintenance mode changed", "paused", paused, "index", index)
	}
	return index, err
}
