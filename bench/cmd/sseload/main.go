// Command sseload is the benchmark's load generator. It opens -clients
// streams to an sseserver, waits until the server has them all subscribed,
// asks it to publish -events events, checks that every stream got every
// event exactly once and in order, and prints throughput, latency and the
// server's CPU time (and, with -idle, its memory per connection).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gin-sse/sse/bench/internal/load"
)

func main() {
	var cfg load.Config
	flag.StringVar(&cfg.URL, "url", "http://127.0.0.1:8089", "server base URL")
	flag.IntVar(&cfg.Clients, "clients", 100, "number of streams")
	flag.IntVar(&cfg.Events, "events", 1000, "events to publish")
	flag.IntVar(&cfg.Rate, "rate", 0, "events per second (0: as fast as possible)")
	flag.IntVar(&cfg.Size, "size", 64, "pad each event's data to this many bytes")
	flag.IntVar(&cfg.Topics, "topics", 1, "spread streams and events over this many topics")
	flag.BoolVar(&cfg.Idle, "idle", false, "measure the server's RSS per open stream")
	flag.DurationVar(&cfg.Settle, "settle", 2*time.Second, "with -idle, wait this long before reading RSS")
	flag.DurationVar(&cfg.Stall, "stall", 10*time.Second, "give up when no event arrives for this long")
	flag.IntVar(&cfg.SourceAddrs, "source-addrs", 64, "spread streams over this many loopback source addresses (0: one)")
	flag.IntVar(&cfg.Dialers, "dialers", 64, "connections opened at once")
	flag.IntVar(&cfg.H2C, "h2c", 0, "open the streams as HTTP/2 streams without TLS over this many connections (the server must run with -h2c); 0: one HTTP/1.1 connection each")
	extra := flag.String("extra", "", "comma-separated base URLs of more servers sharing the events (through Redis): streams are spread over them too")
	asJSON := flag.Bool("json", false, "print the result as JSON on stdout")
	flag.Parse()
	if *extra != "" {
		cfg.Extra = strings.Split(*extra, ",")
	}

	raiseNoFile(cfg.Clients)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := load.Run(ctx, cfg)
	if err != nil {
		res.Error = err.Error()
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(res)
	} else {
		fmt.Printf("%-8s clients=%d events=%d rate=%d: %.0f events/s, p50 %.0f µs, p99 %.0f µs, max %.0f µs, "+
			"server CPU %.0f ns/event, lost=%d dup=%d reordered=%d malformed=%d failed=%d",
			res.Impl, res.Clients, res.Events, res.Rate, res.EventsPerSec, res.P50us, res.P99us, res.MaxUs,
			res.CPUNsPerEvent, res.Lost, res.Dup, res.Reordered, res.Malformed, res.FailedStreams)
		if cfg.Idle {
			fmt.Printf(", RSS %d KiB -> %d KiB = %.1f KiB/conn", res.RSSBaseKB, res.RSSKB, res.RSSPerConnKB)
		}
		fmt.Println()
		if res.Error != "" {
			fmt.Println("error:", res.Error)
		}
	}
	if !res.OK() {
		os.Exit(1)
	}
}

// raiseNoFile lifts the soft limit on open files to the hard one and
// warns when that is too few for n streams.
func raiseNoFile(n int) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			log.Print("setrlimit: ", err)
		}
	}
	if uint64(n)+64 > l.Cur {
		log.Printf("warning: RLIMIT_NOFILE is %d, fewer than %d streams need", l.Cur, n+64)
	}
}
