package lab

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel here has no netem, so the lab delays a path in user space: a
// "delay line" in the router. Policy routing sends every packet the router
// forwards to or from the path's link into a TUN device; a small forwarder
// (this file, run as its own process inside the router's namespace) reads
// each packet, holds it for the delay ± a uniform jitter and writes it back
// into the TUN device, where the kernel routes it on as if it had just
// arrived. Each direction is delayed once, so the path's RTT grows by twice
// the delay; jitter reorders packets, as netem's does.
//
//	mn ─eth0─► r: iif eth0 → table T: default dev dl-a ─► forwarder (+delay) ─► dl-a → main → eth2 ─► gw
//	gw ─eth2─► r: iif eth2, to 10.1.0.0/24 → table T ─► forwarder (+delay) ─► dl-a → main → eth0 ─► mn
//
// The router's own packets (neighbour discovery) are never delayed. The
// nftables impairments (loss, blackhole) still see the path's interface
// once per direction. Not supported: delay and NAT on the same path (the
// NAT decision is taken on the first pass, towards the TUN device).

// DelayLine describes the delay of one path.
type DelayLine struct {
	Delay  time.Duration `json:"delay"`  // added to each direction
	Jitter time.Duration `json:"jitter"` // uniform ± around Delay, per packet
	Pid    int           `json:"pid"`    // the forwarder process
}

// MaxDelay bounds a delay line's delay (and delay + jitter).
const MaxDelay = 10 * time.Second

// delayDev is the TUN device of a path's delay line in the router.
func delayDev(path string) string { return "dl-" + path }

// delayTable and delayPref are the routing table and rule priorities of a
// path's delay line (one band per path; the router has no other rules).
func delayTable(path string) int { return 200 + pathIndex(path) }

func delayPref(path string, k int) int { return 100 + 10*pathIndex(path) + k }

func pathIndex(path string) int {
	for i, p := range Paths {
		if p == path {
			return i
		}
	}
	return -1
}

// pathSubnets are the node-side subnets behind each router interface.
var pathSubnets = map[string][2]string{
	"a":   {"10.1.0.0/24", "fd00:1::/64"},
	"b":   {"10.2.0.0/24", "fd00:2::/64"},
	"gw1": {"10.3.0.0/24", "fd00:3::/64"},
	"gw2": {"10.4.0.0/24", "fd00:4::/64"},
}

// SetDelay puts a delay line of d ± jitter on path (replacing one already
// there); d = 0 removes it.
func (l *Lab) SetDelay(ctx context.Context, path string, d, jitter time.Duration) error {
	if _, ok := pathIf[path]; !ok {
		return fmt.Errorf("lab: unknown path %q (want a, b, gw1 or gw2)", path)
	}
	if d < 0 || jitter < 0 || jitter > d || d+jitter > MaxDelay {
		return fmt.Errorf("lab: delay %s ± %s: want 0 ≤ jitter ≤ delay, delay + jitter ≤ %s", d, jitter, MaxDelay)
	}
	if path == "b" && l.St.NATB || path == "a" && l.St.Meta["nat_a"] == true {
		return fmt.Errorf("lab: delay and NAT on the same path (%s) are not supported", path)
	}
	if err := l.clearDelay(ctx, path); err != nil {
		return err
	}
	if d == 0 {
		return l.saveState()
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("lab: delay line: %w", err)
	}
	dev := delayDev(path)
	if _, err := l.nsRun(ctx, "r", "ip", "tuntap", "add", "dev", dev, "mode", "tun"); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(l.Dir, dev+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", l.NS("r"), exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%s", delayLineEnv, dev, d, jitter))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: start delay line: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	if l.St.Delays == nil {
		l.St.Delays = map[string]DelayLine{}
	}
	l.St.Delays[path] = DelayLine{Delay: d, Jitter: jitter, Pid: cmd.Process.Pid}
	l.St.Pids["delay-"+path] = cmd.Process.Pid
	if err := l.saveState(); err != nil {
		return err
	}
	// The forwarder has attached when the device is up (it sets it up).
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := l.nsRun(ctx, "r", "ip", "-o", "link", "show", "dev", dev)
		if err == nil && strings.Contains(string(out), ",UP") {
			break
		}
		if !alive(cmd.Process.Pid) || time.Now().After(deadline) {
			return fmt.Errorf("lab: delay line on %s did not start; see %s", path, logf.Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l.routeDelay(ctx, path, true)
}

// routeDelay adds (or removes) the router's rules and routes that send the
// path's forwarded traffic through its delay line.
func (l *Lab) routeDelay(ctx context.Context, path string, add bool) error {
	dev, table, rIf := delayDev(path), fmt.Sprint(delayTable(path)), pathIf[path].rIf
	op := "add"
	if !add {
		op = "del"
	}
	var cmds [][]string
	for fi, fam := range []string{"-4", "-6"} {
		if add {
			cmds = append(cmds, []string{"ip", fam, "route", "replace", "default", "dev", dev, "table", table})
		}
		pref := func(k int) string { return fmt.Sprint(delayPref(path, k)) }
		// packets leaving the delay line take the normal routes
		cmds = append(cmds, []string{"ip", fam, "rule", op, "iif", dev, "lookup", "main", "pref", pref(0)})
		// packets from the path's link
		cmds = append(cmds, []string{"ip", fam, "rule", op, "iif", rIf, "lookup", table, "pref", pref(1)})
		// packets from the other links towards the path's subnet
		k := 2
		for _, p := range Paths {
			if p == path {
				continue
			}
			cmds = append(cmds, []string{"ip", fam, "rule", op, "iif", pathIf[p].rIf, "to", pathSubnets[path][fi], "lookup", table, "pref", pref(k)})
			k++
		}
		if !add {
			cmds = append(cmds, []string{"ip", fam, "route", "flush", "table", table})
		}
	}
	var errs []error
	for _, c := range cmds {
		if _, err := l.nsRun(ctx, "r", c...); err != nil {
			if add {
				return err
			}
			errs = append(errs, err) // removing: carry on
		}
	}
	if add {
		_, err := l.nsRun(ctx, "r", "sysctl", "-q", "-w", "net.ipv4.conf."+dev+".rp_filter=0")
		return err
	}
	return errors.Join(errs...)
}

// clearDelay removes path's delay line, if any.
func (l *Lab) clearDelay(ctx context.Context, path string) error {
	dl, ok := l.St.Delays[path]
	if !ok {
		return nil
	}
	var errs []error
	if err := l.routeDelay(ctx, path, false); err != nil {
		errs = append(errs, err)
	}
	stopPid(dl.Pid, inNamespaces(l.Name))
	if _, err := l.nsRun(ctx, "r", "ip", "tuntap", "del", "dev", delayDev(path), "mode", "tun"); err != nil {
		errs = append(errs, err)
	}
	delete(l.St.Delays, path)
	delete(l.St.Pids, "delay-"+path)
	return errors.Join(errs...)
}

// delayLineEnv turns a process the lab starts into a delay line: its value
// is "DEV,DELAY,JITTER".
const delayLineEnv = "MOBIKE_LAB_DELAYLINE"

// ServeDelayLineIfAsked runs the delay line and exits when the lab started
// this process as one; otherwise it returns at once. Programs that drive the
// lab (mobike-lab, and the tests that impair paths with a delay) call it
// first thing in main or TestMain: the lab re-executes its own binary.
func ServeDelayLineIfAsked() {
	spec, ok := os.LookupEnv(delayLineEnv)
	if !ok {
		return
	}
	f := strings.Split(spec, ",")
	if len(f) != 3 {
		fmt.Fprintf(os.Stderr, "delay line: bad %s=%q\n", delayLineEnv, spec)
		os.Exit(2)
	}
	d, err1 := time.ParseDuration(f[1])
	j, err2 := time.ParseDuration(f[2])
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintf(os.Stderr, "delay line: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := RunDelayLine(ctx, f[0], d, j); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "delay line: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// delayQueueMax bounds the packets held by a delay line (beyond, it drops).
const delayQueueMax = 20000

// RunDelayLine attaches to the TUN device dev of the current network
// namespace, sets it up, and sends every packet read from it back into it
// delay ± jitter (uniform) later, until ctx is done.
func RunDelayLine(ctx context.Context, dev string, delay, jitter time.Duration) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		unix.Close(fd)
		return err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return fmt.Errorf("attach to %s: %w", dev, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return err
	}
	tun := os.NewFile(uintptr(fd), dev) // pollable: reads park in the netpoller
	defer tun.Close()
	if out, err := exec.CommandContext(ctx, "ip", "link", "set", dev, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set %s up: %v: %s", dev, err, out)
	}
	dl := &delayQueue{wake: make(chan struct{}, 1)}
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	errc := make(chan error, 2)
	go func() { // reader
		buf := make([]byte, 65536)
		for {
			n, err := tun.Read(buf)
			if err != nil {
				errc <- fmt.Errorf("read %s: %w", dev, err)
				return
			}
			d := delay
			if jitter > 0 {
				d += time.Duration((2*rnd.Float64() - 1) * float64(jitter))
			}
			dl.push(time.Now().Add(d), buf[:n])
		}
	}()
	go func() { // writer
		t := time.NewTimer(time.Hour)
		for {
			next, ok := dl.popDue(time.Now(), func(b []byte) {
				if _, err := tun.Write(b); err != nil && !errors.Is(err, unix.EIO) {
					fmt.Fprintf(os.Stderr, "delay line: write %s: %v\n", dev, err)
				}
			})
			wait := time.Hour
			if ok {
				wait = time.Until(next)
			}
			t.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-dl.wake:
			case <-t.C:
			}
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// delayQueue holds packets until their release time.
type delayQueue struct {
	mu   sync.Mutex
	h    pktHeap
	seq  uint64
	wake chan struct{}
}

type heldPkt struct {
	at  time.Time
	seq uint64 // FIFO among equal release times
	b   []byte
}

type pktHeap []heldPkt

func (h pktHeap) Len() int { return len(h) }
func (h pktHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h pktHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)   { *h = append(*h, x.(heldPkt)) }
func (h *pktHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = heldPkt{}
	*h = old[:len(old)-1]
	return x
}

// push holds a copy of b until at; it wakes the writer when b is now the
// first packet due.
func (q *delayQueue) push(at time.Time, b []byte) {
	q.mu.Lock()
	if q.h.Len() >= delayQueueMax {
		q.mu.Unlock()
		return
	}
	q.seq++
	heap.Push(&q.h, heldPkt{at: at, seq: q.seq, b: append([]byte(nil), b...)})
	first := q.h[0].seq == q.seq
	q.mu.Unlock()
	if first {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// popDue hands every packet due at now to send, in release order, and
// returns the next release time (ok = false when none is held).
func (q *delayQueue) popDue(now time.Time, send func([]byte)) (next time.Time, ok bool) {
	for {
		q.mu.Lock()
		if q.h.Len() == 0 {
			q.mu.Unlock()
			return time.Time{}, false
		}
		if q.h[0].at.After(now) {
			next := q.h[0].at
			q.mu.Unlock()
			return next, true
		}
		p := heap.Pop(&q.h).(heldPkt)
		q.mu.Unlock()
		send(p.b)
	}
}
