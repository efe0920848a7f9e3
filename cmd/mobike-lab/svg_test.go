package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func sampleSeries() []svgSeries {
	var charon, mob []sample
	for i := -100; i < 300; i += 5 {
		t := float64(i) / 100
		rtt := 0.4 + float64((i+700)%7)/10
		if i >= 0 {
			charon = append(charon, sample{T: t, RTT: -1})
		} else {
			charon = append(charon, sample{T: t, RTT: rtt})
		}
		if i >= 0 && i < 80 {
			mob = append(mob, sample{T: t, RTT: -1})
		} else {
			mob = append(mob, sample{T: t, RTT: rtt + 80*float64(i%2)}) // some above the cap
		}
	}
	return []svgSeries{
		{Label: "charon alone", Samples: charon, Marks: []mark{{T: 0, Kind: "impair", Label: "a blackhole"}}},
		{Label: "charon + mobiked <lab>", Samples: mob, Marks: []mark{
			{T: 0, Kind: "impair", Label: "a blackhole"}, {T: 0.75, Kind: "move", Label: "→b"}, {T: 2, Kind: "action", Label: "a up"}}},
	}
}

func TestRenderSVGGolden(t *testing.T) {
	var b bytes.Buffer
	if err := renderSVG(&b, "blackhole: test & check", sampleSeries()); err != nil {
		t.Fatal(err)
	}
	golden(t, "timeline.golden.svg", b.Bytes())

	// Valid XML with the expected elements: one group per panel, an RTT and a
	// lost path in each, and one line per mark with its class.
	counts := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("invalid XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
		}
		for _, a := range se.Attr {
			if a.Name.Local == "class" {
				counts[se.Name.Local+"."+a.Value]++
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	want := map[string]int{"g.panel": 2, "path.rtt": 2, "path.lost": 2, "rect.frame": 2, "line.mark-impair": 2, "line.mark-move": 1, "line.mark-action": 1}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d elements, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
	if !strings.Contains(b.String(), "charon + mobiked &lt;lab&gt;") || !strings.Contains(b.String(), "test &amp; check") {
		t.Error("labels not escaped")
	}
}

func TestRenderSVGEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := renderSVG(&b, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b.Bytes(), new(struct{})); err != nil {
		t.Fatalf("invalid XML: %v", err)
	}
}

func TestRTTScale(t *testing.T) {
	mk := func(rtts ...float64) []svgSeries {
		var ss []sample
		for _, r := range rtts {
			ss = append(ss, sample{RTT: r})
		}
		return []svgSeries{{Samples: ss}}
	}
	many := func(n int, v float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	tests := []struct {
		name string
		in   []svgSeries
		want float64
	}{
		{"none", nil, 50},
		{"only lost", mk(-1, -1), 50},
		{"small", mk(1, 2, 3), 50},
		{"outliers ignored", mk(append(many(99, 1), 900)...), 50},
		{"loaded", mk(many(100, 150)...), 200},
		{"huge", mk(many(10, 3000)...), 1000},
	}
	for _, tc := range tests {
		if got := rttScale(tc.in); got != tc.want {
			t.Errorf("%s: rttScale = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTickStep(t *testing.T) {
	for _, tc := range []struct{ span, want float64 }{{5, 1}, {20, 1}, {21, 2}, {40, 2}, {90, 5}, {200, 10}, {5000, 100}} {
		if got := tickStep(tc.span); got != tc.want {
			t.Errorf("tickStep(%v) = %v, want %v", tc.span, got, tc.want)
		}
	}
}
