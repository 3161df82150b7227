package server

import (
	"testing"

	pb "github.com/pgquorum/pgquorum/proto/pgquorum/v1"
)

// TestDecideSwitchover_CheckpointFirst: the old primary is asked to
// checkpoint before the switchover's first step (the drain, or the
// step-down when there are no bouncer agents), and only then.
func TestDecideSwitchover_CheckpointFirst(t *testing.T) {
	exposed := func(b *vb) { b.v.st.Primary.Exposed = true }
	agent := func(acked uint64) func(*vb) {
		return func(b *vb) {
			b.v.st.Bouncers = []*pb.BouncerAgent{{Id: "b1", ContactLeaseMs: 5000}}
			b.v.acks = map[string]bouncerAck{"b1": {epoch: acked, at: t0}}
		}
	}
	cases := []struct {
		name     string
		sw       *pb.Switchover
		with     func(*vb)
		want     string
		stepDown bool
	}{
		{"drain step", &pb.Switchover{From: "n1", To: "n3", Epoch: 3}, agent(3), "n1", false},
		{"step-down after the drain", &pb.Switchover{From: "n1", To: "n3", Epoch: 3, Draining: true}, agent(4), "", true},
		{"step-down without agents", &pb.Switchover{From: "n1", To: "n3", Epoch: 3}, func(*vb) {}, "n1", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVB().with(exposed).with(tc.with).with(func(b *vb) { b.v.st.Switchover = tc.sw }).v
			d := decideSwitchover(v)
			sw, ok := d.cmd.(*pb.SetSwitchover)
			if !ok {
				t.Fatalf("no SetSwitchover decided: %+v", d)
			}
			if sw.Switchover.SteppingDown != tc.stepDown {
				t.Fatalf("stepping_down = %v, want %v", sw.Switchover.SteppingDown, tc.stepDown)
			}
			if d.checkpoint != tc.want {
				t.Fatalf("checkpoint %q, want %q", d.checkpoint, tc.want)
			}
		})
	}
}
