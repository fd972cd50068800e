package load_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/gin-sse/sse/bench/internal/impls"
	"github.com/gin-sse/sse/bench/internal/load"
)

// TestRun drives each implementation in process with 5 streams × 50 events
// and checks that the load generator saw every event exactly once, in
// order. Each run gets a new server, as in the benchmark (r3labs replays
// its whole event log to every new subscriber).
func TestRun(t *testing.T) {
	for _, name := range impls.Names {
		for _, rate := range []int{0, 2000} {
			t.Run(fmt.Sprintf("%s/rate=%d", name, rate), func(t *testing.T) {
				im, err := impls.New(name, impls.Options{})
				if err != nil {
					t.Fatal(err)
				}
				srv := httptest.NewServer(impls.NewServer(name, im))
				defer srv.Close()
				defer im.Close()

				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				res, err := load.Run(ctx, load.Config{URL: srv.URL, Clients: 5, Events: 50, Rate: rate, Size: 32, Stall: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				if !res.OK() || res.Delivered != 5*50 {
					t.Fatalf("%+v", res)
				}
				if res.Impl != name || res.EventsPerSec <= 0 || res.P99us <= 0 {
					t.Fatalf("incomplete result %+v", res)
				}
			})
		}
	}
}

// TestRunHTTP2 opens the streams as HTTP/2 streams without TLS, several on
// each connection, as manystreams -h2c does: every stream gets every event
// once, in order.
func TestRunHTTP2(t *testing.T) {
	for _, name := range []string{"gin-sse", "bare"} {
		t.Run(name, func(t *testing.T) {
			im, err := impls.New(name, impls.Options{})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(impls.NewServer(name, im))
			srv.Config.Protocols = new(http.Protocols)
			srv.Config.Protocols.SetHTTP1(true)
			srv.Config.Protocols.SetUnencryptedHTTP2(true)
			srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 10}
			srv.Start()
			defer srv.Close()
			defer im.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := load.Run(ctx, load.Config{URL: srv.URL, Clients: 25, H2C: 3, Events: 50, Rate: 2000, Size: 32, Stall: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() || res.Delivered != 25*50 {
				t.Fatalf("%+v", res)
			}
		})
	}
}

// TestDetectsDuplicates checks that a second run against the same r3labs server,
// which replays its event log to new subscribers, is reported as a failure.
func TestDetectsDuplicates(t *testing.T) {
	im, err := impls.New("r3labs", impls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(impls.NewServer("r3labs", im))
	defer srv.Close()
	defer im.Close()
	cfg := load.Config{URL: srv.URL, Clients: 2, Events: 10, Stall: 2 * time.Second}
	if res, err := load.Run(context.Background(), cfg); err != nil || !res.OK() {
		t.Fatalf("first run: %v %+v", err, res)
	}
	// Wait for the first run's publisher to finish.
	time.Sleep(100 * time.Millisecond)
	res, err := load.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || res.Dup == 0 {
		t.Fatalf("duplicates not reported: %+v", res)
	}
}

func TestIdle(t *testing.T) {
	im, err := impls.New("gin-sse", impls.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(impls.NewServer("gin-sse", im))
	defer srv.Close()
	defer im.Close()
	res, err := load.Run(context.Background(), load.Config{URL: srv.URL, Clients: 20, Events: 1, Idle: true, Settle: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Delivered != 20 || res.RSSKB == 0 {
		t.Fatalf("%+v", res)
	}
}

// TestRedisCluster starts a cluster of 3 masters and runs gin-sse-redis on
// it, two servers sharing a prefix, with streams on 30 topics spread over
// both: every stream gets every event of its topic once, in order. Skipped
// without redis-server and redis-cli, unless SSE_REDIS_REQUIRED=1 (as in
// CI): then it fails.
func TestRedisCluster(t *testing.T) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("SSE_REDIS_REQUIRED") == "1" {
				t.Fatalf("SSE_REDIS_REQUIRED=1 but %s is not in PATH (apt-get install -y redis-server)", bin)
			}
			t.Skipf("%s not in PATH", bin)
		}
	}
	rc, err := load.StartRedisCluster(3)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Stop()
	if len(rc.Addrs()) != 3 || rc.CPU() < 0 {
		t.Fatalf("addresses %v, CPU %v", rc.Addrs(), rc.CPU())
	}
	prefix := fmt.Sprintf("test%d:", time.Now().UnixNano())
	var urls []string
	for range 2 {
		im, err := impls.New(impls.RedisName, impls.Options{RedisClusterAddrs: rc.Addrs(), RedisPrefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(impls.NewServer(impls.RedisName, im))
		defer srv.Close()
		defer im.Close()
		urls = append(urls, srv.URL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := load.Run(ctx, load.Config{URL: urls[0], Extra: urls[1:], Clients: 60, Events: 300, Topics: 30, Size: 32, Stall: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Delivered != 60*300/30 {
		t.Fatalf("%+v", res)
	}
}
