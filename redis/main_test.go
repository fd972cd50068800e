package sseredis_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// The tests need a Redis: SSE_REDIS_ADDR, or a redis-server binary they
// start on a free port of 127.0.0.1 (and stop at the end). Without either
// they are skipped, or fail when SSE_REDIS_REQUIRED=1.
var (
	redisAddr   string
	redisBinary string
	skipReason  string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// go-redis logs every failed dial; the outage test makes many.
	redis.SetLogger(quietLogger{})
	required := os.Getenv("SSE_REDIS_REQUIRED") == "1"
	redisAddr = os.Getenv("SSE_REDIS_ADDR")
	redisBinary, _ = exec.LookPath("redis-server")
	if redisAddr == "" {
		if redisBinary == "" {
			skipReason = "redis-server not found in PATH and SSE_REDIS_ADDR not set: install Debian's redis-server package (apt-get install -y redis-server)"
			if required {
				fmt.Fprintln(os.Stderr, "FAIL: SSE_REDIS_REQUIRED=1 but", skipReason)
				return 1
			}
			fmt.Fprintln(os.Stderr, "SKIP: Redis tests:", skipReason)
		} else {
			srv, err := startRedis("", 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, "FAIL: starting redis-server:", err)
				return 1
			}
			defer srv.stop()
			redisAddr = srv.addr
		}
	}
	code := m.Run()
	if code == 0 {
		// go-redis redials a server that went away (the failover test
		// kills one) in a goroutine that sleeps a second between tries,
		// and ends after its pool closes.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial")); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: goroutine leak:", err)
			return 1
		}
	}
	return code
}

// needRedis skips t, or fails it when SSE_REDIS_REQUIRED=1, without Redis.
func needRedis(t testing.TB) {
	t.Helper()
	if redisAddr == "" {
		t.Skip("Redis tests skipped: " + skipReason)
	}
}

// redisServer is a redis-server process started by the tests.
type redisServer struct {
	addr  string
	port  int
	dir   string // "" when without persistence
	tmp   string // its working directory without persistence, removed by stop
	extra []string
	cmd   *exec.Cmd
}

// startRedis starts redis-server on port (0: a free one). With dir, it
// keeps its data in an append-only file there (fsync on every write), so
// that a restart keeps the stream.
func startRedis(dir string, port int, extra ...string) (*redisServer, error) {
	if redisBinary == "" {
		return nil, errors.New("redis-server not found")
	}
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no", "--enable-debug-command", "local"}
	tmp := ""
	if dir != "" {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always", "--dir", dir)
	} else {
		// A directory of its own all the same: a replica writes the data
		// it gets from its master there.
		var err error
		if tmp, err = os.MkdirTemp("", "sseredis-"); err != nil {
			return nil, err
		}
		args = append(args, "--appendonly", "no", "--dir", tmp)
	}
	cmd := exec.Command(redisBinary, append(args, extra...)...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), port: port, dir: dir, tmp: tmp, extra: extra, cmd: cmd}
	// Wait until it answers.
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer: %w", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a process that is starting
	}
}

// stop ends the process (SIGTERM: with persistence, it writes its data
// first) and waits for it.
func (s *redisServer) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	_ = s.cmd.Wait()
	if s.tmp != "" {
		_ = os.RemoveAll(s.tmp)
	}
}

// restart starts the server again on the same port and directory.
func (s *redisServer) restart() error {
	n, err := startRedis(s.dir, s.port, s.extra...)
	if err != nil {
		return err
	}
	*s = *n
	return nil
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
