package vici

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"
	"github.com/vishvananda/netlink"

	"github.com/mobiked/mobiked/cmd/mobike-lab/lab"
	"github.com/mobiked/mobiked/deploy"
	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/vici/steer"
	"github.com/mobiked/mobiked/vici/vicitest"
)

var (
	mnA  = netip.MustParseAddr("10.1.0.2")
	mnB  = netip.MustParseAddr("10.2.0.2")
	gwA1 = netip.MustParseAddr("10.3.0.2")
	gwA2 = netip.MustParseAddr("10.4.0.2")
	rA   = netip.MustParseAddr("10.1.0.1")
	rB   = netip.MustParseAddr("10.2.0.1")
	mnA6 = netip.MustParseAddr("fd00:1::2")
	mnB6 = netip.MustParseAddr("fd00:2::2")
	rA6  = netip.MustParseAddr("fd00:1::1")
	rB6  = netip.MustParseAddr("fd00:2::1")
	// The gateway's IPv6 addresses, announced to mn in ADDITIONAL_IP6_ADDRESS:
	// pinning a pair must prohibit them too (the Trap in lab-notes.md).
	gwV6 = []netip.Addr{netip.MustParseAddr("fd00:3::2"), netip.MustParseAddr("fd00:4::2")}
)

// extraSAs is how many extra IKE_SAs the event-load test starts (each route
// change then moves 1+extraSAs SAs).
const extraSAs = 40

// rawRecorder keeps raw messages from a separate VICI session, to refresh
// testdata/recorded with -update.
type rawRecorder struct {
	s  *govici.Session
	ch chan govici.Event
	mu sync.Mutex
	// got holds up to two messages per event name.
	got  map[string][]recorded
	done chan struct{}
}

func newRecorder(t *testing.T, socket string) *rawRecorder {
	s, err := govici.NewSession(govici.WithSocketPath(socket))
	if err != nil {
		t.Fatal(err)
	}
	r := &rawRecorder{s: s, ch: make(chan govici.Event, 1<<16), got: map[string][]recorded{}, done: make(chan struct{})}
	s.NotifyEvents(r.ch)
	if err := s.Subscribe(append([]string{"list-sa", "list-conn"}, saEventNames...)...); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		for ev := range r.ch {
			key := ev.Name
			r.mu.Lock()
			if len(r.got[key]) < 2 {
				r.got[key] = append(r.got[key], recorded{Event: ev.Name, Msg: vicitest.FromGovici(ev.Message)})
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *rawRecorder) listings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cmd := range []string{"list-sas", "list-conns"} {
		if _, err := r.s.Call(ctx, cmd, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *rawRecorder) close(t *testing.T) {
	r.s.Close()
	<-r.done
	if !*update {
		return
	}
	dir := filepath.Join("testdata", "recorded")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, recs := range r.got {
		for i, rec := range recs {
			b, err := json.MarshalIndent(rec, "", " ")
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, fmt.Sprintf("%s-%d.json", key, i+1))
			if err := os.WriteFile(f, append(b, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if err := os.WriteFile(golden, []byte(render(rec.Event, rec.Msg.Govici())), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("recorded %d kinds of charon 5.9.8 messages into %s", len(r.got), dir)
}

// labEvents is the single reader of the client's events during the lab test.
type labEvents struct {
	ch <-chan mobike.Event
}

// until reads events until pred accepts one, or fails after d.
func (e labEvents) until(t *testing.T, d time.Duration, what string, pred func(mobike.Event) bool) mobike.Event {
	t.Helper()
	tm := time.NewTimer(d)
	defer tm.Stop()
	for {
		select {
		case ev, ok := <-e.ch:
			if !ok {
				t.Fatalf("events closed while waiting for %s", what)
			}
			if pred(ev) {
				return ev
			}
		case <-tm.C:
			t.Fatalf("no %s within %s", what, d)
		}
	}
}

func (e labEvents) drain() {
	for {
		select {
		case <-e.ch:
		default:
			return
		}
	}
}

func kernelSnapshot(t *testing.T, ctx context.Context, l *lab.Lab) string {
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "rule"}, {"ip", "-6", "rule"}, {"ip", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"},
	} {
		out, err := l.Exec(ctx, "mn", argv...)
		if err != nil {
			t.Fatalf("%v: %v %s", argv, err, out)
		}
		// charon's own table 220 and kernel-libipsec's TUN routes change
		// with every move (throw routes for the peer address): not ours.
		for _, line := range strings.SplitAfter(string(out), "\n") {
			// IPv6 link-local addresses finish DAD after the lab is up.
			if !strings.Contains(line, "table 220") && !strings.Contains(line, "ipsec0") && !strings.Contains(line, "fe80::") {
				b.WriteString(line)
			}
		}
	}
	return b.String()
}

// swanctlSA is an IKE_SA as `swanctl --list-sas` prints it.
type swanctlSA struct {
	Conn          string
	ID            uint32
	State         string
	Local, Remote netip.AddrPort
}

var (
	reSAHead   = regexp.MustCompile(`^(\S+): #(\d+), (\w+), IKEv2`)
	reSALocal  = regexp.MustCompile(`^\s+local\s+'[^']*' @ (\S+)\[(\d+)\]`)
	reSARemote = regexp.MustCompile(`^\s+remote\s+'[^']*' @ (\S+)\[(\d+)\]`)
)

func swanctlSAs(t *testing.T, ctx context.Context, l *lab.Lab) []swanctlSA {
	out, err := l.Exec(ctx, "mn", "swanctl", "--list-sas")
	if err != nil {
		t.Fatalf("swanctl --list-sas: %v %s", err, out)
	}
	var sas []swanctlSA
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if m := reSAHead.FindStringSubmatch(line); m != nil {
			id, _ := strconv.Atoi(m[2])
			sas = append(sas, swanctlSA{Conn: m[1], ID: uint32(id), State: m[3]})
			continue
		}
		if len(sas) == 0 {
			continue
		}
		cur := &sas[len(sas)-1]
		for _, x := range []struct {
			re *regexp.Regexp
			ap *netip.AddrPort
		}{{reSALocal, &cur.Local}, {reSARemote, &cur.Remote}} {
			if m := x.re.FindStringSubmatch(line); m != nil {
				a, err1 := netip.ParseAddr(m[1])
				p, err2 := strconv.Atoi(m[2])
				if err1 == nil && err2 == nil {
					*x.ap = netip.AddrPortFrom(a, uint16(p))
				}
			}
		}
	}
	slices.SortFunc(sas, func(a, b swanctlSA) int { return int(a.ID) - int(b.ID) })
	return sas
}

func countLog(t *testing.T, l *lab.Lab, substr string) int {
	b, err := os.ReadFile(l.CharonLog("mn"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), substr)
}

// TestLab runs the adapter and the steerer against real charon 5.9.8 in the
// lab (recipe B): local and remote steering confirmed by ike-update with a
// 10 ms tunnel ping, event load, charon restart, and a clean kernel after
// Cleanup. With -update it also re-records testdata/recorded.
func TestLab(t *testing.T) {
	lab.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Name: "hv1", Controller: true, ControllerConf: deploy.MobikedConf,
		DPD: 30 * time.Second, ExtraConns: extraSAs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(l.CharonLog("mn")); err == nil {
				_ = os.WriteFile(filepath.Join(os.TempDir(), "hv1-mn-charon.log"), b, 0o644)
				t.Logf("mn charon log saved to %s", filepath.Join(os.TempDir(), "hv1-mn-charon.log"))
			}
		}
		if err := l.Close(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	rec := newRecorder(t, l.VICISocket("mn"))
	before := kernelSnapshot(t, ctx, l)

	c := New(Options{Socket: l.VICISocket("mn"), Resync: -1})
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(runCtx) }()
	defer func() { stopRun(); <-runDone }()
	ev := labEvents{ch: c.Events()}
	list := ev.until(t, 10*time.Second, "initial list", func(e mobike.Event) bool { _, ok := e.(mobike.EvSAList); return ok }).(mobike.EvSAList)
	if len(list.SAs) != 1 || list.SAs[0].Conn != "lab" || list.SAs[0].State != mobike.IKEEstablished ||
		!list.SAs[0].Initiator || list.SAs[0].Local.Addr() != mnA || list.SAs[0].Remote.Addr() != gwA1 || len(list.SAs[0].VIPs) != 1 {
		t.Fatalf("initial SA list %+v", list.SAs)
	}
	rec.listings(t)

	// The steerer runs in mn with a netlink handle created there.
	var h *netlink.Handle
	if err := lab.InNetNS(l.NS("mn"), func() error { h, err = netlink.NewHandle(); return err }); err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	idx := map[string]int{}
	for _, n := range []string{"eth0", "eth1"} {
		ln, err := h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		idx[n] = ln.Attrs().Index
	}
	st, err := steer.New(steer.Options{Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	ups := []mobike.DesiredUplink{
		{Name: "a", LinkIdx: idx["eth0"], Local: []netip.Addr{mnA, mnA6}, Gateways: []netip.Addr{rA, rA6}},
		{Name: "b", LinkIdx: idx["eth1"], Local: []netip.Addr{mnB, mnB6}, Gateways: []netip.Addr{rB, rB6}},
	}
	// act pins (local, remote) and prohibits every other gateway address.
	act := func(local, remote netip.Addr) mobike.DesiredGroup {
		a := mobike.DesiredGroup{Name: "lab", Members: []string{"lab"}, Pair: mobike.Pair{Local: local, Remote: remote}}
		for _, g := range []netip.Addr{gwA1, gwA2, gwV6[0], gwV6[1]} {
			if g != remote {
				a.Prohibit = append(a.Prohibit, g)
			}
		}
		switch local {
		case mnA:
			a.LinkIdx, a.Uplink, a.Nexthop = idx["eth0"], "a", rA
		case mnA6:
			a.LinkIdx, a.Uplink, a.Nexthop = idx["eth0"], "a", rA6
		case mnB:
			a.LinkIdx, a.Uplink, a.Nexthop = idx["eth1"], "b", rB
		default:
			a.LinkIdx, a.Uplink, a.Nexthop = idx["eth1"], "b", rB6
		}
		return a
	}
	apply := func(g mobike.DesiredGroup) error {
		failed, err := st.Set(mobike.Desired{Uplinks: ups, Groups: []mobike.DesiredGroup{g}})
		if len(failed) > 0 && err == nil {
			err = fmt.Errorf("groups %v failed", failed)
		}
		return err
	}
	// steerTo applies a steer and waits for the lab SA's confirmation.
	steerTo := func(t *testing.T, a mobike.DesiredGroup) time.Duration {
		t.Helper()
		t0 := time.Now()
		if err := apply(a); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		if _, err := WaitIKEUpdate(wctx, c.Events(), "lab", a.Pair, nil); err != nil {
			sas, _ := c.ListSAs(ctx)
			t.Fatalf("steer to %s not confirmed: %v (SAs now %+v)", a.Pair, err, sas)
		}
		return time.Since(t0)
	}
	vip := list.SAs[0].VIPs[0]
	// Pin the current pair first (prohibit the gateway's second address, the
	// Trap in lab-notes.md); nothing moves.
	if err := apply(act(mnA, gwA1)); err != nil {
		t.Fatal(err)
	}

	t.Run("LocalSteer", func(t *testing.T) {
		const moves = 6
		pingDone := make(chan lab.PingResult, 1)
		go func() {
			r, err := l.PingFrom(ctx, vip, 500, 10*time.Millisecond) // covers the 6 moves (~4 s)
			if err != nil {
				t.Errorf("ping: %v", err)
			}
			pingDone <- r
		}()
		time.Sleep(500 * time.Millisecond) // let the ping run before the first move
		var lat []time.Duration
		for i := range moves {
			local := mnB
			if i%2 == 1 {
				local = mnA
			}
			lat = append(lat, steerTo(t, act(local, gwA1)))
			time.Sleep(500 * time.Millisecond)
		}
		r := <-pingDone
		lost := r.Sent - r.Received
		t.Logf("local steer: %d moves, ike-update latency %v; tunnel ping 10 ms: sent %d received %d lost %d, longest gap %v",
			moves, lat, r.Sent, r.Received, lost, r.LongestGap)
		if lost > 2*moves {
			t.Errorf("lost %d pings over %d moves, want at most 2 per move", lost, moves)
		}
	})

	t.Run("RemoteSteer", func(t *testing.T) {
		defer func() {
			_ = l.Impair(ctx, "gw1", lab.Impairment{Kind: lab.Restore})
			_ = l.Impair(ctx, "gw2", lab.Impairment{Kind: lab.Restore})
		}()
		for _, step := range []struct {
			dead, to netip.Addr
			hole     string
		}{{gwA1, gwA2, "gw1"}, {gwA2, gwA1, "gw2"}} {
			for _, p := range []string{"gw1", "gw2"} {
				if err := l.Impair(ctx, p, lab.Impairment{Kind: lab.Restore}); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Impair(ctx, step.hole, lab.Impairment{Kind: lab.Blackhole}); err != nil {
				t.Fatal(err)
			}
			d := steerTo(t, act(mnA, step.to))
			r, err := l.PingFrom(ctx, vip, 50, 10*time.Millisecond)
			if err != nil || r.Received < 45 {
				t.Errorf("tunnel ping after steering to %s: %+v %v", step.to, r, err)
			}
			t.Logf("remote steer to %s (%s blackholed): confirmed after %v, then ping %d/%d", step.to, step.dead, d, r.Received, r.Sent)
		}
	})

	t.Run("DualStackSteer", func(t *testing.T) {
		// IKE and ESP-in-UDP over IPv6 on uplink b, then back to IPv4 on a.
		for _, p := range []mobike.Pair{{Local: mnB6, Remote: gwV6[0]}, {Local: mnA, Remote: gwA1}} {
			d := steerTo(t, act(p.Local, p.Remote))
			r, err := l.PingFrom(ctx, vip, 50, 10*time.Millisecond)
			if err != nil || r.Received < 45 {
				t.Errorf("tunnel ping after steering to %s: %+v %v", p, r, err)
			}
			t.Logf("steer to %s: confirmed after %v, then ping %d/%d", p, d, r.Received, r.Sent)
		}
	})

	t.Run("IKERekey", func(t *testing.T) {
		sas, err := c.ListSAs(ctx)
		if err != nil || len(sas) == 0 {
			t.Fatalf("%v %v", sas, err)
		}
		m := govici.NewMessage()
		_ = m.Set("ike", "lab")
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		if _, err := rec.s.Call(cctx, "rekey", m); err != nil {
			t.Fatal(err)
		}
		e := ev.until(t, 10*time.Second, "ike-rekey", func(e mobike.Event) bool { _, ok := e.(mobike.EvSARekey); return ok }).(mobike.EvSARekey)
		if e.OldID != sas[0].UniqueID || e.New.UniqueID == e.OldID || e.New.Conn != "lab" || e.New.Local.Addr() != mnA {
			t.Errorf("rekey %+v (old SA %+v)", e, sas[0])
		}
	})

	t.Run("EventLoad", func(t *testing.T) {
		for i := 1; i <= extraSAs; i++ {
			if err := c.Initiate(ctx, fmt.Sprintf("s%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		tInit := time.Now()
		deadline := time.Now().Add(60 * time.Second)
		for {
			sas, err := c.ListSAs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, s := range sas {
				if s.State == mobike.IKEEstablished {
					n++
				}
			}
			if n == extraSAs+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d SAs established", n, extraSAs+1)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("event load: %d extra SAs initiated over one VICI session (timeout -1) and established in %v", extraSAs, time.Since(tInit))
		ev.drain()
		startUpd := c.Stats().Events["ike-update"]
		startLog := countLog(t, l, "local endpoint changed from")
		// Move everything back and forth for ~10 s without waiting for
		// each confirmation.
		var moves int
		t0 := time.Now()
		var got int
		for time.Since(t0) < 10*time.Second {
			local := mnB
			if moves%2 == 1 {
				local = mnA
			}
			if err := apply(act(local, gwA1)); err != nil {
				t.Fatal(err)
			}
			moves++
			tm := time.After(400 * time.Millisecond)
		loop:
			for {
				select {
				case e := <-c.Events():
					if _, ok := e.(mobike.EvIKEUpdate); ok {
						got++
					}
				case <-tm:
					break loop
				}
			}
		}
		// Let the last move finish, then compare with charon's own log.
		quiet := time.After(2 * time.Second)
	settle:
		for {
			select {
			case e := <-c.Events():
				if _, ok := e.(mobike.EvIKEUpdate); ok {
					got++
				}
			case <-quiet:
				break settle
			}
		}
		logN := countLog(t, l, "local endpoint changed from") - startLog
		vici := int(c.Stats().Events["ike-update"] - startUpd)
		t.Logf("event load: %d moves of %d SAs in %v: charon logged %d endpoint changes, adapter received %d ike-update, delivered %d EvIKEUpdate",
			moves, extraSAs+1, 10*time.Second, logN, vici, got)
		if logN == 0 || vici != logN || got != logN {
			t.Errorf("ike-update accounting: charon log %d, received %d, delivered %d", logN, vici, got)
		}
	})

	if err := st.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := kernelSnapshot(t, ctx, l); got != before {
		t.Errorf("kernel after Cleanup differs from before: %s", lineDiff(before, got))
	}

	t.Run("CharonRestart", func(t *testing.T) {
		if err := l.StopCharon(ctx, "mn"); err != nil {
			t.Fatal(err)
		}
		ev.until(t, 10*time.Second, "charon down", func(e mobike.Event) bool { u, ok := e.(mobike.EvCharon); return ok && !u.Up })
		// Time from charon's socket accepting connections again to the
		// client's session being up, polled at 1 ms aside (StartCharon returns after the socket is
		// there, by which time the client may already be connected).
		if c.Connected() {
			t.Fatal("still connected after charon stopped")
		}
		measured := make(chan time.Duration, 1)
		go func() {
			var appeared time.Time
			for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
				if appeared.IsZero() {
					// A stale socket file may survive the kill: "appeared"
					// is when charon accepts connections again.
					if conn, err := net.Dial("unix", l.VICISocket("mn")); err == nil {
						appeared = time.Now()
						conn.Close()
					}
				}
				if !appeared.IsZero() && c.Connected() {
					measured <- time.Since(appeared)
					return
				}
			}
			measured <- -1
		}()
		if err := l.StartCharon(ctx, "mn"); err != nil {
			t.Fatal(err)
		}
		ev.until(t, 5*time.Second, "charon up", func(e mobike.Event) bool { u, ok := e.(mobike.EvCharon); return ok && u.Up })
		reconnect := <-measured
		if reconnect < 0 {
			t.Fatal("socket or session never seen")
		}
		if reconnect > 2*time.Second {
			t.Errorf("reconnected %v after charon's socket came back, want <= 2s", reconnect)
		}
		l0 := ev.until(t, 5*time.Second, "resync", func(e mobike.Event) bool { _, ok := e.(mobike.EvSAList); return ok }).(mobike.EvSAList)
		if len(l0.SAs) != 0 {
			t.Errorf("fresh charon: resync lists %d SAs", len(l0.SAs))
		}
		if err := c.Initiate(ctx, "lab"); err != nil {
			t.Fatal(err)
		}
		ev.until(t, 15*time.Second, "lab up", func(e mobike.Event) bool {
			u, ok := e.(mobike.EvSAUp)
			return ok && u.SA.Conn == "lab" && u.SA.State == mobike.IKEEstablished
		})
		sas, err := c.ListSAs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var mine []swanctlSA
		for _, s := range sas {
			mine = append(mine, swanctlSA{Conn: s.Conn, ID: s.UniqueID, State: s.State.String(), Local: s.Local, Remote: s.Remote})
		}
		theirs := swanctlSAs(t, ctx, l)
		if fmt.Sprint(mine) != fmt.Sprint(theirs) {
			t.Errorf("adapter view %v\nswanctl --list-sas %v", mine, theirs)
		}
		t.Logf("charon restart: reconnected %v after the socket came back; SA view %v", reconnect, mine)
	})

	rec.close(t)
}

// lineDiff lists lines only in a (-) or only in b (+).
func lineDiff(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		switch {
		case n > 0:
			out = append(out, "- "+l)
		case n < 0:
			out = append(out, "+ "+l)
		}
	}
	slices.Sort(out)
	return "\n" + strings.Join(out, "\n")
}
