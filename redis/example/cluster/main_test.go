package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/require"
)

// The routes do not depend on the backend: this test uses the in-memory
// one (the redis package's tests cover two servers sharing Redis).
func TestRouter(t *testing.T) {
	gin.SetMode(gin.TestMode)
	b, err := sse.NewBroker()
	require.NoError(t, err)
	srv := httptest.NewServer(newRouter(b, "A", nil))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })

	res, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(body), `<span id="instance">A</span>`)

	res, err = http.PostForm(srv.URL+"/publish", url.Values{"text": {" "}})
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusBadRequest, res.StatusCode)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := ssetest.Connect(ctx, nil, srv.URL+"/events", nil)
	require.NoError(t, err)
	defer func() { _ = s.Close() }()

	res, err = http.PostForm(srv.URL+"/publish", url.Values{"text": {"hello"}})
	require.NoError(t, err)
	var reply struct{ ID, Instance string }
	require.NoError(t, json.NewDecoder(res.Body).Decode(&reply))
	_ = res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "A", reply.Instance)

	ev, err := s.Next()
	require.NoError(t, err)
	require.Equal(t, "chat", ev.Event)
	require.Equal(t, reply.ID, ev.ID)
	var m message
	require.NoError(t, json.NewDecoder(strings.NewReader(ev.Data)).Decode(&m))
	require.Equal(t, "A", m.From)
	require.Equal(t, "hello", m.Text)
}
