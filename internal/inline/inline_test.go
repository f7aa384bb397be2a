package inline

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestPostWithoutBegin(t *testing.T) {
	if Post(func() { t.Error("ran without a goroutine to run it") }) {
		t.Fatal("Post with no Begin: true, want false")
	}
}

func TestEndRunsPostedWork(t *testing.T) {
	var order []int
	Begin()
	for i := range 3 {
		if !Post(func() {
			order = append(order, i)
			if i == 0 { // work posted by posted work runs too
				if !Post(func() { order = append(order, 10) }) {
					t.Error("Post from posted work: false")
				}
			}
		}) {
			t.Fatalf("Post %d after Begin: false", i)
		}
	}
	if len(order) != 0 {
		t.Fatalf("ran before End: %v", order)
	}
	End()
	want := []int{0, 1, 2, 10}
	if len(order) != len(want) {
		t.Fatalf("ran %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("ran %v, want %v", order, want)
		}
	}
	if Post(func() {}) {
		t.Fatal("Post after End: true, want false")
	}
}

// Work posted from other goroutines while scopes come and go on two more
// runs exactly once: either a scope took it, or the poster was told to run
// it its own way. With a scope held open throughout, every post is taken.
func TestConcurrentPostsRunOnce(t *testing.T) {
	for _, held := range []bool{true, false} {
		const posters, each = 4, 2000
		var ran, ownWay atomic.Int64
		stop := make(chan struct{})
		var scopes sync.WaitGroup
		for range 2 {
			scopes.Add(1)
			go func() {
				defer scopes.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					Begin()
					End()
				}
			}()
		}
		if held {
			Begin()
		}
		var wg sync.WaitGroup
		for range posters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if !Post(func() { ran.Add(1) }) {
						ownWay.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if held {
			End()
		}
		close(stop)
		scopes.Wait()
		if got := ran.Load() + ownWay.Load(); got != posters*each {
			t.Fatalf("held=%v: run by scopes %d + by posters %d = %d, want %d", held, ran.Load(), ownWay.Load(), got, posters*each)
		}
		if held && ownWay.Load() != 0 {
			t.Fatalf("held=%v: %d posts refused while a scope was open", held, ownWay.Load())
		}
	}
}
