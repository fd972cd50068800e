package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	goleak.VerifyTestMain(m)
}

// errDone is returned by test callbacks to end a Run.
var errDone = errors.New("done")

// testCtx bounds a test, so that a bug fails it instead of hanging.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stream starts an event stream answer and writes s to it.
func stream(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, s)
	w.(http.Flusher).Flush()
}

// server serves handler, numbering the requests (from 1) and recording
// their Last-Event-ID headers.
type server struct {
	*httptest.Server
	mu      sync.Mutex
	lastIDs []string
	n       atomic.Int32
}

func newServer(t *testing.T, handler func(n int, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.lastIDs = append(s.lastIDs, r.Header.Get("Last-Event-ID"))
		s.mu.Unlock()
		handler(int(s.n.Add(1)), w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) LastIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lastIDs...)
}

// fast are options that make reconnections quick in tests.
var fast = []client.Option{client.WithRetry(time.Millisecond), client.WithMaxBackoff(20 * time.Millisecond)}

func opts(extra ...client.Option) []client.Option {
	return append(append([]client.Option(nil), fast...), extra...)
}

func TestEventsInOrder(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		stream(w, ": hello\n\nid: 1\nevent: a\ndata: one\n\ndata: two\ndata: lines\n\nid: 3\ndata: three\n\n")
	})
	c := client.New(srv.URL, client.WithoutReconnect())
	var got []sse.ReceivedEvent
	for ev, err := range c.Events(testCtx(t)) {
		require.NoError(t, err)
		got = append(got, ev)
	}
	assert.Equal(t, []sse.ReceivedEvent{
		{ID: "1", Event: "a", Data: "one"},
		{ID: "1", Data: "two\nlines"},
		{ID: "3", Data: "three"},
	}, got)
	assert.Equal(t, "3", c.LastEventID())
}

func TestEventsBreakClosesConnection(t *testing.T) {
	closed := make(chan struct{})
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		stream(w, "data: a\n\ndata: b\n\n")
		<-r.Context().Done()
		close(closed)
	})
	c := client.New(srv.URL, fast...)
	for ev, err := range c.Events(testCtx(t)) {
		require.NoError(t, err)
		assert.Equal(t, "a", ev.Data)
		break
	}
	select {
	case <-closed:
	case <-testCtx(t).Done():
		t.Fatal("connection not closed")
	}
	assert.EqualValues(t, 1, srv.n.Load())
}

func TestReconnectAfterCleanEndAndDrop(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		switch n {
		case 1: // clean end
			stream(w, "id: 1\ndata: one\n\nid: 2\ndata: two\n\n")
		case 2: // an event without id, then a cut in the middle of an event
			stream(w, "data: no id\n\nid: 3\ndata: cut off")
			panic(http.ErrAbortHandler)
		case 3: // a byte order mark, then an id reset, then a clean end
			stream(w, "\xEF\xBB\xBFdata: bom\n\nid\ndata: reset\n\n")
		default:
			stream(w, "id: 9\ndata: last\n\n")
		}
	})
	var errs []error
	var got []sse.ReceivedEvent
	c := client.New(srv.URL, opts(client.OnError(func(err error) { errs = append(errs, err) }))...)
	err := c.Run(testCtx(t), func(ev sse.ReceivedEvent) error {
		got = append(got, ev)
		if ev.Data == "last" {
			return errDone
		}
		return nil
	})
	require.ErrorIs(t, err, errDone)
	assert.Equal(t, []sse.ReceivedEvent{
		{ID: "1", Data: "one"}, {ID: "2", Data: "two"},
		{ID: "2", Data: "no id"},
		{ID: "2", Data: "bom"}, {Data: "reset"},
		{ID: "9", Data: "last"},
	}, got)
	// The id persists across connections; an event cut off does not move
	// it; an empty id clears it and no header is sent.
	assert.Equal(t, []string{"", "2", "2", ""}, srv.LastIDs())
	require.Len(t, errs, 3)
	assert.Equal(t, io.EOF, errs[0])
	assert.Error(t, errs[1])
	assert.NotEqual(t, io.EOF, errs[1])
	assert.Equal(t, io.EOF, errs[2])
}

func TestHonoursRetryFromStream(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			stream(w, "retry: 7\ndata: one\n\n")
			return
		}
		stream(w, "data: two\n\n")
	})
	type retry struct {
		attempt int
		delay   time.Duration
	}
	var retries []retry
	c := client.New(srv.URL, client.WithRetry(time.Hour), client.OnRetry(func(a int, d time.Duration) {
		retries = append(retries, retry{a, d})
	}))
	err := c.Run(testCtx(t), func(ev sse.ReceivedEvent) error {
		if ev.Data == "two" {
			return errDone
		}
		return nil
	})
	require.ErrorIs(t, err, errDone)
	// After a connection that worked, the wait is exactly the stream's retry.
	assert.Equal(t, []retry{{1, 7 * time.Millisecond}}, retries)
}

func TestBackoffGrowsAndGivesUp(t *testing.T) {
	srv := newServer(t, func(int, http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler) // no answer at all
	})
	const base = time.Millisecond
	var attempts []int
	var delays []time.Duration
	errCount := 0
	c := client.New(srv.URL,
		client.WithRetry(base), client.WithMaxBackoff(time.Second), client.WithMaxAttempts(6),
		client.OnError(func(error) { errCount++ }),
		client.OnRetry(func(a int, d time.Duration) { attempts, delays = append(attempts, a), append(delays, d) }))
	err := c.Run(testCtx(t), func(sse.ReceivedEvent) error { return nil })
	require.ErrorIs(t, err, client.ErrGaveUp)
	assert.Contains(t, err.Error(), "6 failed attempts")
	assert.EqualValues(t, 6, srv.n.Load())
	assert.Equal(t, 6, errCount)
	assert.Equal(t, []int{2, 3, 4, 5, 6}, attempts)
	for i, d := range delays { // after n failures: [r·2ⁿ⁻¹, r·2ⁿ]
		n := i + 1
		assert.GreaterOrEqual(t, d, base<<(n-1), "after %d failures", n)
		assert.LessOrEqual(t, d, base<<n, "after %d failures", n)
		if i > 0 {
			assert.GreaterOrEqual(t, d, delays[i-1])
		}
	}
}

func TestBackoffCapped(t *testing.T) {
	srv := newServer(t, func(int, http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	var delays []time.Duration
	c := client.New(srv.URL, client.WithRetry(time.Millisecond), client.WithMaxBackoff(4*time.Millisecond),
		client.WithMaxAttempts(8), client.OnRetry(func(_ int, d time.Duration) { delays = append(delays, d) }))
	require.ErrorIs(t, c.Run(testCtx(t), func(sse.ReceivedEvent) error { return nil }), client.ErrGaveUp)
	require.Len(t, delays, 7)
	for _, d := range delays[3:] {
		assert.GreaterOrEqual(t, d, 2*time.Millisecond)
		assert.LessOrEqual(t, d, 4*time.Millisecond)
	}
}

func TestMaxElapsed(t *testing.T) {
	srv := newServer(t, func(int, http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	c := client.New(srv.URL, client.WithRetry(5*time.Millisecond), client.WithMaxElapsed(30*time.Millisecond))
	err := c.Run(testCtx(t), func(sse.ReceivedEvent) error { return nil })
	require.ErrorIs(t, err, client.ErrGaveUp)
	assert.Contains(t, err.Error(), "failing for")
}

func TestFatalAnswers(t *testing.T) {
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter)
		is      error
		status  int
	}{
		{"204", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }, client.ErrNoContent, 204},
		{"500", func(w http.ResponseWriter) { http.Error(w, "boom", http.StatusInternalServerError) }, nil, 500},
		{"503", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
		}, nil, 503},
		{"201", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusCreated)
		}, nil, 201},
		{"text/plain", func(w http.ResponseWriter) { _, _ = io.WriteString(w, "data: x\n\n") }, client.ErrContentType, 0},
		{"no Content-Type", func(w http.ResponseWriter) {
			w.Header()["Content-Type"] = nil
			_, _ = io.WriteString(w, "data: x\n\n")
		}, client.ErrContentType, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) { tt.handler(w) })
			var retried, opened bool
			var errs []error
			c := client.New(srv.URL, opts(
				client.OnRetry(func(int, time.Duration) { retried = true }),
				client.OnOpen(func(*http.Response) { opened = true }),
				client.OnError(func(err error) { errs = append(errs, err) }))...)
			err := c.Run(testCtx(t), func(sse.ReceivedEvent) error { return nil })
			require.Error(t, err)
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
			var se *client.StatusError
			if tt.status != 0 {
				require.ErrorAs(t, err, &se)
				assert.Equal(t, tt.status, se.StatusCode)
			} else {
				assert.False(t, errors.As(err, &se))
			}
			assert.False(t, retried)
			assert.False(t, opened)
			assert.Equal(t, []error{err}, errs)
			assert.EqualValues(t, 1, srv.n.Load())
		})
	}
}

func TestStatusErrorDetails(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "5")
		http.Error(w, `{"error":"full"}`, http.StatusServiceUnavailable)
	})
	err := client.New(srv.URL).Run(testCtx(t), func(sse.ReceivedEvent) error { return nil })
	var se *client.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "5", se.Header.Get("Retry-After"))
	assert.Equal(t, "{\"error\":\"full\"}\n", se.Body)
	assert.Equal(t, `client: server answered 503 Service Unavailable: {"error":"full"}`, err.Error())
	assert.NotErrorIs(t, err, client.ErrNoContent)
}

func TestOnOpenFiresOnHeaders(t *testing.T) {
	opened := make(chan struct{})
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		stream(w, "")
		select { // the event is only sent once the client saw the headers
		case <-opened:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: after open\n\n")
	})
	var order []string
	c := client.New(srv.URL, client.WithoutReconnect(), client.OnOpen(func(res *http.Response) {
		order = append(order, "open "+res.Header.Get("Content-Type"))
		close(opened)
	}))
	err := c.Run(testCtx(t), func(ev sse.ReceivedEvent) error {
		order = append(order, ev.Data)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"open text/event-stream", "after open"}, order)
}

func TestMaxEventSize(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		stream(w, "data: small\n\ndata: "+strings.Repeat("x", 2000)+"\n\n")
	})
	var got []string
	var retried bool
	c := client.New(srv.URL, opts(client.WithMaxEventSize(1024),
		client.OnRetry(func(int, time.Duration) { retried = true }))...)
	err := c.Run(testCtx(t), func(ev sse.ReceivedEvent) error {
		got = append(got, ev.Data)
		return nil
	})
	require.ErrorIs(t, err, sse.ErrEventTooLarge)
	assert.Equal(t, []string{"small"}, got)
	assert.False(t, retried)
	assert.EqualValues(t, 1, srv.n.Load())
}

func TestRequestHeaders(t *testing.T) {
	headers := make(chan http.Header, 2)
	srv := newServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		headers <- r.Header.Clone()
		if n == 1 {
			stream(w, "id: 5\ndata: x\n\n")
		} else {
			w.WriteHeader(http.StatusNoContent)
		}
	})
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	c := client.New(srv.URL, opts(
		client.WithHTTPClient(hc),
		client.WithHeader("Authorization", "Bearer t"),
		client.WithHeader("X-Multi", "a"), client.WithHeader("X-Multi", "b"),
		client.WithLastEventID("4"))...)
	err := c.Run(testCtx(t), func(sse.ReceivedEvent) error { return nil })
	require.ErrorIs(t, err, client.ErrNoContent)
	for i, want := range []string{"4", "5"} {
		h := <-headers
		assert.Equal(t, "text/event-stream", h.Get("Accept"), i)
		assert.Equal(t, "no-cache", h.Get("Cache-Control"), i)
		assert.Equal(t, "Bearer t", h.Get("Authorization"), i)
		assert.Equal(t, []string{"a", "b"}, h.Values("X-Multi"), i)
		assert.Equal(t, want, h.Get("Last-Event-ID"), i)
	}
}

func TestInvalidLastEventID(t *testing.T) {
	c := client.New("http://127.0.0.1:1", client.WithLastEventID("a\nb"))
	err := c.Run(testCtx(t), func(sse.ReceivedEvent) error { return nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid last event ID")
}

func TestInvalidURLIsFatal(t *testing.T) {
	var retried bool
	c := client.New("http://[::1", client.OnRetry(func(int, time.Duration) { retried = true }))
	require.Error(t, c.Run(testCtx(t), func(sse.ReceivedEvent) error { return nil }))
	assert.False(t, retried)
}

func TestWithBody(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		stream(w, fmt.Sprintf("data: %s %s %s\n\n", r.Method, r.Header.Get("Content-Type"), b))
	})
	var got []string
	c := client.New(srv.URL, client.WithoutReconnect(), client.WithBody(http.MethodPost, "application/json", []byte(`{"q":1}`)))
	for ev, err := range c.Events(testCtx(t)) {
		require.NoError(t, err)
		got = append(got, ev.Data)
	}
	assert.Equal(t, []string{`POST application/json {"q":1}`}, got)
}

func TestOneShot(t *testing.T) {
	t.Run("clean end", func(t *testing.T) {
		srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) { stream(w, "data: a\n\n") })
		var errs []error
		c := client.New(srv.URL, opts(client.WithoutReconnect(), client.OnError(func(err error) { errs = append(errs, err) }))...)
		require.NoError(t, c.Run(testCtx(t), func(sse.ReceivedEvent) error { return nil }))
		assert.EqualValues(t, 1, srv.n.Load())
		assert.Equal(t, []error{io.EOF}, errs)
	})
	t.Run("cut off", func(t *testing.T) {
		srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) { stream(w, "data: a\n\ndata: b") })
		var got []string
		c := client.New(srv.URL, opts(client.WithoutReconnect())...)
		err := c.Run(testCtx(t), func(ev sse.ReceivedEvent) error {
			got = append(got, ev.Data)
			return nil
		})
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.Equal(t, []string{"a"}, got)
		assert.EqualValues(t, 1, srv.n.Load())
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		err := client.New(url, opts(client.WithoutReconnect())...).Run(testCtx(t), func(sse.ReceivedEvent) error { return nil })
		require.Error(t, err)
		assert.NotErrorIs(t, err, client.ErrGaveUp)
	})
}

// runAsync runs c in a goroutine and returns its result channel.
func runAsync(ctx context.Context, c *client.Client) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, func(sse.ReceivedEvent) error { return nil }) }()
	return done
}

func waitResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

func TestCancelWhileReading(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		stream(w, "data: a\n\n")
		<-r.Context().Done() // idle stream
	})
	opened := make(chan struct{})
	ctx, cancel := context.WithCancel(testCtx(t))
	c := client.New(srv.URL, client.OnOpen(func(*http.Response) { close(opened) }))
	done := runAsync(ctx, c)
	<-opened
	cancel()
	assert.Equal(t, context.Canceled, waitResult(t, done))
}

func TestCancelWhileWaiting(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) { stream(w, "data: a\n\n") })
	waiting := make(chan struct{})
	ctx, cancel := context.WithCancel(testCtx(t))
	c := client.New(srv.URL, client.WithRetry(time.Hour), client.OnRetry(func(int, time.Duration) { close(waiting) }))
	done := runAsync(ctx, c)
	<-waiting
	cancel()
	assert.Equal(t, context.Canceled, waitResult(t, done))
}

func TestCanceledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var called bool
	c := client.New("http://127.0.0.1:1", client.OnError(func(error) { called = true }))
	assert.Equal(t, context.Canceled, c.Run(ctx, func(sse.ReceivedEvent) error { return nil }))
	assert.False(t, called)
}

// TestBrokerExactlyOnce reads a broker while the connection is cut every
// few events and events are published concurrently: replay through
// Last-Event-ID must give every event exactly once, in order.
func TestBrokerExactlyOnce(t *testing.T) {
	const total, cutEvery = 300, 7
	b, err := sse.NewBroker()
	require.NoError(t, err)
	r := gin.New()
	r.GET("/events", b.Handler(sse.Topics("t")))
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer func() { _ = b.Shutdown(context.Background()) }()

	var body io.Closer
	opens := 0
	first := make(chan struct{})
	c := client.New(srv.URL+"/events", opts(client.OnOpen(func(res *http.Response) {
		body = res.Body
		if opens++; opens == 1 {
			close(first)
		}
	}))...)
	published := make(chan error, 1)
	go func() {
		<-first
		for i := range total {
			if _, err := b.Publish(context.Background(), "t", sse.Event{Data: strconv.Itoa(i)}); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()

	var got []int
	ids := map[string]bool{}
	err = c.Run(testCtx(t), func(ev sse.ReceivedEvent) error {
		n, err := strconv.Atoi(ev.Data)
		if err != nil {
			return fmt.Errorf("unexpected event %+v", ev)
		}
		got = append(got, n)
		if ids[ev.ID] {
			return fmt.Errorf("duplicate id %q", ev.ID)
		}
		ids[ev.ID] = true
		if len(got) == total {
			return errDone
		}
		if len(got)%cutEvery == 0 {
			_ = body.Close() // cut the connection mid-publish
		}
		return nil
	})
	require.ErrorIs(t, err, errDone)
	require.NoError(t, <-published)
	want := make([]int, total)
	for i := range want {
		want[i] = i
	}
	assert.Equal(t, want, got)
	assert.Greater(t, opens, 2)
}
