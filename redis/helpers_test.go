package sseredis_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/gin-sse/sse/ssetest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// guard bounds every wait of the tests.
const guard = 10 * time.Second

var prefixSeq atomic.Int64

// testPrefix is a key prefix of its own for t, so tests sharing a Redis do
// not see each other's events.
// Its stream is deleted at the end of t (a shared SSE_REDIS_ADDR is left
// clean).
func testPrefix(t testing.TB) string {
	prefix := "ssetest:" + strings.ReplaceAll(t.Name(), "/", ":") + ":" +
		strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatInt(prefixSeq.Add(1), 10) + ":"
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: redisAddr, MaxRetries: -1})
		defer func() { _ = c.Close() }()
		keys, _ := c.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			_ = c.Del(context.Background(), keys...).Err()
		}
	})
	return prefix
}

// newClient returns a Redis client for addr, closed at the end of t.
func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, DialerRetries: 1, MaxRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// node is one app server: a broker over a Redis backend, served over HTTP.
type node struct {
	backend *sseredis.Backend
	broker  *sse.Broker
	url     string // of the events handler, without query
}

// newNode starts a node on addr with its own Redis client, stopped at the
// end of t.
func newNode(t *testing.T, addr, prefix string, opts ...sseredis.Option) *node {
	t.Helper()
	opts = append([]sseredis.Option{
		sseredis.WithPrefix(prefix),
		sseredis.WithErrorHandler(func(error) {}),
	}, opts...)
	return newNodeWith(t, newClient(t, addr), opts...)
}

// newNodeWith starts a node with client, stopped at the end of t.
func newNodeWith(t *testing.T, client redis.UniversalClient, opts ...sseredis.Option) *node {
	t.Helper()
	backend := sseredis.New(client, opts...)
	b, err := sse.NewBroker(sse.WithBackend(backend))
	require.NoError(t, err)
	url := serveBroker(t, b, b.Handler(sse.TopicsFromQuery("topic"), sse.WithHeartbeat(100*time.Millisecond)))
	return &node{backend: backend, broker: b, url: url}
}

// serveBroker serves handler, a handler of b, at the returned URL until
// the end of t, and then shuts b down.
func serveBroker(t testing.TB, b *sse.Broker, handler gin.HandlerFunc) string {
	t.Helper()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", handler)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		require.NoError(t, b.Shutdown(ctx))
	})
	return srv.URL + "/events"
}

// connect opens a stream on n for topics, resuming after lastID when set.
func (n *node) connect(t *testing.T, lastID string, topics ...string) *ssetest.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	url := n.url + "?topic=" + strings.Join(topics, "&topic=")
	var h http.Header
	if lastID != "" {
		h = http.Header{"Last-Event-Id": {lastID}}
	}
	s, err := ssetest.Connect(ctx, nil, url, h)
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	t.Cleanup(func() { _ = s.Close(); cancel() })
	return s
}

// publish publishes data on topic through n and returns its id.
func (n *node) publish(t *testing.T, topic, data string) string {
	t.Helper()
	id, err := n.broker.Publish(context.Background(), topic, sse.Event{Event: topic, Data: data})
	require.NoError(t, err)
	return id
}

// next returns the next event of s.
func next(t *testing.T, s *ssetest.Stream) sse.ReceivedEvent {
	t.Helper()
	ev, err := s.Next()
	require.NoError(t, err)
	return ev
}
