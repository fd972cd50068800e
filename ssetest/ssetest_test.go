package ssetest_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	events, err := ssetest.ParseString("id: 1\ndata: a\n\n: c\ndata: b\n\n")
	require.NoError(t, err)
	assert.Equal(t, []sse.ReceivedEvent{{ID: "1", Data: "a"}, {ID: "1", Data: "b"}}, events)

	events, err = ssetest.Parse(strings.NewReader("data: a\n\ndata: cut"))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Equal(t, []sse.ReceivedEvent{{Data: "a"}}, events, "the events before the cut are kept")

	_, err = ssetest.ParseString("data: "+strings.Repeat("x", 100)+"\n\n", sse.WithMaxEventSize(10))
	assert.ErrorIs(t, err, sse.ErrEventTooLarge)
}

func TestRecord(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", sse.Middleware(), func(c *gin.Context) {
		_ = sse.SSEvent(c, "hello", "world")
	})
	rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, rec.Status)
	assert.Equal(t, sse.ContentType, rec.Header.Get("Content-Type"))
	assert.Equal(t, ": ok\n\nevent: hello\ndata: world\n\n", rec.Body)
	assert.Equal(t, []sse.ReceivedEvent{{Event: "hello", Data: "world"}}, rec.Events)
}

func TestConnect(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", sse.Middleware(), func(c *gin.Context) {
		assert.Equal(t, "text/event-stream", c.GetHeader("Accept"))
		assert.Equal(t, "7", c.GetHeader("Last-Event-ID"))
		_ = sse.Send(c, sse.Event{ID: "8", Data: "x"})
	})
	r.GET("/json", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{}) })
	r.GET("/gone", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	srv := httptest.NewServer(r)
	defer srv.Close()

	s, err := ssetest.Connect(context.Background(), nil, srv.URL+"/events", http.Header{"Last-Event-Id": {"7"}})
	require.NoError(t, err)
	defer s.Close()
	ev, err := s.Next()
	require.NoError(t, err)
	assert.Equal(t, sse.ReceivedEvent{ID: "8", Data: "x"}, ev)
	assert.Equal(t, "8", s.LastEventID())
	_, err = s.Next()
	assert.ErrorIs(t, err, io.EOF)

	for _, path := range []string{"/json", "/gone", "/missing"} {
		_, err = ssetest.Connect(context.Background(), srv.Client(), srv.URL+path, nil)
		assert.ErrorIs(t, err, ssetest.ErrNotEventStream, path)
	}
}
