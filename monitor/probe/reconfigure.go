package probe

import (
	"bytes"
	"time"

	"github.com/mobiked/mobiked/mobike"
)

// Runtime reconfiguration (config reload). Kept apart from the manager's
// machinery: it only goes through the manager's lock and its scheduling and
// endpoint helpers.

// SetProfiles changes the pacing and timeouts of every prober (config
// reload). Each running prober's next probe is rescheduled within a jittered
// fraction of its profile's new interval, so a shorter interval takes effect
// at once and a longer one does not wait out the old one. Statistics are
// kept.
func (m *Manager) SetProfiles(p Profiles) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.prof = p.withDefaults()
	now := m.clock.Now()
	for _, pr := range m.probers {
		if pr.stopped {
			continue
		}
		w := time.Duration(m.prof.Jitter * float64(m.prof.Interval(pr.profile)) / 2)
		m.scheduleTickLocked(pr, now.Add(w), w, now)
		m.requeueLocked(pr)
	}
	m.armLocked(now)
	m.log.Info("probe profiles changed", "active", m.prof.Active, "standby", m.prof.Standby,
		"metered_standby", m.prof.MeteredStandby, "timeout", m.prof.Timeout,
		"min_timeout", m.prof.MinTimeout, "max_timeout", m.prof.MaxTimeout)
}

// SetSTAMPKey changes the key of authenticated STAMP probes (empty:
// unauthenticated mode). Running STAMP probers reopen their sessions with
// the new key at their next probe.
func (m *Manager) SetSTAMPKey(key []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for _, tr := range m.transports {
		if t, ok := tr.(*netTransport); ok && t.method == mobike.ProbeSTAMP {
			t.mu.Lock()
			t.stampKey = bytes.Clone(key)
			t.mu.Unlock()
		}
	}
	for _, pr := range m.probers {
		if pr.method == mobike.ProbeSTAMP && !pr.stopped {
			m.closeEndpointLocked(pr)
		}
	}
}
