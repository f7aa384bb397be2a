package growstack

import (
	"sync"
	"testing"
)

// TestGrowConcurrent: Grow is called from many goroutines at once (the
// race run checks that they share nothing) and allocates nothing: room
// must stay on the stack.
func TestGrowConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Grow()
		}()
	}
	wg.Wait()
	if n := testing.AllocsPerRun(100, Grow); n != 0 {
		t.Errorf("Grow allocates %v times per call, want 0", n)
	}
}
