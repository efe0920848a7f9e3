package vici

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	govici "github.com/strongswan/govici/vici"

	"github.com/mobiked/mobiked/mobike"
	"github.com/mobiked/mobiked/vici/vicitest"
)

var update = flag.Bool("update", false, "rewrite golden files (and, in lab tests, re-record testdata/recorded from real charon)")

// recorded is one message recorded from charon 5.9.8 (see lab_test.go).
type recorded struct {
	Event string        `json:"event"`
	Msg   *vicitest.Msg `json:"msg"`
}

func loadRecorded(t testing.TB) map[string]recorded {
	files, err := filepath.Glob("testdata/recorded/*.json")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]recorded{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r recorded
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = r
	}
	return out
}

// render decodes a message the way the client does and prints the result.
func render(event string, m *govici.Message) string {
	var b strings.Builder
	switch event {
	case "list-sa":
		sas, err := decodeListSA(m)
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		for _, s := range sas {
			fmt.Fprintf(&b, "%+v\n", s)
			fmt.Fprintf(&b, "core: %+v\n", s.SA())
		}
	case "list-conn":
		for _, c := range decodeListConn(m) {
			fmt.Fprintf(&b, "%+v\n", c)
		}
	default:
		evs, err := decodeEvent(event, m)
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		if len(evs) == 0 {
			b.WriteString("(no core event)\n")
		}
		for _, e := range evs {
			fmt.Fprintf(&b, "%T %+v\n", e, e)
		}
	}
	return b.String()
}

// TestDecodeRecorded decodes messages recorded from real charon 5.9.8 and
// compares the typed result with golden files.
func TestDecodeRecorded(t *testing.T) {
	recs := loadRecorded(t)
	if len(recs) == 0 {
		t.Fatal("no recorded messages in testdata/recorded (run the lab tests with -update)")
	}
	seen := map[string]bool{}
	for f, r := range recs {
		seen[r.Event] = true
		t.Run(filepath.Base(f), func(t *testing.T) {
			got := render(r.Event, r.Msg.Govici())
			if strings.HasPrefix(got, "error:") {
				t.Fatalf("decoding a real %s failed: %s", r.Event, got)
			}
			golden := strings.TrimSuffix(f, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("%s:\ngot:\n%s\nwant:\n%s", f, got, want)
			}
		})
	}
	for _, ev := range []string{"list-sa", "list-conn", "ike-updown", "ike-update", "child-updown", "child-rekey"} {
		if !seen[ev] {
			t.Errorf("no recorded %s message", ev)
		}
	}
}

// TestRecordedInvariants checks properties of the recorded messages that
// the adapter relies on.
func TestRecordedInvariants(t *testing.T) {
	for f, r := range loadRecorded(t) {
		m := r.Msg.Govici()
		switch r.Event {
		case "ike-update":
			evs, err := decodeEvent(r.Event, m)
			if err != nil || len(evs) != 1 {
				t.Fatalf("%s: %v %v", f, evs, err)
			}
			u := evs[0].(mobike.EvIKEUpdate)
			conn, sec, _ := firstIKE(m)
			old, err := decodeIKESA(conn, sec)
			if err != nil {
				t.Fatal(err)
			}
			// charon raises ike-update before switching: the section still
			// holds the old endpoints, the top level the new ones.
			if old.SA().Local == u.NewLocal && old.SA().Remote == u.NewRemote {
				t.Errorf("%s: ike-update without an address change", f)
			}
			if !u.NewLocal.IsValid() || !u.NewRemote.IsValid() {
				t.Errorf("%s: new endpoints %v %v", f, u.NewLocal, u.NewRemote)
			}
		case "list-sa":
			sas, err := decodeListSA(m)
			if err != nil || len(sas) != 1 {
				t.Fatalf("%s: %v %v", f, sas, err)
			}
			if sas[0].InitiatorSPI == "" || len(sas[0].InitiatorSPI) != 16 {
				t.Errorf("%s: initiator-spi %q", f, sas[0].InitiatorSPI)
			}
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := vicitest.SA{Conn: "lab", UniqueID: 1, Local: "10.1.0.2", Remote: "10.3.0.2"}
	bad := func(k, v string) *vicitest.Msg {
		m := good.IKE()
		m.Set(k, v)
		return vicitest.M("up", "yes", "lab", m)
	}
	for _, tc := range []struct {
		name, event string
		msg         *vicitest.Msg
	}{
		{"no section", "ike-updown", vicitest.M("up", "yes")},
		{"uniqueid", "ike-updown", bad("uniqueid", "x")},
		{"uniqueid overflow", "ike-updown", bad("uniqueid", "4294967296")},
		{"host", "ike-updown", bad("local-host", "10.1.0.300")},
		{"port", "ike-updown", bad("remote-port", "65536")},
		{"update host", "ike-update", vicitest.M("local-host", "nope", "local-port", "4500", "remote-host", "10.3.0.2", "remote-port", "4500", "lab", good.IKE())},
		{"rekey without new", "ike-rekey", vicitest.M("lab", vicitest.M("old", good.IKE()))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if evs, err := decodeEvent(tc.event, tc.msg.Govici()); err == nil {
				t.Fatalf("want an error, got %+v", evs)
			}
		})
	}
	// %any (an SA still connecting) is not an error: the address is zero.
	m := good.IKE()
	m.Set("local-host", "%any")
	s, err := decodeIKESA("lab", m.Govici())
	if err != nil || s.LocalHost.IsValid() || s.SA().Local.IsValid() {
		t.Fatalf("%%any: %+v %v", s, err)
	}
}

// FuzzDecode feeds arbitrary VICI encodings through the fake charon's codec
// and every decoder of the adapter: nothing may panic, decoding is
// deterministic, and every address that comes out is valid and unmapped.
func FuzzDecode(f *testing.F) {
	for _, r := range loadRecorded(f) {
		b, err := r.Msg.Encode(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := vicitest.SA{Conn: "lab", UniqueID: 1, Local: "10.1.0.2", Remote: "10.3.0.2", Initiator: true}
	for _, m := range []*vicitest.Msg{
		vicitest.IKEUpdown(s, true), vicitest.IKEUpdate(s, "10.2.0.2", 4500, "10.4.0.2", 4500),
		vicitest.IKERekey(s, s), vicitest.Log("lab", 1, "giving up after 5 retransmits"),
	} {
		b, _ := m.Encode(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := vicitest.Decode(data)
		if err != nil {
			return
		}
		// The codec round-trips.
		enc, err := m.Encode(nil)
		if err == nil {
			m2, err := vicitest.Decode(enc)
			if err != nil || !vicitest.Equal(m, m2) {
				t.Fatalf("codec round trip: %v", err)
			}
		}
		gm := m.Govici()
		for _, ev := range append([]string{"ike-rekey", "log"}, saEventNames...) {
			a, errA := decodeEvent(ev, gm)
			b, errB := decodeEvent(ev, gm)
			if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: not deterministic", ev)
			}
			for _, e := range a {
				checkAddrs(t, e)
			}
		}
		if sas, err := decodeListSA(gm); err == nil {
			for _, s := range sas {
				checkAddrs(t, mobike.EvSAUp{SA: s.SA()})
			}
		}
		for _, c := range decodeListConn(gm) {
			for _, a := range c.RemoteAddrs {
				if !a.IsValid() || a.Is4In6() {
					t.Fatalf("conn address %v", a)
				}
			}
		}
	})
}

func checkAddrs(t *testing.T, e mobike.Event) {
	t.Helper()
	var sa mobike.SA
	switch e := e.(type) {
	case mobike.EvSAUp:
		sa = e.SA
	case mobike.EvSARekey:
		sa = e.New
	case mobike.EvIKEUpdate:
		sa = mobike.SA{Local: e.NewLocal, Remote: e.NewRemote}
	default:
		return
	}
	for _, ap := range []struct {
		a  string
		ok bool
	}{{sa.Local.Addr().String(), !sa.Local.Addr().Is4In6()}, {sa.Remote.Addr().String(), !sa.Remote.Addr().Is4In6()}} {
		if !ap.ok {
			t.Fatalf("mapped address %s", ap.a)
		}
	}
	for _, v := range sa.VIPs {
		if !v.IsValid() || v.Is4In6() {
			t.Fatalf("vip %v", v)
		}
	}
}
