package depcheck

import "testing"

func TestBanned(t *testing.T) {
	for _, d := range []string{"net", "log/slog", "golang.org/x/sys/unix", "github.com/vishvananda/netlink", "github.com/strongswan/govici/vici", "github.com/prometheus/client_golang/prometheus"} {
		if !Banned(d) {
			t.Errorf("%s not banned", d)
		}
	}
	for _, d := range []string{"net/netip", "fmt", "github.com/mobiked/mobiked/policy"} {
		if Banned(d) {
			t.Errorf("%s banned", d)
		}
	}
}
