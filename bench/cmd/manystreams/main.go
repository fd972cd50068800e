// Command manystreams measures many idle streams on one server process: for
// each number of streams it starts sseserver (gin-sse with its default
// options, then the bare handler), opens the streams, lets them idle, then
// broadcasts one event a second to all of them, closes them, and checks
// that every stream got every broadcast once and in order. It prints a
// Markdown table: RSS per stream (and gin-sse's against bare's), the
// broadcast latency from publish to receipt, how long the publish calls
// took, and the server's goroutines and live heap before the streams and
// 12 s after they closed (past the default write timeout: see
// load.Config.Linger).
//
//	go build -o bin/ ./cmd/sseserver ./cmd/manystreams
//	bin/manystreams -streams 1000,5000,10000,18000 -broadcasts 60 -svg results-manystreams.svg
//
// The streams of one run share the loopback source addresses 127.0.0.2 to
// 127.0.0.251, so that no address runs out of ephemeral ports. Each stream
// is a file descriptor in the server and one in this process, so the
// open-file limit (RLIMIT_NOFILE) bounds the streams of a run; the Go
// runtime raises the soft limit to the hard one, and a run asks for no
// more than that.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/bench/internal/load"
)

// row is one run.
type row struct {
	Streams int         `json:"streams"`
	Impl    string      `json:"impl"`
	Result  load.Result `json:"result"`
}

func main() {
	bin := flag.String("bin", "bin", "folder of the sseserver binary")
	counts := flag.String("streams", "1000,5000,10000,18000", "numbers of streams, comma-separated")
	broadcasts := flag.Int("broadcasts", 60, "events broadcast to every stream, one a second")
	implList := flag.String("impls", "gin-sse,bare", "implementations to run, comma-separated (gin-sse first: the others are compared to it)")
	jsonFile := flag.String("json", "", "write the runs to this JSON file")
	svgFile := flag.String("svg", "", "draw RSS per stream and p99 latency against streams in this SVG file")
	bareMax := flag.Int("bare-max", 0, "run bare only up to this many streams (0: at every size)")
	h2c := flag.Int("h2c", 0, "open the streams as HTTP/2 streams without TLS, this many on one connection (0: one HTTP/1.1 connection each)")
	flag.Parse()

	var ns []int
	for f := range strings.SplitSeq(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			log.Fatalf("bad -streams %q", *counts)
		}
		ns = append(ns, n)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		for _, n := range ns {
			if *h2c > 0 {
				n = (n + *h2c - 1) / *h2c
			}
			if uint64(n)+256 > lim.Cur {
				log.Fatalf("%d streams need %d open files in this process and in the server, and the limit is %d (RLIMIT_NOFILE; raise its hard limit, as root: ulimit -Hn)", n, n+256, lim.Cur)
			}
		}
	}
	impls := strings.Split(*implList, ",")

	var rows []row
	ok := true
	fmt.Println("| streams | implementation | RSS per stream | against bare | Go heap + stacks per stream | broadcast p50 | broadcast p99 | publish p99 | publish max | goroutines before → after | live heap before → after | delivery |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
	for _, n := range ns {
		var bare float64
		var line []row
		for _, impl := range impls {
			if impl == "bare" && *bareMax > 0 && n > *bareMax {
				continue
			}
			res, err := run(*bin, impl, n, *broadcasts, *h2c)
			if err != nil {
				res.Error = err.Error()
			}
			r := row{Streams: n, Impl: impl, Result: res}
			line = append(line, r)
			if impl == "bare" {
				bare = res.RSSPerConnKB
			}
			fmt.Fprintf(os.Stderr, "%d streams, %s: %.1f KiB/stream, p99 %.1f ms, %s\n", n, impl, res.RSSPerConnKB, res.P99us/1e3, delivery(res))
		}
		for _, r := range line {
			res := r.Result
			against := "-"
			if bare > 0 && r.Impl != "bare" {
				against = fmt.Sprintf("%.2f×", res.RSSPerConnKB/bare)
			}
			fmt.Printf("| %s | %s | %.1f KiB | %s | %.1f KiB | %.1f ms | %.1f ms | %.0f µs | %.0f µs | %d → %d | %.1f → %.1f MiB | %s |\n",
				thousands(n), r.Impl, res.RSSPerConnKB, against, (res.HeapPerConn+res.StackPerConn)/1024,
				res.P50us/1e3, res.P99us/1e3, res.PublishP99us, res.PublishMaxUs,
				res.GoroutinesBase, res.GoroutinesAfter, float64(res.HeapBase)/(1<<20), float64(res.HeapAfter)/(1<<20), delivery(res))
			ok = ok && res.OK()
		}
		rows = append(rows, line...)
	}
	if *jsonFile != "" {
		b, _ := json.MarshalIndent(rows, "", "  ")
		if err := os.WriteFile(*jsonFile, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if *svgFile != "" {
		if err := os.WriteFile(*svgFile, chart(rows), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if !ok {
		os.Exit(1)
	}
}

func delivery(r load.Result) string {
	switch {
	case r.Error != "":
		return r.Error
	case !r.OK():
		return fmt.Sprintf("lost %d, duplicated %d, reordered %d, failed streams %d", r.Lost, r.Dup, r.Reordered, r.FailedStreams)
	}
	return "every broadcast at every stream"
}

// run starts sseserver with impl, opens n streams and broadcasts to them;
// with h2c > 0, as HTTP/2 streams, h2c on each connection.
func run(bin, impl string, n, broadcasts, h2c int) (load.Result, error) {
	addr, err := load.FreeAddr()
	if err != nil {
		return load.Result{}, err
	}
	args := []string{"-impl", impl, "-addr", addr}
	conns := 0
	if h2c > 0 {
		args = append(args, "-h2c", strconv.Itoa(h2c))
		conns = (n + h2c - 1) / h2c
	}
	srv := exec.Command(filepath.Join(bin, "sseserver"), args...)
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		return load.Result{}, err
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
		time.Sleep(time.Second) // let the sockets close
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return load.Run(ctx, load.Config{
		URL:            "http://" + addr,
		Clients:        n,
		Events:         broadcasts,
		Rate:           1,
		Idle:           true,
		Settle:         2 * time.Second,
		Linger:         sse.DefaultWriteTimeout + 2*time.Second, // see load.Config.Linger
		SourceAddrs:    250,
		ConnectTimeout: 5 * time.Minute,
		Stall:          30 * time.Second,
		ReadBuffer:     4 << 10,
		H2C:            conns,
	})
}

// thousands writes n with commas.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
