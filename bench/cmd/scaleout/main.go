// Command scaleout measures gin-sse on Redis with several app instances:
// it starts a redis-server and 1, 2 and 4 sseserver processes
// (-impl gin-sse-redis, default options) sharing it, spreads the streams of
// sseload over them and publishes through the first, for two scenarios:
//
//   - fan-out: 1,000 streams on one topic, 2,000 events as fast as possible;
//   - per-user topics: 10,000 streams on 10,000 topics (one each), 20,000
//     events/s spread over them for 5 s.
//
// It prints a Markdown table: delivered events/s, p50 and p99 latency, the
// app instances' CPU time per delivered event (all of them, and each), and
// Redis's CPU time per published event. Build the binaries first:
//
//	go build -o bin/ ./cmd/sseserver ./cmd/sseload ./cmd/scaleout
//	bin/scaleout -instances 1,2,4 -rounds 3
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
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
	name                          string
	clients, events, rate, topics int
}

var scenarios = []scenario{
	{"fan-out: 1,000 streams × 2,000 events", 1000, 2000, 0, 1},
	{"per-user topics: 10,000 streams and topics, 20,000 events/s", 10000, 100000, 20000, 10000},
}

func main() {
	bin := flag.String("bin", "bin", "folder of the sseserver and sseload binaries")
	instances := flag.String("instances", "1,2,4", "numbers of app instances")
	rounds := flag.Int("rounds", 3, "runs of each case; the median is shown")
	quick := flag.Bool("quick", false, "a tenth of the events, for a quick look")
	flag.Parse()

	rs, err := load.StartRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scaleout:", err)
		os.Exit(1)
	}
	defer rs.Stop()

	fmt.Printf("| scenario | instances | delivered events/s | p50 latency | p99 latency | app CPU/delivered event (all) | app CPU/delivered event (each) | Redis CPU/published event | delivery |\n")
	fmt.Printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, sc := range scenarios {
		if *quick {
			sc.events /= 10
		}
		for _, field := range strings.Split(*instances, ",") {
			n, err := strconv.Atoi(field)
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "scaleout: bad -instances %q\n", *instances)
				os.Exit(2)
			}
			var runs []run
			for r := range *rounds {
				res := measure(*bin, rs, sc, n)
				fmt.Fprintf(os.Stderr, "%s, %d instances, round %d: %.0f events/s p99 %.1f ms %s\n", sc.name, n, r+1, res.EventsPerSec, res.P99us/1000, res.Error)
				runs = append(runs, res)
			}
			slices.SortFunc(runs, func(a, b run) int { return int(a.EventsPerSec - b.EventsPerSec) })
			m := runs[len(runs)/2]
			delivery := "ok"
			for _, r := range runs {
				if p := problem(r.Result); p != "" {
					delivery = p
				}
			}
			perEvent := float64(m.ServerCPUNs) / float64(max(m.Delivered, 1))
			fmt.Printf("| %s | %d | %s | %.1f ms | %.1f ms | %.0f ns | %.0f ns | %.1f µs | %s |\n",
				sc.name, n, rate(m.EventsPerSec), m.P50us/1000, m.P99us/1000, perEvent, perEvent/float64(n),
				m.redisCPU*1e6/float64(max(m.ServerPublished, 1)), delivery)
		}
	}
}

// rate formats events per second.
func rate(v float64) string {
	if v >= 1e6 {
		return fmt.Sprintf("%.2f M/s", v/1e6)
	}
	return fmt.Sprintf("%.0f k/s", v/1e3)
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

// measure starts n instances on rs, runs sseload over them and stops them.
func measure(bin string, rs *load.RedisProc, sc scenario, n int) run {
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
		srv := exec.Command(filepath.Join(bin, "sseserver"), "-impl", impls.RedisName, "-addr", addr, "-redis", rs.Addr, "-redis-prefix", prefix)
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
	before := rs.CPU()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "sseload"), args...).Output()
	r := run{redisCPU: rs.CPU() - before}
	if jerr := json.Unmarshal(out, &r.Result); jerr != nil {
		r.Error = fmt.Sprintf("sseload: %v %v", err, jerr)
	}
	return r
}
