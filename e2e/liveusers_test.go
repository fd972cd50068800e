package e2e

import (
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const jsCount = `document.getElementById('count').textContent`

// TestLiveUsers opens the page in two tabs: both show 2 within a second;
// closing one brings the other back to 1.
func TestLiveUsers(t *testing.T) {
	first := newBrowser(t)
	a := startApp(t, "live-users")

	open(t, first, a.URL)
	waitFor[bool](t, first, 10*time.Second, jsConnected+` && `+jsCount+` === '1'`)
	assert.Equal(t, "person has this page open right now (you)", eval[string](t, first, `document.getElementById('count-label').textContent`))

	second, closeSecond := newTab(t, first)
	open(t, second, a.URL)
	start := time.Now()
	waitFor[bool](t, first, 5*time.Second, jsCount+` === '2'`)
	waitFor[bool](t, second, 5*time.Second, jsConnected+` && `+jsCount+` === '2'`)
	took := time.Since(start)
	t.Logf("both pages showed 2 users %v after the second page loaded", took)
	assert.Less(t, took, time.Second, "both pages show 2 within a second")
	assert.Equal(t, "2 online · Live users", eval[string](t, first, `document.title`))

	start = time.Now()
	closeSecond()
	waitFor[bool](t, first, 5*time.Second, jsCount+` === '1'`)
	took = time.Since(start)
	t.Logf("the first page showed 1 user %v after the second tab was closed", took)
	assert.Less(t, took, time.Second, "closing a page brings the count back within a second")
	assert.Equal(t, "connected", eval[string](t, first, `document.getElementById('state').dataset.state`))
}

// startRedisServer starts a redis-server without persistence on a free
// port of 127.0.0.1, stopped when the test ends, and returns its address.
func startRedisServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server is not installed (Debian: apt-get install -y redis-server)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	_ = l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("PING\r\n"))
		buf := make([]byte, 7)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := c.Read(buf)
		return string(buf[:n]) == "+PONG\r\n"
	}, 10*time.Second, 20*time.Millisecond, "redis-server did not answer")
	return addr
}

// TestLiveUsersAcrossInstances runs two instances of the example on one
// Redis and opens a page on each: both show 2; closing one brings the
// other back to 1.
func TestLiveUsersAcrossInstances(t *testing.T) {
	redisAddr := startRedisServer(t)
	a := startApp(t, "live-users", "-redis", redisAddr)
	b := startApp(t, "live-users", "-redis", redisAddr)

	first := newBrowser(t)
	open(t, first, a.URL)
	waitFor[bool](t, first, 10*time.Second, jsConnected+` && `+jsCount+` === '1'`)
	second, closeSecond := newTab(t, first)
	open(t, second, b.URL)
	start := time.Now()
	waitFor[bool](t, first, 10*time.Second, jsCount+` === '2'`)
	waitFor[bool](t, second, 10*time.Second, jsConnected+` && `+jsCount+` === '2'`)
	t.Logf("both instances' pages showed 2 users %v after the second page loaded", time.Since(start))

	start = time.Now()
	closeSecond()
	waitFor[bool](t, first, 10*time.Second, jsCount+` === '1'`)
	t.Logf("the first instance's page showed 1 user %v after the other instance's page was closed", time.Since(start))
}
