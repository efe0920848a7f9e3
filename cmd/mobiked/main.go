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
	"strconv"
	"strings"
	"syscall"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/mobiked/mobiked/cmd/internal/buildinfo"
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

// DefaultConfig is read when it exists and --config is not given; without
// it mobiked runs zero-config. An explicitly given file must exist.
var DefaultConfig = "/etc/mobiked/mobiked.yaml"

type flags struct {
	config        string
	logLevel      string
	logFormat     string
	viciSocket    string
	controlSocket string
	metricsListen string
	webConfig     string
	strongswanCfg string
	swanctlCfg    string
	cleanup       bool
	checkConfig   bool
	version       bool
}

func newFlagSet(f *flags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mobiked", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "YAML config file (default "+DefaultConfig+" when it exists, else zero-config)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text (logfmt) or json")
	fs.StringVar(&f.viciSocket, "vici-socket", "/var/run/charon.vici", "charon's VICI socket")
	fs.StringVar(&f.controlSocket, "control-socket", "", "control API socket (default from config, "+control.DefaultSocket+")")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "Prometheus listener host:port or :port (default from config, 127.0.0.1:9816; \"off\" disables)")
	fs.StringVar(&f.webConfig, "web.config.file", "", "exporter-toolkit web configuration (TLS, basic auth) for the metrics listener")
	fs.StringVar(&f.strongswanCfg, "strongswan-conf", "/etc/strongswan.conf", "charon's strongswan.conf, read by the checks of mobikectl doctor")
	fs.StringVar(&f.swanctlCfg, "swanctl-conf", "/etc/swanctl/swanctl.conf", "swanctl.conf, read by the checks of mobikectl doctor")
	fs.BoolVar(&f.cleanup, "cleanup", false, "remove every route and rule mobiked owns, then exit")
	fs.BoolVar(&f.checkConfig, "check-config", false, "check the config file and exit (status 2 on problems)")
	fs.BoolVar(&f.version, "version", false, "print the version and the VCS revision, then exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: mobiked [flags]\n\nThe strongSwan MOBIKE path controller. Policy lives in the config file;\nflags cover process concerns only.\n\nflags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// newLogger builds the daemon's logger (text is logfmt, json one object a
// line).
func newLogger(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	o := &slog.HandlerOptions{Level: level}
	switch format {
	case "text", "logfmt":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("bad --log-format %q (want text or json)", format)
}

// parseListen reads --metrics-listen and metrics.listen: "host:port", or
// ":port" for every address (as Prometheus exporters accept).
func parseListen(s string) (netip.AddrPort, error) {
	if p, ok := strings.CutPrefix(s, ":"); ok {
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil || port == 0 {
			return netip.AddrPort{}, fmt.Errorf("bad port %q", p)
		}
		return netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(port)), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err == nil && ap.Port() == 0 {
		err = errors.New("port 0")
	}
	return ap, err
}

func run(args []string, stdout, stderr io.Writer) int {
	var f flags
	fs := newFlagSet(&f, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mobiked: unexpected arguments %q\n", fs.Args())
		return exitConfig
	}
	if f.version {
		fmt.Fprintf(stdout, "mobiked %s\n", buildinfo.Read())
		return exitOK
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "mobiked: bad --log-level %q\n", f.logLevel)
		return exitConfig
	}
	log, err := newLogger(stderr, level, f.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "mobiked: %v\n", err)
		return exitConfig
	}
	explicit := false
	fs.Visit(func(fl *flag.Flag) { explicit = explicit || fl.Name == "config" })
	if !explicit {
		if _, err := os.Stat(DefaultConfig); err == nil {
			f.config = DefaultConfig
		}
	}

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
		for _, w := range cfg.Warnings() {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		fmt.Fprintf(stdout, "%s: ok\n", f.config)
		return exitOK
	}
	for _, w := range cfg.Warnings() {
		log.Warn("config", "warning", w.String())
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
// the STAMP key file, the metrics listener's web config). --check-config, start and SIGHUP's reload all use
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
		ap, err := parseListen(f.metricsListen)
		if err != nil {
			return nil, fmt.Errorf("mobiked: bad --metrics-listen %q: %w", f.metricsListen, err)
		}
		cfg.MetricsListen = ap
	}
	if f.webConfig != "" {
		if err := web.Validate(f.webConfig); err != nil {
			return nil, fmt.Errorf("mobiked: --web.config.file %s: %w", f.webConfig, err)
		}
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
	// An explicitly named file that does not exist is an error (a typo must
	// not silently run zero-config).
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
