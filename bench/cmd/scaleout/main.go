// Command scaleout measures gin-sse on Redis with several app instances:
// it starts a redis-server (or, with -cluster, a Redis Cluster of 3
// masters without replicas) and 1, 2 and 4 sseserver processes
// (-impl gin-sse-redis, default options) sharing it, spreads the streams of
// sseload over them and publishes through the first, for two scenarios:
//
//   - fan-out: 1,000 streams on one topic, 2,000 events as fast as possible;
//   - per-user topics: 10,000 streams on 10,000 topics (one each), 20,000
//     events/s spread over them for 5 s.
//
// It prints a Markdown table: delivered events/s, p50 and p99 latency, the
// app instances' CPU time per delivered event (all of them, and each), and
// Redis's CPU time per published event (on a cluster, of all its servers).
// With -json it also keeps the medians in a file, one set per setup (one
// Redis, cluster), and with -svg draws them all as a chart. Build the
// binaries first:
//
//	go build -o bin/ ./cmd/sseserver ./cmd/sseload ./cmd/scaleout
//	bin/scaleout -instances 1,2,4 -rounds 3 -json results-scaleout.json -svg results-scaleout.svg
//	bin/scaleout -instances 1,2,4 -rounds 3 -cluster -json results-scaleout.json -svg results-scaleout.svg
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-sse/sse/bench/internal/impls"
	"github.com/gin-sse/sse/bench/internal/load"
)

type scenario struct {
	key, title, name              string
	clients, events, rate, topics int
}

var scenarios = []scenario{
	{"fan-out", "fan-out", "fan-out: 1,000 streams × 2,000 events", 1000, 2000, 0, 1},
	{"per-user", "per-user topics", "per-user topics: 10,000 streams and topics, 20,000 events/s", 10000, 100000, 20000, 10000},
}

// setup is the Redis the instances share.
type setup struct {
	key   string   // "single" or "cluster"
	args  []string // sseserver's flags for it
	cpu   func() float64
	close func()
}

func startSetup(cluster bool, masters int) (*setup, error) {
	if !cluster {
		rs, err := load.StartRedis()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "redis-server %s\n", rs.Addr)
		return &setup{key: "single", args: []string{"-redis", rs.Addr}, cpu: rs.CPU, close: rs.Stop}, nil
	}
	rc, err := load.StartRedisCluster(masters)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "Redis Cluster of %d masters, no replicas: %s\n", masters, strings.Join(rc.Addrs(), " "))
	args := []string{"-redis-cluster", strings.Join(rc.Addrs(), ",")}
	return &setup{key: "cluster", args: args, cpu: rc.CPU, close: rc.Stop}, nil
}

func main() {
	bin := flag.String("bin", "bin", "folder of the sseserver and sseload binaries")
	instances := flag.String("instances", "1,2,4", "numbers of app instances")
	rounds := flag.Int("rounds", 3, "runs of each case; the median is shown")
	quick := flag.Bool("quick", false, "a tenth of the events, for a quick look")
	cluster := flag.Bool("cluster", false, "share a Redis Cluster (-masters masters, no replicas) instead of one redis-server")
	masters := flag.Int("masters", 3, "masters of the -cluster")
	jsonFile := flag.String("json", "", "keep the medians in this JSON file: this setup's (one Redis or cluster) replace those of an earlier run, the other's stay")
	svgFile := flag.String("svg", "", "draw the medians (of -json's file, else of this run) as an SVG chart in this file")
	redraw := flag.Bool("redraw", false, "only draw -svg from the -json file, measuring nothing")
	flag.Parse()

	if *redraw {
		if err := drawFile(*jsonFile, *svgFile); err != nil {
			fmt.Fprintln(os.Stderr, "scaleout:", err)
			os.Exit(1)
		}
		return
	}
	var counts []int
	for field := range strings.SplitSeq(*instances, ",") {
		n, err := strconv.Atoi(field)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "scaleout: bad -instances %q\n", *instances)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	st, err := startSetup(*cluster, *masters)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scaleout:", err)
		os.Exit(1)
	}
	defer st.close()

	var points []point
	failed := false
	fmt.Printf("| scenario | instances | delivered events/s | p50 latency | p99 latency | app CPU/delivered event (all) | app CPU/delivered event (each) | Redis CPU/published event | delivery |\n")
	fmt.Printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, sc := range scenarios {
		if *quick {
			sc.events /= 10
		}
		for _, n := range counts {
			var runs []run
			for r := range *rounds {
				res := measure(*bin, st, sc, n)
				fmt.Fprintf(os.Stderr, "%s, %d instances, round %d: %.0f events/s p99 %.1f ms %s\n", sc.name, n, r+1, res.EventsPerSec, res.P99us/1000, res.Error)
				runs = append(runs, res)
			}
			slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.EventsPerSec, b.EventsPerSec) })
			m := runs[len(runs)/2]
			delivery := "ok"
			for _, r := range runs {
				if p := problem(r.Result); p != "" {
					delivery = p
					failed = true
				}
			}
			perEvent := float64(m.ServerCPUNs) / float64(max(m.Delivered, 1))
			redisPerPublish := m.redisCPU * 1e6 / float64(max(m.ServerPublished, 1))
			fmt.Printf("| %s | %d | %s | %.1f ms | %.1f ms | %.0f ns | %.0f ns | %.1f µs | %s |\n",
				sc.name, n, load.Rate(m.EventsPerSec), m.P50us/1000, m.P99us/1000, perEvent, perEvent/float64(n),
				redisPerPublish, delivery)
			points = append(points, point{Setup: st.key, Scenario: sc.key, Instances: n, Rounds: *rounds, Quick: *quick,
				EventsPerSec: m.EventsPerSec, P50ms: m.P50us / 1000, P99ms: m.P99us / 1000,
				AppCPUns: perEvent, RedisCPUus: redisPerPublish, Delivery: delivery})
		}
	}
	if *jsonFile != "" {
		if points, err = merge(*jsonFile, st.key, points); err != nil {
			fmt.Fprintln(os.Stderr, "scaleout:", err)
			os.Exit(1)
		}
	}
	if *svgFile != "" {
		if err := os.WriteFile(*svgFile, chart(points), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "scaleout:", err)
			os.Exit(1)
		}
	}
	if failed { // a case lost, repeated or reordered events
		st.close()
		os.Exit(1)
	}
}

// point is the median of one case, as kept in -json's file.
type point struct {
	Setup        string  `json:"setup"`    // "single" or "cluster"
	Scenario     string  `json:"scenario"` // "fan-out" or "per-user"
	Instances    int     `json:"instances"`
	Rounds       int     `json:"rounds"`
	Quick        bool    `json:"quick,omitempty"`
	EventsPerSec float64 `json:"delivered_events_per_sec"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	AppCPUns     float64 `json:"app_cpu_ns_per_delivered_event"` // all instances
	RedisCPUus   float64 `json:"redis_cpu_us_per_published_event"`
	Delivery     string  `json:"delivery"`
}

// drawFile draws the points of jsonFile in svgFile.
func drawFile(jsonFile, svgFile string) error {
	if jsonFile == "" || svgFile == "" {
		return errors.New("-redraw needs -json and -svg")
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		return err
	}
	var points []point
	if err := json.Unmarshal(b, &points); err != nil {
		return fmt.Errorf("%s: %w", jsonFile, err)
	}
	return os.WriteFile(svgFile, chart(points), 0o644)
}

// merge writes to file the points of setup key and those of other setups
// already in it, and returns them all.
func merge(file, key string, points []point) ([]point, error) {
	var old []point
	if b, err := os.ReadFile(file); err == nil {
		if err := json.Unmarshal(b, &old); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	all := slices.DeleteFunc(old, func(p point) bool { return p.Setup == key })
	all = append(all, points...)
	slices.SortStableFunc(all, func(a, b point) int {
		// "single" before "cluster", "fan-out" before "per-user".
		return cmp.Or(cmp.Compare(b.Setup, a.Setup), cmp.Compare(a.Scenario, b.Scenario), cmp.Compare(a.Instances, b.Instances))
	})
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return nil, err
	}
	return all, os.WriteFile(file, append(b, '\n'), 0o644)
}

// run is one measurement: sseload's result and Redis's CPU time.
type run struct {
	load.Result
	redisCPU float64 // seconds
}

func problem(r load.Result) string {
	switch {
	case r.Error != "":
		return r.Error
	case r.Lost > 0 || r.Dup > 0 || r.Reordered > 0 || r.Malformed > 0:
		return fmt.Sprintf("lost %d, duplicated %d, reordered %d, malformed %d", r.Lost, r.Dup, r.Reordered, r.Malformed)
	}
	return ""
}

// measure starts n instances on st, runs sseload over them and stops them.
func measure(bin string, st *setup, sc scenario, n int) run {
	var urls []string
	var servers []*exec.Cmd
	defer func() {
		for _, s := range servers {
			_ = s.Process.Signal(syscall.SIGTERM)
			_ = s.Wait()
		}
		time.Sleep(300 * time.Millisecond) // let the sockets close
	}()
	prefix := fmt.Sprintf("scaleout:%d:", time.Now().UnixNano())
	for range n {
		addr, err := load.FreeAddr()
		if err != nil {
			return run{Result: load.Result{Error: err.Error()}}
		}
		args := append([]string{"-impl", impls.RedisName, "-addr", addr, "-redis-prefix", prefix}, st.args...)
		srv := exec.Command(filepath.Join(bin, "sseserver"), args...)
		srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
		if err := srv.Start(); err != nil {
			return run{Result: load.Result{Error: err.Error()}}
		}
		servers = append(servers, srv)
		urls = append(urls, "http://"+addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"-json", "-url", urls[0], "-clients", strconv.Itoa(sc.clients), "-events", strconv.Itoa(sc.events),
		"-rate", strconv.Itoa(sc.rate), "-size", "64", "-topics", strconv.Itoa(sc.topics)}
	if n > 1 {
		args = append(args, "-extra", strings.Join(urls[1:], ","))
	}
	before := st.cpu()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "sseload"), args...).Output()
	r := run{redisCPU: st.cpu() - before}
	if jerr := json.Unmarshal(out, &r.Result); jerr != nil {
		r.Error = fmt.Sprintf("sseload: %v %v", err, jerr)
	}
	return r
}
