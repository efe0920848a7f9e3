package main

import (
	"context"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
)

// notifyReady tells systemd (Type=notify) that mobiked is up: its control
// socket and metrics listener are bound and the decision loop runs. Without
// $NOTIFY_SOCKET (not under systemd) it does nothing.
func (d *daemon) notifyReady() {
	if ok, err := sddaemon.SdNotify(false, sddaemon.SdNotifyReady); err != nil {
		d.log.Warn("sd_notify READY", "err", err)
	} else if ok {
		d.log.Debug("told systemd we are ready")
	}
}

// notifyStopping tells systemd that mobiked is shutting down.
func (d *daemon) notifyStopping() {
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
}

// watchdog pings systemd's watchdog (WatchdogSec=) at half its interval, but
// only while the decision loop answers: a wedged loop stops the pings and
// systemd restarts mobiked. charon being down does not stop them (liveness is
// mobiked's own; readiness, /readyz, is what depends on charon).
func (d *daemon) watchdog(ctx context.Context) {
	every, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		d.log.Warn("systemd watchdog", "err", err)
		return
	}
	if every <= 0 {
		return
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.alive(ctx); err != nil {
				d.log.Error("watchdog: not pinging systemd", "err", err)
				continue
			}
			_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyWatchdog)
		}
	}
}
