// Command benchall runs the whole benchmark: for each scenario and round it
// starts an sseserver per implementation (in an order rotated per round),
// drives it with sseload, stops it, and then prints Markdown tables of the
// medians with each figure's ratio to the ceiling (bare), checks the
// project's targets, and writes the results as JSON and an SVG chart.
//
// Build the binaries first (run.sh does both):
//
//	go build -o bin/ ./cmd/... && bin/benchall
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gin-sse/sse/bench/internal/impls"
	"github.com/gin-sse/sse/bench/internal/load"
)

// scenario is one workload.
type scenario struct {
	Key     string `json:"key"`
	Title   string `json:"title"`
	Clients int    `json:"clients"`
	Events  int    `json:"events"`
	Rate    int    `json:"rate"`
	Size    int    `json:"size"`
	Idle    bool   `json:"idle"`
	// Topics spreads streams and events over this many topics; only the
	// implementations of impls.TopicNames run such a scenario.
	Topics int `json:"topics,omitempty"`
}

// redisServer is the redis-server started for gin-sse-redis, or nil.
var redisServer *load.RedisProc

// implsOf returns those of names that run sc.
func implsOf(sc scenario, names []string) []string {
	if sc.Topics <= 1 {
		return names
	}
	var out []string
	for _, n := range names {
		if slices.Contains(impls.TopicNames, n) {
			out = append(out, n)
		}
	}
	return out
}

func scenarios(quick bool) []scenario {
	if quick {
		return []scenario{
			{Key: "a", Title: "fan-out throughput: 200 subscribers × 500 events, as fast as possible", Clients: 200, Events: 500, Size: 64},
			{Key: "b", Title: "latency: 1,000 subscribers, 100 events/s for 3 s", Clients: 1000, Events: 300, Rate: 100, Size: 64},
			{Key: "c", Title: "memory: 2,000 idle connections", Clients: 2000, Events: 1, Size: 64, Idle: true},
			{Key: "d", Title: "single stream: 1 subscriber × 50,000 small events", Clients: 1, Events: 50000},
			{Key: "e", Title: "many topics: 2,000 subscribers on 2,000 topics, 5,000 events/s for 3 s", Clients: 2000, Events: 15000, Rate: 5000, Size: 64, Topics: 2000},
		}
	}
	return []scenario{
		{Key: "a", Title: "fan-out throughput: 1,000 subscribers × 2,000 events, as fast as possible", Clients: 1000, Events: 2000, Size: 64},
		{Key: "b", Title: "latency: 5,000 subscribers, 100 events/s for 10 s", Clients: 5000, Events: 1000, Rate: 100, Size: 64},
		{Key: "c", Title: "memory: 10,000 idle connections", Clients: 10000, Events: 1, Size: 64, Idle: true},
		{Key: "d", Title: "single stream: 1 subscriber × 200,000 small events", Clients: 1, Events: 200000},
		{Key: "e", Title: "many topics: 10,000 subscribers on 10,000 topics, 20,000 events/s for 10 s", Clients: 10000, Events: 200000, Rate: 20000, Size: 64, Topics: 10000},
	}
}

// run is one measurement.
type run struct {
	Scenario string `json:"scenario"`
	Round    int    `json:"round"`
	// Foreign is the share of the machine's CPU time used, during the
	// run, by processes other than its server and load generator (user and
	// system time; the kernel's network softirq time is left out). A run
	// with more than 10% is repeated, at most twice (and only within the
	// retry budget), and the least disturbed attempt is kept.
	Foreign  float64     `json:"foreign_cpu"`
	Attempts int         `json:"attempts"`
	Result   load.Result `json:"result"`
}

// summary is the median over the rounds of one implementation in one
// scenario.
type summary struct {
	Impl          string  `json:"impl"`
	Runs          int     `json:"runs"`
	Failed        int     `json:"failed_runs"`
	Problems      string  `json:"problems,omitempty"`
	EventsPerSec  float64 `json:"events_per_sec"`
	P50us         float64 `json:"p50_us"`
	P99us         float64 `json:"p99_us"`
	CPUNsPerEvent float64 `json:"cpu_ns_per_event"`
	RSSPerConnKB  float64 `json:"rss_per_conn_kb"`
	RSSBaseKB     float64 `json:"rss_base_kb"`
	RSSKB         float64 `json:"rss_kb"`
}

type report struct {
	Started   time.Time             `json:"started"`
	Seconds   float64               `json:"seconds"`
	Quick     bool                  `json:"quick"`
	Rounds    int                   `json:"rounds"`
	Impls     []string              `json:"impls"`
	Scenarios []scenario            `json:"scenarios"`
	Runs      []run                 `json:"runs"`
	Medians   map[string][]*summary `json:"medians"`
	Targets   []target              `json:"targets"`
}

type target struct {
	Name   string `json:"name"`
	Detail string `json:"detail"`
	Met    bool   `json:"met"`
}

func main() {
	quick := flag.Bool("quick", false, "scaled-down scenarios (under 2 minutes)")
	rounds := flag.Int("rounds", 0, "rounds per scenario, the median is reported (default 3, or 2 with -quick)")
	implList := flag.String("impls", strings.Join(impls.Names, ","), "implementations, comma-separated; "+impls.RedisName+" (not in the default list) runs against a redis-server that benchall starts")
	scenList := flag.String("scenarios", "a,b,c,d,e", "scenarios, comma-separated")
	bin := flag.String("bin", "bin", "directory holding sseserver and sseload")
	out := flag.String("out", "results.json", "JSON results file ('' to skip)")
	svg := flag.String("svg", "results.svg", "SVG chart file ('' to skip)")
	md := flag.String("md", "results.md", "Markdown tables file ('' to skip)")
	profile := flag.String("profile", "", "write CPU profiles of the gin-sse server runs into this directory")
	retryBudget := flag.Duration("retry-budget", 0, "repeat disturbed runs only until this much time has passed (default 10m, or 80s with -quick)")
	flag.Parse()

	if *rounds <= 0 {
		*rounds = 3
		if *quick {
			*rounds = 2
		}
	}
	if *retryBudget <= 0 {
		*retryBudget = 10 * time.Minute
		if *quick {
			*retryBudget = 80 * time.Second
		}
	}
	names := strings.Split(*implList, ",")
	for _, n := range names {
		if !impls.Valid(n) {
			log.Fatalf("unknown implementation %q", n)
		}
	}
	if slices.Contains(names, impls.RedisName) {
		rs, err := load.StartRedis()
		if err != nil {
			fmt.Fprintf(os.Stderr, "SKIP %s: %v\n", impls.RedisName, err)
			names = slices.DeleteFunc(names, func(n string) bool { return n == impls.RedisName })
			if len(names) == 0 {
				os.Exit(1)
			}
		} else {
			redisServer = rs
			defer rs.Stop()
			fmt.Fprintf(os.Stderr, "redis-server %s (pid %d) for %s\n", rs.Addr, rs.PID(), impls.RedisName)
		}
	}
	var scens []scenario
	for _, s := range scenarios(*quick) {
		if slices.Contains(strings.Split(*scenList, ","), s.Key) {
			scens = append(scens, s)
		}
	}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			log.Fatal(err)
		}
	}

	rep := report{Started: time.Now(), Quick: *quick, Rounds: *rounds, Impls: names, Scenarios: scens, Medians: map[string][]*summary{}}
	for _, sc := range scens {
		fmt.Fprintf(os.Stderr, "== (%s) %s\n", sc.Key, sc.Title)
		names := implsOf(sc, names)
		for r := range *rounds {
			order := append(slices.Clone(names[r%len(names):]), names[:r%len(names)]...)
			for _, name := range order {
				prof := ""
				if *profile != "" && name == "gin-sse" {
					prof = filepath.Join(*profile, fmt.Sprintf("%s-%s-r%d.pprof", sc.Key, name, r+1))
				}
				var best run
				for attempt := 1; attempt <= 3; attempt++ {
					if attempt > 1 && time.Since(rep.Started) > *retryBudget {
						break
					}
					waitQuiet(30 * time.Second)
					res, foreign := measure(*bin, name, sc, prof)
					if attempt == 1 || foreign < best.Foreign {
						best = run{Scenario: sc.Key, Round: r + 1, Foreign: foreign, Attempts: attempt, Result: res}
					}
					if foreign <= maxForeign {
						break
					}
					fmt.Fprintf(os.Stderr, "   round %d %-8s disturbed: other processes used %.0f%% of the CPUs, again\n", r+1, name, foreign*100)
				}
				best.Attempts = max(best.Attempts, 1)
				rep.Runs = append(rep.Runs, best)
				warn := fmt.Sprintf("  [foreign CPU %.0f%%]", best.Foreign*100)
				if best.Foreign > maxForeign {
					warn += " DISTURBED"
				}
				fmt.Fprintf(os.Stderr, "   round %d %-8s %s%s\n", r+1, name, oneLine(sc, best.Result), warn)
			}
		}
		rep.Medians[sc.Key] = summarize(sc, names, rep.Runs)
	}
	rep.Targets = targets(rep)
	rep.Seconds = time.Since(rep.Started).Seconds()

	var buf bytes.Buffer
	writeMarkdown(&buf, rep)
	fmt.Print(buf.String())
	if *md != "" {
		must(os.WriteFile(*md, buf.Bytes(), 0o644))
	}
	if *out != "" {
		j, err := json.MarshalIndent(rep, "", "  ")
		must(err)
		must(os.WriteFile(*out, append(j, '\n'), 0o644))
	}
	if *svg != "" {
		must(os.WriteFile(*svg, chart(rep), 0o644))
	}
}

// must ends the program on err (stopping the redis-server it started).
func must(err error) {
	if err != nil {
		if redisServer != nil {
			redisServer.Stop()
		}
		log.Fatal(err)
	}
}

// maxForeign is the share of foreign CPU time above which a run is
// repeated.
const maxForeign = 0.10

// measure starts the server of impl, runs sseload against it and stops it.
// It also returns the share of the CPUs used meanwhile by other processes.
func measure(bin, impl string, sc scenario, cpuprofile string) (load.Result, float64) {
	res := load.Result{Impl: impl, Clients: sc.Clients, Events: sc.Events, Rate: sc.Rate, Size: sc.Size}
	addr, err := load.FreeAddr()
	if err != nil {
		res.Error = err.Error()
		return res, 0
	}
	args := []string{"-impl", impl, "-addr", addr}
	if impl == impls.RedisName {
		args = append(args, "-redis", redisServer.Addr)
	}
	if cpuprofile != "" {
		args = append(args, "-cpuprofile", cpuprofile)
	}
	before := readStat()
	redisBefore := redisServer.CPU()
	srv := exec.Command(filepath.Join(bin, "sseserver"), args...)
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		res.Error = err.Error()
		return res, 0
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	largs := []string{"-json", "-url", "http://" + addr,
		"-clients", fmt.Sprint(sc.Clients), "-events", fmt.Sprint(sc.Events),
		"-rate", fmt.Sprint(sc.Rate), "-size", fmt.Sprint(sc.Size), "-topics", fmt.Sprint(max(sc.Topics, 1))}
	if sc.Idle {
		largs = append(largs, "-idle")
	}
	ld := exec.CommandContext(ctx, filepath.Join(bin, "sseload"), largs...)
	ld.Stderr = os.Stderr
	outp, err := ld.Output()
	if jerr := json.Unmarshal(outp, &res); jerr != nil {
		res.Error = fmt.Sprintf("sseload: %v %v", err, jerr)
	}
	res.Impl = impl
	stop(srv)
	after := readStat()
	// The redis-server is part of gin-sse-redis, not a foreign process.
	ours := cpuTime(srv.ProcessState) + cpuTime(ld.ProcessState) + redisServer.CPU() - redisBefore
	foreign := 0.0
	if total := after.total - before.total; total > 0 {
		foreign = max(after.busy-before.busy-ours, 0) / total
	}
	time.Sleep(300 * time.Millisecond) // let the sockets close
	return res, foreign
}

// cpuTime returns the user and system CPU time of an exited process, in
// seconds.
func cpuTime(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}

// stop ends the server with SIGTERM (so that it writes its profile), and
// kills it when it does not exit.
func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// cpuStat is the machine's CPU time from /proc/stat, in seconds summed
// over the CPUs: busy counts user, nice and system time (not interrupts).
type cpuStat struct{ busy, total float64 }

func readStat() cpuStat {
	var st cpuStat
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return st
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return st
	}
	for i, v := range f[1:8] { // user nice system idle iowait irq softirq
		var n float64
		_, _ = fmt.Sscan(v, &n)
		st.total += n / userHZ
		if i < 3 {
			st.busy += n / userHZ
		}
	}
	return st
}

// userHZ is the unit of /proc/stat.
const userHZ = 100

// waitQuiet waits, at most max, until the machine's CPUs are less than 10%
// busy over a quarter of a second.
func waitQuiet(max time.Duration) {
	deadline := time.Now().Add(max)
	for {
		a := readStat()
		time.Sleep(250 * time.Millisecond)
		b := readStat()
		if b.total <= a.total || (b.busy-a.busy)/(b.total-a.total) < 0.10 || time.Now().After(deadline) {
			return
		}
	}
}

func oneLine(sc scenario, r load.Result) string {
	s := fmt.Sprintf("%10.0f events/s  p50 %9.0f µs  p99 %9.0f µs  CPU %6.0f ns/event",
		r.EventsPerSec, r.P50us, r.P99us, r.CPUNsPerEvent)
	if sc.Idle {
		s = fmt.Sprintf("RSS %d → %d KiB  %.1f KiB/conn  (connect %.1f s)", r.RSSBaseKB, r.RSSKB, r.RSSPerConnKB, r.ConnectSeconds)
	}
	if !r.OK() {
		s += "  FAIL " + problems(r)
	}
	return s
}

func problems(r load.Result) string {
	var p []string
	for _, c := range []struct {
		n    int64
		name string
	}{{r.Lost, "lost"}, {r.Dup, "dup"}, {r.Reordered, "reordered"}, {r.Malformed, "malformed"},
		{int64(r.FailedStreams), "failed streams"}, {r.ServerPublishErr, "publish errors"}} {
		if c.n != 0 {
			p = append(p, fmt.Sprintf("%s=%d", c.name, c.n))
		}
	}
	if r.Error != "" {
		p = append(p, r.Error)
	}
	return strings.Join(p, ", ")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 1 {
		return v[n/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func summarize(sc scenario, names []string, runs []run) []*summary {
	var out []*summary
	for _, name := range names {
		s := &summary{Impl: name}
		var eps, p50, p99, cpu, rss, base, with []float64
		var probs []string
		for _, r := range runs {
			if r.Scenario != sc.Key || r.Result.Impl != name {
				continue
			}
			s.Runs++
			res := r.Result
			if !res.OK() {
				s.Failed++
				probs = append(probs, fmt.Sprintf("round %d: %s", r.Round, problems(res)))
			}
			eps = append(eps, res.EventsPerSec)
			p50 = append(p50, res.P50us)
			p99 = append(p99, res.P99us)
			cpu = append(cpu, res.CPUNsPerEvent)
			rss = append(rss, res.RSSPerConnKB)
			base = append(base, float64(res.RSSBaseKB))
			with = append(with, float64(res.RSSKB))
		}
		s.EventsPerSec, s.P50us, s.P99us, s.CPUNsPerEvent = median(eps), median(p50), median(p99), median(cpu)
		s.RSSPerConnKB, s.RSSBaseKB, s.RSSKB = median(rss), median(base), median(with)
		s.Problems = strings.Join(probs, "; ")
		out = append(out, s)
	}
	return out
}

func find(list []*summary, impl string) *summary {
	for _, s := range list {
		if s.Impl == impl {
			return s
		}
	}
	return nil
}

func peers(list []*summary) []*summary {
	var p []*summary
	for _, s := range list {
		if s.Impl != "gin-sse" && s.Impl != "bare" && s.Impl != impls.RedisName {
			p = append(p, s)
		}
	}
	return p
}

// targets checks the project's goals against the medians.
func targets(rep report) []target {
	var ts []target
	for _, key := range []string{"a", "d"} {
		list := rep.Medians[key]
		g, bare := find(list, "gin-sse"), find(list, "bare")
		if g == nil {
			continue
		}
		var best *summary
		for _, p := range peers(list) {
			if p.Failed == 0 && (best == nil || p.EventsPerSec > best.EventsPerSec) {
				best = p
			}
		}
		if best != nil {
			ratio := g.EventsPerSec / best.EventsPerSec
			ts = append(ts, target{
				Name:   fmt.Sprintf("(%s) gin-sse events/s ≥ 2× best peer", key),
				Detail: fmt.Sprintf("%.2f× %s (%s vs %s)", ratio, best.Impl, load.Rate(g.EventsPerSec), load.Rate(best.EventsPerSec)),
				Met:    ratio >= 2 && g.Failed == 0,
			})
		}
		if bare != nil && bare.EventsPerSec > 0 {
			ratio := g.EventsPerSec / bare.EventsPerSec
			detail := fmt.Sprintf("%.2f× (%s vs %s)", ratio, load.Rate(g.EventsPerSec), load.Rate(bare.EventsPerSec))
			if lo, hi, ok := roundRatios(rep.Runs, key, "gin-sse", "bare"); ok {
				detail += fmt.Sprintf("; rounds %.2f–%.2f×", lo, hi)
			}
			ts = append(ts, target{
				Name:   fmt.Sprintf("(%s) gin-sse events/s ≥ 0.7× bare", key),
				Detail: detail,
				Met:    ratio >= 0.7 && g.Failed == 0,
			})
		}
	}
	if list := rep.Medians["b"]; list != nil {
		if g := find(list, "gin-sse"); g != nil && len(peers(list)) > 0 {
			met, worst := g.Failed == 0, []string{}
			for _, p := range peers(list) {
				if p.Failed == 0 && g.P99us >= p.P99us {
					met = false
					worst = append(worst, fmt.Sprintf("%s %s", p.Impl, dur(p.P99us)))
				}
			}
			d := fmt.Sprintf("gin-sse p99 %s", dur(g.P99us))
			if len(worst) > 0 {
				d += "; not lower than " + strings.Join(worst, ", ")
			}
			ts = append(ts, target{Name: "(b) gin-sse p99 latency < every peer", Detail: d, Met: met})
		}
	}
	if list := rep.Medians["c"]; list != nil {
		if g := find(list, "gin-sse"); g != nil {
			var best *summary
			for _, p := range peers(list) {
				if p.Failed == 0 && (best == nil || p.RSSPerConnKB < best.RSSPerConnKB) {
					best = p
				}
			}
			if best != nil {
				ts = append(ts, target{
					Name:   "(c) gin-sse RSS per idle connection ≤ best peer",
					Detail: fmt.Sprintf("%.1f KiB vs %s %.1f KiB", g.RSSPerConnKB, best.Impl, best.RSSPerConnKB),
					Met:    g.RSSPerConnKB <= best.RSSPerConnKB && g.Failed == 0,
				})
			}
		}
	}
	return ts
}

// roundRatios returns the lowest and highest ratio of impl's delivered
// events/s to base's within one round of scenario key, over the rounds in
// which both runs succeeded: the spread that the machine's noise gives the
// ratio of the medians. ok is false when no round has both.
func roundRatios(runs []run, key, impl, base string) (lo, hi float64, ok bool) {
	byRound := map[int]map[string]float64{}
	for _, r := range runs {
		if r.Scenario != key || !r.Result.OK() {
			continue
		}
		if byRound[r.Round] == nil {
			byRound[r.Round] = map[string]float64{}
		}
		byRound[r.Round][r.Result.Impl] = r.Result.EventsPerSec
	}
	for _, m := range byRound {
		a, b := m[impl], m[base]
		if a <= 0 || b <= 0 {
			continue
		}
		ratio := a / b
		if !ok || ratio < lo {
			lo = ratio
		}
		if !ok || ratio > hi {
			hi = ratio
		}
		ok = true
	}
	return lo, hi, ok
}

func dur(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2f s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.1f ms", us/1e3)
	}
	return fmt.Sprintf("%.0f µs", us)
}

func ratio(v, ceiling float64) string {
	if ceiling == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/ceiling)
}

func check(s *summary) string {
	if s.Failed == 0 {
		return "ok"
	}
	return fmt.Sprintf("**FAIL** (%d/%d runs: %s)", s.Failed, s.Runs, s.Problems)
}

func writeMarkdown(w io.Writer, rep report) {
	mode := "full"
	if rep.Quick {
		mode = "quick"
	}
	fmt.Fprintf(w, "Run of %s (%s mode, %d rounds, median shown; %.0f s in all). "+
		"\"vs bare\" is the ratio to the ceiling, the plain net/http fan-out.\n\n",
		rep.Started.Format("2006-01-02 15:04"), mode, rep.Rounds, rep.Seconds)
	maxBg, disturbed, repeated := 0.0, 0, 0
	for _, r := range rep.Runs {
		maxBg = max(maxBg, r.Foreign)
		if r.Foreign > maxForeign {
			disturbed++
		}
		if r.Attempts > 1 {
			repeated++
		}
	}
	fmt.Fprintf(w, "CPU used by other processes during the runs kept: at most %.0f%% of the machine; "+
		"%d of %d runs were repeated because of it, %d are still above %.0f%%.\n\n",
		maxBg*100, repeated, len(rep.Runs), disturbed, maxForeign*100)
	for _, sc := range rep.Scenarios {
		list := rep.Medians[sc.Key]
		bare := find(list, "bare")
		if bare == nil {
			bare = &summary{}
		}
		fmt.Fprintf(w, "### (%s) %s\n\n", sc.Key, sc.Title)
		switch {
		case sc.Idle:
			fmt.Fprintln(w, "| impl | RSS per connection | vs bare | RSS idle | RSS with connections | delivery |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|")
			for _, s := range list {
				fmt.Fprintf(w, "| %s | %.1f KiB | %s | %.1f MiB | %.1f MiB | %s |\n", s.Impl, s.RSSPerConnKB,
					ratio(s.RSSPerConnKB, bare.RSSPerConnKB), s.RSSBaseKB/1024, s.RSSKB/1024, check(s))
			}
		case sc.Rate > 0:
			fmt.Fprintln(w, "| impl | p50 latency | p99 latency | p99 vs bare | delivered events/s | server CPU/event | delivery |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|")
			for _, s := range list {
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.0f ns | %s |\n", s.Impl, dur(s.P50us), dur(s.P99us),
					ratio(s.P99us, bare.P99us), load.Rate(s.EventsPerSec), s.CPUNsPerEvent, check(s))
			}
		default:
			fmt.Fprintln(w, "| impl | delivered events/s | vs bare | server CPU/event | CPU vs bare | p50 latency | p99 latency | delivery |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|")
			for _, s := range list {
				fmt.Fprintf(w, "| %s | %s | %s | %.0f ns | %s | %s | %s | %s |\n", s.Impl, load.Rate(s.EventsPerSec),
					ratio(s.EventsPerSec, bare.EventsPerSec), s.CPUNsPerEvent, ratio(s.CPUNsPerEvent, bare.CPUNsPerEvent),
					dur(s.P50us), dur(s.P99us), check(s))
			}
		}
		fmt.Fprintln(w)
	}
	if len(rep.Targets) > 0 {
		fmt.Fprintln(w, "### Targets")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| target | result | met |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, t := range rep.Targets {
			met := "**no**"
			if t.Met {
				met = "yes"
			}
			fmt.Fprintf(w, "| %s | %s | %s |\n", t.Name, t.Detail, met)
		}
		fmt.Fprintln(w)
	}
}
