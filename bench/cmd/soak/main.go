// Command soak holds many clients on a gin-sse broker for a while, cutting
// and reconnecting them at random (with Last-Event-ID) while events are
// published at a steady rate, then checks that every client received every
// event exactly once, in order, and reports the server's goroutines and RSS
// before, during and after. The same run against a bare net/http server
// first gives the memory any Go server keeps after that many connections,
// which the after figure is held to. It exits with status 1 on any loss,
// duplicate, or goroutines or memory not back near their floor.
//
//	cd bench && go run ./cmd/soak -clients 10000 -duration 60s -rate 10
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/bench/internal/load"
	"github.com/gin-sse/sse/client"
)

func main() {
	clients := flag.Int("clients", 10000, "clients held open")
	duration := flag.Duration("duration", 60*time.Second, "how long the clients are held while events are published")
	rate := flag.Int("rate", 10, "events published per second on the one topic")
	burst := flag.Int("burst", 1, "publish in bursts of this many events at once (at the same average rate)")
	size := flag.Int("size", 64, "event data size in bytes")
	meanCut := flag.Duration("mean-cut", 10*time.Second, "mean time between a client's own disconnects (exponential)")
	retry := flag.Duration("retry", 100*time.Millisecond, "client reconnection time")
	server := flag.String("server", "", "sseserver binary (default: build the current one into a temporary directory)")
	addr := flag.String("addr", "127.0.0.1:8093", "server listen address")
	sourceAddrs := flag.Int("source-addrs", 64, "spread connections over this many loopback source addresses (0: one)")
	drain := flag.Duration("drain", 60*time.Second, "longest wait for every client to get the last event")
	settle := flag.Duration("settle", 30*time.Second, "longest wait for goroutines and RSS to return near the baseline")
	ref := flag.Bool("reference", true, "first run the same clients against a bare net/http server, whose memory after the run is the floor the library's is held to")
	refDuration := flag.Duration("reference-duration", 0, "length of the reference run (0: the same as -duration)")
	profile := flag.String("profile", "", "save the server's heap and goroutine profiles and memory figures after the run into this directory")
	flag.Parse()
	raiseNoFile()

	ok, err := run(cfg{
		clients: *clients, duration: *duration, rate: *rate, burst: *burst, size: *size, meanCut: *meanCut, retry: *retry,
		server: *server, addr: *addr, sourceAddrs: *sourceAddrs, drain: *drain, settle: *settle,
		profile: *profile, reference: *ref, refDuration: *refDuration,
	})
	if err != nil {
		log.Fatal(err)
	}
	if !ok {
		os.Exit(1)
	}
}

type cfg struct {
	clients        int
	duration       time.Duration
	rate, size     int
	burst          int
	meanCut, retry time.Duration
	server, addr   string
	sourceAddrs    int
	drain, settle  time.Duration
	profile        string
	reference      bool
	refDuration    time.Duration
	quiet          bool // no log of gaps (the reference run)
}

// tracker checks one client's sequence numbers.
type tracker struct {
	mu        sync.Mutex
	next      int // the sequence number expected next
	delivered int64
	lost      int64
	dup       int64
	opens     int
	cut       *time.Timer
	stopped   bool
}

// record checks seq against the expected next one.
func (t *tracker) record(seq int, quiet bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case seq == t.next:
		t.next++
		t.delivered++
	case seq < t.next:
		t.dup++ // a repeat (or one arriving out of order)
	default:
		if !quiet && gaps.Add(1) <= 5 {
			log.Printf("gap: expected %d, got %d (connection %d)", t.next, seq, t.opens)
		}
		t.lost += int64(seq - t.next)
		t.next = seq + 1
		t.delivered++
	}
}

func (t *tracker) done(n int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next >= n
}

var gaps atomic.Int64

// parseSeq reads the sequence number at the start of an event's data.
func parseSeq(data string) (int, error) {
	i := 0
	for i < len(data) && data[i] != ' ' {
		i++
	}
	return strconv.Atoi(data[:i])
}

// outcome is what one soak run measured.
type outcome struct {
	published, delivered, expected, lost, dup, clientErrs, serverErrs int64
	reconnects, pending                                               int
	firstErr                                                          string
	g0, peakG, g1, gGC                                                int
	rss0, peakRSS, rss1, rssGC                                        int64 // KiB
	retained                                                          int64 // KiB of history the server keeps for replay
	settled                                                           time.Duration
}

func (o outcome) ok() bool {
	return o.lost == 0 && o.dup == 0 && o.pending == 0 && o.clientErrs == 0 && o.serverErrs == 0
}

// soak runs the soak against impl served by bin. With drain 0 it does not
// wait for the clients to catch up (for the reference run, whose bare
// server does not replay).
func soak(bin string, c cfg, impl string, drain time.Duration, hc *http.Client) (outcome, error) {
	var o outcome
	srv, err := startServer(bin, impl, c.addr, c.profile != "" && impl == "gin-sse", hc)
	if err != nil {
		return o, err
	}
	defer srv.stop()
	base, pid := srv.base, srv.pid
	st0, err := getStats(hc, base, false)
	if err != nil {
		return o, err
	}
	rss0, _ := load.ReadRSS(pid)
	g0 := st0.Goroutines
	log.Printf("%s server pid %d: %d goroutines, RSS %.1f MiB", impl, pid, g0, mib(rss0))
	var st load.Stats

	tr := newTransport(c.sourceAddrs)
	defer tr.CloseIdleConnections()
	shc := &http.Client{Transport: tr}

	n := c.rate * int(c.duration/time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cutting atomic.Bool
	var clientErrs atomic.Int64
	var firstErr atomic.Value
	trackers := make([]*tracker, c.clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256) // connections being opened at once at the start
	start := time.Now()
	for i := range trackers {
		t := &tracker{}
		trackers[i] = t
		opened := make(chan struct{})
		var once sync.Once
		sem <- struct{}{}
		cl := client.New(base+"/events?stream=t", client.WithHTTPClient(shc),
			client.WithRetry(c.retry), client.WithMaxBackoff(2*time.Second),
			client.OnOpen(func(res *http.Response) {
				once.Do(func() { close(opened) })
				t.mu.Lock()
				defer t.mu.Unlock()
				t.opens++
				if t.stopped {
					return
				}
				d := time.Duration(rand.ExpFloat64() * float64(c.meanCut))
				body := res.Body
				// A client is cut only once it has an event ID to resume
				// from: one cut before its first event reconnects without
				// Last-Event-ID and rightly misses what was published
				// meanwhile. Until then the cut is postponed.
				var cut func()
				cut = func() {
					t.mu.Lock()
					defer t.mu.Unlock()
					if t.stopped {
						return
					}
					if !cutting.Load() || t.next == 0 {
						t.cut = time.AfterFunc(d, cut)
						return
					}
					_ = body.Close()
				}
				t.cut = time.AfterFunc(d, cut)
			}))
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cl.Run(ctx, func(ev sse.ReceivedEvent) error {
				seq, err := parseSeq(ev.Data)
				if err != nil {
					return fmt.Errorf("malformed event %q: %w", ev.Data, err)
				}
				t.record(seq, c.quiet)
				return nil
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				clientErrs.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}()
		go func() {
			select {
			case <-opened:
			case <-ctx.Done():
			case <-time.After(30 * time.Second):
			}
			<-sem
		}()
	}
	// Wait for every client to be subscribed.
	for deadline := time.Now().Add(120 * time.Second); ; {
		st, err = getStats(hc, base, false)
		if err == nil && st.Subscribers >= c.clients {
			break
		}
		if time.Now().After(deadline) {
			return o, fmt.Errorf("only %d of %d clients subscribed", st.Subscribers, c.clients)
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Printf("%d clients subscribed in %.1f s; publishing %d events at %d/s", c.clients, time.Since(start).Seconds(), n, c.rate)

	// Peak sampler, every second until the clients are gone.
	var peakG int
	var peakRSS int64
	sampleDone := make(chan struct{})
	stopSample := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			if s, err := getStats(hc, base, false); err == nil {
				peakG = max(peakG, s.Goroutines)
			}
			if r, err := load.ReadRSS(pid); err == nil {
				peakRSS = max(peakRSS, r)
			}
			select {
			case <-stopSample:
				return
			case <-tk.C:
			}
		}
	}()

	cutting.Store(true)
	res, err := hc.Post(fmt.Sprintf("%s/publish?n=%d&rate=%d&size=%d&burst=%d", base, n, c.rate, c.size, c.burst), "", nil)
	if err != nil {
		return o, err
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		return o, fmt.Errorf("publish: %s", res.Status)
	}
	pubStart := time.Now()
	for {
		time.Sleep(200 * time.Millisecond)
		st, err = getStats(hc, base, false)
		if err == nil && !st.Publishing && st.Published >= int64(n) {
			break
		}
		if time.Since(pubStart) > c.duration+60*time.Second {
			return o, errors.New("publishing did not finish")
		}
	}
	// Publishing is over: stop cutting and let every client drain.
	cutting.Store(false)
	for _, t := range trackers {
		t.mu.Lock()
		t.stopped = true
		if t.cut != nil {
			t.cut.Stop()
		}
		t.mu.Unlock()
	}
	drainStart := time.Now()
	pending := 0
	for drain > 0 {
		pending = 0
		for _, t := range trackers {
			if !t.done(n) {
				pending++
			}
		}
		if pending == 0 || time.Since(drainStart) > drain {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Printf("published %d events in %.1f s; drained in %.1f s (%d clients still short)",
		n, time.Since(pubStart).Seconds()-time.Since(drainStart).Seconds(), time.Since(drainStart).Seconds(), pending)

	// Disconnect everyone, then wait for the server to return near its baseline.
	cancel()
	wg.Wait()
	tr.CloseIdleConnections()
	close(stopSample)
	<-sampleDone
	settleStart := time.Now()
	g1, rss1 := settle(hc, base, pid, g0, c.settle)
	settled := time.Since(settleStart)
	// The first GC moves what net/http and gin keep in sync.Pools (a
	// connection's bufio buffers, gin's Contexts) to the pools' victim
	// caches; the second frees it. A live server gets there on its own
	// (the runtime forces a GC every two minutes).
	_, _ = getStats(hc, base, true)
	sgc, _ := getStats(hc, base, true)
	rssGC, _ := load.ReadRSS(pid)
	log.Printf("%s after two GCs: RSS %.1f MiB; Go heap in use %.1f MiB, stacks %.1f MiB",
		impl, mib(rssGC), float64(sgc.HeapInuse)/(1<<20), float64(sgc.StackInuse)/(1<<20))
	if c.profile != "" {
		if err := saveProfiles(hc, base, pid, c.profile); err != nil {
			return o, err
		}
	}

	o.retained = sgc.Retained / 1024
	o.g0, o.peakG, o.g1, o.gGC = g0, peakG, g1, sgc.Goroutines
	o.rss0, o.peakRSS, o.rss1, o.rssGC = rss0, peakRSS, rss1, rssGC
	o.settled, o.pending = settled, pending
	o.published, o.expected, o.serverErrs = int64(n), int64(n)*int64(c.clients), st.Errors
	o.clientErrs = clientErrs.Load()
	if v := firstErr.Load(); v != nil {
		o.firstErr = v.(string)
	}
	for _, t := range trackers {
		t.mu.Lock()
		o.delivered += t.delivered
		o.dup += t.dup
		o.lost += t.lost + int64(max(0, n-t.next))
		o.reconnects += max(0, t.opens-1)
		t.mu.Unlock()
	}
	return o, nil
}

func run(c cfg) (bool, error) {
	bin, cleanup, err := serverBinary(c.server)
	if err != nil {
		return false, err
	}
	defer cleanup()
	hc := &http.Client{Timeout: 10 * time.Second}
	var ref outcome
	if c.reference {
		// The same clients, cuts and events against the bare net/http
		// implementation, for the memory the Go runtime and net/http keep
		// after as many connections. Its clients miss events (it does not
		// replay), which is not checked.
		rc := c
		if c.refDuration > 0 {
			rc.duration = c.refDuration
		}
		rc.quiet = true
		log.Printf("reference run: bare net/http for %v", rc.duration)
		if ref, err = soak(bin, rc, "bare", 0, hc); err != nil {
			return false, fmt.Errorf("reference run: %w", err)
		}
	}
	o, err := soak(bin, c, "gin-sse", c.drain, hc)
	if err != nil {
		return false, err
	}
	ok := o.ok()
	fmt.Printf("\n#### Soak: %d clients × %v, %d events/s (%d B) in bursts of %d, mean %v between a client's disconnects\n\n",
		c.clients, c.duration, c.rate, c.size, c.burst, c.meanCut)
	fmt.Println("| published | delivered | expected | reconnects | losses | duplicates | client errors | result |")
	fmt.Println("|---:|---:|---:|---:|---:|---:|---:|---|")
	result := "ok"
	if !ok {
		result = "**FAIL**"
	}
	fmt.Printf("| %d | %d | %d | %d | %d | %d | %d | %s |\n\n", o.published, o.delivered, o.expected,
		o.reconnects, o.lost, o.dup, o.clientErrs, result)
	fmt.Println("| server | goroutines | RSS | bare net/http, same clients (reference) |")
	fmt.Println("|---|---:|---:|---:|")
	row := func(name string, g, rg int, rss, rrss int64) {
		r := "–"
		if c.reference {
			r = fmt.Sprintf("%d goroutines, %.1f MiB", rg, mib(rrss))
		}
		fmt.Printf("| %s | %d | %.1f MiB | %s |\n", name, g, mib(rss), r)
	}
	row("before (no client)", o.g0, ref.g0, o.rss0, ref.rss0)
	row("during (peak, sampled every second)", o.peakG, ref.peakG, o.peakRSS, ref.peakRSS)
	row(fmt.Sprintf("after all disconnected (%.1f s later)", o.settled.Seconds()), o.g1, ref.g1, o.rss1, ref.rss1)
	row("after, then two GCs and FreeOSMemory", o.gGC, ref.gGC, o.rssGC, ref.rssGC)
	if o.firstErr != "" {
		fmt.Printf("\nfirst client error: %s\n", o.firstErr)
	}
	if o.g1 > o.g0+2 {
		fmt.Printf("\ngoroutines did not return to the baseline (%d vs %d)\n", o.g1, o.g0)
		ok = false
	}
	// The Go runtime keeps every goroutine's descriptor for reuse (about
	// 450 bytes each, never freed), and some span metadata: after tens of
	// thousands of connections no Go server returns to its first RSS. The
	// reference run measures that floor; the library must return near it,
	// plus the history it keeps for replay (5 minutes of events by default).
	if o.retained > 0 {
		fmt.Printf("\nThe broker keeps %.1f MiB of history for replay.\n", mib(o.retained))
	}
	if c.reference {
		if limit := ref.rssGC + rssSlack(ref.rssGC) + o.retained; o.rssGC > limit {
			fmt.Printf("\nRSS did not return near the reference (%.1f MiB, limit %.1f MiB)\n", mib(o.rssGC), mib(limit))
			ok = false
		}
	} else if limit := o.rss0 + rssSlack(o.rss0) + o.retained; o.rssGC > limit {
		fmt.Printf("\nRSS did not return near the baseline (%.1f MiB, limit %.1f MiB)\n", mib(o.rssGC), mib(limit))
		ok = false
	}
	return ok, nil
}

// server is a running sseserver.
type server struct {
	cmd  *exec.Cmd
	base string
	pid  int
}

// startServer starts bin serving impl on addr and waits until it answers.
func startServer(bin, impl, addr string, pprof bool, hc *http.Client) (*server, error) {
	args := []string{"-impl", impl, "-addr", addr}
	if pprof {
		args = append(args, "-pprof")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, base: "http://" + addr, pid: cmd.Process.Pid}
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := getStats(hc, s.base, false)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("server did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // let its start-up settle before the baseline
	return s, nil
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

// newTransport returns one transport for many clients, dialing from
// sourceAddrs loopback addresses (0: one).
func newTransport(sourceAddrs int) *http.Transport {
	var dials atomic.Uint64
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := *dialer
			if sourceAddrs > 0 {
				n := dials.Add(1)
				d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+n%uint64(min(sourceAddrs, 250))))}
			}
			return d.DialContext(ctx, network, addr)
		},
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1,
	}
}

// settle waits up to limit for the server to have no subscriber and its
// goroutines back near g0, and returns its goroutines and RSS then.
func settle(hc *http.Client, base string, pid, g0 int, limit time.Duration) (int, int64) {
	start := time.Now()
	for {
		s, err := getStats(hc, base, false)
		rss, _ := load.ReadRSS(pid)
		if (err == nil && s.Subscribers == 0 && s.Goroutines <= g0+2) || time.Since(start) > limit {
			return s.Goroutines, rss
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// saveProfiles writes the server's heap and goroutine profiles, its
// memory figures and its /proc status into dir.
func saveProfiles(hc *http.Client, base string, pid int, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, path := range map[string]string{
		"heap.pprof":     "/debug/pprof/heap",
		"goroutines.txt": "/debug/pprof/goroutine?debug=1",
		"stats.json":     "/stats?mem=1",
	} {
		res, err := hc.Get(base + path)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if err == nil && res.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", path, res.Status)
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "proc-status.txt"), b, 0o644)
}

// rssSlack is how far above its baseline the RSS may stay and count as
// returned: a quarter of the baseline or 8 MiB, whichever is larger.
func rssSlack(base int64) int64 { return max(base/4, 8<<10) }

func mib(kb int64) float64 { return float64(kb) / 1024 }

// getStats reads the server's /stats with the runtime's memory figures,
// after a GC and FreeOSMemory when gc is set.
func getStats(hc *http.Client, base string, gc bool) (load.Stats, error) {
	u := base + "/stats?mem=1"
	if gc {
		u += "&gc=1"
	}
	return load.GetStats(context.Background(), hc, u)
}

// serverBinary returns path when it is set, else builds sseserver into a
// temporary directory.
func serverBinary(path string) (string, func(), error) {
	if path != "" {
		return path, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "soak")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "sseserver")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/gin-sse/sse/bench/cmd/sseserver")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building sseserver: %w", err)
	}
	return bin, func() { _ = os.RemoveAll(dir) }, nil
}

// raiseNoFile lifts the soft limit on open files to the hard one.
func raiseNoFile() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
