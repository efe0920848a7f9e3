package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
)

// svgSeries is one panel of a timeline: one mode of one scenario.
type svgSeries struct {
	Label   string
	Samples []sample // T relative to the impairment (s), RTT ms (< 0 lost)
	Marks   []mark
}

// Geometry of a timeline.
const (
	svgWidth   = 900
	svgPanelH  = 170
	svgLeft    = 60
	svgRight   = 20
	svgTop     = 40
	svgGap     = 50
	svgBottomM = 50
)

// renderSVG draws one panel per series: tunnel ping RTT over time (grey
// dots), lost echo requests (red ticks under the axis), the impairment and
// other lab actions (dashed lines) and SA moves (green lines). All panels
// share the time axis.
func renderSVG(w io.Writer, title string, series []svgSeries) error {
	tMin, tMax := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, p := range s.Samples {
			tMin, tMax = math.Min(tMin, p.T), math.Max(tMax, p.T)
		}
		for _, m := range s.Marks {
			tMin, tMax = math.Min(tMin, m.T), math.Max(tMax, m.T)
		}
	}
	if math.IsInf(tMin, 1) {
		tMin, tMax = 0, 1
	}
	tMin, tMax = math.Floor(tMin), math.Ceil(tMax)
	if tMax <= tMin {
		tMax = tMin + 1
	}
	maxRTT := rttScale(series)
	plotW := float64(svgWidth - svgLeft - svgRight)
	x := func(t float64) float64 { return svgLeft + (t-tMin)/(tMax-tMin)*plotW }
	height := svgTop + len(series)*(svgPanelH+svgGap) + svgBottomM - svgGap

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", svgLeft, html.EscapeString(title))
	step := tickStep(tMax - tMin)
	for i, s := range series {
		top := float64(svgTop + i*(svgPanelH+svgGap))
		bottom := top + svgPanelH
		y := func(rtt float64) float64 { return bottom - math.Min(rtt, maxRTT)/maxRTT*svgPanelH }
		lost := 0
		for _, p := range s.Samples {
			if p.RTT < 0 {
				lost++
			}
		}
		fmt.Fprintf(&b, `<g class="panel" id="panel-%d">`+"\n", i)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-weight="bold">%s</text>`+"\n", svgLeft, top-6, html.EscapeString(fmt.Sprintf("%s (%d pings, %d lost)", s.Label, len(s.Samples), lost)))
		fmt.Fprintf(&b, `<rect class="frame" x="%d" y="%.1f" width="%.1f" height="%d" fill="none" stroke="#888"/>`+"\n", svgLeft, top, plotW, svgPanelH)
		for v := 0.0; v <= maxRTT; v += maxRTT / 5 {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n",
				svgLeft, y(v), svgLeft+plotW, y(v), svgLeft-4, y(v)+4, v)
		}
		fmt.Fprintf(&b, `<text x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">RTT ms</text>`+"\n", (top+bottom)/2, (top+bottom)/2)
		for t := math.Ceil(tMin/step) * step; t <= tMax+1e-9; t += step {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%g</text>`+"\n", x(t), bottom+14, t)
		}
		// Replies as one path of tiny squares (compact for thousands of points).
		var dots, ticks strings.Builder
		for _, p := range s.Samples {
			if p.RTT < 0 {
				fmt.Fprintf(&ticks, "M%.1f %.1fv6", x(p.T), bottom+18)
				continue
			}
			fmt.Fprintf(&dots, "M%.1f %.1fh1.5v1.5h-1.5z", x(p.T)-0.75, y(p.RTT)-0.75)
		}
		if dots.Len() > 0 {
			fmt.Fprintf(&b, `<path class="rtt" d="%s" fill="#555"/>`+"\n", dots.String())
		}
		if ticks.Len() > 0 {
			fmt.Fprintf(&b, `<path class="lost" d="%s" stroke="#d22" stroke-width="1"/>`+"\n", ticks.String())
		}
		lastLabel := [2]float64{math.Inf(-1), math.Inf(-1)}
		for _, m := range s.Marks {
			color, dash := "#e08000", ` stroke-dasharray="4 3"`
			switch m.Kind {
			case "impair":
				color = "#d22"
			case "move":
				color, dash = "#1a1", ""
			}
			fmt.Fprintf(&b, `<line class="mark-%s" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"%s/>`+"\n",
				m.Kind, x(m.T), top, x(m.T), bottom, color, dash)
			// Labels that would overlap the previous one of their row are left out.
			row := 0
			if m.Kind == "move" {
				row = 1
			}
			if m.Label != "" && x(m.T)-lastLabel[row] >= 40 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", x(m.T)+3, top+12+float64(row)*13, color, html.EscapeString(m.Label))
				lastLabel[row] = x(m.T)
			}
		}
		b.WriteString("</g>\n")
	}
	last := float64(svgTop + len(series)*(svgPanelH+svgGap) - svgGap)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">seconds since the impairment (red dashed: impairment, orange: other lab action, green: SA moved, red ticks: lost pings)</text>`+"\n",
		svgLeft+plotW/2, last+42)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// rttScale is the y axis maximum: the smallest of 50, 100, 200, 500 and
// 1000 ms that holds 98 % of the replies (higher ones are drawn at the top).
func rttScale(series []svgSeries) float64 {
	var rtts []float64
	for _, s := range series {
		for _, p := range s.Samples {
			if p.RTT >= 0 {
				rtts = append(rtts, p.RTT)
			}
		}
	}
	if len(rtts) == 0 {
		return 50
	}
	slices.Sort(rtts)
	p98 := rtts[len(rtts)*98/100]
	for _, m := range []float64{50, 100, 200, 500} {
		if p98 <= m {
			return m
		}
	}
	return 1000
}

// tickStep picks 1, 2, 5 or 10 s steps for about 10-20 ticks.
func tickStep(span float64) float64 {
	for _, s := range []float64{1, 2, 5, 10, 20, 50} {
		if span/s <= 20 {
			return s
		}
	}
	return 100
}
