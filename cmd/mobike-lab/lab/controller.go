package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// LabMobikedConfig is the mobiked configuration the lab runs with: uplink a
// (eth0) preferred over b (eth1), the gateway's other addresses as extra
// peer addresses of every connection, a short hold-down so tests and the demo see failback.
const LabMobikedConfig = `# mobike-lab: mobiked in mn (generated)
uplinks:
  - name: eth0
    priority: 300
  - name: eth1
    priority: 200
  - name: eth2 # the LAN (mobike-lab up --lan): never an uplink
    exclude: true
connections:
  # Every connection to the gateway (lab, and the scale benchmark's s1..sN)
  # gets the same peer addresses: prohibit rules are global in the kernel, so
  # connections sharing a gateway must agree on its addresses.
  - name: default
    peer_addresses: [10.4.0.2, "fd00:3::2", "fd00:4::2"]
    hold_down: 5s
  - name: lab
    peer_addresses: [10.4.0.2, "fd00:3::2", "fd00:4::2"]
    hold_down: 5s
# probes: the defaults (active 200ms, standby 1s, adaptive timeout: RFC 6298
# RTO with a 100ms floor, confirmation burst of 3, K = 3). A fixed
# "timeout: 250ms" here made the lab ~0.2 s slower to declare a dead pair
# down: the down verdict waits for the burst, spaced a third of the timeout.
# The fast profile of the benchmarks adds active_interval: 50ms and
# min_timeout: 25ms (docs/bench-r4/fast25.yaml).
probes:
  active_interval: 200ms
  standby_interval: 1s
  loss_threshold: 3
`

// MobikedSocket is the control socket of the lab's mobiked.
func (l *Lab) MobikedSocket() string { return filepath.Join(l.Dir, "mobiked.sock") }

// MobikedLog is the log file of the lab's mobiked.
func (l *Lab) MobikedLog() string { return filepath.Join(l.Dir, "mobiked.log") }

// MobikedConfigPath is where the lab writes mobiked's configuration.
func (l *Lab) MobikedConfigPath() string { return filepath.Join(l.Dir, "mobiked.yaml") }

// StartMobiked starts the mobiked binary bin in mn with the lab config (or
// config, when not empty) and waits for its control socket.
func (l *Lab) StartMobiked(ctx context.Context, bin, config string) (int, error) {
	return l.StartMobikedEnv(ctx, bin, config, nil)
}

// StartMobikedEnv is StartMobiked with extra environment variables (test
// hooks such as MOBIKED_TEST_STEER_KILL_AFTER).
func (l *Lab) StartMobikedEnv(ctx context.Context, bin, config string, env []string) (int, error) {
	return l.startMobiked(ctx, bin, config, false, env, nil)
}

// StartMobikedArgs is StartMobiked with extra flags after the lab's own
// (e.g. --web.config.file, --log-format json).
func (l *Lab) StartMobikedArgs(ctx context.Context, bin, config string, args []string) (int, error) {
	return l.startMobiked(ctx, bin, config, false, nil, args)
}

// StartMobikedZeroConfig starts mobiked in mn with no config file at all, as
// a new user would (zero-config: uplinks ranked by kind, peers from charon's
// connections, default probes); only the process flags point it at the
// lab's sockets.
func (l *Lab) StartMobikedZeroConfig(ctx context.Context, bin string) (int, error) {
	return l.startMobiked(ctx, bin, "", true, nil, nil)
}

func (l *Lab) startMobiked(ctx context.Context, bin, config string, zero bool, env, extra []string) (int, error) {
	if bin == "" {
		return 0, errors.New("lab: no mobiked binary")
	}
	if _, err := os.Stat(bin); err != nil {
		return 0, fmt.Errorf("lab: mobiked binary: %w (build it with `make build`)", err)
	}
	if pid := l.St.Pids["mobiked"]; pid > 0 && alive(pid) {
		return 0, fmt.Errorf("lab: mobiked already runs (pid %d)", pid)
	}
	if config == "" {
		config = LabMobikedConfig
	}
	var cfgArgs []string
	if zero {
		_ = os.Remove(l.MobikedConfigPath())
	} else {
		if err := os.WriteFile(l.MobikedConfigPath(), []byte(config), 0o600); err != nil {
			return 0, fmt.Errorf("lab: %w", err)
		}
		cfgArgs = []string{"--config", l.MobikedConfigPath()}
	}
	_ = os.Remove(l.MobikedSocket())
	out, err := os.OpenFile(l.MobikedLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("lab: %w", err)
	}
	defer out.Close()
	args := append([]string{"netns", "exec", l.NS("mn"), bin}, cfgArgs...)
	args = append(args, "--vici-socket", l.VICISocket("mn"),
		"--control-socket", l.MobikedSocket(), "--metrics-listen", "127.0.0.1:9816", "--log-level", "debug")
	args = append(args, extra...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("lab: start mobiked: %w", err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }()
	l.St.Pids["mobiked"] = pid
	if err := l.saveState(); err != nil {
		return pid, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(l.MobikedSocket()); err == nil {
			return pid, nil
		}
		if !alive(pid) {
			return 0, fmt.Errorf("lab: mobiked exited at start; see %s", l.MobikedLog())
		}
		if time.Now().After(deadline) {
			return pid, fmt.Errorf("lab: mobiked: no control socket after 10s; see %s", l.MobikedLog())
		}
		select {
		case <-ctx.Done():
			return pid, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// MobikedPID returns the pid of the lab's mobiked (0 when none runs).
func (l *Lab) MobikedPID() int {
	if pid := l.St.Pids["mobiked"]; pid > 0 && alive(pid) {
		return pid
	}
	return 0
}

// SignalMobiked sends a signal to the lab's mobiked (e.g. SIGHUP: reload).
func (l *Lab) SignalMobiked(sig syscall.Signal) error {
	pid := l.MobikedPID()
	if pid == 0 {
		return errors.New("lab: mobiked does not run")
	}
	return syscall.Kill(pid, sig)
}

// WriteMobikedConfig replaces mobiked's config file (for a reload).
func (l *Lab) WriteMobikedConfig(config string) error {
	if err := os.WriteFile(l.MobikedConfigPath(), []byte(config), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// StopMobiked stops the lab's mobiked by its recorded pid.
func (l *Lab) StopMobiked() error {
	pid := l.St.Pids["mobiked"]
	if pid == 0 {
		return errors.New("lab: no mobiked recorded")
	}
	stopPid(pid, inNamespaces(l.Name))
	delete(l.St.Pids, "mobiked")
	return l.saveState()
}
