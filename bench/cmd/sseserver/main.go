// Command sseserver serves one SSE implementation for the benchmark:
// GET /events streams topic "t", POST /publish?n=N&rate=R&size=S publishes,
// GET /stats reports the subscribers and the process id.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	pprofhttp "net/http/pprof"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/gin-sse/sse/bench/internal/impls"
)

func main() {
	impl := flag.String("impl", "gin-sse", fmt.Sprintf("implementation: one of %v, or %s (needs -redis)", impls.Names, impls.RedisName))
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address for "+impls.RedisName)
	redisCluster := flag.String("redis-cluster", "", "comma-separated seed addresses of a Redis Cluster for "+impls.RedisName+" (replaces -redis)")
	redisPrefix := flag.String("redis-prefix", "", "Redis key prefix for "+impls.RedisName+": servers with the same one share events (default: one of its own)")
	addr := flag.String("addr", "127.0.0.1:8089", "listen address")
	queue := flag.Int("queue", 1<<20, "channel buffer of the gin fan-out (capped at 4096); gin-sse runs with its defaults")
	heartbeat := flag.Int("heartbeat", 0, "unused: gin-sse runs with its default heartbeat")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	debug := flag.Bool("pprof", false, "serve net/http/pprof at /debug/pprof/")
	h2c := flag.Int("h2c", 0, "also serve HTTP/2 without TLS (h2c, prior knowledge), with at most this many streams on one connection")
	flag.Parse()

	raiseNoFile()
	o := impls.Options{QueueSize: *queue, Heartbeat: *heartbeat, RedisAddr: *redisAddr, RedisPrefix: *redisPrefix}
	if *redisCluster != "" {
		o.RedisClusterAddrs = strings.Split(*redisCluster, ",")
	}
	im, err := impls.New(*impl, o)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	var prof *os.File
	if *cpuprofile != "" {
		if prof, err = os.Create(*cpuprofile); err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			log.Fatal(err)
		}
	}
	var h http.Handler = impls.NewServer(*impl, im)
	if *debug {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprofhttp.Index)
		mux.HandleFunc("/debug/pprof/profile", pprofhttp.Profile)
		mux.Handle("/", h)
		h = mux
	}
	srv := &http.Server{Handler: h}
	if *h2c > 0 {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: *h2c}
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case err := <-done:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}
	if prof != nil {
		pprof.StopCPUProfile()
		if err := prof.Close(); err != nil {
			log.Print(err)
		}
	}
	_ = ln.Close()
	os.Exit(0)
}

// raiseNoFile lifts the soft limit on open files to the hard one (the Go
// runtime does this too; done here so that it does not depend on it).
func raiseNoFile() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
