package sse_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-contrib/gzip"
	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
)

// tpGuard bounds every wait of these tests: it only fires when something
// is broken.
const tpGuard = 5 * time.Second

// tpEngine returns a gin engine in test mode.
func tpEngine() *gin.Engine {
	gin.SetMode(gin.TestMode)
	return gin.New()
}

type tpResult struct {
	ev  sse.ReceivedEvent
	err error
}

// tpNext reads the next event of s, failing the test if none arrives
// within tpGuard. On timeout it closes s, which unblocks the reader, and
// waits for the reading goroutine before failing.
func tpNext(t *testing.T, s *ssetest.Stream) (sse.ReceivedEvent, error) {
	t.Helper()
	ch := make(chan tpResult, 1)
	go func() {
		ev, err := s.Next()
		ch <- tpResult{ev, err}
	}()
	select {
	case r := <-ch:
		return r.ev, r.err
	case <-time.After(tpGuard):
		_ = s.Close()
		<-ch
		t.Fatalf("no event within %v", tpGuard)
		return sse.ReceivedEvent{}, nil
	}
}

// tpWait receives one value from ch, failing the test after timeout.
func tpWait[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
		var zero T
		return zero
	}
}

// tpConnect connects to url with client, failing the test on error. The
// request is bounded by 2*tpGuard, so that a server that never answers (or
// never ends) fails the test instead of hanging it; the stream is closed
// when the test ends.
func tpConnect(t *testing.T, ctx context.Context, client *http.Client, url string) *ssetest.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*tpGuard)
	t.Cleanup(cancel)
	s, err := ssetest.Connect(ctx, client, url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// tpLockstep sends 0..n-1 into ch one at a time and reads each event before
// sending the next, so every event must reach the client while the handler
// is still running. Then it closes ch and expects the stream to end.
func tpLockstep(t *testing.T, s *ssetest.Stream, ch chan<- int, n int) {
	t.Helper()
	for i := range n {
		select {
		case ch <- i:
		case <-time.After(tpGuard):
			t.Fatalf("handler did not take value %d", i)
		}
		ev, err := tpNext(t, s)
		require.NoError(t, err, "event %d", i)
		assert.Equal(t, strconv.Itoa(i), ev.Data, "event %d", i)
		assert.Empty(t, ev.Event, "event %d", i)
	}
	close(ch)
	_, err := tpNext(t, s)
	assert.ErrorIs(t, err, io.EOF)
}

// tpStreamRoute registers GET /events streaming every int from ch, and
// returns a channel that receives Stream's result.
func tpStreamRoute(r *gin.Engine, ch <-chan int, opts ...sse.MiddlewareOption) <-chan error {
	done := make(chan error, 1)
	r.GET("/events", sse.Middleware(opts...), func(c *gin.Context) {
		done <- sse.Stream(c, ch)
	})
	return done
}

func TestHTTP2EventsArriveOneByOne(t *testing.T) {
	r := tpEngine()
	ch := make(chan int)
	done := tpStreamRoute(r, ch)

	srv := httptest.NewUnstartedServer(r)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	s := tpConnect(t, t.Context(), srv.Client(), srv.URL+"/events")
	res := s.Response
	require.Equal(t, 2, res.ProtoMajor, "not HTTP/2: %s", res.Proto)
	assert.Equal(t, "text/event-stream; charset=utf-8", res.Header.Get("Content-Type"))
	assert.Equal(t, "no-cache, no-transform", res.Header.Get("Cache-Control"))
	assert.Empty(t, res.Header.Values("Connection"), "Connection is forbidden in HTTP/2")

	tpLockstep(t, s, ch, 5)
	assert.NoError(t, tpWait(t, done, tpGuard, "the handler"))
}

func TestGzipEventsArriveOneByOne(t *testing.T) {
	r := tpEngine()
	r.Use(gzip.Gzip(gzip.DefaultCompression))
	ch := make(chan int)
	done := tpStreamRoute(r, ch)

	srv := httptest.NewServer(r)
	defer srv.Close()

	// Connect sets no Accept-Encoding, so the transport asks for gzip itself
	// and decompresses transparently, reporting it in Uncompressed.
	s := tpConnect(t, t.Context(), srv.Client(), srv.URL+"/events")
	res := s.Response
	require.True(t, res.Uncompressed, "the stream was not gzip-compressed")
	assert.Equal(t, "text/event-stream; charset=utf-8", res.Header.Get("Content-Type"))

	tpLockstep(t, s, ch, 5)
	assert.NoError(t, tpWait(t, done, tpGuard, "the handler"))
}

func TestWriteTimeoutEndsStuckClient(t *testing.T) {
	type outcome struct{ first, again error }
	r := tpEngine()
	results := make(chan outcome, 1)
	r.GET("/big", sse.Middleware(sse.WithWriteTimeout(100*time.Millisecond)), func(c *gin.Context) {
		ev := sse.Event{Data: strings.Repeat("x", 64<<10)}
		var err error
		for err == nil {
			err = sse.Send(c, ev)
		}
		results <- outcome{first: err, again: sse.Send(c, sse.Event{Data: "after"})}
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", srv.Listener.Addr())
	require.NoError(t, err)
	// The client never reads: the socket buffers fill up and the server's
	// writes block until the write timeout.

	got := tpWait(t, results, 10*time.Second, "the handler to give up on the stuck client")
	assert.ErrorIs(t, got.first, sse.ErrWriteTimeout)
	assert.ErrorIs(t, got.first, os.ErrDeadlineExceeded)
	assert.ErrorIs(t, got.again, sse.ErrWriteTimeout, "the error is not sticky")
	assert.Equal(t, got.first, got.again, "a later Send returns the same error")
}

func TestWriteTimeoutDoesNotCutEndOfStream(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	r := tpEngine()
	done := make(chan error, 1)
	r.GET("/quiet", sse.Middleware(sse.WithWriteTimeout(writeTimeout)), func(c *gin.Context) {
		err := sse.Send(c, sse.Event{Data: "only"})
		// Stay quiet well past the deadline of that write before ending the
		// stream: the server's final chunk must still get out.
		pause := time.NewTimer(3 * writeTimeout)
		<-pause.C
		done <- err
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	s := tpConnect(t, t.Context(), srv.Client(), srv.URL+"/quiet")
	ev, err := tpNext(t, s)
	require.NoError(t, err)
	assert.Equal(t, "only", ev.Data)
	_, err = tpNext(t, s)
	assert.ErrorIs(t, err, io.EOF, "the end of the stream was cut")
	assert.NoError(t, tpWait(t, done, tpGuard, "the handler"))
}

// tpPacedRoute registers GET /paced sending n events spaced by every, with
// mw as the stream's middleware, and returns a channel receiving the first
// Send error (nil when all were sent).
func tpPacedRoute(r *gin.Engine, mw gin.HandlerFunc, n int, every time.Duration) <-chan error {
	done := make(chan error, 1)
	r.GET("/paced", mw, func(c *gin.Context) {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := range n {
			<-tick.C
			if err := sse.Send(c, sse.Event{ID: strconv.Itoa(i), Data: "tick " + strconv.Itoa(i)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	})
	return done
}

func TestServerWriteTimeoutDoesNotCutStream(t *testing.T) {
	const (
		n            = 8
		every        = 60 * time.Millisecond
		writeTimeout = 150 * time.Millisecond
	)
	r := tpEngine()
	done := tpPacedRoute(r, sse.Middleware(), n, every)

	srv := httptest.NewUnstartedServer(r)
	srv.Config.WriteTimeout = writeTimeout
	srv.Start()
	defer srv.Close()

	start := time.Now()
	s := tpConnect(t, t.Context(), srv.Client(), srv.URL+"/paced")
	for i := range n {
		ev, err := tpNext(t, s)
		require.NoError(t, err, "event %d", i)
		assert.Equal(t, strconv.Itoa(i), ev.ID)
		assert.Equal(t, "tick "+strconv.Itoa(i), ev.Data)
	}
	_, err := tpNext(t, s)
	assert.ErrorIs(t, err, io.EOF, "the stream did not end cleanly")
	assert.Greater(t, time.Since(start), 2*writeTimeout, "the stream should outlive the server's WriteTimeout")
	assert.NoError(t, tpWait(t, done, tpGuard, "the handler"))
}

// TestServerWriteTimeoutCutsStreamWithoutExtension is the control of
// TestServerWriteTimeoutDoesNotCutStream: with the per-write deadline
// disabled, the server's WriteTimeout does cut the same stream.
func TestServerWriteTimeoutCutsStreamWithoutExtension(t *testing.T) {
	const (
		n            = 8
		every        = 60 * time.Millisecond
		writeTimeout = 150 * time.Millisecond
	)
	r := tpEngine()
	done := tpPacedRoute(r, sse.Middleware(sse.WithWriteTimeout(0)), n, every)

	srv := httptest.NewUnstartedServer(r)
	srv.Config.WriteTimeout = writeTimeout
	srv.Start()
	defer srv.Close()

	s := tpConnect(t, t.Context(), srv.Client(), srv.URL+"/paced")
	var got int
	var err error
	for {
		if _, err = tpNext(t, s); err != nil {
			break
		}
		got++
	}
	assert.Less(t, got, n)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the stream should be cut, not ended")
	assert.ErrorIs(t, tpWait(t, done, tpGuard, "the handler"), os.ErrDeadlineExceeded)
}

func TestClientGoneEndsStreamPromptly(t *testing.T) {
	r := tpEngine()
	idle := make(chan int) // nothing is ever sent
	done := tpStreamRoute(r, idle)

	srv := httptest.NewServer(r)
	defer srv.Close()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s := tpConnect(t, ctx, srv.Client(), srv.URL+"/events")
	require.Equal(t, http.StatusOK, s.Response.StatusCode)
	cancel()

	err := tpWait(t, done, tpGuard, "Stream to return after the client left")
	assert.ErrorIs(t, err, sse.ErrClientGone)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestSendAfterClientGone(t *testing.T) {
	type outcome struct {
		gone                      bool
		err, errAgain             error
		bytesBefore, bytesAfter   int64
		eventsBefore, eventsAfter int64
	}
	r := tpEngine()
	results := make(chan outcome, 1)
	r.GET("/late", sse.Middleware(), func(c *gin.Context) {
		var o outcome
		select {
		case <-c.Request.Context().Done():
			o.gone = true
		case <-time.After(tpGuard):
			results <- o
			return
		}
		w := sse.WriterFrom(c)
		o.bytesBefore, o.eventsBefore = w.Bytes(), w.Events()
		o.err = sse.Send(c, sse.Event{Data: "too late"})
		o.bytesAfter, o.eventsAfter = w.Bytes(), w.Events()
		o.errAgain = w.Err()
		results <- o
	})

	srv := httptest.NewServer(r)
	defer srv.Close()

	s := tpConnect(t, t.Context(), srv.Client(), srv.URL+"/late")
	require.NoError(t, s.Close())

	got := tpWait(t, results, 2*tpGuard, "the handler")
	require.True(t, got.gone, "the handler never saw the client leave")
	assert.ErrorIs(t, got.err, sse.ErrClientGone)
	assert.Positive(t, got.bytesBefore, "the middleware's first comment was not counted")
	assert.Equal(t, got.bytesBefore, got.bytesAfter, "Send wrote after the client left")
	assert.Equal(t, got.eventsBefore, got.eventsAfter)
	assert.Equal(t, got.err, got.errAgain, "Err should report the error that ended the stream")
}

// Behind gin-contrib/gzip, whose writer has no Unwrap method, the write
// deadline still reaches the connection and ends a stuck client's stream.
func TestWriteTimeoutBehindGzip(t *testing.T) {
	r := tpEngine()
	r.Use(gzip.Gzip(gzip.DefaultCompression))
	results := make(chan error, 1)
	r.GET("/big", sse.Middleware(sse.WithWriteTimeout(100*time.Millisecond)), func(c *gin.Context) {
		rng := rand.New(rand.NewPCG(1, 2))
		raw := make([]byte, 48<<10)
		var err error
		for err == nil {
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
			// Random data does not compress: the socket buffers fill.
			err = sse.Send(c, sse.Event{Data: hex.EncodeToString(raw)})
		}
		results <- err
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip\r\n\r\n", srv.Listener.Addr())
	require.NoError(t, err)

	got := tpWait(t, results, 10*time.Second, "the handler to give up on the stuck client")
	assert.ErrorIs(t, got, sse.ErrWriteTimeout)
}

// Over HTTP/2 a client that stops reading fills its stream's flow-control
// window; the write that waits for it longer than the write timeout ends
// the stream with ErrWriteTimeout, and the connection serves on.
func TestHTTP2WriteTimeoutEndsStuckStream(t *testing.T) {
	r := tpEngine()
	results := make(chan error, 1)
	r.GET("/big", sse.Middleware(sse.WithWriteTimeout(100*time.Millisecond)), func(c *gin.Context) {
		ev := sse.Event{Data: strings.Repeat("x", 64<<10)}
		var err error
		for err == nil {
			err = sse.Send(c, ev)
		}
		results <- err
	})
	r.GET("/small", sse.Middleware(), func(c *gin.Context) { _ = sse.Send(c, sse.Event{Data: "fine"}) })
	srv := httptest.NewUnstartedServer(r)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	stuck := tpConnect(t, t.Context(), srv.Client(), srv.URL+"/big") // never read
	require.Equal(t, 2, stuck.Response.ProtoMajor)
	start := time.Now()
	got := tpWait(t, results, 10*time.Second, "the handler to give up on the stuck stream")
	assert.ErrorIs(t, got, sse.ErrWriteTimeout)
	t.Logf("the stuck stream ended %v after it began", time.Since(start))

	s := tpConnect(t, t.Context(), srv.Client(), srv.URL+"/small")
	ev, err := tpNext(t, s)
	require.NoError(t, err)
	assert.Equal(t, "fine", ev.Data)
}

// On HTTP/2 a write deadline resets the stream when it passes, even with no
// write pending; a stream idle for longer than the write timeout must live.
func TestHTTP2IdleLongerThanWriteTimeout(t *testing.T) {
	r := tpEngine()
	done := make(chan error, 1)
	r.GET("/idle", sse.Middleware(sse.WithWriteTimeout(50*time.Millisecond), sse.WithHeartbeat(0)), func(c *gin.Context) {
		if err := sse.Send(c, sse.Event{Data: "first"}); err != nil {
			done <- err
			return
		}
		pause := time.NewTimer(300 * time.Millisecond) // six write timeouts of silence
		defer pause.Stop()
		select {
		case <-pause.C:
		case <-c.Request.Context().Done():
			done <- c.Request.Context().Err()
			return
		}
		done <- sse.Send(c, sse.Event{Data: "second"})
	})
	srv := httptest.NewUnstartedServer(r)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	s := tpConnect(t, t.Context(), srv.Client(), srv.URL+"/idle")
	require.Equal(t, 2, s.Response.ProtoMajor)
	for _, want := range []string{"first", "second"} {
		ev, err := tpNext(t, s)
		require.NoError(t, err)
		assert.Equal(t, want, ev.Data)
	}
	assert.NoError(t, tpWait(t, done, tpGuard, "the handler"))
}
