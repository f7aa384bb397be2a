// Package testwait lets a test wait for something it can observe — a
// listener bound, a subscriber registered, a counter reached, a line
// printed — instead of sleeping for a guessed while. The condition is
// polled, at first every millisecond and then less often, until it holds.
//
// The time limit is a ceiling for a broken run, not a tuning knob: a
// condition that holds at all holds long before it, however loaded the
// machine. It is Ceiling, or less when the test binary's -timeout would
// end the run first, so that a test fails with a message naming what it
// waited for rather than with the binary's panic.
package testwait

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Ceiling is the longest a wait lasts.
const Ceiling = time.Minute

const (
	firstInterval = time.Millisecond
	maxInterval   = 100 * time.Millisecond
	// deadlineMargin is left before the test binary's own deadline, for
	// the failure to be reported and the cleanups to run.
	deadlineMargin = 5 * time.Second
)

// For waits until cond returns true. If the ceiling passes first it fails
// t, naming what was awaited. Call it on the test's goroutine; cond runs
// there too, so it may itself fail t (say, when a process it waits on has
// exited).
func For(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if err := wait(t, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}); err != nil {
		t.Fatal(err)
	}
}

// ForNil waits until check returns nil: check's error says what it saw
// instead (the last value observed, the last dial's error), and the
// failure message after the ceiling ends with the last one. As with For,
// call it on the test's goroutine.
func ForNil(t testing.TB, what string, check func() error) {
	t.Helper()
	if err := wait(t, what, check); err != nil {
		t.Fatal(err)
	}
}

// Until waits until check returns nil, ctx is done or the ceiling passes,
// and returns nil, or an error naming what and check's last error. It
// fails no test, so any goroutine may call it, and the caller decides what
// a timeout means (say, printing the goroutines that are left).
func Until(ctx context.Context, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, Ceiling)
	defer cancel()
	start := time.Now()
	interval := firstInterval
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		timer.Reset(interval) // a timer that fired unread is reset clean (Go 1.23 timers)
		select {
		case <-ctx.Done():
			// One last look: the condition may have come true while the
			// timer ran.
			if err = check(); err == nil {
				return nil
			}
			how := fmt.Sprintf("waited %v for %s", time.Since(start).Round(time.Millisecond), what)
			if errors.Is(ctx.Err(), context.Canceled) {
				how += " (canceled)"
			}
			if errors.Is(err, errNotYet) {
				return fmt.Errorf("%s: it did not happen", how)
			}
			return fmt.Errorf("%s; last seen: %w", how, err)
		case <-timer.C:
		}
		interval = min(interval*2, maxInterval)
	}
}

var errNotYet = errors.New("not yet")

// wait is Until bounded by t's context and its binary's deadline.
func wait(t testing.TB, what string, check func() error) error {
	ctx := t.Context()
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := d.Deadline(); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, end.Add(-deadlineMargin))
			defer cancel()
		}
	}
	return Until(ctx, what, check)
}
