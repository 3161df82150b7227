package fsm

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// Seed corpora live in testdata/fuzz/<Name>/; the f.Add seeds below add
// every command type, so each target starts from valid input.

func addCommandSeeds(f *testing.F) {
	for _, tc := range everyCommand {
		data, err := Encode(tc.cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzDecode: Decode never panics, and what it accepts re-encodes to an
// equal command.
func FuzzDecode(f *testing.F) {
	addCommandSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := Decode(data)
		if err != nil {
			if msg != nil {
				t.Fatalf("Decode returned %v with error %v", msg, err)
			}
			return
		}
		again, err := Encode(msg)
		if err != nil {
			t.Fatalf("Encode(Decode(%x)): %v", data, err)
		}
		if again[0] != data[0] {
			t.Fatalf("type byte %d became %d", data[0], again[0])
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%x))): %v", data, err)
		}
		if !proto.Equal(back, msg) {
			t.Fatalf("round trip changed the command:\n got %v\nwant %v", back, msg)
		}
	})
}

// FuzzRestore: DecodeSnapshot and Restore never panic; what they accept
// re-encodes, restores to an equal state and keeps working under Apply.
func FuzzRestore(f *testing.F) {
	for _, st := range []*pb.ClusterState{New(1).State(), newCluster(f).State()} {
		data, err := EncodeSnapshot(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("PGQS\x01"))
	f.Add([]byte("PGQS\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := DecodeSnapshot(data)
		fsm := New(4)
		rerr := fsm.Restore(io.NopCloser(bytes.NewReader(data)))
		if (err == nil) != (rerr == nil) {
			t.Fatalf("DecodeSnapshot err %v, Restore err %v", err, rerr)
		}
		if err != nil {
			return
		}
		if !proto.Equal(fsm.State(), st) {
			t.Fatalf("Restore and DecodeSnapshot disagree")
		}
		enc, err := EncodeSnapshot(st)
		if err != nil {
			t.Fatalf("EncodeSnapshot of an accepted snapshot: %v", err)
		}
		again, err := DecodeSnapshot(enc)
		if err != nil || !proto.Equal(again, st) {
			t.Fatalf("re-encoded snapshot: %v", err)
		}
		// Any restored state must survive further commands.
		epoch := st.Primary.Epoch
		for _, tc := range everyCommand {
			_ = fsm.ApplyCommand(fsm.State().Index+1, tc.cmd)
			if e := fsm.State().Primary.Epoch; e < epoch {
				t.Fatalf("epoch went from %d to %d", epoch, e)
			}
		}
	})
}

// FuzzApply: applying arbitrary bytes as a log entry never panics and
// never lowers the epoch, to an empty FSM and to a running cluster. The
// input is applied twice (a retried proposal), and the state must stay
// one that a snapshot can carry.
func FuzzApply(f *testing.F) {
	addCommandSeeds(f)
	for _, c := range []proto.Message{
		&pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "b"},
		&pb.RenewLease{MemberId: "a", Epoch: 1},
		&pb.RemoveMember{Id: "a"},
		&pb.SetSync{Epoch: 1, Members: []string{"b", "c"}},
		&pb.UpsertMember{Member: witness("a")},
	} {
		data, _ := Encode(c)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, fsm := range []*FSM{New(4), newCluster(t)} {
			_, sub := fsm.Subscribe(0, 8)
			for range 2 {
				before := fsm.State()
				res, ok := fsm.Apply(&raft.Log{Index: before.Index + 1, Type: raft.LogCommand, Data: data}).(Result)
				if !ok || res.Index != before.Index+1 {
					t.Fatalf("Apply returned %v", res)
				}
				after := fsm.State()
				if after.Primary.Epoch < before.Primary.Epoch || after.Primary.Epoch > before.Primary.Epoch+1 {
					t.Fatalf("epoch %d -> %d", before.Primary.Epoch, after.Primary.Epoch)
				}
				if res.Err != nil && !proto.Equal(withIndex(before, after.Index), after) {
					t.Fatalf("refused entry (%v) changed the state", res.Err)
				}
				checkInvariants(t, after)
				enc, err := EncodeSnapshot(after)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := DecodeSnapshot(enc); err != nil {
					t.Fatalf("Apply made a state its own snapshot refuses: %v", err)
				}
			}
			sub.Close()
		}
	})
}

func withIndex(st *pb.ClusterState, index uint64) *pb.ClusterState {
	st = proto.Clone(st).(*pb.ClusterState)
	st.Index = index
	return st
}
