package lab

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"
	"github.com/vishvananda/netns"
)

// SAInfo is one IKE SA as charon reports it.
type SAInfo struct {
	Node       string   `json:"node"`
	Conn       string   `json:"conn"`
	UniqueID   string   `json:"uniqueid"`
	State      string   `json:"state"`
	LocalHost  string   `json:"local_host"`
	RemoteHost string   `json:"remote_host"`
	Initiator  bool     `json:"initiator"`
	VIPs       []string `json:"local_vips,omitempty"`
}

// NodeStatus is one node's state.
type NodeStatus struct {
	Namespace string `json:"namespace"`
	Exists    bool   `json:"exists"`
	CharonPID int    `json:"charon_pid,omitempty"`
	VICI      string `json:"vici_socket,omitempty"`
}

// Status of a lab.
type Status struct {
	Name        string                `json:"name"`
	Nodes       map[string]NodeStatus `json:"nodes"`
	MobikedPID  int                   `json:"mobiked_pid,omitempty"`
	NATB        bool                  `json:"nat_b"`
	Impairments map[string]string     `json:"impairments,omitempty"`
	SAs         []SAInfo              `json:"sas"`
}

// Status reads the lab's namespaces, charons and SAs.
func (l *Lab) Status(ctx context.Context) (*Status, error) {
	nss, err := existingNamespaces()
	if err != nil {
		return nil, err
	}
	st := &Status{Name: l.Name, Nodes: map[string]NodeStatus{}, NATB: l.St.NATB, Impairments: map[string]string{}}
	for p, imp := range l.St.Impair {
		s := imp.Kind.String()
		if imp.Kind == Loss {
			s += fmt.Sprintf(" %g%%", imp.LossPct)
		}
		st.Impairments[p] = s
	}
	for p, dl := range l.St.Delays {
		s := fmt.Sprintf("delay %s", dl.Delay)
		if dl.Jitter > 0 {
			s += fmt.Sprintf(" ± %s", dl.Jitter)
		}
		if o := st.Impairments[p]; o != "" {
			s = o + ", " + s
		}
		st.Impairments[p] = s
	}
	if pid := l.St.Pids["mobiked"]; pid > 0 && alive(pid) {
		st.MobikedPID = pid
	}
	for _, n := range l.nodes() {
		ns := NodeStatus{Namespace: l.NS(n), Exists: nss[l.NS(n)]}
		if n == "mn" || n == "gw" {
			ns.CharonPID = l.CharonPID(n)
			ns.VICI = l.VICISocket(n)
		}
		st.Nodes[n] = ns
	}
	for _, n := range []string{"mn", "gw"} {
		if st.Nodes[n].CharonPID == 0 {
			continue
		}
		sas, err := l.ListSAs(ctx, n)
		if err != nil {
			return st, err
		}
		st.SAs = append(st.SAs, sas...)
	}
	return st, nil
}

// ListSAs asks node's charon for its IKE SAs over VICI (subscribe + Call, the
// reliable way to list many SAs with govici).
func (l *Lab) ListSAs(ctx context.Context, node string) ([]SAInfo, error) {
	s, err := govici.NewSession(govici.WithSocketPath(l.VICISocket(node)))
	if err != nil {
		return nil, fmt.Errorf("lab: vici %s: %w", node, err)
	}
	defer s.Close()
	ch := make(chan govici.Event, 8192)
	if err := s.Subscribe("list-sa"); err != nil {
		return nil, fmt.Errorf("lab: vici %s: subscribe: %w", node, err)
	}
	s.NotifyEvents(ch)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.Call(cctx, "list-sas", nil); err != nil {
		return nil, fmt.Errorf("lab: vici %s: list-sas: %w", node, err)
	}
	var out []SAInfo
	for {
		select {
		case ev := <-ch:
			if ev.Name != "list-sa" || ev.Message == nil {
				continue
			}
			for _, k := range ev.Message.Keys() {
				m, ok := ev.Message.Get(k).(*govici.Message)
				if !ok {
					continue
				}
				sa := SAInfo{Node: node, Conn: k}
				sa.UniqueID, _ = m.Get("uniqueid").(string)
				sa.State, _ = m.Get("state").(string)
				sa.LocalHost, _ = m.Get("local-host").(string)
				sa.RemoteHost, _ = m.Get("remote-host").(string)
				ini, _ := m.Get("initiator").(string)
				sa.Initiator = ini == "yes"
				sa.VIPs, _ = m.Get("local-vips").([]string)
				out = append(out, sa)
			}
		default:
			slices.SortFunc(out, func(a, b SAInfo) int {
				ai, _ := strconv.Atoi(a.UniqueID)
				bi, _ := strconv.Atoi(b.UniqueID)
				return ai - bi
			})
			return out, nil
		}
	}
}

// SA returns mn's SA of connection "lab", or an error if there is none.
func (l *Lab) SA(ctx context.Context) (SAInfo, error) { return l.SAOf(ctx, "lab") }

// SAOf returns mn's SA of a connection, or an error if there is none.
func (l *Lab) SAOf(ctx context.Context, conn string) (SAInfo, error) {
	sas, err := l.ListSAs(ctx, "mn")
	if err != nil {
		return SAInfo{}, err
	}
	for _, sa := range sas {
		if sa.Conn == conn {
			return sa, nil
		}
	}
	return SAInfo{}, fmt.Errorf("lab: no SA for connection %s in %s", conn, l.NS("mn"))
}

// VIP returns mn's virtual IP of the lab SA.
func (l *Lab) VIP(ctx context.Context) (netip.Addr, error) { return l.VIPOf(ctx, "lab") }

// VIPOf returns mn's virtual IP of a connection's SA.
func (l *Lab) VIPOf(ctx context.Context, conn string) (netip.Addr, error) {
	sa, err := l.SAOf(ctx, conn)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, v := range sa.VIPs {
		if a, err := netip.ParseAddr(v); err == nil && a.Is4() {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("lab: SA %s has no virtual IP yet", conn)
}

// PingConn pings PingTarget through a connection's tunnel (from its
// virtual IP).
func (l *Lab) PingConn(ctx context.Context, conn string, count int, interval time.Duration) (PingResult, error) {
	vip, err := l.VIPOf(ctx, conn)
	if err != nil {
		return PingResult{}, err
	}
	return l.PingFrom(ctx, vip, count, interval)
}

// WaitSA polls until mn's lab SA satisfies ok or the timeout passes.
func (l *Lab) WaitSA(ctx context.Context, timeout time.Duration, ok func(SAInfo) bool) (SAInfo, error) {
	deadline := time.Now().Add(timeout)
	var last SAInfo
	var lastErr error
	for {
		sa, err := l.SA(ctx)
		if err == nil && ok(sa) {
			return sa, nil
		}
		last, lastErr = sa, err
		if time.Now().After(deadline) {
			if lastErr != nil {
				return last, lastErr
			}
			return last, fmt.Errorf("lab: SA is %s %s-%s, condition not met within %s", last.State, last.LocalHost, last.RemoteHost, timeout)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// InNetNS runs fn on a locked OS thread switched into network namespace ns.
// Sockets and netlink handles created inside fn stay in ns; goroutines started
// by fn do not inherit the namespace.
func InNetNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: get netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: netns %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: enter netns %s: %w", ns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine instead of
		// running other goroutines in the wrong namespace.
		return fmt.Errorf("lab: leave netns %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// RequireRoot skips t with a clear message when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab tests need root (network namespaces, real charon); run `make test` as root")
	}
	if err := CheckTools(); err != nil {
		t.Fatalf("lab tests need strongSwan and tools: %v", err)
	}
}

// PingResult summarises a tunnel ping.
type PingResult struct {
	Sent, Received int
	LongestGap     time.Duration   // longest time between consecutive replies (or start/end)
	Replies        []time.Duration // reply times relative to the start
	Start          time.Time
	Duration       time.Duration
}

// Ping pings the gateway's protected address through the tunnel from mn's
// virtual IP: count packets every interval.
func (l *Lab) Ping(ctx context.Context, count int, interval time.Duration) (PingResult, error) {
	vip, err := l.VIP(ctx)
	if err != nil {
		return PingResult{}, err
	}
	return l.PingFrom(ctx, vip, count, interval)
}

// PingFrom pings PingTarget from src inside mn.
func (l *Lab) PingFrom(ctx context.Context, src netip.Addr, count int, interval time.Duration) (PingResult, error) {
	if count <= 0 {
		return PingResult{}, fmt.Errorf("lab: ping count %d must be positive", count)
	}
	if interval < 2*time.Millisecond {
		return PingResult{}, fmt.Errorf("lab: ping interval %s too short", interval)
	}
	// -w bounds the run to 2×count×interval (+2 s) even when replies are lost
	// and ping falls behind its schedule.
	deadline := int((2*time.Duration(count)*interval+2*time.Second)/time.Second) + 1
	args := []string{"ping", "-n", "-D", "-I", src.String(), "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-W", "1",
		"-w", strconv.Itoa(deadline), PingTarget.String()}
	cmd := l.ExecCmd(ctx, "mn", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return PingResult{}, err
	}
	res := PingResult{Start: time.Now()}
	if err := cmd.Start(); err != nil {
		return PingResult{}, fmt.Errorf("lab: ping: %w", err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "[") && strings.Contains(line, "bytes from") {
			end := strings.IndexByte(line, ']')
			if ts, err := strconv.ParseFloat(line[1:end], 64); err == nil {
				t := time.Unix(0, int64(ts*1e9))
				res.Replies = append(res.Replies, t.Sub(res.Start))
			}
		}
		if strings.Contains(line, "packets transmitted") {
			f := strings.Fields(line)
			if len(f) > 3 {
				res.Sent, _ = strconv.Atoi(f[0])
				res.Received, _ = strconv.Atoi(f[3])
			}
		}
	}
	_ = cmd.Wait()
	res.Duration = time.Since(res.Start)
	prev := time.Duration(0)
	for _, r := range res.Replies {
		if r-prev > res.LongestGap {
			res.LongestGap = r - prev
		}
		prev = r
	}
	if res.Duration-prev > res.LongestGap {
		res.LongestGap = res.Duration - prev
	}
	if res.Received == 0 {
		return res, fmt.Errorf("lab: ping: no reply from %s (sent %d)", PingTarget, res.Sent)
	}
	return res, nil
}
