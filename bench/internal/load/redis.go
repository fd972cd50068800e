package load

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RedisProc is a redis-server process on 127.0.0.1, without persistence.
type RedisProc struct {
	Addr string
	cmd  *exec.Cmd
}

// StartRedis starts redis-server on a free port and waits until it
// answers.
func StartRedis() (*RedisProc, error) { return startRedis() }

// startRedis starts redis-server on a free port with the extra arguments
// and waits until it answers PING.
func startRedis(extra ...string) (*RedisProc, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found in PATH (Debian: apt-get install -y redis-server)")
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"}, extra...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &RedisProc{Addr: addr, cmd: cmd}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ping(addr) == nil {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("redis-server on %s did not answer", addr)
		}
		time.Sleep(20 * time.Millisecond) // polling a process that is starting
	}
}

// RedisCluster is a Redis Cluster of masters without replicas on
// 127.0.0.1, without persistence, each server with its node file in a
// temporary folder of the cluster.
type RedisCluster struct {
	Servers []*RedisProc
	dir     string
}

// StartRedisCluster starts a Redis Cluster of the given number of masters
// (at least 3, no replicas) on free ports: redis-server --cluster-enabled
// yes for each, then redis-cli --cluster create. It returns once every
// server reports cluster_state:ok.
func StartRedisCluster(masters int) (*RedisCluster, error) {
	if masters < 3 {
		return nil, errors.New("a Redis Cluster needs at least 3 masters")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, errors.New("redis-cli not found in PATH (Debian: apt-get install -y redis-server)")
	}
	dir, err := os.MkdirTemp("", "scaleout-cluster-")
	if err != nil {
		return nil, err
	}
	c := &RedisCluster{dir: dir}
	args := []string{"--cluster", "create"}
	for i := range masters {
		srv, err := startRedis("--cluster-enabled", "yes", "--cluster-node-timeout", "5000", "--dir", dir,
			"--cluster-config-file", "nodes-"+strconv.Itoa(i)+".conf")
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Servers = append(c.Servers, srv)
		args = append(args, srv.Addr)
	}
	out, err := exec.Command(cli, append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	for _, srv := range c.Servers {
		for deadline := time.Now().Add(20 * time.Second); ; {
			info, err := command(srv.Addr, "CLUSTER INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.Stop()
				return nil, fmt.Errorf("the cluster is not ready on %s: %v %q", srv.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond) // polling a cluster that is forming
		}
	}
	return c, nil
}

// Addrs returns the addresses of the cluster's servers.
func (c *RedisCluster) Addrs() []string {
	var addrs []string
	for _, s := range c.Servers {
		addrs = append(addrs, s.Addr)
	}
	return addrs
}

// CPU returns the user+system CPU time used so far by all the cluster's
// servers, in seconds.
func (c *RedisCluster) CPU() float64 {
	var sum float64
	for _, s := range c.Servers {
		sum += s.CPU()
	}
	return sum
}

// Stop ends the cluster's servers and removes their folder.
func (c *RedisCluster) Stop() {
	if c == nil {
		return
	}
	for _, s := range c.Servers {
		s.Stop()
	}
	_ = os.RemoveAll(c.dir)
}

// command sends an inline command over RESP and returns its answer whole
// (for a bulk string, up to its announced length).
func command(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return string(got), err
		}
		head, body, ok := strings.Cut(string(got), "\r\n")
		if !ok {
			continue
		}
		if !strings.HasPrefix(head, "$") {
			return string(got), nil // a simple string or an error
		}
		if size, err := strconv.Atoi(head[1:]); err != nil || len(body) >= size {
			return body, nil
		}
	}
}

// ping sends PING over RESP and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "+PONG") {
		return fmt.Errorf("unexpected answer %q", buf[:n])
	}
	return nil
}

// Stop ends redis-server and waits for it.
func (r *RedisProc) Stop() {
	if r == nil || r.cmd.ProcessState != nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	_ = r.cmd.Wait()
}

// CPU returns the user+system CPU time used so far by redis-server, in
// seconds (0 without one).
func (r *RedisProc) CPU() float64 {
	if r == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	// After the command: state is field 3 of the line, utime 14, stime 15.
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / userHZ
}

// FreeAddr returns a free address of 127.0.0.1.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String(), nil
}

// PID returns the process id of redis-server.
func (r *RedisProc) PID() int { return r.cmd.Process.Pid }
