package fsm

import (
	"errors"
	"testing"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// everyCommand has one filled-in message of every command type.
var everyCommand = []struct {
	typ pb.CommandType
	cmd proto.Message
}{
	{pb.CommandType_COMMAND_TYPE_INIT_CLUSTER, testInit},
	{pb.CommandType_COMMAND_TYPE_UPSERT_MEMBER, &pb.UpsertMember{Member: func() *pb.Member {
		m := pgMember("a")
		m.Tags = &pb.Tags{Nofailover: true, FailoverPriority: 3}
		m.HttpAddr, m.Version, m.RegisteredAtUnixMs = "a:8008", "1.0.0", 123
		return m
	}()}},
	{pb.CommandType_COMMAND_TYPE_REMOVE_MEMBER, &pb.RemoveMember{Id: "a"}},
	{pb.CommandType_COMMAND_TYPE_SET_CONFIG, &pb.SetConfig{ExpectedVersion: 4, Config: &pb.DynamicConfig{
		SynchronousMode: pb.SynchronousMode_SYNCHRONOUS_MODE_STRICT, PrimaryStartTimeoutMs: 300000,
		PostgresParameters: map[string]string{"work_mem": "4MB", "a": "1", "z": "2"},
	}}},
	{pb.CommandType_COMMAND_TYPE_ASSIGN_PRIMARY, &pb.AssignPrimary{ExpectedEpoch: 9, MemberId: "b", Timeline: 4, Reason: "failover", AtUnixMs: -1}},
	{pb.CommandType_COMMAND_TYPE_RENEW_LEASE, &pb.RenewLease{MemberId: "b", Epoch: 1 << 40}},
	{pb.CommandType_COMMAND_TYPE_SET_SYNC, &pb.SetSync{Epoch: 3, Members: []string{"b", "c"}, Degraded: true}},
	{pb.CommandType_COMMAND_TYPE_SET_PAUSED, &pb.SetPaused{Paused: true}},
	{pb.CommandType_COMMAND_TYPE_SET_SYSTEM_ID, &pb.SetSystemID{SystemIdentifier: 7301234567890123456}},
	{pb.CommandType_COMMAND_TYPE_RELEASE_LEASE, &pb.ReleaseLease{MemberId: "a", Epoch: 2, Lsn: 0x16b374d8, Reason: "switchover"}},
	{pb.CommandType_COMMAND_TYPE_SET_SWITCHOVER, &pb.SetSwitchover{Switchover: &pb.Switchover{
		From: "a", To: "b", Epoch: 2, ScheduledAtUnixMs: 10, RequestedAtUnixMs: 9, SteppingDown: true,
	}}},
	{pb.CommandType_COMMAND_TYPE_REGISTER_BOUNCER, &pb.RegisterBouncer{Agent: &pb.BouncerAgent{
		Id: "pgb1", ContactLeaseMs: 3000, RegisteredAtUnixMs: 5, Databases: []string{"app"},
	}}},
	{pb.CommandType_COMMAND_TYPE_UNREGISTER_BOUNCER, &pb.UnregisterBouncer{Id: "pgb1"}},
	{pb.CommandType_COMMAND_TYPE_EXPOSE_PRIMARY, &pb.ExposePrimary{Epoch: 2}},
}

// maxCommandType is the highest CommandType this build knows.
func maxCommandType() pb.CommandType {
	var hi pb.CommandType
	for n := range pb.CommandType_name {
		hi = max(hi, pb.CommandType(n))
	}
	return hi
}

// TestEncode_EveryTypeCovered fails when a CommandType is added without a
// case here (and so, likely, without tests).
func TestEncode_EveryTypeCovered(t *testing.T) {
	seen := map[pb.CommandType]bool{}
	for _, tc := range everyCommand {
		seen[tc.typ] = true
	}
	for n, name := range pb.CommandType_name {
		if typ := pb.CommandType(n); typ != pb.CommandType_COMMAND_TYPE_UNSPECIFIED && !seen[typ] {
			t.Errorf("%s has no case in everyCommand", name)
		}
	}
	if maxCommandType() >= 0xff {
		t.Fatalf("CommandType %d does not fit the one-byte entry header", maxCommandType())
	}
}

func TestEncode_RoundTrip(t *testing.T) {
	for _, tc := range everyCommand {
		t.Run(tc.typ.String(), func(t *testing.T) {
			if got := TypeOf(tc.cmd); got != tc.typ {
				t.Fatalf("TypeOf = %v, want %v", got, tc.typ)
			}
			data, err := Encode(tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if pb.CommandType(data[0]) != tc.typ {
				t.Fatalf("type byte %d, want %d", data[0], tc.typ)
			}
			again, err := Encode(tc.cmd)
			if err != nil || string(again) != string(data) {
				t.Fatalf("Encode is not deterministic")
			}
			got, err := Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.cmd) {
				t.Fatalf("Decode(Encode(x)) = %v, want %v", got, tc.cmd)
			}
			// An empty message of the type encodes to the type byte alone.
			empty := tc.cmd.ProtoReflect().Type().New().Interface()
			data, err = Encode(empty)
			if err != nil || len(data) != 1 {
				t.Fatalf("Encode(empty) = %x, %v", data, err)
			}
			if got, err := Decode(data); err != nil || !proto.Equal(got, empty) {
				t.Fatalf("Decode(type byte only) = %v, %v", got, err)
			}
		})
	}
}

func TestEncode_NotACommand(t *testing.T) {
	for _, m := range []proto.Message{&pb.ClusterState{}, &pb.WatchEvent{}, &pb.Member{}} {
		if _, err := Encode(m); !errors.Is(err, ErrUnknownCommand) {
			t.Errorf("Encode(%T) err = %v, want ErrUnknownCommand", m, err)
		}
		if got := TypeOf(m); got != pb.CommandType_COMMAND_TYPE_UNSPECIFIED {
			t.Errorf("TypeOf(%T) = %v", m, got)
		}
	}
}

func TestDecode_Refusals(t *testing.T) {
	valid, err := Encode(&pb.RemoveMember{Id: "member-one"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr error
	}{
		{"nil", nil, ErrBadCommand},
		{"empty", []byte{}, ErrBadCommand},
		{"type zero", []byte{0, 0x0a, 0x01, 'a'}, ErrUnknownCommand},
		{"unknown type", []byte{byte(maxCommandType()) + 1}, ErrUnknownCommand},
		{"type 255", []byte{0xff}, ErrUnknownCommand},
		{"truncated body", valid[:len(valid)-3], ErrBadCommand},
		{"truncated tag", []byte{byte(pb.CommandType_COMMAND_TYPE_SET_SYNC), 0x80}, ErrBadCommand},
		{"bad wire type", []byte{byte(pb.CommandType_COMMAND_TYPE_SET_PAUSED), 0x0f}, ErrBadCommand},
		{"invalid utf-8", []byte{byte(pb.CommandType_COMMAND_TYPE_REMOVE_MEMBER), 0x0a, 0x02, 0xff, 0xfe}, ErrBadCommand},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := Decode(tc.data)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Decode(%x) = %v, %v; want %v", tc.data, msg, err, tc.wantErr)
			}
			if msg != nil {
				t.Fatalf("Decode returned a message with its error: %v", msg)
			}
		})
	}
}
