package probe

import (
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// A reload that changes the active interval changes the probe rate of the
// running probers at once; their statistics are kept.
func TestSetProfilesRetunesRunningProbers(t *testing.T) {
	m, c, n := newTestManager(t, Profiles{Active: 200 * time.Millisecond})
	start(t, m, pairA, "eth0", mobike.ProfileActive)
	c.Advance(2 * time.Second)
	before := len(n.sendTimes(pairA))
	if before != 11 {
		t.Fatalf("sent %d probes in 2 s at 200 ms, want 11", before)
	}
	m.SetProfiles(Profiles{Active: 50 * time.Millisecond, Jitter: -1})
	c.Advance(2 * time.Second)
	after := len(n.sendTimes(pairA)) - before
	if after < 39 || after > 41 {
		t.Fatalf("sent %d probes in 2 s after the change to 50 ms, want 40", after)
	}
	evs := drain(m)
	// (the last probe is still in flight when its predecessor's result is
	// the last event)
	if last := evs[len(evs)-1]; last.Stats.Sent < uint64(before+after-1) {
		t.Errorf("statistics restarted: sent %d, want %d", last.Stats.Sent, before+after-1)
	}
	// Slower: the old, shorter interval is not waited out either.
	m.SetProfiles(Profiles{Active: time.Second, Jitter: -1})
	mark := len(n.sendTimes(pairA))
	c.Advance(5 * time.Second)
	if got := len(n.sendTimes(pairA)) - mark; got < 5 || got > 6 {
		t.Fatalf("sent %d probes in 5 s at 1 s, want 5 or 6", got)
	}
}
