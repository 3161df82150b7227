package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

func TestSnapshot_RoundTrip(t *testing.T) {
	tests := []struct {
		name string
		fsm  func(testing.TB) *FSM
	}{
		{"empty", newEmpty},
		{"initialized", newInitialized},
		{"cluster", func(t testing.TB) *FSM {
			f := newCluster(t)
			mustRun(t, f,
				&pb.SetSystemID{SystemIdentifier: 42},
				&pb.RenewLease{MemberId: "a", Epoch: 1},
				&pb.SetSync{Epoch: 1, Members: []string{"b", "c"}},
				&pb.SetPaused{Paused: true},
				&pb.SetConfig{ExpectedVersion: 1, Config: &pb.DynamicConfig{PostgresParameters: map[string]string{"x": "1", "y": "2"}}},
			)
			return f
		}},
		{"tombstones", func(t testing.TB) *FSM {
			f := newCluster(t)
			mustRun(t, f, &pb.RemoveMember{Id: "c", Tombstone: true}, &pb.RemoveMember{Id: "never-registered", Tombstone: true})
			return f
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fsm(t)
			data := persist(t, f)
			if !bytes.HasPrefix(data, []byte("PGQS\x02")) {
				t.Fatalf("snapshot header %q", data[:min(len(data), 5)])
			}
			g := restored(t, data)
			if !proto.Equal(g.State(), f.State()) {
				t.Fatalf("restored:\n got %v\nwant %v", g.State(), f.State())
			}
			if !bytes.Equal(encodedState(t, g), data) {
				t.Fatalf("re-encoding the restored state changed the bytes")
			}
			// The restored FSM keeps working from where the snapshot was.
			before := g.State()
			if _, err := run(t, g, &pb.SetPaused{Paused: !before.Paused}); err != nil {
				t.Fatal(err)
			}
			if g.State().Index != before.Index+1 {
				t.Fatalf("index after restore and apply: %d", g.State().Index)
			}
		})
	}
}

// TestSnapshot_Immutable checks that a snapshot taken before more entries
// are applied persists the state as it was when it was taken.
func TestSnapshot_Immutable(t *testing.T) {
	f := newCluster(t)
	want := encodedState(t, f)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, f, &pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "b"}, &pb.RemoveMember{Id: "c"})
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatalf("snapshot changed after later applies")
	}
}

func TestSnapshot_PersistWriteError(t *testing.T) {
	f := newCluster(t)
	snap, _ := f.Snapshot()
	boom := errors.New("disk full")
	sink := &memSink{writeErr: boom}
	if err := snap.Persist(sink); !errors.Is(err, boom) {
		t.Fatalf("Persist err = %v, want %v", err, boom)
	}
	if !sink.cancelled {
		t.Fatalf("Persist did not cancel the sink after a write error")
	}
}

func TestRestore_Refusals(t *testing.T) {
	good, err := EncodeSnapshot(newCluster(t).State())
	if err != nil {
		t.Fatal(err)
	}
	body := good[5:]
	withState := func(edit func(*pb.ClusterState)) []byte {
		st := newCluster(t).State()
		edit(st)
		b, err := proto.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte("PGQS\x02"), b...)
	}
	tests := []struct {
		name string
		data []byte
		want string // in the error message
	}{
		{"empty", nil, "missing header"},
		{"short", []byte("PGQ"), "missing header"},
		{"wrong magic", append([]byte("XGQS\x01"), body...), "not a pgquorum snapshot"},
		{"raft json", []byte(`{"members":[]}`), "not a pgquorum snapshot"},
		{"unknown version", append([]byte("PGQS\x03"), body...), "format version 3"},
		{"version zero", append([]byte("PGQS\x00"), body...), "format version 0"},
		{"garbage body", append([]byte("PGQS\x01"), 0xff, 0xff, 0xff, 0x07), "body is not a cluster state"},
		{"truncated body", good[:len(good)-4], "body is not a cluster state"},
		{"unsorted members", withState(func(st *pb.ClusterState) {
			st.Members[0], st.Members[1] = st.Members[1], st.Members[0]
		}), `members not sorted or duplicated at "a"`},
		{"duplicate member", withState(func(st *pb.ClusterState) {
			st.Members[1] = st.Members[0]
		}), `members not sorted or duplicated at "a"`},
		{"unsorted bouncers", withState(func(st *pb.ClusterState) {
			st.Bouncers = []*pb.BouncerAgent{{Id: "pgb2"}, {Id: "pgb1"}}
		}), `bouncer agents not sorted or duplicated at "pgb1"`},
		{"history out of order", withState(func(st *pb.ClusterState) {
			st.History = append(st.History, &pb.HistoryEntry{Epoch: 1})
			st.Primary.Epoch = 2
		}), "history epochs not increasing"},
		{"tombstones in version 1", func() []byte {
			st := newCluster(t).State()
			st.Tombstones = []*pb.Tombstone{{Id: "z", Index: 3}}
			b, _ := proto.Marshal(st)
			return append([]byte("PGQS\x01"), b...)
		}(), "format version 1 with tombstones"},
		{"duplicate tombstone", withState(func(st *pb.ClusterState) {
			st.Tombstones = []*pb.Tombstone{{Id: "z", Index: 3}, {Id: "z", Index: 4}}
		}), `tombstone 1 empty or duplicated ("z")`},
		{"empty tombstone", withState(func(st *pb.ClusterState) {
			st.Tombstones = []*pb.Tombstone{{Index: 3}}
		}), "tombstone 0 empty or duplicated"},
		{"member with a tombstone", withState(func(st *pb.ClusterState) {
			st.Tombstones = []*pb.Tombstone{{Id: "b", Index: 3}}
		}), `"b" is both a member and a tombstone`},
		{"too many tombstones", withState(func(st *pb.ClusterState) {
			for i := range TombstoneLimit + 1 {
				st.Tombstones = append(st.Tombstones, &pb.Tombstone{Id: fmt.Sprintf("z%d", i)})
			}
		}), "tombstones, at most"},
		{"history ahead of primary", withState(func(st *pb.ClusterState) {
			st.History = append(st.History, &pb.HistoryEntry{Epoch: 5})
		}), "beyond the primary's epoch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeSnapshot(tc.data); !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeSnapshot err = %v, want ErrBadSnapshot naming %q", err, tc.want)
			}
			f := newCluster(t)
			before := f.State()
			_, sub := f.Subscribe(before.Index, 1)
			defer sub.Close()
			rc := &trackingCloser{Reader: bytes.NewReader(tc.data)}
			err := f.Restore(rc)
			if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore err = %v, want ErrBadSnapshot naming %q", err, tc.want)
			}
			if !rc.closed {
				t.Fatalf("Restore did not close its reader")
			}
			if !proto.Equal(f.State(), before) {
				t.Fatalf("a refused snapshot changed the state")
			}
			if sub.Err() != nil {
				t.Fatalf("a refused snapshot ended a watcher: %v", sub.Err())
			}
		})
	}
}

func TestRestore_ReadError(t *testing.T) {
	boom := errors.New("io boom")
	f := New(1)
	err := f.Restore(io.NopCloser(io.MultiReader(strings.NewReader("PGQS\x01"), errReader{boom})))
	if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), boom.Error()) {
		t.Fatalf("err = %v", err)
	}
}

func TestRestore_TooLarge(t *testing.T) {
	f := New(1)
	err := f.Restore(io.NopCloser(io.LimitReader(zeros{}, MaxSnapshotSize+10)))
	if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

// TestRestore_Normalizes restores a snapshot without sub-messages (as an
// older or minimal writer may produce) and applies commands on top.
func TestRestore_Normalizes(t *testing.T) {
	f := restored(t, []byte("PGQS\x01"))
	st := f.State()
	if st.Identity == nil || st.Config == nil || st.Primary == nil || st.Sync == nil {
		t.Fatalf("not normalized: %v", st)
	}
	mustRun(t, f, testInit, &pb.UpsertMember{Member: pgMember("a")},
		&pb.AssignPrimary{MemberId: "a"}, &pb.SetSync{Epoch: 1})
	checkInvariants(t, f.State())
}

type trackingCloser struct {
	io.Reader
	closed bool
}

func (c *trackingCloser) Close() error { c.closed = true; return nil }

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestRestore_Version1 reads a snapshot written before tombstones existed
// (format version 1): an operator upgrading a cluster keeps its state.
func TestRestore_Version1(t *testing.T) {
	want := newCluster(t).State()
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	f := restored(t, append([]byte("PGQS\x01"), body...))
	if got := f.State(); !proto.Equal(got, want) {
		t.Fatalf("version 1 restore:\n got %v\nwant %v", got, want)
	}
	// Written again, it is version 2.
	if data := persist(t, f); !bytes.HasPrefix(data, []byte("PGQS\x02")) {
		t.Fatalf("re-persisted header %q", data[:5])
	}
}
