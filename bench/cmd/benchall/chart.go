package main

import (
	"bytes"
	"fmt"
	"html"

	"github.com/gin-sse/sse/bench/internal/load"
)

// chart draws, by hand, a horizontal bar chart of the median delivered
// events/s per implementation, one panel per throughput scenario.
func chart(rep report) []byte {
	const (
		width  = 760
		left   = 90  // room for the names
		right  = 150 // room for the values
		barH   = 22
		gap    = 8
		titleH = 34
		panelG = 18
	)
	var panels []scenario
	for _, sc := range rep.Scenarios {
		if !sc.Idle && sc.Rate == 0 {
			panels = append(panels, sc)
		}
	}
	height := 40
	for _, sc := range panels {
		height += titleH + len(rep.Medians[sc.Key])*(barH+gap) + panelG
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="24" font-size="16" font-weight="bold">Delivered events/s (median of %d rounds, higher is better)</text>`+"\n", rep.Rounds)
	y := 40
	for _, sc := range panels {
		list := rep.Medians[sc.Key]
		maxV := 0.0
		for _, s := range list {
			maxV = max(maxV, s.EventsPerSec)
		}
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">(%s) %s</text>`+"\n", y+20, sc.Key, html.EscapeString(sc.Title))
		y += titleH
		for _, s := range list {
			w := 0.0
			if maxV > 0 {
				w = s.EventsPerSec / maxV * float64(width-left-right)
			}
			color := "#7a8ca3"
			switch s.Impl {
			case "gin-sse":
				color = "#1f77b4"
			case "bare":
				color = "#b0b0b0"
			}
			label := load.Rate(s.EventsPerSec)
			if s.Failed > 0 {
				color = "#d62728"
				label += " (FAIL)"
			}
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+barH-6, html.EscapeString(s.Impl))
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y, w, barH, color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(left)+w+6, y+barH-6, html.EscapeString(label))
			y += barH + gap
		}
		y += panelG
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
