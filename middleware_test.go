package sse_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func init() { gin.SetMode(gin.TestMode) }

// engine returns a gin engine serving GET /events with handlers.
func engine(handlers ...gin.HandlerFunc) *gin.Engine {
	r := gin.New()
	r.GET("/events", handlers...)
	return r
}

func TestMiddlewareHeaders(t *testing.T) {
	r := engine(sse.Middleware(), func(c *gin.Context) {})
	rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, rec.Status)
	for k, v := range map[string]string{
		"Content-Type":      "text/event-stream; charset=utf-8",
		"Cache-Control":     "no-cache, no-transform",
		"X-Accel-Buffering": "no",
		"Connection":        "keep-alive",
	} {
		assert.Equal(t, v, rec.Header.Get(k), k)
	}
	assert.Equal(t, ": ok\n\n", rec.Body)
	assert.Empty(t, rec.Events)
}

// A handler that adds to the header the middleware set changes its own
// header only, not the next stream's.
func TestMiddlewareHeadersNotShared(t *testing.T) {
	r := engine(sse.Middleware(), func(c *gin.Context) {
		if c.Query("add") == "1" {
			h := c.Writer.Header()
			h.Add("Cache-Control", "private")
			h.Add("Connection", "x")
			h.Add("X-Accel-Buffering", "yes")
			h.Add("Content-Type", "y")
			assert.Equal(t, []string{"no-cache, no-transform", "private"}, h.Values("Cache-Control"))
		}
	})
	_, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events?add=1", nil))
	require.NoError(t, err)
	second, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
	require.NoError(t, err)
	for k, v := range map[string]string{
		"Content-Type":      "text/event-stream; charset=utf-8",
		"Cache-Control":     "no-cache, no-transform",
		"X-Accel-Buffering": "no",
		"Connection":        "keep-alive",
	} {
		assert.Equal(t, []string{v}, second.Header.Values(k), k)
	}
}

func TestMiddlewareNoConnectionHeaderOnHTTP2(t *testing.T) {
	r := engine(sse.Middleware(), func(c *gin.Context) {})
	req := httptest.NewRequest(http.MethodGet, "/events", nil)
	req.ProtoMajor, req.ProtoMinor, req.Proto = 2, 0, "HTTP/2.0"
	rec, err := ssetest.Record(r, req)
	require.NoError(t, err)
	assert.Empty(t, rec.Header.Values("Connection"))
	assert.Equal(t, "text/event-stream; charset=utf-8", rec.Header.Get("Content-Type"))
}

func TestMiddlewareRetryHint(t *testing.T) {
	r := engine(sse.Middleware(sse.WithRetry(1500*time.Millisecond)), func(c *gin.Context) {
		assert.NoError(t, sse.SSEvent(c, "", "x"))
	})
	rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
	require.NoError(t, err)
	assert.Equal(t, ": ok\nretry: 1500\n\ndata: x\n\n", rec.Body)
}

func TestMiddlewareCannotFlush(t *testing.T) {
	called := false
	r := engine(sse.Middleware(), func(c *gin.Context) { called = true })
	nf := &noFlushWriter{}
	r.ServeHTTP(nf, httptest.NewRequest(http.MethodGet, "/events", nil))
	assert.False(t, called)
	assert.Equal(t, http.StatusInternalServerError, nf.status)
	var body map[string]string
	require.NoError(t, json.Unmarshal(nf.body, &body))
	assert.Equal(t, sse.ErrNoFlusher.Error(), body["error"])
}

func TestMiddlewareAccept(t *testing.T) {
	tests := []struct {
		accept []string
		ok     bool
	}{
		{nil, true},
		{[]string{"text/event-stream"}, true},
		{[]string{"application/json, text/event-stream;q=0.5"}, true},
		{[]string{"text/*"}, true},
		{[]string{"*/*"}, true},
		{[]string{"application/json", "text/event-stream"}, true},
		{[]string{"application/json"}, false},
		{[]string{"text/html, application/xhtml+xml"}, false},
		{[]string{"text/event-stream;q=0"}, false},
		{[]string{"text/event-stream;q=abc"}, false},
	}
	for _, tt := range tests {
		called := false
		r := engine(sse.Middleware(sse.WithRequireAccept()), func(c *gin.Context) { called = true })
		req := httptest.NewRequest(http.MethodGet, "/events", nil)
		for _, v := range tt.accept {
			req.Header.Add("Accept", v)
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		assert.Equal(t, tt.ok, called, "%q", tt.accept)
		if !tt.ok {
			assert.Equal(t, http.StatusNotAcceptable, rec.Code, "%q", tt.accept)
			assert.Contains(t, rec.Body.String(), sse.ErrNotAcceptable.Error())
		}
	}
	// Without the option, any Accept header is served.
	called := false
	r := engine(sse.Middleware(), func(c *gin.Context) { called = true })
	req := httptest.NewRequest(http.MethodGet, "/events", nil)
	req.Header.Set("Accept", "application/json")
	r.ServeHTTP(httptest.NewRecorder(), req)
	assert.True(t, called)
}

func TestLastEventID(t *testing.T) {
	tests := []struct {
		name   string
		opts   []sse.MiddlewareOption
		target string
		header string
		want   string
	}{
		{"none", nil, "/events", "", ""},
		{"header", nil, "/events", "42", "42"},
		{"header wins over query", nil, "/events?lastEventId=1", "2", "2"},
		{"query fallback", nil, "/events?lastEventId=7", "", "7"},
		{"custom query", []sse.MiddlewareOption{sse.WithLastEventIDQuery("since")}, "/events?since=9&lastEventId=1", "", "9"},
		{"query disabled", []sse.MiddlewareOption{sse.WithLastEventIDQuery("")}, "/events?lastEventId=1", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			r := engine(sse.Middleware(tt.opts...), func(c *gin.Context) { got = sse.LastEventID(c) })
			req := httptest.NewRequest(http.MethodGet, tt.target, nil)
			if tt.header != "" {
				req.Header.Set("Last-Event-ID", tt.header)
			}
			r.ServeHTTP(httptest.NewRecorder(), req)
			assert.Equal(t, tt.want, got)
		})
	}
	// Without the middleware: header, then the default query parameter.
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest(http.MethodGet, "/events?lastEventId=5", nil)
	assert.Equal(t, "5", sse.LastEventID(c))
	c.Request.Header.Set("Last-Event-ID", "6")
	assert.Equal(t, "6", sse.LastEventID(c))
}

// The headers and a first comment leave before the handler sends anything,
// so a browser fires "open" at once.
func TestMiddlewareSendsHeadersAtOnce(t *testing.T) {
	release := make(chan struct{})
	r := engine(sse.Middleware(), func(c *gin.Context) {
		select {
		case <-release:
		case <-c.Request.Context().Done():
		}
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer close(release)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, ": ok\n", line)
}

func TestNoContent(t *testing.T) {
	finished := func(c *gin.Context) {
		if c.Query("done") != "" {
			assert.NoError(t, sse.NoContent(c))
		}
	}
	called := false
	r := engine(finished, sse.Middleware(), func(c *gin.Context) { called = true })

	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events?done=1", nil))
	assert.Equal(t, http.StatusNoContent, rec.Code)
	assert.Empty(t, rec.Body.String())
	assert.False(t, called)

	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.True(t, called)

	// Once the stream started the status cannot change.
	var err error
	r = engine(sse.Middleware(), func(c *gin.Context) { err = sse.NoContent(c) })
	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events", nil))
	assert.ErrorIs(t, err, sse.ErrStreamStarted)
	assert.Equal(t, http.StatusOK, rec.Code)
}
