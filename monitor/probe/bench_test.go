package probe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mobiked/mobiked/mobike"
)

// BenchmarkProbeCPU100Pairs runs 100 pairs (10 local × 10 remote addresses
// on the loopback of namespace hpb-cpu) at the active profile's 5 probes/s
// for 5 s and reports the process CPU time as a percentage of one core and
// per probe, with the process's context switches and the scheduler's
// wake-ups. The ICMP echo replies are the kernel's, and on loopback their
// work is done in the sender's send call, so it is counted. The STAMP
// reflector runs in a child process (RUSAGE_SELF excludes it): its CPU is
// reported apart as %core-reflector.
//
//	go test -run XXX -bench ProbeCPU -benchtime 1x ./monitor/probe/
func BenchmarkProbeCPU100Pairs(b *testing.B) {
	skipUnlessRoot(b)
	const ns = "hpb-cpu"
	exec.Command("ip", "netns", "del", ns).Run()
	run(b, "ip", "netns", "add", ns)
	b.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(b, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	var locals, remotes []netip.Addr
	for i := 1; i <= 10; i++ {
		l := netip.AddrFrom4([4]byte{10, 202, 0, byte(i)})
		r := netip.AddrFrom4([4]byte{10, 202, 1, byte(i)})
		locals, remotes = append(locals, l), append(remotes, r)
		run(b, "ip", "netns", "exec", ns, "ip", "addr", "add", l.String()+"/32", "dev", "lo")
		run(b, "ip", "netns", "exec", ns, "ip", "addr", "add", r.String()+"/32", "dev", "lo")
	}
	refl := startReflectorProcess(b, ns, 862)
	for _, method := range []mobike.ProbeMethod{mobike.ProbeICMP, mobike.ProbeSTAMP} {
		b.Run(method.String(), func(b *testing.B) {
			for range b.N {
				m := NewManager(Options{SocketHook: func(f func() error) error { return inNetNS(ns, f) }, Coalesce: benchCoalesce()})
				for _, l := range locals {
					for _, r := range remotes {
						m.Apply(mobike.ActProbeStart{Pair: mobike.Pair{Local: l, Remote: r}, Uplink: "lo", Method: method, Profile: mobike.ProfileActive})
					}
				}
				var ok, total atomic.Int64
				done := make(chan struct{})
				go func() {
					defer close(done)
					for ev := range m.Events() {
						total.Add(1)
						if ev.(mobike.EvProbeResult).OK {
							ok.Add(1)
						}
					}
				}()
				time.Sleep(time.Second) // settle: sockets opened, first probes out
				u0, s0 := rusageUS()
				cs0, w0, r0 := ctxSwitches(), m.Stats().Wakeups, procCPU(refl)
				t0, n0, ok0 := time.Now(), total.Load(), ok.Load()
				time.Sleep(5 * time.Second)
				u1, s1 := rusageUS()
				cs1, w1, r1 := ctxSwitches(), m.Stats().Wakeups, procCPU(refl)
				cpu, wall := u1-u0+s1-s0, time.Since(t0)
				n, nok := total.Load()-n0, ok.Load()-ok0
				m.Close()
				<-done
				b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%core")
				b.ReportMetric(100*(u1-u0).Seconds()/wall.Seconds(), "%core-user")
				b.ReportMetric(100*(s1-s0).Seconds()/wall.Seconds(), "%core-sys")
				if method == mobike.ProbeSTAMP {
					b.ReportMetric(100*(r1-r0).Seconds()/wall.Seconds(), "%core-reflector")
				}
				b.ReportMetric(float64(cs1-cs0)/wall.Seconds(), "ctxsw/s")
				b.ReportMetric(float64(w1-w0)/wall.Seconds(), "wakeups/s")
				b.ReportMetric(float64(n)/wall.Seconds(), "results/s")
				if n > 0 {
					b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/probe")
				}
				if n == 0 || nok < n*9/10 {
					b.Fatalf("%d of %d probes answered", nok, n)
				}
			}
		})
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(os.Stderr, "load average at the end: %s", b)
	}
}

// reflectorEnv makes the test binary a STAMP reflector: "NAMESPACE,PORT".
const reflectorEnv = "PROBE_TEST_REFLECTOR"

func TestMain(m *testing.M) {
	if spec := os.Getenv(reflectorEnv); spec != "" {
		serveReflectorChild(spec)
		return
	}
	os.Exit(m.Run())
}

// serveReflectorChild serves an unauthenticated reflector (rate 1000/s) in
// the namespace until its stdin closes.
func serveReflectorChild(spec string) {
	ns, port, _ := strings.Cut(spec, ",")
	p, err := strconv.Atoi(port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reflector:", err)
		os.Exit(2)
	}
	var c net.PacketConn
	if err := inNetNS(ns, func() error {
		var err error
		c, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", p))
		return err
	}); err != nil {
		fmt.Fprintln(os.Stderr, "reflector:", err)
		os.Exit(1)
	}
	r, err := NewReflector(ReflectorOptions{Rate: 1000, Burst: 100})
	if err != nil {
		fmt.Fprintln(os.Stderr, "reflector:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	fmt.Println("ready")
	_ = r.Serve(ctx, c)
	os.Exit(0)
}

// startReflectorProcess runs the reflector in a child process (this test
// binary) and returns its pid; it stops when the benchmark ends.
func startReflectorProcess(b *testing.B, ns string, port int) int {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", reflectorEnv, ns, port))
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("reflector process: %q, %v", line, err)
	}
	return cmd.Process.Pid
}

// procCPU is a process's user+system CPU time from /proc (clock ticks).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func rusage() time.Duration {
	u, s := rusageUS()
	return u + s
}

// rusageUS is the process's user and system CPU time.
func rusageUS() (user, sys time.Duration) {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// ctxSwitches is the process's context switches (voluntary + involuntary).
func ctxSwitches() int64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Nvcsw + ru.Nivcsw
}

// BenchmarkBytesPerSecond reports the probe traffic one pair sends per
// second for each method and profile, from the real encoders' packet sizes
// (IP and ICMP/UDP headers included, averaged over a Location TLV cycle) and
// the profiles' rates. Replies are the same size again in the other direction.
//
//	go test -run XXX -bench BytesPerSecond -benchtime 1x ./monitor/probe/
func BenchmarkBytesPerSecond(b *testing.B) {
	prof := DefaultProfiles()
	local := netip.MustParseAddrPort("192.0.2.1:40000")
	for _, v6 := range []bool{false, true} {
		remote := netip.MustParseAddr("198.51.100.1")
		if v6 {
			remote = netip.MustParseAddr("2001:db8::1")
		}
		hdr := ipHeaderLen(remote)
		methods := []struct {
			name    string
			perProb float64
		}{
			{"icmp", float64(hdr + 8 + icmpNonceLen)},
			{"stamp", stampAvgSize(b, local, remote, nil, prof.LocationEvery) + float64(hdr+8)},
			{"stamp-auth", stampAvgSize(b, local, remote, vecKey, prof.LocationEvery) + float64(hdr+8)},
		}
		fam := "ipv4"
		if v6 {
			fam = "ipv6"
		}
		for _, mth := range methods {
			for _, pr := range []mobike.ProbeProfile{mobike.ProfileActive, mobike.ProfileStandby, mobike.ProfileMeteredStandby} {
				b.Run(fmt.Sprintf("%s/%s/%s", fam, mth.name, pr), func(b *testing.B) {
					for range b.N {
					}
					b.ReportMetric(mth.perProb, "B/probe")
					b.ReportMetric(mth.perProb/prof.Interval(pr).Seconds(), "B/s")
				})
			}
		}
	}
}

func stampAvgSize(b *testing.B, local netip.AddrPort, remote netip.Addr, key []byte, every int) float64 {
	e := newSTAMPEndpoint(&sharedSock{local: local}, netip.AddrPortFrom(remote, STAMPPort), key, every, RealClock())
	total := 0
	for seq := range uint32(every) {
		p, err := e.encode(nil, seq, make([]byte, e.NonceLen()), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		total += len(p)
	}
	return float64(total) / float64(every)
}

func benchCoalesce() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("PROBE_COALESCE"))
	return d
}
