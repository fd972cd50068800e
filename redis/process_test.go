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
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two processes of the cluster example on one Redis; a client on B while
// events are posted to A; B is stopped (SIGSTOP) for a second and
// continued. The client ends with every event A acknowledged, once and in
// order, or with an events-lost signal where the missing ones were.
func TestAppInstanceStoppedAndContinued(t *testing.T) {
	srv := ownRedis(t, "")
	bin := filepath.Join(t.TempDir(), "cluster")
	out, err := exec.Command("go", "build", "-o", bin, "./example/cluster").CombinedOutput()
	require.NoError(t, err, "%s", out)
	prefix := testPrefix(t)
	start := func(name string) (string, *os.Process) {
		addr := freeAddr(t)
		cmd := exec.Command(bin, "-addr", addr, "-redis", srv.addr, "-name", name, "-prefix", prefix)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		})
		require.Eventually(t, func() bool {
			res, err := http.Get("http://" + addr + "/")
			if err == nil {
				_ = res.Body.Close()
			}
			return err == nil
		}, guard, 20*time.Millisecond)
		return "http://" + addr, cmd.Process
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

// freeAddr returns a free address of 127.0.0.1.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
