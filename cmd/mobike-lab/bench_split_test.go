package main

import (
	"testing"
	"time"
)

// A charon log excerpt (time_format %T, time_add_ms, ike_name) of a scale
// run: s1 roams at once, s2's MOBIKE update waits for a DPD sent on the
// dead path and moves on its retransmit; lines before the impairment and
// of other kinds are not counted.
const charonExcerpt = `20:15:47.500 11[IKE] <s2|3> sending DPD request
20:15:47.996 11[IKE] <s2|3> sending DPD request
20:15:47.996 11[NET] <s2|3> sending packet: from 10.1.0.2[4500] to 10.3.0.2[4500] (57 bytes)
20:15:48.620 12[IKE] <s1|2> old path is not preferred anymore
20:15:48.620 12[IKE] <s1|2> requesting address change using MOBIKE
20:15:48.621 16[IKE] <s1|2> local endpoint changed from 10.1.0.2[4500] to 10.2.0.2[4500]
20:15:49.236 12[IKE] <s2|3> old path is not preferred anymore
20:15:49.236 12[IKE] <s2|3> delaying task initiation, INFORMATIONAL exchange in progress
20:15:51.996 01[IKE] <s2|3> path probing attempt 1
20:15:51.998 16[IKE] <s2|3> local endpoint changed from 10.1.0.2[4500] to 10.2.0.2[4500]
20:15:52.100 16[IKE] <s1|2> retransmit 1 of request with message ID 6
garbage line
`

func TestCharonLogSplit(t *testing.T) {
	ref := time.Date(2026, 11, 29, 20, 15, 47, 900e6, time.UTC)
	cs := charonLogSplit([]byte(charonExcerpt), ref)
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	if cs.dpds != 1 || cs.retransmits != 1 || cs.probings != 1 {
		t.Errorf("counts %d DPDs, %d retransmits, %d probings; want 1, 1, 1", cs.dpds, cs.retransmits, cs.probings)
	}
	if cs.roamed != 2 || ms(cs.roamFirst) != 720 || ms(cs.roamLast) != 1336 {
		t.Errorf("roamed %d from %s to %s; want 2 from 720ms to 1.336s", cs.roamed, cs.roamFirst, cs.roamLast)
	}
	if cs.delayed != 1 || ms(cs.delayedMoved) != 4098 || ms(cs.movedUndelayed) != 721 {
		t.Errorf("delayed %d (moved %s), others moved %s; want 1 (4.098s), 721ms", cs.delayed, cs.delayedMoved, cs.movedUndelayed)
	}
}

func TestMobikedSteerAt(t *testing.T) {
	log := `time=2026-11-29T20:15:40.000Z level=INFO msg=SteerRequested trace="before"
time=2026-11-29T20:15:48.499Z level=INFO msg=ConfirmRequested trace="confirm-requested"
time=2026-11-29T20:15:48.519Z level=INFO msg=SteerRequested trace="steer-requested lab(+1000)"
time=2026-11-29T20:15:49.000Z level=INFO msg=SteerRequested trace="later"
`
	ref := time.Date(2026, 11, 29, 20, 15, 47, 900e6, time.UTC)
	if d, ok := mobikedSteerAt([]byte(log), ref); !ok || d != 619*time.Millisecond {
		t.Errorf("got %s %t, want 619ms", d, ok)
	}
	if _, ok := mobikedSteerAt([]byte(log), ref.Add(time.Minute)); ok {
		t.Error("a steer before ref counted")
	}
}

func TestParseSNMP(t *testing.T) {
	snmp := []byte(`Ip: Forwarding DefaultTTL
Ip: 1 64
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 7363 0 312 7400 312 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 5 0 0 0 0
`)
	if v, err := parseSNMP(snmp, "Udp", "RcvbufErrors"); err != nil || v != 312 {
		t.Errorf("got %d, %v; want 312", v, err)
	}
	if _, err := parseSNMP(snmp, "Udp", "Nope"); err == nil {
		t.Error("missing field: no error")
	}
	if _, err := parseSNMP([]byte("Udp: A B\n"), "Udp", "A"); err == nil {
		t.Error("header without values: no error")
	}
}

func TestMoveQuantiles(t *testing.T) {
	p50, p90, within := moveQuantiles([]float64{3, 0.5, 1, 0.2, 2, 0.4, 0.6, 0.7, 0.8, 0.9}, 1.5)
	if p50 != 0.7 || p90 != 2 || within != 8 {
		t.Errorf("got %v %v %d, want 0.7 2 8", p50, p90, within)
	}
	if a, b, n := moveQuantiles(nil, 1); a != 0 || b != 0 || n != 0 {
		t.Error("empty")
	}
}
