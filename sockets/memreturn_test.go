package sockets

import (
	"slices"
	"testing"
)

// TestMemoryReturn: memory goes back once what is held has halved from a
// peak of at least freeAfter, and once more settleTicks later; a small
// peak, a slow decline above half or new load returns nothing.
func TestMemoryReturn(t *testing.T) {
	const s = settleTicks
	repeat := func(v, n int) []int { return slices.Repeat([]int{v}, n) }
	at := func(ticks ...int) []int { return ticks }
	for _, tc := range []struct {
		name  string
		held  []int
		frees []int // ticks (0-based) that return memory
	}{
		{"all closed at once", slices.Concat([]int{0, 2000, 2000}, repeat(0, s+3)), at(3, 3+s)},
		{"a peak below freeAfter", slices.Concat([]int{999}, repeat(0, s+3)), nil},
		{"down to half, then to nothing", slices.Concat([]int{4000, 2001, 2000}, repeat(0, s+3)), at(2, 3, 3+s)},
		{"new load cancels the second return", slices.Concat([]int{4000, 1000, 1200}, repeat(1200, s+3)), at(1)},
		{"falling slowly above half", []int{4000, 3000, 2500, 2001, 2001}, nil},
		{"TIME-WAIT ending later", slices.Concat([]int{9000, 3800}, repeat(3800, s+3), []int{0}, repeat(0, s+1)), at(1, 1+s, s+5, 2*s+5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r memoryReturn
			var frees []int
			for i, h := range tc.held {
				if r.tick(h) {
					frees = append(frees, i)
				}
			}
			if !slices.Equal(frees, tc.frees) {
				t.Errorf("held %v: returned memory at ticks %v, want %v", tc.held, frees, tc.frees)
			}
		})
	}
}
