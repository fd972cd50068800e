package faults

import (
	"context"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/goleak"
)

var scaleFlag = flag.Int("faults.scale", 0, "multiplies the clients and events of the fault suites (default 1, or $FAULTS_SCALE)")

// scale returns the suites' size factor.
func scale() int {
	if *scaleFlag > 0 {
		return *scaleFlag
	}
	if n, err := strconv.Atoi(os.Getenv("FAULTS_SCALE")); err == nil && n > 0 {
		return n
	}
	return 1
}

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	goleak.VerifyTestMain(m)
}

// errDone ends a client's Run once it has everything.
var errDone = errors.New("done")

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// poll polls cond until it holds or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// server is an http.Server on a fixed 127.0.0.1 address that can be
// stopped and started again on the same address.
type server struct {
	h    http.Handler
	addr string
	srv  *http.Server
	done chan struct{}
}

func startServer(t *testing.T, h http.Handler) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{h: h, addr: ln.Addr().String()}
	s.serve(ln)
	t.Cleanup(s.stop)
	return s
}

func (s *server) serve(ln net.Listener) {
	s.srv = &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
	s.done = make(chan struct{})
	srv, done := s.srv, s.done
	go func() {
		_ = srv.Serve(ln)
		close(done)
	}()
}

// stop closes the listener and every connection; idempotent.
func (s *server) stop() {
	_ = s.srv.Close()
	<-s.done
}

// restart stops the server and serves again on the same address.
func (s *server) restart() error {
	s.stop()
	var ln net.Listener
	var err error
	poll(5*time.Second, func() bool {
		ln, err = net.Listen("tcp", s.addr)
		return err == nil
	})
	if err != nil {
		return err
	}
	s.serve(ln)
	return nil
}

// faultConfig sets what the proxy does to the server-to-client direction.
type faultConfig struct {
	minBudget, maxBudget int           // bytes forwarded before a cut, drawn per connection
	delayProb            float64       // chance per chunk of a short delay
	maxDelay             time.Duration // longest delay
	stallProb            float64       // chance per chunk of a stall
	maxStall             time.Duration // longest stall
	chunk                int           // read size, so that cuts land anywhere
}

// proxy is a TCP proxy on 127.0.0.1 that injects faults.
type proxy struct {
	ln     net.Listener
	target string
	cfg    faultConfig

	conns, cuts, stalls, delays, bytes atomic.Int64

	mu     sync.Mutex
	open   map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string, cfg faultConfig) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, cfg: cfg, open: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.open[c] = struct{}{}
	return true
}

func (p *proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.open, c)
		_ = c.Close()
	}
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			_ = c.Close()
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *proxy) handle(down net.Conn) {
	defer p.wg.Done()
	p.conns.Add(1)
	up, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(up) {
		if up != nil {
			_ = up.Close()
		}
		p.untrack(down)
		return
	}
	defer p.untrack(down, up)
	done := make(chan struct{})
	go func() { // client to server, untouched
		_, _ = io.Copy(up, down)
		p.untrack(down, up)
		close(done)
	}()
	p.forward(down, up)
	p.untrack(down, up)
	<-done
}

// forward copies server to client, cutting after a random byte budget and
// stalling or delaying at random.
func (p *proxy) forward(down, up net.Conn) {
	budget := p.cfg.minBudget + rand.IntN(p.cfg.maxBudget-p.cfg.minBudget+1)
	buf := make([]byte, p.cfg.chunk)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			switch r := rand.Float64(); {
			case r < p.cfg.stallProb:
				p.stalls.Add(1)
				time.Sleep(time.Duration(rand.Int64N(int64(p.cfg.maxStall)))) // fault: stall
			case r < p.cfg.stallProb+p.cfg.delayProb:
				p.delays.Add(1)
				time.Sleep(time.Duration(rand.Int64N(int64(p.cfg.maxDelay)))) // fault: delay
			}
			cut := n >= budget
			n = min(n, budget)
			budget -= n
			w, werr := down.Write(buf[:n])
			p.bytes.Add(int64(w))
			if cut {
				p.cuts.Add(1)
				return
			}
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.open {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// testCtx bounds a test so that a bug fails it instead of hanging.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
