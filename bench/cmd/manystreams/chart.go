package main

import (
	"fmt"
	"slices"
	"strings"
)

// chart draws two bar charts against the number of streams: RSS per
// stream and broadcast p99 latency, one bar per implementation.
func chart(rows []row) []byte {
	var ns []int
	var impls []string
	for _, r := range rows {
		if !slices.Contains(ns, r.Streams) {
			ns = append(ns, r.Streams)
		}
		if !slices.Contains(impls, r.Impl) {
			impls = append(impls, r.Impl)
		}
	}
	colors := []string{"#1f77b4", "#7f7f7f", "#ff7f0e", "#2ca02c"}
	const w, h, top, panelH = 780, 345, 60, 220
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	b.WriteString(`<rect width="100%" height="100%" fill="#ffffff"/>` + "\n")
	b.WriteString(`<text x="10" y="22" font-size="15" font-weight="bold">Idle streams on one server process, one broadcast a second</text>` + "\n")
	for i, im := range impls {
		fmt.Fprintf(&b, `<rect x="%d" y="34" width="14" height="14" fill="%s"/><text x="%d" y="46">%s</text>`+"\n", 10+i*110, colors[i%len(colors)], 30+i*110, im)
	}
	panel := func(x0 int, title, unit string, value func(r row) float64) {
		left, width := x0+58, 320
		bottom := top + 20 + panelH
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0, top+10, title)
		var maxV float64
		for _, r := range rows {
			maxV = max(maxV, value(r))
		}
		if maxV == 0 {
			maxV = 1
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000"/>`+"\n", left, bottom, left+width, bottom)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000"/>`+"\n", left, top+20, left, bottom)
		for _, f := range []float64{0.5, 1} {
			y := float64(bottom) - f*panelH*0.9
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left+1, y, left+width, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#555">%.1f %s</text>`+"\n", left-4, y+4, f*maxV, unit)
		}
		group := float64(width) / float64(len(ns))
		bar := group * 0.8 / float64(len(impls))
		for gi, n := range ns {
			gx := float64(left) + float64(gi)*group + group*0.1
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", gx+group*0.4, bottom+16, thousands(n))
			for ii, im := range impls {
				i := slices.IndexFunc(rows, func(r row) bool { return r.Streams == n && r.Impl == im })
				if i < 0 {
					continue
				}
				v := value(rows[i])
				bh := v / maxV * panelH * 0.9
				x := gx + float64(ii)*bar
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, float64(bottom)-bh, bar-2, bh, colors[ii%len(colors)])
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%.1f</text>`+"\n", x+bar/2-1, float64(bottom)-bh-3, v)
			}
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#555">streams</text>`+"\n", left+width/2, bottom+32)
	}
	panel(10, "server RSS per stream", "KiB", func(r row) float64 { return r.Result.RSSPerConnKB })
	panel(400, "broadcast latency, p99", "ms", func(r row) float64 { return r.Result.P99us / 1e3 })
	b.WriteString("</svg>\n")
	return []byte(b.String())
}
