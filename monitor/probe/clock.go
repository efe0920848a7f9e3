package probe

import "time"

// Clock is the time source of the package. The real clock is the default;
// tests inject a virtual clock that only moves when the test advances it.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for virtual clocks, from
	// the goroutine that advances time) once d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not run yet and reports whether it did.
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// RealClock returns the wall clock.
func RealClock() Clock { return realClock{} }
