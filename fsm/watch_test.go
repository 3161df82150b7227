package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"testing"
	"time"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
	"google.golang.org/protobuf/proto"
)

// within fails the test if fn does not return within d: Apply and Restore
// must never wait for a subscriber.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s blocked for more than %v", what, d)
	}
}

// drain closes sub and returns the events left in its buffer.
func drain(sub *Subscription) []*pb.WatchEvent {
	sub.Close()
	var out []*pb.WatchEvent
	for ev := range sub.C {
		out = append(out, ev)
	}
	return out
}

func indexes(evs []*pb.WatchEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Index
	}
	return out
}

func TestSubscribe_FromZero(t *testing.T) {
	f := newCluster(t)
	initial, sub := f.Subscribe(0, 16)
	if len(initial) != 1 || !proto.Equal(initial[0].GetSnapshot(), f.State()) || initial[0].Index != f.State().Index {
		t.Fatalf("initial = %v, want one snapshot of the state", initial)
	}
	start := f.State().Index
	mustRun(t, f,
		&pb.RenewLease{MemberId: "a", Epoch: 1},                                 // start+1: nothing
		&pb.SetPaused{Paused: true},                                             // start+2
		&pb.UpsertMember{Member: pgMember("b")},                                 // start+3: identical, nothing
		&pb.AssignPrimary{ExpectedEpoch: 1, ExpectedLeaseSeq: 1, MemberId: "c"}, // start+4
	)
	_, _ = run(t, f, &pb.RemoveMember{Id: "zz"}) // start+5: refused, nothing
	evs := drain(sub)
	if got, want := fmt.Sprint(indexes(evs)), fmt.Sprint([]uint64{start + 2, start + 4}); got != want {
		t.Fatalf("event indexes %s, want %s", got, want)
	}
	for _, ev := range evs {
		if ev.GetDelta() == nil {
			t.Fatalf("event %d is not a delta", ev.Index)
		}
	}
	if err := sub.Err(); err != nil {
		t.Fatalf("Err after Close = %v", err)
	}
}

// TestSubscribe_Resume checks every resume point of a random log: within
// the ring the subscriber gets exactly the events it missed, then the
// live ones; older than the ring it gets a snapshot.
func TestSubscribe_Resume(t *testing.T) {
	const ring = 40
	for _, seed := range seeds(t) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			log := genLog(seed, 600)
			first, second := log[:400], log[400:]
			f := New(ring)
			_, observer := f.Subscribe(0, len(log)+1)
			applyAll(f, first)
			st := f.State()

			type session struct {
				from    uint64
				initial []*pb.WatchEvent
				sub     *Subscription
			}
			var sessions []session
			for from := uint64(0); from <= st.Index+2; from++ {
				initial, sub := f.Subscribe(from, len(log)+1)
				sessions = append(sessions, session{from, initial, sub})
			}
			applyAll(f, second)
			all := drain(observer)
			if len(all) <= ring {
				t.Fatalf("only %d events: the ring never wrapped", len(all))
			}
			// The ring holds the last `ring` events published before the
			// sessions started; since is the index just before them.
			var before []*pb.WatchEvent
			for _, ev := range all {
				if ev.Index <= st.Index {
					before = append(before, ev)
				}
			}
			since := before[len(before)-ring-1].Index

			for _, s := range sessions {
				base := s.from
				snapshot := s.from == 0 || s.from < since || s.from > st.Index
				if snapshot {
					if len(s.initial) != 1 || s.initial[0].GetSnapshot() == nil || s.initial[0].Index != st.Index {
						t.Fatalf("from %d: initial %v, want a snapshot at %d", s.from, indexes(s.initial), st.Index)
					}
					if !proto.Equal(s.initial[0].GetSnapshot(), st) {
						t.Fatalf("from %d: snapshot is not the state", s.from)
					}
					base = st.Index
				}
				got := drain(s.sub)
				if !snapshot {
					got = append(s.initial, got...)
				}
				var want []*pb.WatchEvent
				for _, ev := range all {
					if ev.Index > base {
						want = append(want, ev)
					}
				}
				if fmt.Sprint(indexes(got)) != fmt.Sprint(indexes(want)) {
					t.Fatalf("from %d: got events %v, want %v", s.from, indexes(got), indexes(want))
				}
				for i := range got {
					if !proto.Equal(got[i], want[i]) {
						t.Fatalf("from %d: event %d differs", s.from, got[i].Index)
					}
				}
			}
		})
	}
}

func TestSubscribe_SlowSubscriberIsCutOff(t *testing.T) {
	f := newCluster(t)
	from := f.State().Index
	_, slow := f.Subscribe(from, 2)
	_, fast := f.Subscribe(from, 64)
	within(t, 10*time.Second, "Apply with a full subscriber", func() {
		for i := 0; i < 10; i++ {
			if err := f.ApplyCommand(from+uint64(i)+1, &pb.SetPaused{Paused: i%2 == 0}); err != nil {
				panic(err)
			}
		}
	})
	if got := drain(slow); len(got) != 2 || got[0].Index != from+1 || got[1].Index != from+2 {
		t.Fatalf("slow subscriber got %v, want the first 2 events", indexes(got))
	}
	if err := slow.Err(); !errors.Is(err, ErrResync) {
		t.Fatalf("slow subscriber Err = %v, want ErrResync", err)
	}
	if got := drain(fast); len(got) != 10 {
		t.Fatalf("fast subscriber got %d events, want 10", len(got))
	}
	if err := fast.Err(); err != nil {
		t.Fatalf("fast subscriber Err = %v", err)
	}
	// The cut-off subscriber resumes from the last event it saw.
	initial, sub := f.Subscribe(from+2, 64)
	defer sub.Close()
	if len(initial) != 8 || initial[0].Index != from+3 {
		t.Fatalf("resume after cut-off: %v", indexes(initial))
	}
}

func TestRestore_EndsSubscribers(t *testing.T) {
	src := newCluster(t)
	mustRun(t, src, &pb.SetPaused{Paused: true}, &pb.AssignPrimary{ExpectedEpoch: 1, MemberId: "b"})
	data := persist(t, src)

	f := newCluster(t)
	var subs []*Subscription
	for _, from := range []uint64{0, 1, f.State().Index} {
		_, s := f.Subscribe(from, 8)
		subs = append(subs, s)
	}
	within(t, 10*time.Second, "Restore", func() {
		if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			panic(err)
		}
	})
	for i, s := range subs {
		drain(s)
		if err := s.Err(); !errors.Is(err, ErrResync) {
			t.Fatalf("subscriber %d: Err = %v, want ErrResync", i, err)
		}
	}
	idx := src.State().Index
	if initial, s := f.Subscribe(idx, 8); len(initial) != 0 {
		t.Fatalf("Subscribe at the restored index: %v", initial)
	} else {
		s.Close()
	}
	initial, s := f.Subscribe(idx-1, 8)
	s.Close()
	if len(initial) != 1 || !proto.Equal(initial[0].GetSnapshot(), src.State()) {
		t.Fatalf("Subscribe before the restored index: %v, want a snapshot", initial)
	}
}

func TestSubscription_Close(t *testing.T) {
	f := newCluster(t)
	_, sub := f.Subscribe(0, 4)
	sub.Close()
	sub.Close()
	if _, ok := <-sub.C; ok {
		t.Fatalf("C still open after Close")
	}
	if err := sub.Err(); err != nil {
		t.Fatalf("Err after Close = %v", err)
	}
	mustRun(t, f, &pb.SetPaused{Paused: true}) // no send on a closed channel

	// Close after a resync keeps ErrResync.
	_, sub = f.Subscribe(f.State().Index, 1)
	mustRun(t, f, &pb.SetPaused{Paused: false}, &pb.SetPaused{Paused: true})
	sub.Close()
	sub.Close()
	if err := sub.Err(); !errors.Is(err, ErrResync) {
		t.Fatalf("Err = %v, want ErrResync", err)
	}
}

// TestWatch_Concurrent runs Apply, Subscribe/Close and readers at once
// (meant for -race), then checks that every session saw a gap-free,
// repeat-free run of the events.
func TestWatch_Concurrent(t *testing.T) {
	const watchers = 4
	seed := seeds(t)[0]
	log := genLog(seed, 3000)
	f := New(64)
	_, observer := f.Subscribe(0, len(log)+1)

	type session struct {
		base uint64
		got  []uint64
	}
	var (
		mu       sync.Mutex
		sessions []session
		wg       sync.WaitGroup
		applied  = make(chan struct{})
	)
	for w := 0; w < watchers; w++ {
		wg.Add(1)
		go func(rng *rand.Rand) {
			defer wg.Done()
			var last uint64
			for {
				select {
				case <-applied:
					return
				default:
				}
				from := last
				if rng.Intn(5) == 0 {
					from = 0
				}
				initial, sub := f.Subscribe(from, 1+rng.Intn(8))
				s := session{base: from}
				for _, ev := range initial {
					if ev.GetSnapshot() != nil {
						s.base = ev.Index
						continue
					}
					s.got = append(s.got, ev.Index)
				}
			read:
				for n := rng.Intn(40); n > 0; n-- {
					select {
					case ev, ok := <-sub.C:
						if !ok {
							break read
						}
						s.got = append(s.got, ev.Index)
					case <-applied:
						break read
					}
				}
				for _, ev := range drain(sub) {
					s.got = append(s.got, ev.Index)
				}
				if len(s.got) > 0 {
					last = s.got[len(s.got)-1]
				} else {
					last = s.base
				}
				mu.Lock()
				sessions = append(sessions, s)
				mu.Unlock()
			}
		}(rand.New(rand.NewSource(seed + int64(w))))
	}
	wg.Add(1)
	go func() { // readers of the state, concurrently with everything
		defer wg.Done()
		for {
			select {
			case <-applied:
				return
			default:
			}
			if _, err := EncodeSnapshot(f.State()); err != nil {
				panic(err)
			}
		}
	}()
	within(t, 30*time.Second, "Apply under concurrent watchers", func() { applyAll(f, log) })
	close(applied)
	wg.Wait()

	all := indexes(drain(observer))
	if err := observer.Err(); err != nil {
		t.Fatalf("observer: %v", err)
	}
	pos := make(map[uint64]int, len(all))
	for i, idx := range all {
		pos[idx] = i
	}
	for _, s := range sessions {
		// The session's events must be the published ones right after base.
		start := 0
		for start < len(all) && all[start] <= s.base {
			start++
		}
		for i, idx := range s.got {
			if start+i >= len(all) || all[start+i] != idx {
				t.Fatalf("session from %d: got %v; published after it %v", s.base, s.got, all[start:min(len(all), start+len(s.got)+1)])
			}
		}
	}
	t.Logf("%d sessions, %d events", len(sessions), len(all))
}

// TestWatch_ConcurrentRestore races Restore against Apply and watchers:
// nothing may panic, deadlock or race; a watcher ends with ErrResync or nil.
func TestWatch_ConcurrentRestore(t *testing.T) {
	log := genLog(seeds(t)[0], 1000)
	snapFSM := New(4)
	applyAll(snapFSM, log[:500])
	snap := persist(t, snapFSM)

	f := New(16)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
				panic(err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, sub := f.Subscribe(0, 2)
		read:
			for range 3 {
				select {
				case _, ok := <-sub.C:
					if !ok {
						break read
					}
				case <-stop:
					break read
				}
			}
			drain(sub)
			if err := sub.Err(); err != nil && !errors.Is(err, ErrResync) {
				panic(err)
			}
		}
	}()
	within(t, 30*time.Second, "Apply under concurrent Restore", func() { applyAll(f, log) })
	close(stop)
	wg.Wait()
}
