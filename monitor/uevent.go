package monitor

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Uevent is what the monitor uses from /sys/class/net/NAME/uevent.
type Uevent struct {
	Interface string // INTERFACE=
	IfIndex   int    // IFINDEX=, 0 when absent or malformed
	DevType   string // DEVTYPE= ("wlan", "wwan", "bridge", "vlan", ...)
}

// maxUevent bounds what ParseUevent looks at; a real uevent file of a network
// interface is well under 1 KiB.
const maxUevent = 16 << 10

// ParseUevent decodes the KEY=VALUE lines of a sysfs uevent file. Unknown
// keys and malformed lines are skipped; the first occurrence of a key wins.
func ParseUevent(data []byte) Uevent {
	if len(data) > maxUevent {
		data = data[:maxUevent]
	}
	var u Uevent
	var haveIf, haveIdx, haveType bool
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		k, v, ok := bytes.Cut(line, []byte{'='})
		if !ok {
			continue
		}
		switch string(k) {
		case "INTERFACE":
			if !haveIf {
				u.Interface, haveIf = string(v), true
			}
		case "IFINDEX":
			if !haveIdx {
				haveIdx = true
				if n, err := strconv.Atoi(string(v)); err == nil && n > 0 {
					u.IfIndex = n
				}
			}
		case "DEVTYPE":
			if !haveType {
				u.DevType, haveType = strings.ToLower(string(v)), true
			}
		}
	}
	return u
}

// SysfsKind reads what sysfs says about a link: DEVTYPE and whether it is
// a wireless device. sysfs shows the network namespace it was mounted in, so
// the answer is used only when the uevent's IFINDEX is the link's index
// (otherwise another namespace's link of the same name would be read); ok is
// false then, or when the files cannot be read.
type SysfsKind func(name string, index int) (devType string, wireless, ok bool)

// ReadSysfs is the SysfsKind reading /sys/class/net.
func ReadSysfs(name string, index int) (devType string, wireless, ok bool) {
	return readSysfsAt("/sys/class/net", name, index)
}

func readSysfsAt(root, name string, index int) (devType string, wireless, ok bool) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return "", false, false
	}
	dir := filepath.Join(root, name)
	data, err := os.ReadFile(filepath.Join(dir, "uevent"))
	if err != nil {
		return "", false, false
	}
	u := ParseUevent(data)
	if u.IfIndex != index || (u.Interface != "" && u.Interface != name) {
		return "", false, false
	}
	for _, sub := range []string{"wireless", "phy80211"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err == nil {
			wireless = true
		}
	}
	return u.DevType, wireless, true
}
