package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/client"
)

// TestBadInput sends each kind of bad request to one broker while a
// healthy client stays subscribed, and checks each documented answer, that
// the healthy client is still served after each, and that goroutines go
// back to their baseline.
func TestBadInput(t *testing.T) {
	const maxPerIP = 4
	b, err := sse.NewBroker(
		sse.WithTopics("a", "big", "secret"),
		sse.WithMaxPerIP(maxPerIP),
		sse.WithRetention(1<<20, time.Hour), // 16 events of 64 KiB
		sse.WithRetryAfter(2*time.Second),
	)
	require.NoError(t, err)
	srv := newBrokerServer(t, b,
		sse.WithAuthorize(func(_ *gin.Context, topics []string) error {
			for _, tp := range topics {
				if tp == "secret" {
					return errors.New("not for you")
				}
			}
			return nil
		}),
		sse.WithRequireAccept(),
		sse.WithWriteTimeout(200*time.Millisecond),
	)
	ctx := testCtx(t, 50*time.Second)
	hc := newTransport(t)
	base := "http://" + srv.addr

	// The healthy client, subscribed to "a" throughout.
	pings := make(chan string, 256)
	healthy := client.New(base+"/events?topic=a", client.WithHTTPClient(hc),
		client.WithRetry(10*time.Millisecond), client.WithMaxBackoff(40*time.Millisecond))
	healthyDone := make(chan error, 1)
	go func() {
		healthyDone <- healthy.Run(ctx, func(ev sse.ReceivedEvent) error {
			pings <- fmt.Sprint(ev.Data)
			return nil
		})
	}()
	var nPing atomic.Int64
	ping := func(t *testing.T) {
		t.Helper()
		want := fmt.Sprintf("ping-%d", nPing.Add(1))
		_, err := b.Publish(context.Background(), "a", sse.Event{Data: want})
		require.NoError(t, err)
		for {
			select {
			case got := <-pings:
				if got == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("the healthy client did not get %s", want)
			}
		}
	}
	eventually(t, 10*time.Second, "the healthy client", func() bool { return b.Stats().Subscribers == 1 })
	ping(t)
	baseline := runtime.NumGoroutine()

	get := func(t *testing.T, path string, header http.Header) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		require.NoError(t, err)
		req.Header.Set("Accept", "text/event-stream")
		for k, v := range header {
			req.Header[k] = v
		}
		res, err := hc.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = res.Body.Close() })
		return res
	}
	// after checks that everything else kept working and nothing leaked.
	after := func(t *testing.T) {
		t.Helper()
		ping(t)
		eventually(t, 10*time.Second, "one subscriber left", func() bool { return b.Stats().Subscribers == 1 })
		var n int
		// +1: after runs in a subtest's goroutine.
		if !poll(10*time.Second, func() bool { n = runtime.NumGoroutine(); return n <= baseline+1 }) {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d, baseline %d\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
		}
	}
	expectLost := func(t *testing.T, res *http.Response) {
		t.Helper()
		require.Equal(t, http.StatusOK, res.StatusCode)
		assert.Equal(t, "malformed", res.Header.Get(sse.HeaderEventsLost))
		ev, err := sse.NewDecoder(res.Body).Decode()
		require.NoError(t, err)
		assert.Equal(t, sse.LostEventName, ev.Event)
		assert.Contains(t, fmt.Sprint(ev.Data), `"malformed"`)
		_ = res.Body.Close()
	}
	refused := func(t *testing.T, res *http.Response, status int) {
		t.Helper()
		assert.Equal(t, status, res.StatusCode)
		body, _ := io.ReadAll(res.Body)
		assert.Contains(t, string(body), `"error"`)
		_ = res.Body.Close()
	}

	t.Run("LastEventIDTooLong", func(t *testing.T) {
		expectLost(t, get(t, "/events?topic=a", http.Header{"Last-Event-Id": {strings.Repeat("9", 300)}}))
		after(t)
	})
	t.Run("LastEventIDNUL", func(t *testing.T) {
		expectLost(t, get(t, "/events?topic=a&lastEventId=%00x", nil))
		after(t)
	})
	t.Run("OversizedHeaders", func(t *testing.T) {
		conn, err := net.Dial("tcp", srv.addr)
		require.NoError(t, err)
		defer conn.Close()
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			w := bufio.NewWriter(conn)
			_, _ = fmt.Fprintf(w, "GET /events?topic=a HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nX-Big: %s\r\n\r\n", strings.Repeat("y", 2<<20))
			_ = w.Flush()
		}()
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		_ = res.Body.Close()
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, res.StatusCode)
		_ = conn.Close()
		<-wrote
		after(t)
	})
	t.Run("TooManyFromOneIP", func(t *testing.T) {
		for range maxPerIP - 1 { // the healthy client holds one
			res := get(t, "/events?topic=a", nil)
			require.Equal(t, http.StatusOK, res.StatusCode)
		}
		res := get(t, "/events?topic=a", nil)
		refused(t, res, http.StatusTooManyRequests)
		assert.Equal(t, "2", res.Header.Get("Retry-After"))
	})
	t.Run("TooManyFromOneIPAfter", after) // the streams above are closed now
	t.Run("NeverReads", func(t *testing.T) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapBefore := ms.HeapAlloc
		const n = maxPerIP - 1
		conns := make([]net.Conn, n)
		for i := range conns {
			conn, err := net.Dial("tcp", srv.addr)
			require.NoError(t, err)
			defer conn.Close()
			_ = conn.(*net.TCPConn).SetReadBuffer(4096)
			_, err = io.WriteString(conn, "GET /events?topic=big HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
			require.NoError(t, err)
			conns[i] = conn // and never read from it
		}
		eventually(t, 10*time.Second, "the readers to subscribe", func() bool { return b.Subscribers("big") == n })
		payload := strings.Repeat("z", 64<<10)
		published := 0
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for b.Subscribers("big") > 0 {
			require.Less(t, published, 3000, "clients that never read were not disconnected")
			_, err := b.Publish(context.Background(), "big", sse.Event{Data: payload})
			require.NoError(t, err)
			published++
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		grew := int64(ms.HeapAlloc) - int64(heapBefore)
		t.Logf("never-reading clients: %d events of 64 KiB published before all %d were cut; heap %+.1f MiB", published, n, float64(grew)/(1<<20))
		assert.Less(t, grew, int64(16<<20), "heap should be released (the history keeps 16 events)")
		for _, c := range conns {
			_ = c.Close()
		}
		after(t)
	})
	t.Run("UnknownTopic", func(t *testing.T) {
		refused(t, get(t, "/events?topic=nope", nil), http.StatusNotFound)
		after(t)
	})
	t.Run("UnauthorisedTopic", func(t *testing.T) {
		refused(t, get(t, "/events?topic=a&topic=secret", nil), http.StatusForbidden)
		after(t)
	})
	t.Run("NotAcceptable", func(t *testing.T) {
		refused(t, get(t, "/events?topic=a", http.Header{"Accept": {"application/json"}}), http.StatusNotAcceptable)
		after(t)
	})
	t.Run("NoAcceptHeaderIsAccepted", func(t *testing.T) {
		// Documented: WithRequireAccept refuses an Accept header that does
		// not allow text/event-stream; an absent header is accepted.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?topic=a", nil)
		require.NoError(t, err)
		res, err := hc.Do(req)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, res.StatusCode)
		_ = res.Body.Close()
		after(t)
	})

	ping(t)
	assert.Equal(t, 1, b.Stats().Subscribers)
	require.NoError(t, ctx.Err())
}
