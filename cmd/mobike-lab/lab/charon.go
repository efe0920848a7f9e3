package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mobiked/mobiked/deploy"
)

// PSK is the lab's pre-shared key (lab only).
const PSK = "mobike-lab-psk-not-a-secret"

// ConformID is the identity of the MOBIKE conformance peer (mobike-conform);
// the gateway has a childless-capable connection "conform" for it.
const ConformID = "conform.lab"

const charonPlugins = "random kdf nonce aes sha1 sha2 hmac gcm pem pkcs1 x509 pubkey openssl curve25519 kernel-libipsec kernel-netlink socket-default vici updown"

// PluginDir is where Debian installs charon's plugins.
var PluginDir = "/usr/lib/ipsec/plugins"

// PluginPackages maps every plugin the lab's charons load to the Debian 12
// package that ships it. TestPluginPackages checks it against dpkg -S and the
// Makefile's package list, so a plugin whose package `make deps` does not
// install fails on the developer machine too, not only on a fresh one.
var PluginPackages = map[string]string{
	"random":          "libstrongswan",
	"kdf":             "libstrongswan",
	"nonce":           "libstrongswan",
	"aes":             "libstrongswan",
	"sha1":            "libstrongswan",
	"sha2":            "libstrongswan",
	"hmac":            "libstrongswan",
	"gcm":             "libstrongswan-standard-plugins",
	"pem":             "libstrongswan",
	"pkcs1":           "libstrongswan",
	"x509":            "libstrongswan",
	"pubkey":          "libstrongswan",
	"openssl":         "libstrongswan-standard-plugins",
	"curve25519":      "libstrongswan-extra-plugins",
	"kernel-libipsec": "libcharon-extra-plugins",
	"kernel-netlink":  "libstrongswan",
	"socket-default":  "strongswan-libcharon",
	"vici":            "strongswan-swanctl",
	"updown":          "strongswan-libcharon",
}

// Plugins is the list of plugins the lab's charons load.
func Plugins() []string { return strings.Fields(charonPlugins) }

// PluginFile is the shared object of a charon plugin.
func PluginFile(plugin string) string { return PluginFileIn(PluginDir, plugin) }

// PluginFileIn is PluginFile for another plugin directory.
func PluginFileIn(dir, plugin string) string {
	return filepath.Join(dir, "libstrongswan-"+plugin+".so")
}

// checkPlugins names the package of every lab plugin whose file is missing.
func checkPlugins() error {
	var missing, pkgs []string
	seen := map[string]bool{}
	for _, p := range Plugins() {
		if _, err := os.Stat(PluginFile(p)); err == nil {
			continue
		}
		missing = append(missing, p)
		if pkg := PluginPackages[p]; pkg != "" && !seen[pkg] {
			seen[pkg] = true
			pkgs = append(pkgs, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: charon plugins %s missing (Debian package %s; run `make deps`)",
		ErrNoStrongSwan, strings.Join(missing, ", "), strings.Join(pkgs, ", "))
}

// strongswanConf is node's strongswan.conf, laid out as Debian 12's: charon's
// section with strongswan.d/charon/*.conf included inside charon.plugins, and
// strongswan.d/*.conf included at the top level, where the docs tell users to
// put mobiked's settings (deploy.CharonConfPath).
func (l *Lab) strongswanConf(node string) string {
	return fmt.Sprintf(`# mobike-lab %s: charon in namespace %s (generated; Debian 12's layout)
charon {
  load = %s
  install_virtual_ip = yes
  filelog {
    lab {
      path = %s
      time_format = %%T
      time_add_ms = yes
      ike_name = yes
      default = 1
      ike = 2
      mgr = 1
      flush_line = yes
    }
  }
  plugins {
    vici {
      socket = unix://%s
    }
    include strongswan.d/charon/*.conf
  }
}

include strongswan.d/*.conf

swanctl {
  socket = unix://%s
}
`, l.Name, l.NS(node), charonPlugins, l.CharonLog(node), l.VICISocket(node), l.VICISocket(node))
}

func (l *Lab) swanctlConf(node string, o Options) string {
	dpd := o.DPD
	if dpd == 0 {
		dpd = 30 * time.Second
	}
	if node == "gw" {
		return fmt.Sprintf(`# mobike-lab %s: gateway (generated)
connections {
  lab {
    version = 2
    mobike = yes
    encap = yes
    proposals = aes128gcm16-prfsha256-x25519
    pools = labpool
    dpd_delay = 30s
    local {
      auth = psk
      id = gw@lab
    }
    remote {
      auth = psk
      id = %%any
    }
    children {
      lab {
        local_ts = 10.9.0.0/24
        esp_proposals = aes128gcm16
      }
    }
  }
  # the conformance peer (mobike-lab conform): childless allowed (RFC 6023)
  conform {
    version = 2
    mobike = yes
    proposals = aes128gcm16-aes256gcm16-prfsha256-x25519-ecp256, aes128-aes256-sha256-prfsha256-x25519-ecp256
    local {
      auth = psk
      id = gw@lab
    }
    remote {
      auth = psk
      id = %s
    }
    children {
      # proposed only when asked for; the tool never installs ESP. The remote
      # selector is not the peer's IKE address (kernel-libipsec refuses a
      # route that would catch IKE) nor the lab's VIP pool.
      conform {
        local_ts = 10.9.0.0/24
        remote_ts = 10.51.0.0/24
        esp_proposals = aes128gcm16
      }
    }
  }
}
pools {
  labpool {
    addrs = %s
  }
}
secrets {
  ike-lab {
    secret = "%s"
  }
}
`, l.Name, ConformID, VIPPool, PSK)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# mobike-lab %s: multihomed client (generated)\nconnections {\n", l.Name)
	for k := 1; k <= max(o.Conns, 1); k++ {
		// lab, and labK: another tunnel to the same gateway with its own
		// identity (so the gateway keeps both) and its own virtual IP.
		id := "mn@lab"
		if k > 1 {
			id = fmt.Sprintf("mn%d@lab", k)
		}
		fmt.Fprintf(&b, `  %s {
    version = 2
    remote_addrs = %s
    vips = 0.0.0.0
    mobike = yes
    encap = yes
    proposals = aes128gcm16-prfsha256-x25519
    dpd_delay = %ds
    local {
      auth = psk
      id = %s
    }
    remote {
      auth = psk
      id = gw@lab
    }
    children {
      %s {
        remote_ts = 10.9.0.0/24
        esp_proposals = aes128gcm16
      }
    }
  }
`, ConnName(k), GWAddr1, int(dpd/time.Second), id, ConnName(k))
	}
	for i := 1; i <= o.ExtraConns; i++ {
		fmt.Fprintf(&b, `  s%d {
    version = 2
    remote_addrs = %s
    mobike = yes
    encap = yes
    childless = force
    proposals = aes128gcm16-prfsha256-x25519
    dpd_delay = %ds
    local {
      auth = psk
      id = s%d@example.org
    }
    remote {
      auth = psk
      id = gw@lab
    }
  }
`, i, GWAddr1, int(dpd/time.Second), i)
	}
	fmt.Fprintf(&b, `}
secrets {
  ike-lab {
    secret = "%s"
  }
}
`, PSK)
	return b.String()
}

// writeConfigs writes each charon node's strongswan.conf, strongswan.d/ and
// swanctl.conf into /etc/netns/NS/, where `ip netns exec` bind-mounts them
// over /etc. In controller mode mn's charon gets mobiked's settings exactly
// as the docs install them: the file at deploy.CharonConfPath (unless
// CharonDefaults).
func (l *Lab) writeConfigs(o Options) error {
	for _, node := range []string{"mn", "gw"} {
		etc := filepath.Join("/etc/netns", l.NS(node))
		for _, dir := range []string{"swanctl", "strongswan.d/charon"} {
			if err := os.MkdirAll(filepath.Join(etc, dir), 0o755); err != nil {
				return fmt.Errorf("lab: %w", err)
			}
		}
		if err := os.WriteFile(filepath.Join(etc, "strongswan.conf"), []byte(l.strongswanConf(node)), 0o644); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		if node == "mn" && o.Controller && !o.CharonDefaults {
			rel, ok := strings.CutPrefix(deploy.CharonConfPath, "/etc/")
			if !ok {
				return fmt.Errorf("lab: %s is not under /etc", deploy.CharonConfPath)
			}
			if err := os.WriteFile(filepath.Join(etc, rel), []byte(o.ControllerConf), 0o644); err != nil {
				return fmt.Errorf("lab: %w", err)
			}
		}
		if err := os.WriteFile(filepath.Join(etc, "swanctl", "swanctl.conf"), []byte(l.swanctlConf(node, o)), 0o600); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	return nil
}

// LoadConns gives mn's charon the lab's tunnel connections lab..labN
// (ConnName) and no others: the others' SAs are terminated, the swanctl.conf
// rewritten in place and reloaded (swanctl --load-conns unloads what the file
// no longer has).
func (l *Lab) LoadConns(ctx context.Context, n int) error {
	if n < 1 {
		return fmt.Errorf("lab: %d connections", n)
	}
	for k := n + 1; k <= l.St.Conns; k++ {
		if out, err := l.nsRun(ctx, "mn", "swanctl", "--terminate", "--ike", ConnName(k), "--timeout", "5"); err != nil {
			return fmt.Errorf("lab: terminate %s: %w (%s)", ConnName(k), err, lastLines(string(out), 2))
		}
	}
	dpd, err := time.ParseDuration(l.St.DPD)
	if err != nil {
		dpd = 0
	}
	o := Options{DPD: dpd, ExtraConns: l.St.Extra, Conns: n}
	f := filepath.Join("/etc/netns", l.NS("mn"), "swanctl", "swanctl.conf")
	// In place (same inode): the file is bind-mounted into mn's /etc.
	if err := os.WriteFile(f, []byte(l.swanctlConf("mn", o)), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if out, err := l.nsRun(ctx, "mn", "swanctl", "--load-conns"); err != nil {
		return fmt.Errorf("lab: load-conns: %w (%s)", err, lastLines(string(out), 2))
	}
	l.St.Conns = n
	return l.saveState()
}

// StartCharon starts charon in node's namespace with a private /run, waits for
// its VICI socket and loads the swanctl configuration.
func (l *Lab) StartCharon(ctx context.Context, node string) error {
	if pid := l.St.Pids["charon-"+node]; pid > 0 && alive(pid) {
		return fmt.Errorf("lab: charon in %s already runs (pid %d)", l.NS(node), pid)
	}
	_ = os.Remove(l.VICISocket(node))
	out, err := os.OpenFile(filepath.Join(l.Dir, node+"-charon.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer out.Close()
	cmd := exec.Command("ip", "netns", "exec", l.NS(node), "unshare", "-m", "sh", "-c",
		"mount -t tmpfs none /run && exec "+CharonBin)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: start charon in %s: %w", l.NS(node), err)
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }() // reap when it exits while we live
	l.St.Pids["charon-"+node] = pid
	if err := l.saveState(); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(l.VICISocket(node)); err == nil {
			break
		}
		if !alive(pid) {
			return fmt.Errorf("lab: charon in %s exited at start; see %s", l.NS(node), out.Name())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: charon in %s: no VICI socket after 10s", l.NS(node))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	var last error
	for i := 0; i < 50; i++ {
		if _, err := l.nsRun(ctx, node, "swanctl", "--load-all", "--noprompt"); err == nil {
			return nil
		} else {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("lab: load config in %s: %w", l.NS(node), last)
}

// StopCharon stops node's charon by the pid the lab recorded.
func (l *Lab) StopCharon(ctx context.Context, node string) error {
	pid := l.St.Pids["charon-"+node]
	if pid == 0 {
		return fmt.Errorf("lab: no charon recorded for %s", l.NS(node))
	}
	stopPid(pid, inNamespaces(l.Name))
	delete(l.St.Pids, "charon-"+node)
	_ = os.Remove(l.VICISocket(node))
	return l.saveState()
}

// CharonPID returns the recorded pid of node's charon (0 if none or dead).
func (l *Lab) CharonPID(node string) int {
	pid := l.St.Pids["charon-"+node]
	if pid > 0 && alive(pid) {
		return pid
	}
	return 0
}
