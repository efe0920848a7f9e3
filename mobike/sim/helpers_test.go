package sim_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/mobike/sim"
	"github.com/mobiked/mobiked/policy"
)

var update = flag.Bool("update", false, "rewrite the golden trace files in testdata/")

// Addresses of the standard laptop topology (lab-notes.md).
const (
	ethA  = "10.1.0.2"
	wlanA = "10.2.0.2"
	wwanA = "10.5.0.2"
	peer1 = "10.3.0.2"
	peer2 = "10.4.0.2"
	eth6  = "2001:db8:1::2"
	peer6 = "2001:db8:3::2"
)

type topo struct {
	eth, wlan, wwan bool
	v6              bool // eth also has IPv6
	pol             policy.Settings
	seed            uint64
}

// laptop builds a world with the requested uplinks (ethernet metric 100,
// wlan 200, wwan 300) and charon connection "office" to peer1.
func laptop(t *testing.T, tp topo) *sim.World {
	t.Helper()
	w := sim.New(sim.Options{Seed: tp.seed + 1, Policy: tp.pol})
	if tp.eth {
		s := sim.UplinkSpec{Name: "eth0", Kind: mobike.KindEthernet, Addrs: []string{ethA + "/24"}, Gateways: []string{"10.1.0.1"}, Metric: 100, Latency: 10 * time.Millisecond}
		if tp.v6 {
			s.Addrs = append(s.Addrs, eth6+"/64")
			s.Gateways = append(s.Gateways, "2001:db8:1::1")
		}
		w.AddUplink(s)
	}
	if tp.wlan {
		w.AddUplink(sim.UplinkSpec{Name: "wlan0", Kind: mobike.KindWLAN, Addrs: []string{wlanA + "/24"}, Gateways: []string{"10.2.0.1"}, Metric: 200, Latency: 30 * time.Millisecond})
	}
	if tp.wwan {
		w.AddUplink(sim.UplinkSpec{Name: "wwan0", Kind: mobike.KindWWAN, Addrs: []string{wwanA + "/24"}, Gateways: []string{"10.5.0.1"}, Metric: 300, Latency: 60 * time.Millisecond})
	}
	return w
}

func checkGolden(t *testing.T, w *sim.World) {
	t.Helper()
	path := filepath.Join("testdata", t.Name()+".golden")
	got := w.Trace()
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden: %v (run with -update)", err)
	}
	want := string(b)
	if got == want {
		return
	}
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, x string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			x = wl[i]
		}
		if g != x {
			t.Fatalf("trace differs from %s at line %d:\n got: %s\nwant: %s\n(run with -update to accept)", path, i+1, g, x)
		}
	}
}

func wantPair(t *testing.T, w *sim.World, conn, want string) {
	t.Helper()
	if got := w.Charon.PairOf(conn); got != want {
		t.Errorf("%s is on %q, want %q\ntrace:\n%s", conn, got, want, tail(w.Trace(), 40))
	}
}

func pair(l, r string) string { return l + "->" + r }

func tail(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// count counts trace lines containing sub.
func count(w *sim.World, sub string) int {
	n := 0
	for _, l := range strings.Split(w.Trace(), "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func sec(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }

// lastTime returns the time of the last trace line containing sub before
// the line index limit (-1: any), and that line's index; -1 when none.
func lastTime(t *testing.T, w *sim.World, sub string, limit int) (time.Duration, int) {
	t.Helper()
	ls := strings.Split(w.Trace(), "\n")
	if limit < 0 || limit > len(ls) {
		limit = len(ls)
	}
	for i := limit - 1; i >= 0; i-- {
		if strings.Contains(ls[i], sub) {
			var s float64
			if _, err := fmt.Sscanf(strings.TrimSpace(ls[i]), "%fs", &s); err != nil {
				t.Fatalf("bad trace line %q: %v", ls[i], err)
			}
			return sec(s), i
		}
	}
	return 0, -1
}

// checkHoldDown asserts that the last steer of conn to p came at least hold
// after p last changed state (it had been stably operational since).
func checkHoldDown(t *testing.T, w *sim.World, conn, p string, hold time.Duration) {
	t.Helper()
	st, i := lastTime(t, w, "steer-requested "+conn+" ", -1)
	if i < 0 {
		t.Fatal("no steer")
	}
	op, j := lastTime(t, w, "path "+p+" ", i)
	if j < 0 {
		t.Fatal("pair never changed state")
	}
	if st-op < hold {
		t.Errorf("steered at %s, %s after %s last changed state; hold-down is %s", st, st-op, p, hold)
	}
}
