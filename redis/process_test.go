package sseredis_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/client"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two processes of the cluster example on one Redis; a client on B while
// events are posted to A; B is stopped (SIGSTOP) for a second and
// continued. The client ends with every event A acknowledged, once and in
// order, or with an events-lost signal where the missing ones were.
func TestAppInstanceStoppedAndContinued(t *testing.T) {
	srv := ownRedis(t, "")
	bin := buildExample(t)
	prefix := testPrefix(t)
	start := func(name string) (string, *os.Process) {
		app := startExample(t, bin, freeAddr(t), "-redis", srv.addr, "-name", name, "-prefix", prefix)
		return app.url, app.cmd.Process
	}
	a, _ := start("A")
	b, stopB := start("B")

	ctx, cancel := context.WithTimeout(context.Background(), 6*guard)
	defer cancel()
	var mu sync.Mutex
	var got []sse.ReceivedEvent
	opened := make(chan struct{}, 1)
	cl := client.New(b+"/events", client.WithRetry(50*time.Millisecond), client.WithMaxBackoff(200*time.Millisecond),
		client.OnOpen(func(*http.Response) {
			select {
			case opened <- struct{}{}:
			default:
			}
		}))
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for ev, err := range cl.Events(ctx) {
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
		}
	})
	<-opened

	post := func(text string) (string, bool) {
		res, err := http.PostForm(a+"/publish", url.Values{"text": {text}})
		if err != nil {
			return "", false
		}
		defer func() { _ = res.Body.Close() }()
		var reply struct{ ID string }
		return reply.ID, res.StatusCode == http.StatusOK && json.NewDecoder(res.Body).Decode(&reply) == nil
	}
	var acked []string
	publish := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			if id, ok := post("m" + strconv.Itoa(len(acked))); ok {
				acked = append(acked, id)
			}
			time.Sleep(2 * time.Millisecond) // a steady rate of posts
		}
	}
	publish(300 * time.Millisecond)
	require.NoError(t, stopB.Signal(syscall.SIGSTOP))
	publish(time.Second)
	require.NoError(t, stopB.Signal(syscall.SIGCONT))
	publish(300 * time.Millisecond)
	last, ok := post("end")
	require.True(t, ok)
	acked = append(acked, last)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[len(got)-1].ID == last
	}, 3*guard, 10*time.Millisecond, "the client never got the last event")
	cancel()

	mu.Lock()
	defer mu.Unlock()
	var ids []string
	signalled := false
	for _, ev := range got {
		if ev.Event == sse.LostEventName {
			signalled = true
			continue
		}
		ids = append(ids, ev.ID)
	}
	if !signalled {
		assert.Equal(t, acked, ids, "every event once, in order")
	} else {
		be := sseredis.New(newClient(t, srv.addr))
		assert.True(t, slices.IsSortedFunc(ids, func(x, y string) int { c, _ := be.CompareIDs(x, y); return c }))
		assert.Subset(t, acked, ids)
	}
	t.Logf("%d events acknowledged, %d received, lost signal: %v", len(acked), len(ids), signalled)
}

// buildExample builds the cluster example and returns its binary.
func buildExample(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cluster")
	out, err := exec.Command("go", "build", "-o", bin, "./example/cluster").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// exampleApp is a process of the cluster example.
type exampleApp struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
}

// startExample starts bin on addr with args and waits until it serves;
// it is stopped at the end of t.
func startExample(t *testing.T, bin, addr string, args ...string) *exampleApp {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", addr}, args...)...)
	require.NoError(t, cmd.Start())
	app := &exampleApp{url: "http://" + addr, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(app.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-app.done
	})
	require.Eventually(t, func() bool {
		res, err := http.Get(app.url + "/")
		if err == nil {
			_ = res.Body.Close()
		}
		return err == nil
	}, guard, 20*time.Millisecond)
	return app
}

// kill ends the process at once (SIGKILL).
func (a *exampleApp) kill() {
	_ = a.cmd.Process.Kill()
	<-a.done
}

// post publishes text through the instance at base and returns the
// event's id.
func post(t *testing.T, base, text string) string {
	t.Helper()
	res, err := http.PostForm(base+"/publish", url.Values{"text": {text}})
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	var reply struct{ ID string }
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.NoError(t, json.NewDecoder(res.Body).Decode(&reply))
	return reply.ID
}

// Two processes of the cluster example on one Redis, each the other's
// peer. A client reads A, as its page does; A is killed (SIGKILL), and the
// client goes on with B from the last event it got, as the page does (the
// lastEventId query); A restarts, and the client moves back to it. It gets
// every event once, in order, and the pages may cross over (CORS).
func TestAppInstanceKilledClientFollows(t *testing.T) {
	srv := ownRedis(t, "")
	bin := buildExample(t)
	prefix := testPrefix(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	args := func(name, peer string) []string {
		return []string{"-redis", srv.addr, "-name", name, "-prefix", prefix, "-peers", "http://" + peer}
	}
	a := startExample(t, bin, addrA, args("A", addrB)...)
	b := startExample(t, bin, addrB, args("B", addrA)...)

	// follow reads the stream of base from after lastID until it has the
	// events of want.
	follow := func(base, lastID string, want ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		u := base + "/events"
		if lastID != "" {
			u += "?lastEventId=" + url.QueryEscape(lastID)
		}
		s, err := ssetest.Connect(ctx, nil, u, http.Header{"Origin": {"http://" + addrA}})
		require.NoError(t, err)
		defer func() { _ = s.Close() }()
		if base == b.url {
			assert.Equal(t, "http://"+addrA, s.Response.Header.Get("Access-Control-Allow-Origin"), "A's page may read B")
		}
		for _, w := range want {
			ev, err := s.Next()
			require.NoError(t, err)
			var m struct{ Text string }
			require.NoError(t, json.Unmarshal([]byte(ev.Data), &m), ev.Data)
			require.Equal(t, "chat", ev.Event)
			require.Equal(t, w, m.Text)
			lastID = ev.ID
		}
		return lastID
	}
	first := post(t, a.url, "one")
	post(t, a.url, "two")
	last := follow(a.url, first, "two")

	a.kill()
	post(t, b.url, "three")
	post(t, b.url, "four")
	last = follow(b.url, last, "three", "four")

	a = startExample(t, bin, addrA, args("A", addrB)...)
	post(t, b.url, "five")
	follow(a.url, last, "five")
}

// freeAddr returns a free address of 127.0.0.1.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
