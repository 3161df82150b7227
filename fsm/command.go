package fsm

import (
	"fmt"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// Encode turns a command into a Raft log payload: one byte of CommandType,
// then the command's protobuf encoding.
func Encode(cmd proto.Message) ([]byte, error) {
	t := TypeOf(cmd)
	if t == pb.CommandType_COMMAND_TYPE_UNSPECIFIED {
		return nil, fmt.Errorf("%w: %T", ErrUnknownCommand, cmd)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", cmd, err)
	}
	return append([]byte{byte(t)}, body...), nil
}

// TypeOf names the CommandType of a command message, or UNSPECIFIED.
func TypeOf(cmd proto.Message) pb.CommandType {
	switch cmd.(type) {
	case *pb.InitCluster:
		return pb.CommandType_COMMAND_TYPE_INIT_CLUSTER
	case *pb.UpsertMember:
		return pb.CommandType_COMMAND_TYPE_UPSERT_MEMBER
	case *pb.RemoveMember:
		return pb.CommandType_COMMAND_TYPE_REMOVE_MEMBER
	case *pb.SetConfig:
		return pb.CommandType_COMMAND_TYPE_SET_CONFIG
	case *pb.AssignPrimary:
		return pb.CommandType_COMMAND_TYPE_ASSIGN_PRIMARY
	case *pb.RenewLease:
		return pb.CommandType_COMMAND_TYPE_RENEW_LEASE
	case *pb.SetSync:
		return pb.CommandType_COMMAND_TYPE_SET_SYNC
	case *pb.SetPaused:
		return pb.CommandType_COMMAND_TYPE_SET_PAUSED
	case *pb.SetSystemID:
		return pb.CommandType_COMMAND_TYPE_SET_SYSTEM_ID
	case *pb.ReleaseLease:
		return pb.CommandType_COMMAND_TYPE_RELEASE_LEASE
	case *pb.SetSwitchover:
		return pb.CommandType_COMMAND_TYPE_SET_SWITCHOVER
	case *pb.RegisterBouncer:
		return pb.CommandType_COMMAND_TYPE_REGISTER_BOUNCER
	case *pb.UnregisterBouncer:
		return pb.CommandType_COMMAND_TYPE_UNREGISTER_BOUNCER
	case *pb.ExposePrimary:
		return pb.CommandType_COMMAND_TYPE_EXPOSE_PRIMARY
	}
	return pb.CommandType_COMMAND_TYPE_UNSPECIFIED
}

// Decode parses a Raft log payload made by Encode.
func Decode(data []byte) (proto.Message, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrBadCommand)
	}
	var msg proto.Message
	switch t := pb.CommandType(data[0]); t {
	case pb.CommandType_COMMAND_TYPE_INIT_CLUSTER:
		msg = &pb.InitCluster{}
	case pb.CommandType_COMMAND_TYPE_UPSERT_MEMBER:
		msg = &pb.UpsertMember{}
	case pb.CommandType_COMMAND_TYPE_REMOVE_MEMBER:
		msg = &pb.RemoveMember{}
	case pb.CommandType_COMMAND_TYPE_SET_CONFIG:
		msg = &pb.SetConfig{}
	case pb.CommandType_COMMAND_TYPE_ASSIGN_PRIMARY:
		msg = &pb.AssignPrimary{}
	case pb.CommandType_COMMAND_TYPE_RENEW_LEASE:
		msg = &pb.RenewLease{}
	case pb.CommandType_COMMAND_TYPE_SET_SYNC:
		msg = &pb.SetSync{}
	case pb.CommandType_COMMAND_TYPE_SET_PAUSED:
		msg = &pb.SetPaused{}
	case pb.CommandType_COMMAND_TYPE_SET_SYSTEM_ID:
		msg = &pb.SetSystemID{}
	case pb.CommandType_COMMAND_TYPE_RELEASE_LEASE:
		msg = &pb.ReleaseLease{}
	case pb.CommandType_COMMAND_TYPE_SET_SWITCHOVER:
		msg = &pb.SetSwitchover{}
	case pb.CommandType_COMMAND_TYPE_REGISTER_BOUNCER:
		msg = &pb.RegisterBouncer{}
	case pb.CommandType_COMMAND_TYPE_UNREGISTER_BOUNCER:
		msg = &pb.UnregisterBouncer{}
	case pb.CommandType_COMMAND_TYPE_EXPOSE_PRIMARY:
		msg = &pb.ExposePrimary{}
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownCommand, data[0])
	}
	if err := proto.Unmarshal(data[1:], msg); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadCommand, TypeOf(msg), err)
	}
	return msg, nil
}
