package chaos

import (
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"
)

// regInput is a register operation: a write of Value to Key, or a read.
type regInput struct {
	Write bool
	Key   int
	Value int64
}

// regOutput is what a read returned.
type regOutput struct{ Value int64 }

// registerModel is one register per key, all starting at 0 (the rows the
// harness creates), partitioned by key so porcupine checks each alone.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		var keys []int
		for _, op := range history {
			k := op.Input.(regInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.Write {
			return true, in.Value
		}
		return output.(regOutput).Value == state.(int64), state
	},
	Equal: func(a, b any) bool { return a == b },
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.Write {
			return fmt.Sprintf("write(k%d, %d)", in.Key, in.Value)
		}
		return fmt.Sprintf("read(k%d) -> %d", in.Key, output.(regOutput).Value)
	},
}

// registerOps turns the register ops of a history into porcupine
// operations. A failed write and a read that did not answer constrain
// nothing and are left out. A write whose outcome is unknown may take
// effect at any time after its call, or never. Values are unique, so:
// an unknown write no read ever saw can always be linearized last and is
// left out; one that a read saw must have taken effect before that read
// returned, so it returns when the first read that saw it returned. Both
// are exact, and they keep porcupine from searching the endless
// interleavings that open-ended writes allow.
func registerOps(ops []Op) []porcupine.Operation {
	type kv struct {
		k int
		v int64
	}
	seen := map[kv]int64{} // earliest return of a read of the value
	for _, o := range ops {
		if o.Kind == KindRead && o.Outcome == OK {
			key := kv{o.Key, o.Value}
			if r, ok := seen[key]; !ok || int64(o.Return) < r {
				seen[key] = int64(o.Return)
			}
		}
	}
	var out []porcupine.Operation
	for _, o := range ops {
		switch {
		case o.Kind == KindWrite && o.Outcome != Fail:
			ret := int64(o.Return)
			if o.Outcome == Unknown {
				r, ok := seen[kv{o.Key, o.Value}]
				if !ok {
					continue
				}
				ret = max(r, int64(o.Call))
			}
			out = append(out, porcupine.Operation{ClientId: o.Process, Input: regInput{Write: true, Key: o.Key, Value: o.Value},
				Call: int64(o.Call), Output: regOutput{}, Return: ret})
		case o.Kind == KindRead && o.Outcome == OK:
			out = append(out, porcupine.Operation{ClientId: o.Process, Input: regInput{Key: o.Key},
				Call: int64(o.Call), Output: regOutput{Value: o.Value}, Return: int64(o.Return)})
		}
	}
	return out
}

// CheckLinearizable checks the register ops of a history with porcupine.
// It returns porcupine's verdict (Unknown when the check timed out) and,
// when vizPath is not empty and the history is not linearizable, writes
// porcupine's visualization there.
func CheckLinearizable(ops []Op, timeout time.Duration, vizPath string) (porcupine.CheckResult, int) {
	pops := registerOps(ops)
	res, info := porcupine.CheckOperationsVerbose(registerModel, pops, timeout)
	if res == porcupine.Illegal && vizPath != "" {
		_ = porcupine.VisualizePath(registerModel, info, vizPath)
	}
	return res, len(pops)
}
