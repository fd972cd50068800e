package main

import (
	"bytes"
	"fmt"
	"html"
	"slices"

	"github.com/gin-sse/sse/bench/internal/load"
)

// setups are the series of the chart, in order, with their labels and
// colours.
var setups = []struct{ key, label, color string }{
	{"single", "one Redis", "#1f77b4"},
	{"cluster", "Redis Cluster, 3 masters", "#ff7f0e"},
}

// chart draws, by hand, grouped bar charts of the points against the
// number of instances: one column per scenario, one row for the delivered
// events/s and one for the app CPU per delivered event (all instances),
// one bar per setup.
func chart(points []point) []byte {
	const (
		panelW, panelH = 380, 230
		top            = 64 // title and legend
		plotL, plotR   = 58, 10
		plotT, plotB   = 30, 34
	)
	rows := []struct {
		title string
		value func(point) float64
		label func(float64) string
	}{
		{"delivered events/s", func(p point) float64 { return p.EventsPerSec }, chartRate},
		{"app CPU per delivered event", func(p point) float64 { return p.AppCPUns }, micro},
	}
	width, height := 2*panelW+20, top+len(rows)*panelH+10
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	rounds := 0
	for _, p := range points {
		rounds = max(rounds, p.Rounds)
	}
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">gin-sse on Redis, several app instances (medians of up to %d rounds)</text>`+"\n", rounds)
	fmt.Fprintf(&b, `<text x="%d" y="46" text-anchor="end" fill="#555">more events/s and less CPU (of all the instances) are better</text>`+"\n", width-10)
	x := 10
	for _, s := range setups {
		fmt.Fprintf(&b, `<rect x="%d" y="34" width="14" height="14" fill="%s"/><text x="%d" y="46">%s</text>`+"\n", x, s.color, x+20, html.EscapeString(s.label))
		x += 40 + 8*len(s.label)
	}
	for ci, sc := range scenarios {
		var counts []int
		for _, p := range points {
			if p.Scenario == sc.key && !slices.Contains(counts, p.Instances) {
				counts = append(counts, p.Instances)
			}
		}
		slices.Sort(counts)
		for ri, row := range rows {
			x0, y0 := 10+ci*(panelW+10), top+ri*panelH
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0, y0+14, html.EscapeString(sc.title+": "+row.title))
			maxV := 0.0
			for _, p := range points {
				if p.Scenario == sc.key {
					maxV = max(maxV, row.value(p))
				}
			}
			pl, pt := x0+plotL, y0+plotT
			pw, ph := panelW-plotL-plotR, panelH-plotT-plotB
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000"/>`+"\n", pl, pt+ph, pl+pw, pt+ph)
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000"/>`+"\n", pl, pt, pl, pt+ph)
			if maxV <= 0 || len(counts) == 0 {
				continue
			}
			top := maxV * 1.15
			for _, f := range []float64{0.5, 1} {
				y := float64(pt+ph) - f*maxV/top*float64(ph)
				fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", pl+1, y, pl+pw, y)
				fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%s</text>`+"\n", pl-4, y+4, html.EscapeString(row.label(f*maxV)))
			}
			groupW := float64(pw) / float64(len(counts))
			barW := groupW * 0.8 / float64(len(setups))
			for gi, n := range counts {
				gx := float64(pl) + float64(gi)*groupW
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d instance%s</text>`+"\n", gx+groupW/2, pt+ph+16, n, plural(n))
				for si, s := range setups {
					i := slices.IndexFunc(points, func(p point) bool {
						return p.Setup == s.key && p.Scenario == sc.key && p.Instances == n
					})
					if i < 0 {
						continue
					}
					v := row.value(points[i])
					h := v / top * float64(ph)
					bx := gx + groupW*0.1 + float64(si)*barW
					color, label := s.color, row.label(v)
					if points[i].Delivery != "ok" {
						color, label = "#d62728", label+" FAIL"
					}
					fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx, float64(pt+ph)-h, barW-2, h, color)
					fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n", bx+barW/2-1, float64(pt+ph)-h-3, html.EscapeString(label))
				}
			}
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// chartRate formats events per second, with a decimal below 100 k/s.
func chartRate(v float64) string {
	if v < 100e3 {
		return fmt.Sprintf("%.1f k/s", v/1e3)
	}
	return load.Rate(v)
}

// micro formats a time in ns as µs.
func micro(ns float64) string { return fmt.Sprintf("%.1f µs", ns/1000) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
