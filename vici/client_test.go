package vici

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/vici/vicitest"
)

// guard is how long a test waits for something that should happen at once;
// it only bounds a failing test.
const guard = 10 * time.Second

func next(t *testing.T, ch <-chan mobike.Event) mobike.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("events closed")
		}
		return ev
	case <-time.After(guard):
		t.Fatal("no event")
	}
	return nil
}

func expect[T mobike.Event](t *testing.T, ch <-chan mobike.Event) T {
	t.Helper()
	ev := next(t, ch)
	v, ok := ev.(T)
	if !ok {
		var zero T
		t.Fatalf("got %T %+v, want %T", ev, ev, zero)
	}
	return v
}

var (
	saA = vicitest.SA{Conn: "lab", UniqueID: 1, Local: "10.1.0.2", Remote: "10.3.0.2", Initiator: true, NATFake: true, VIPs: []string{"10.50.0.1"}}
	saB = vicitest.SA{Conn: "s1", UniqueID: 2, Local: "fd00:1::2", Remote: "fd00:3::2"}
)

func wantSA(s vicitest.SA) mobike.SA {
	lp, rp := s.LocalPort, s.RemotePort
	if lp == 0 {
		lp = 4500
	}
	if rp == 0 {
		rp = 4500
	}
	sa := mobike.SA{
		Conn: s.Conn, UniqueID: uint32(s.UniqueID), State: mobike.IKEEstablished, Initiator: s.Initiator,
		Local:   netip.AddrPortFrom(netip.MustParseAddr(s.Local), uint16(lp)),
		Remote:  netip.AddrPortFrom(netip.MustParseAddr(s.Remote), uint16(rp)),
		NATFake: s.NATFake,
	}
	for _, v := range s.VIPs {
		sa.VIPs = append(sa.VIPs, netip.MustParseAddr(v))
	}
	return sa
}

type fixture struct {
	srv    *vicitest.Server
	c      *Client
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, o Options) *fixture {
	t.Helper()
	srv := vicitest.NewServer(filepath.Join(t.TempDir(), "charon.vici"))
	srv.SetSAs([]vicitest.Named{saA.Named(), saB.Named()})
	srv.SetConns([]vicitest.Named{{Name: "lab", Msg: vicitest.M("local_addrs", []string{"%any"},
		"remote_addrs", []string{"10.3.0.2", "gw.example.org", "fd00:3::2"}, "version", "IKEv2")}})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	o.Socket = srv.Path()
	if o.BackoffMin == 0 {
		o.BackoffMin, o.BackoffMax = time.Millisecond, 5*time.Millisecond
	}
	c := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{srv: srv, c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { f.done <- c.Run(ctx) }()
	t.Cleanup(f.stop)
	return f
}

func (f *fixture) stop() {
	f.cancel()
	for range f.c.Events() { // drain until Run closes it
	}
	<-f.done
	f.done <- nil // keep stop idempotent
	f.srv.Stop()
}

func expectConnected(t *testing.T, ch <-chan mobike.Event, sas ...vicitest.SA) {
	t.Helper()
	if up := expect[mobike.EvCharon](t, ch); !up.Up {
		t.Fatalf("got %+v, want up", up)
	}
	conns := expect[mobike.EvConns](t, ch)
	wantConns := []mobike.Conn{{Name: "lab", LocalAddrs: []string{"%any"},
		RemoteAddrs: []netip.Addr{netip.MustParseAddr("10.3.0.2"), netip.MustParseAddr("fd00:3::2")}}}
	if !reflect.DeepEqual(conns.Conns, wantConns) {
		t.Fatalf("conns %+v, want %+v", conns.Conns, wantConns)
	}
	list := expect[mobike.EvSAList](t, ch)
	var want []mobike.SA
	for _, s := range sas {
		want = append(want, wantSA(s))
	}
	if !reflect.DeepEqual(list.SAs, want) {
		t.Fatalf("sa list\n%+v\nwant\n%+v", list.SAs, want)
	}
}

func TestClientEventConversion(t *testing.T) {
	f := start(t, Options{Resync: -1})
	ch := f.c.Events()
	expectConnected(t, ch, saA, saB)

	moved := saA
	moved.Local = "10.2.0.2"
	rekeyed := moved
	rekeyed.UniqueID = 7
	connecting := saB
	connecting.State = "CONNECTING"
	emits := []struct {
		name string
		msg  *vicitest.Msg
		want []mobike.Event
	}{
		{"ike-updown", vicitest.IKEUpdown(saA, true), []mobike.Event{mobike.EvSAUp{SA: wantSA(saA)}}},
		{"ike-update", vicitest.IKEUpdate(saA, "10.2.0.2", 4500, "10.3.0.2", 4500), []mobike.Event{mobike.EvIKEUpdate{
			Conn: "lab", UniqueID: 1, NewLocal: netip.MustParseAddrPort("10.2.0.2:4500"), NewRemote: netip.MustParseAddrPort("10.3.0.2:4500")}}},
		{"child-updown", vicitest.IKEUpdown(moved, true), []mobike.Event{mobike.EvSAUp{SA: wantSA(moved)}}},
		{"child-updown", vicitest.IKEUpdown(connecting, false), nil},
		{"ike-rekey", vicitest.IKERekey(moved, rekeyed), []mobike.Event{mobike.EvSARekey{OldID: 1, New: wantSA(rekeyed)}}},
		{"ike-updown", vicitest.IKEUpdown(rekeyed, false), []mobike.Event{mobike.EvSADown{Conn: "lab", UniqueID: 7}}},
	}
	var want []mobike.Event
	for _, e := range emits {
		if n := f.srv.Emit(e.name, e.msg); n != 1 {
			t.Fatalf("%s reached %d clients, want 1 (subscribed)", e.name, n)
		}
		want = append(want, e.want...)
	}
	var got []mobike.Event
	for range want {
		got = append(got, next(t, ch))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	// charon's log is not subscribed (see saEventNames).
	if n := f.srv.Emit("log", vicitest.Log("lab", 7, "giving up after 5 retransmits")); n != 0 {
		t.Errorf("log reached %d clients, want none", n)
	}
	st := f.c.Stats()
	if st.Events["log"] != 0 || st.Events["ike-updown"] != 2 || st.Events["child-updown"] != 2 {
		t.Errorf("stats %+v", st.Events)
	}
}

func TestClientPeriodicResync(t *testing.T) {
	f := start(t, Options{Resync: 5 * time.Millisecond})
	ch := f.c.Events()
	expectConnected(t, ch, saA, saB)
	f.srv.SetSAs([]vicitest.Named{saB.Named()}) // saA vanished without an event
	for {
		if l, ok := next(t, ch).(mobike.EvSAList); ok && len(l.SAs) == 1 {
			if !reflect.DeepEqual(l.SAs[0], wantSA(saB)) {
				t.Fatalf("resync %+v", l.SAs)
			}
			return
		}
	}
}

// TestClientReconnect restarts the fake charon 100 times: each time the
// client reports charon down, reconnects, resyncs, and no goroutine leaks.
func TestClientReconnect(t *testing.T) {
	before := runtime.NumGoroutine()
	f := start(t, Options{Resync: -1})
	ch := f.c.Events()
	expectConnected(t, ch, saA, saB)
	for i := range 100 {
		f.srv.Stop()
		if ev := expect[mobike.EvCharon](t, ch); ev.Up {
			t.Fatalf("cycle %d: got up, want down", i)
		}
		if _, err := f.c.ListSAs(context.Background()); !errors.Is(err, ErrCharonUnavailable) {
			// The client may not have noticed the command session yet.
			if err == nil {
				t.Fatalf("cycle %d: ListSAs on a stopped charon succeeded", i)
			}
		}
		if i%2 == 1 {
			f.srv.SetSAs([]vicitest.Named{saB.Named()})
		} else {
			f.srv.SetSAs([]vicitest.Named{saA.Named(), saB.Named()})
		}
		if err := f.srv.Start(); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			expectConnected(t, ch, saB)
		} else {
			expectConnected(t, ch, saA, saB)
		}
	}
	if got := f.c.Stats().Connects; got != 101 {
		t.Errorf("connects %d, want 101", got)
	}
	f.stop()
	deadline := time.Now().Add(guard)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// TestClientManySAs lists 1500 SAs (streamed list-sa events lose SAs at
// ~1000 with govici's CallStreaming).
func TestClientManySAs(t *testing.T) {
	srvSAs := make([]vicitest.Named, 1500)
	for i := range srvSAs {
		srvSAs[i] = vicitest.SA{Conn: fmt.Sprintf("s%d", i), UniqueID: i + 1, Local: "10.1.0.2", Remote: "10.3.0.2", Initiator: true}.Named()
	}
	f := start(t, Options{Resync: -1})
	f.srv.SetSAs(srvSAs)
	ch := f.c.Events()
	expect[mobike.EvCharon](t, ch)
	expect[mobike.EvConns](t, ch)
	for range 2 {
		sas, err := f.c.ListSAs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(sas) != 1500 || sas[1499].Conn != "s1499" || sas[0].UniqueID != 1 {
			t.Fatalf("listed %d SAs", len(sas))
		}
	}
}

func TestClientInitiateAndVersion(t *testing.T) {
	f := start(t, Options{Resync: -1})
	got := make(chan *vicitest.Msg, 1)
	f.srv.OnCommand(func(cmd string, req *vicitest.Msg) (*vicitest.Msg, bool) {
		if cmd != "initiate" {
			return nil, false
		}
		got <- req
		return vicitest.M("success", "no", "errmsg", "config 'x' not found"), true
	})
	ch := f.c.Events()
	expectConnected(t, ch, saA, saB)
	err := f.c.Initiate(context.Background(), "x")
	if err == nil {
		t.Fatal("initiate: want the charon error")
	}
	if req := <-got; !vicitest.Equal(req, vicitest.M("ike", "x", "timeout", "-1")) {
		t.Errorf("initiate request %+v", req)
	}
	v, err := f.c.Version(context.Background())
	if err != nil || v != "5.9.8" {
		t.Errorf("version %q %v", v, err)
	}
}

func TestClientCommandsWhileDown(t *testing.T) {
	c := New(Options{Socket: filepath.Join(t.TempDir(), "none")})
	if _, err := c.ListSAs(context.Background()); !errors.Is(err, ErrCharonUnavailable) {
		t.Fatalf("ListSAs: %v, want ErrCharonUnavailable", err)
	}
	if err := c.Initiate(context.Background(), "lab"); !errors.Is(err, ErrCharonUnavailable) {
		t.Fatalf("Initiate: %v, want ErrCharonUnavailable", err)
	}
}

func TestWaitIKEUpdate(t *testing.T) {
	ch := make(chan mobike.Event, 4)
	p := mobike.Pair{Local: netip.MustParseAddr("10.2.0.2"), Remote: netip.MustParseAddr("10.3.0.2")}
	ch <- mobike.EvSAUp{}
	ch <- mobike.EvIKEUpdate{Conn: "lab", NewLocal: netip.MustParseAddrPort("10.1.0.2:4500"), NewRemote: netip.MustParseAddrPort("10.3.0.2:4500")}
	ch <- mobike.EvIKEUpdate{Conn: "lab", UniqueID: 3, NewLocal: netip.MustParseAddrPort("10.2.0.2:4500"), NewRemote: netip.MustParseAddrPort("10.3.0.2:4500")}
	var skipped int
	u, err := WaitIKEUpdate(context.Background(), ch, "lab", p, func(mobike.Event) { skipped++ })
	if err != nil || u.UniqueID != 3 || skipped != 2 {
		t.Fatalf("got %+v %v skipped %d", u, err, skipped)
	}
	close(ch)
	if _, err := WaitIKEUpdate(context.Background(), ch, "", p, nil); !errors.Is(err, ErrEventsClosed) {
		t.Fatalf("closed: %v", err)
	}
}

func TestClientClose(t *testing.T) {
	f := start(t, Options{Resync: -1})
	expectConnected(t, f.c.Events(), saA, saB)
	if err := f.c.Close(); err != nil {
		t.Fatal(err)
	}
	// Close returned after Run: the channel is closed (after what was buffered).
	for range f.c.Events() {
	}
	if f.c.Connected() {
		t.Fatal("connected after Close")
	}
}

func BenchmarkDecodeIKEUpdate(b *testing.B) {
	m := vicitest.IKEUpdate(saA, "10.2.0.2", 4500, "10.3.0.2", 4500).Govici()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEvent("ike-update", m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListSAs1000 measures one list-sas resync of 1000 SAs over the
// fake charon's unix socket (subscribe + Call workaround, decode included).
func BenchmarkListSAs1000(b *testing.B) {
	sas := make([]vicitest.Named, 1000)
	for i := range sas {
		sas[i] = vicitest.SA{Conn: fmt.Sprintf("s%d", i), UniqueID: i + 1, Local: "10.1.0.2", Remote: "10.3.0.2", Initiator: true}.Named()
	}
	c := benchClient(b, sas)
	for b.Loop() {
		got, err := c.ListSAs(context.Background())
		if err != nil || len(got) != 1000 {
			b.Fatalf("%d %v", len(got), err)
		}
	}
}

// benchClient starts a fake charon listing sas and a connected Client on it
// (events drained), both stopped when b ends.
func benchClient(b *testing.B, sas []vicitest.Named) *Client {
	b.Helper()
	srv := vicitest.NewServer(filepath.Join(b.TempDir(), "charon.vici"))
	srv.SetSAs(sas)
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	c := New(Options{Socket: srv.Path(), Resync: -1})
	go func() { _ = c.Run(context.Background()) }()
	b.Cleanup(func() { c.Close() })
	go func() {
		for range c.Events() {
		}
	}()
	for !c.Connected() {
		time.Sleep(time.Millisecond)
	}
	return c
}
