package presence

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// Leaves from anywhere in a session keep the others in join order.
func TestMemoryLeaveKeepsOrder(t *testing.T) {
	t.Parallel()
	s := NewMemory()
	const n = 200
	var want []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("c%03d", i)
		want = append(want, id)
		if err := s.Join(Member{SessionID: "s", ConnectionID: id, UserType: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for len(want) > 0 {
		var i int
		switch len(want) % 3 { // head, tail and middle in turn
		case 0:
			i = 0
		case 1:
			i = len(want) - 1
		default:
			i = rng.IntN(len(want))
		}
		if err := s.Leave(Ref{SessionID: "s", ConnectionID: want[i]}); err != nil {
			t.Fatal(err)
		}
		want = slices.Delete(want, i, i+1)
		ms, _ := s.Members(context.Background(), "s")
		var got []string
		for _, m := range ms {
			got = append(got, m.ConnectionID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("after a leave: got %v, want %v", got, want)
		}
	}
	if len(s.sessions) != 0 {
		t.Fatal("an empty session is still held")
	}
	// A second leave, and a leave of an unknown session, are no-ops.
	if err := s.Leave(Ref{SessionID: "s", ConnectionID: "c000"}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMemoryLeave measures one leave in sessions of several sizes: with
// O(1) leaves ns/op is flat across sizes (compare the sub-benchmarks of one
// run as ratios; the old scan grew with the size).
func BenchmarkMemoryLeave(b *testing.B) {
	for _, size := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			ids := make([]string, size)
			for i := range ids {
				ids[i] = fmt.Sprintf("c%06d", i)
			}
			s := NewMemory()
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer()
				for _, id := range ids {
					_ = s.Join(Member{SessionID: "s", ConnectionID: id})
				}
				b.StartTimer()
				// Leaving the newest first is the old scan's worst case.
				for i := size - 1; i >= 0 && done < b.N; i-- {
					_ = s.Leave(Ref{SessionID: "s", ConnectionID: ids[i]})
					done++
				}
			}
		})
	}
}
