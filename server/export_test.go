package server

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// ProposeForTest commits cmd through this node (the leader), for tests
// that need a state no RPC produces on its own, such as an operator's
// removal interrupted between its two steps.
func (s *Server) ProposeForTest(ctx context.Context, cmd proto.Message) error {
	_, err := s.propose(ctx, cmd)
	return err
}
