package testwait_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ustack/ustack/internal/testwait"
)

// TestForSeesAnotherGoroutine: For returns once another goroutine makes
// the condition true, and polls more than once meanwhile.
func TestForSeesAnotherGoroutine(t *testing.T) {
	var flag atomic.Bool
	var polls atomic.Int32
	release := make(chan struct{})
	go func() {
		<-release
		flag.Store(true)
	}()
	testwait.For(t, "the flag", func() bool {
		if polls.Add(1) == 3 {
			close(release)
		}
		return flag.Load()
	})
	if n := polls.Load(); n < 3 {
		t.Errorf("the condition was polled %d times, want at least 3", n)
	}
}

// TestUntilNamesWhatAndTheLastValue: a wait that ends without the
// condition says what it waited for and what it saw last.
func TestUntilNamesWhatAndTheLastValue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n := 0
	err := testwait.Until(ctx, "two subscribers", func() error {
		n++
		return fmt.Errorf("%d subscribers", n%2)
	})
	if err == nil || !strings.Contains(err.Error(), "two subscribers") || !strings.Contains(err.Error(), "last seen: ") {
		t.Fatalf("error %v, want it to name the wait and the last value", err)
	}
	if want := fmt.Sprintf("%d subscribers", n%2); !strings.HasSuffix(err.Error(), want) {
		t.Errorf("error %q does not end with the last value seen, %q", err, want)
	}
}

// TestUntilPollsSoonThenLessOften: in a second the condition is polled
// often at first (1, 2, 4 ... ms apart: some 16 times), yet not the many
// thousand times of a loop that does not back off.
func TestUntilPollsSoonThenLessOften(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	polls := 0
	testwait.Until(ctx, "never", func() error {
		polls++
		return errors.New("no")
	})
	if polls < 5 || polls > 100 {
		t.Fatalf("%d polls in a second, want some 16", polls)
	}
}

// TestUntilFromAnotherGoroutine: Until is the form for goroutines other
// than the test's; it reports rather than failing the test.
func TestUntilFromAnotherGoroutine(t *testing.T) {
	var ready atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- testwait.Until(t.Context(), "ready", func() error {
			if !ready.Load() {
				return errors.New("not ready")
			}
			return nil
		})
	}()
	ready.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
