// Command mobiked is the strongSwan MOBIKE path controller: it watches links
// and addresses, probes every local×remote address pair, ranks pairs by
// policy, steers charon onto the chosen pair through routes and rules, and
// confirms each move with VICI's ike-update.
//
// Flags cover process concerns only; policy lives in the YAML config (or
// zero-config defaults when there is none). SIGHUP reloads the config (a bad
// file keeps the old one). SIGTERM leaves mobiked's routes and rules in place,
// so the tunnel stays where it is; `mobiked --cleanup` removes them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/mobiked/mobiked/cmd/internal/control"
	"github.com/mobiked/mobiked/internal/safefile"
	"github.com/mobiked/mobiked/policy"
	"github.com/mobiked/mobiked/vici"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
	// exitRestart: the process must be restarted (VICI sessions stuck in
	// the library after close, vici.ErrStuck); systemd's Restart=on-failure
	// does it.
	exitRestart = 3
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type flags struct {
	config        string
	logLevel      string
	viciSocket    string
	controlSocket string
	metricsListen string
	cleanup       bool
	checkConfig   bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mobiked", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f flags
	fs.StringVar(&f.config, "config", "", "YAML config file (default: none, zero-config)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.viciSocket, "vici-socket", "/var/run/charon.vici", "charon's VICI socket")
	fs.StringVar(&f.controlSocket, "control-socket", "", "control API socket (default from config, "+control.DefaultSocket+")")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "Prometheus listener host:port (default from config, 127.0.0.1:9816; \"off\" disables)")
	fs.BoolVar(&f.cleanup, "cleanup", false, "remove every route and rule mobiked owns, then exit")
	fs.BoolVar(&f.checkConfig, "check-config", false, "check the config file and exit (status 2 on problems)")
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mobiked: unexpected arguments %q\n", fs.Args())
		return exitConfig
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "mobiked: bad --log-level %q\n", f.logLevel)
		return exitConfig
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if f.checkConfig && f.config == "" {
		fmt.Fprintln(stderr, "mobiked: --check-config needs --config FILE")
		return exitConfig
	}
	cfg, err := configure(f)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitConfig
	}
	if f.checkConfig {
		fmt.Fprintf(stdout, "%s: ok\n", f.config)
		return exitOK
	}
	if f.cleanup {
		if err := cleanup(cfg, log); err != nil {
			fmt.Fprintf(stderr, "mobiked: cleanup: %v\n", err)
			return exitFail
		}
		fmt.Fprintln(stdout, "mobiked: removed every route and rule it owned")
		return exitOK
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := newDaemon(f, cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFail
	}
	if err := d.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped", "err", err)
		if errors.Is(err, vici.ErrStuck) {
			return exitRestart
		}
		return exitFail
	}
	log.Info("stopped; routes and rules left in place (mobiked --cleanup removes them)")
	return exitOK
}

// configure is the one validation of start-up: it loads the config file,
// applies the flags' overrides and checks everything start-up would refuse
// for the configuration's sake (the policy's problems, the steerer's layout,
// the STAMP key file). --check-config, start and SIGHUP's reload all use
// it, so --check-config refuses exactly what start-up refuses (what remains
// are run-time failures: sockets in use, no netlink).
func configure(f flags) (*policy.Config, error) {
	cfg, err := loadConfig(f.config)
	if err != nil {
		return nil, err
	}
	if f.controlSocket != "" {
		if err := policy.CheckSocketPath(f.controlSocket); err != nil {
			return nil, fmt.Errorf("mobiked: bad --control-socket: %w", err)
		}
		cfg.ControlSocket = f.controlSocket
	}
	switch f.metricsListen {
	case "":
	case "off":
		cfg.MetricsListen = netip.AddrPort{}
	default:
		ap, err := netip.ParseAddrPort(f.metricsListen)
		if err != nil {
			return nil, fmt.Errorf("mobiked: bad --metrics-listen %q: %w", f.metricsListen, err)
		}
		cfg.MetricsListen = ap
	}
	if err := steerOptions(cfg, nil).Check(); err != nil {
		return nil, fmt.Errorf("mobiked: %s: steering: %w", cfgName(f.config), err)
	}
	if _, err := stampKey(cfg.Reflector); err != nil {
		return nil, fmt.Errorf("mobiked: %s: reflector.key: %w", cfgName(f.config), err)
	}
	return cfg, nil
}

func cfgName(path string) string {
	if path == "" {
		return "zero-config"
	}
	return path
}

// loadConfig reads and validates the config file; "" means zero-config. A
// path that is not a regular file, or a file over policy.MaxConfigSize, is
// refused before it is read.
func loadConfig(path string) (*policy.Config, error) {
	if path == "" {
		return policy.Default(), nil
	}
	data, err := safefile.ReadRegular(path, policy.MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("mobiked: read config: %w", err)
	}
	cfg, err := policy.Load(path, data)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}
