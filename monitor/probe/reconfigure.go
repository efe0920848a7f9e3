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
	for _, pr := range m.probers {
		if pr.stopped {
			continue
		}
		d := time.Duration(m.rnd.Float64() * m.prof.Jitter * float64(m.prof.Interval(pr.profile)))
		m.scheduleTickLocked(pr, d)
	}
	m.log.Info("probe profiles changed", "active", m.prof.Active, "standby", m.prof.Standby,
		"metered_standby", m.prof.MeteredStandby, "timeout", m.prof.Timeout)
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
	for _, t := range m.owned {
		if t.method == mobike.ProbeSTAMP {
			t.stampKey = bytes.Clone(key)
		}
	}
	for _, pr := range m.probers {
		if pr.method == mobike.ProbeSTAMP && !pr.stopped {
			m.closeEndpointLocked(pr)
		}
	}
}
