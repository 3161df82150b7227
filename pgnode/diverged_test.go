package pgnode

import "testing"

func TestForkPoint(t *testing.T) {
	history := "1\t0/5090520\tno recovery target specified\n\n2\t0/7000000\tno recovery target specified\n"
	for _, tc := range []struct {
		tli  uint32
		want LSN
		ok   bool
	}{
		{1, 0x5090520, true},
		{2, 0x7000000, true},
		{3, 0, false},
	} {
		got, ok := forkPoint(history, tc.tli)
		if got != tc.want || ok != tc.ok {
			t.Errorf("forkPoint(tli %d) = %v, %v; want %v, %v", tc.tli, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := forkPoint("garbage\n# comment\n", 1); ok {
		t.Error("fork point found in garbage")
	}
}
