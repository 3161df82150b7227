package config

import (
	"errors"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestTimingValidate_Rules(t *testing.T) {
	tests := []struct {
		name            string
		ttl, lw, rt, sm time.Duration
		key             string
		want            []string
	}{
		{"default profile", 2000 * ms, 500 * ms, 1000 * ms, 300 * ms, "", nil},
		{"ttl at minimum", 500 * ms, 100 * ms, 200 * ms, 100 * ms, "", nil},
		{"ttl below minimum", 400 * ms, 100 * ms, 100 * ms, 100 * ms, "timing.ttl", []string{"400ms is below the minimum of 500ms"}},
		{"loop_wait at minimum", 1000 * ms, 50 * ms, 500 * ms, 200 * ms, "", nil},
		{"loop_wait below minimum", 1000 * ms, 40 * ms, 500 * ms, 200 * ms, "timing.loop_wait", []string{"40ms is below the minimum of 50ms"}},
		{"retry_timeout below minimum", 1000 * ms, 100 * ms, 10 * ms, 200 * ms, "timing.retry_timeout", []string{"below the minimum of 50ms"}},
		{"safety_margin at minimum", 1000 * ms, 100 * ms, 100 * ms, 50 * ms, "", nil},
		{"safety_margin below minimum", 1000 * ms, 100 * ms, 100 * ms, 10 * ms, "timing.safety_margin", []string{"below the minimum of 50ms"}},
		{"three renewals fit exactly", 1500 * ms, 500 * ms, 500 * ms, 300 * ms, "", nil},
		{"three renewals do not fit", 2000 * ms, 800 * ms, 500 * ms, 300 * ms, "timing", []string{"loop_wait (800ms) * 3 > ttl (2s)", "at least three lease renewals must fit in one ttl"}},
		{"renewal budget exactly ttl", 2000 * ms, 500 * ms, 1200 * ms, 300 * ms, "", nil},
		{"renewal budget over ttl", 2000 * ms, 500 * ms, 1300 * ms, 300 * ms, "timing", []string{"retry_timeout (1.3s) + loop_wait (500ms) + safety_margin (300ms) = 2.1s > ttl (2s)"}},
		{"safety_margin half ttl", 2000 * ms, 300 * ms, 300 * ms, 1000 * ms, "", nil},
		{"safety_margin over half ttl", 2000 * ms, 200 * ms, 200 * ms, 1100 * ms, "timing", []string{"safety_margin (1.1s) > ttl (2s) / 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm := Timing{Profile: ProfileDefault, TTL: tt.ttl, LoopWait: tt.lw, RetryTimeout: tt.rt, SafetyMargin: tt.sm}
			err := tm.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("want ErrInvalid, got %v", err)
			}
			wantProblem(t, err, tt.key, tt.want...)
		})
	}
}

func TestProfileTiming_Values(t *testing.T) {
	tests := []struct {
		p               Profile
		ttl, lw, rt, sm time.Duration
	}{
		{ProfileFast, time.Second, 250 * ms, 500 * ms, 200 * ms},
		{ProfileDefault, 2 * time.Second, 500 * ms, time.Second, 300 * ms},
		{ProfileConservative, 10 * time.Second, 2 * time.Second, 4 * time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(string(tt.p), func(t *testing.T) {
			tm, err := ProfileTiming(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			want := Timing{Profile: tt.p, TTL: tt.ttl, LoopWait: tt.lw, RetryTimeout: tt.rt, SafetyMargin: tt.sm}
			if tm != want {
				t.Fatalf("got %+v, want %+v", tm, want)
			}
			if err := tm.Validate(); err != nil {
				t.Fatalf("profile breaks the rules: %v", err)
			}
		})
	}
	if _, err := ProfileTiming("turbo"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown profile: want ErrInvalid, got %v", err)
	}
	if len(Profiles) != len(tests) {
		t.Fatalf("Profiles has %d entries, tested %d", len(Profiles), len(tests))
	}
}

func TestTiming_RaftTimeouts(t *testing.T) {
	tests := []struct {
		name string
		tm   Timing
		want RaftTimeouts
	}{
		{"fast", Timing{TTL: time.Second, LoopWait: 250 * ms}, RaftTimeouts{250 * ms, 250 * ms, 125 * ms, 125 * ms}},
		{"default", Timing{TTL: 2 * time.Second, LoopWait: 500 * ms}, RaftTimeouts{500 * ms, 500 * ms, 250 * ms, 250 * ms}},
		{"conservative", Timing{TTL: 10 * time.Second, LoopWait: 2 * time.Second}, RaftTimeouts{2500 * ms, 2500 * ms, 1250 * ms, time.Second}},
		{"floor on heartbeat", Timing{TTL: 200 * ms, LoopWait: 50 * ms}, RaftTimeouts{100 * ms, 100 * ms, 50 * ms, 25 * ms}},
		{"small loop_wait", Timing{TTL: 600 * ms, LoopWait: 100 * ms}, RaftTimeouts{150 * ms, 150 * ms, 75 * ms, 50 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.tm.RaftTimeouts()
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			// hashicorp/raft's own constraints.
			if got.LeaderLeaseTimeout > got.HeartbeatTimeout || got.ElectionTimeout < got.HeartbeatTimeout || got.CommitTimeout < time.Millisecond {
				t.Fatalf("violates raft constraints: %+v", got)
			}
		})
	}
}

func TestTiming_FenceAndTakeover(t *testing.T) {
	tm, _ := ProfileTiming(ProfileDefault)
	if got := tm.FenceAfter(); got != 1700*ms {
		t.Errorf("FenceAfter = %s, want 1.7s", got)
	}
	if got := tm.TakeoverAfter(); got != 2300*ms {
		t.Errorf("TakeoverAfter = %s, want 2.3s", got)
	}
	for _, p := range Profiles {
		tm, _ := ProfileTiming(p)
		// The primary must have fenced before anyone may take over, and a
		// renewal attempt must end before the primary fences.
		if tm.FenceAfter() >= tm.TakeoverAfter() || tm.RetryTimeout+tm.LoopWait > tm.FenceAfter() {
			t.Errorf("%s: fence %s, takeover %s, retry+loop %s", p, tm.FenceAfter(), tm.TakeoverAfter(), tm.RetryTimeout+tm.LoopWait)
		}
	}
}
