package sse_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readLines reads n non-blank lines of br.
func readLines(t *testing.T, br *bufio.Reader, n int) []string {
	t.Helper()
	var lines []string
	for len(lines) < n {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if line != "\n" {
			lines = append(lines, line)
		}
	}
	return lines
}

type chatRequest struct {
	Prompt string `json:"prompt" binding:"required"`
}

// chatRoute is a POST stream as language model APIs have them: the handler
// binds the JSON body behind the middleware, refuses a bad one with 400,
// and streams the words of the prompt.
func chatRoute() *gin.Engine {
	r := gin.New()
	r.POST("/chat", sse.Middleware(), func(c *gin.Context) {
		var req chatRequest
		if err := c.ShouldBindJSON(&req); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": "bad request"})
			return
		}
		for _, w := range strings.Fields(req.Prompt) {
			if err := sse.SSEvent(c, "", w); err != nil {
				return
			}
		}
	})
	return r
}

// A request with a body keeps its headers back until the first write: the
// handler reads the body, and may still refuse it with a real status.
func TestMiddlewarePostBody(t *testing.T) {
	r := chatRoute()
	rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodPost, "/chat", strings.NewReader(`{"prompt":"hello big world"}`)))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, rec.Status)
	assert.Equal(t, []sse.ReceivedEvent{{Data: "hello"}, {Data: "big"}, {Data: "world"}}, rec.Events)

	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/chat", strings.NewReader(`{"prompt":`)))
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Equal(t, "application/json; charset=utf-8", w.Header().Get("Content-Type"))
	assert.JSONEq(t, `{"error":"bad request"}`, w.Body.String())

	// Over a real HTTP/1.1 connection, the body stays readable after the
	// stream started (full duplex).
	r = gin.New()
	r.POST("/echo", sse.Middleware(), func(c *gin.Context) {
		require.NoError(t, sse.Comment(c, "started"))
		body, err := io.ReadAll(c.Request.Body)
		if !assert.NoError(t, err) {
			return
		}
		assert.NoError(t, sse.SSEvent(c, "echo", string(body)))
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte("first "))
		_, _ = pw.Write([]byte("second"))
		_ = pw.Close()
	}()
	res, err := http.Post(srv.URL+"/echo", "text/plain", pr)
	require.NoError(t, err)
	defer res.Body.Close()
	events, err := ssetest.Parse(res.Body)
	require.NoError(t, err)
	assert.Equal(t, []sse.ReceivedEvent{{Event: "echo", Data: "first second"}}, events)
}

// A broker handler behind a Middleware: the handler's stream options apply
// over the middleware's, and the middleware's done channel ends the stream.
func TestBrokerHandlerBehindMiddleware(t *testing.T) {
	b := newBroker(t)
	done := make(chan struct{})
	r := gin.New()
	events := r.Group("/", sse.Middleware(sse.WithHeartbeat(0), sse.WithDone(done)))
	events.GET("/beat", b.Handler(sse.Topics("t"), sse.WithRetry(1500*time.Millisecond), sse.WithHeartbeat(20*time.Millisecond)))
	events.GET("/plain", b.Handler(sse.Topics("t"), sse.WithLastEventIDQuery("since")))
	srv := httptest.NewServer(r)
	defer srv.Close()

	beat := openRaw(t, srv.URL+"/beat")
	assert.Equal(t, []string{": ok\n", "retry: 1500\n", ": heartbeat\n", ": heartbeat\n"}, readLines(t, beat, 4),
		"the handler's retry and heartbeat apply on the middleware's stream")

	id := publish(t, b, "t", "one")
	publish(t, b, "t", "two")
	plain := openRaw(t, srv.URL+"/plain?since="+id)
	comments, data := readComments(t, plain)
	assert.Equal(t, []string{": ok"}, comments, "no heartbeat: the middleware's setting")
	assert.Equal(t, "two", data, "the handler's Last-Event-ID parameter")

	close(done)
	for _, br := range []*bufio.Reader{beat, plain} {
		_, err := io.ReadAll(br)
		assert.NoError(t, err, "the stream ends cleanly when done closes")
	}
	waitSubscribers(t, b, 0)
}

// WithRequireAccept given to a handler behind a middleware that opened the
// stream already ends the stream before any event.
func TestBrokerHandlerBehindMiddlewareRequireAccept(t *testing.T) {
	b := newBroker(t)
	r := gin.New()
	var errs []*gin.Error
	r.GET("/events", func(c *gin.Context) { c.Next(); errs = c.Errors },
		sse.Middleware(), b.Handler(sse.Topics("t"), sse.WithRequireAccept()))
	req := httptest.NewRequest(http.MethodGet, "/events", nil)
	req.Header.Set("Accept", "application/json")
	rec, err := ssetest.Record(r, req)
	require.NoError(t, err)
	assert.Equal(t, ": ok\n\n", rec.Body, "the stream ends after the middleware's first comment")
	assert.Zero(t, b.Subscribers(""))
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], sse.ErrNotAcceptable)
}

// Behind a middleware that sent the headers, a refusal ends the stream and
// is recorded, instead of writing a JSON error into the event stream.
func TestBrokerHandlerBehindMiddlewareRefuses(t *testing.T) {
	b := newBroker(t, sse.WithTopics("known"))
	r := gin.New()
	var errs []*gin.Error
	r.GET("/events", func(c *gin.Context) { c.Next(); errs = c.Errors },
		sse.Middleware(), b.Handler(sse.TopicsFromQuery("topic")))
	rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events?topic=other", nil))
	require.NoError(t, err)
	assert.Equal(t, ": ok\n\n", rec.Body)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], sse.ErrUnknownTopic)
}

// StreamSeq sends heartbeats while the sequence blocks, and reports a client
// that left even when the sequence ended because of it.
func TestStreamSeqHeartbeatsAndEnds(t *testing.T) {
	result := make(chan error, 1)
	seqDone := make(chan struct{})
	r := gin.New()
	r.GET("/events", sse.Middleware(sse.WithHeartbeat(20*time.Millisecond)), func(c *gin.Context) {
		ctx := c.Request.Context()
		seq := func(yield func(string) bool) {
			defer close(seqDone)
			if !yield("thinking") {
				return
			}
			<-ctx.Done() // a model that takes its time, and stops when the client leaves
		}
		result <- sse.StreamSeq(c, seq)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	assert.Equal(t, []string{": ok\n", "data: thinking\n", ": heartbeat\n", ": heartbeat\n"}, readLines(t, br, 4))
	cancel()
	assert.ErrorIs(t, waitErr(t, result), sse.ErrClientGone)
	<-seqDone // StreamSeq returned after the sequence did
}

func TestAuthorizeRefusalWording(t *testing.T) {
	b := newBroker(t)
	var errs []error
	r := gin.New()
	r.Use(func(c *gin.Context) {
		c.Next()
		for _, e := range c.Errors {
			errs = append(errs, e.Err)
		}
	})
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic"), sse.WithAuthorize(func(c *gin.Context, _ []string) error {
		switch c.Query("who") {
		case "":
			return &sse.StatusError{StatusCode: http.StatusUnauthorized, Err: errors.New("log in first")}
		case "guest":
			return errors.New("members only")
		case "banned":
			return &sse.StatusError{StatusCode: http.StatusTeapot}
		}
		return nil
	})))
	tests := []struct {
		query    string
		status   int
		body     string
		sentinel error
	}{
		{"", http.StatusUnauthorized, "sse: unauthorized: log in first", sse.ErrUnauthorized},
		{"&who=guest", http.StatusForbidden, "sse: forbidden: members only", sse.ErrForbidden},
		{"&who=banned", http.StatusTeapot, "I'm a teapot", nil},
	}
	for _, tt := range tests {
		errs = nil
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events?topic=a"+tt.query, nil))
		assert.Equal(t, tt.status, rec.Code, tt.query)
		assert.JSONEq(t, `{"error":"`+tt.body+`"}`, rec.Body.String(), tt.query)
		require.Len(t, errs, 1)
		var se *sse.StatusError
		if tt.sentinel != nil {
			assert.ErrorIs(t, errs[0], tt.sentinel)
		} else {
			assert.ErrorAs(t, errs[0], &se)
			assert.NotErrorIs(t, errs[0], sse.ErrForbidden)
		}
	}
}

func TestSubscriptionEvents(t *testing.T) {
	b := newBroker(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := b.Subscribe(ctx, []string{"a"}, "")
	require.NoError(t, err)
	publish(t, b, "a", "1")
	publish(t, b, "a", "2")
	var got []string
	for ev, err := range sub.Events() {
		require.NoError(t, err)
		got = append(got, ev.Data)
		if len(got) == 2 {
			break
		}
	}
	assert.Equal(t, []string{"1", "2"}, got)
	waitSubscribers(t, b, 0) // breaking out of the loop closed it

	sub, err = b.Subscribe(ctx, []string{"a"}, "")
	require.NoError(t, err)
	cancel()
	var last error
	for _, err := range sub.Events() {
		last = err
	}
	assert.ErrorIs(t, last, context.Canceled)
}

func TestReceivedEventType(t *testing.T) {
	assert.Equal(t, "message", sse.ReceivedEvent{}.Type())
	assert.Equal(t, "kitchen", sse.ReceivedEvent{Event: "kitchen"}.Type())
}
