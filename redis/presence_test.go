package sseredis_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/gin-sse/sse/ssetest"
)

// presenceNode is an instance with presence on one Redis: its streams of
// topic "room" identify their user by the X-User header.
func presenceNode(t *testing.T, prefix string) (*sse.Broker, string) {
	t.Helper()
	backend := sseredis.New(newClient(t, redisAddr), sseredis.WithPrefix(prefix), sseredis.WithErrorHandler(func(error) {}))
	b, err := sse.NewBroker(sse.WithBackend(backend),
		sse.WithPresence(func(c *gin.Context) (string, any) { return c.GetHeader("X-User"), nil }),
		sse.WithPresenceEvents("presence", nil))
	require.NoError(t, err)
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", b.Handler(sse.Topics("room")))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		require.NoError(t, b.Shutdown(ctx))
	})
	return b, srv.URL + "/events"
}

// Two instances on one Redis: a user with tabs on both counts once, a
// join or leave on one shows on the other within a round trip, and the
// presence events reach the streams of both.
func TestPresenceAcrossInstances(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	a, urlA := presenceNode(t, prefix)
	b, urlB := presenceNode(t, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 3*guard)
	defer cancel()
	connect := func(ctx context.Context, url, user string) *ssetest.Stream {
		s, err := ssetest.Connect(ctx, nil, url, http.Header{"X-User": {user}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	// converge waits until both instances report want, and returns how long
	// that took.
	converge := func(want sse.Presence) time.Duration {
		t.Helper()
		start := time.Now()
		require.Eventually(t, func() bool {
			for _, br := range []*sse.Broker{a, b} {
				p, err := br.Presence(ctx, "room")
				if err != nil || p.Subscribers != want.Subscribers || len(p.Users) != len(want.Users) {
					return false
				}
				for i := range p.Users {
					if p.Users[i].ID != want.Users[i].ID || p.Users[i].Streams != want.Users[i].Streams {
						return false
					}
				}
			}
			return true
		}, guard, 5*time.Millisecond, "both instances see %+v", want)
		return time.Since(start)
	}

	watcher := connect(ctx, urlB, "watcher")
	adaCtx, adaLeaves := context.WithCancel(ctx)
	connect(adaCtx, urlA, "ada")
	connect(ctx, urlB, "ada")
	joined := converge(sse.Presence{Subscribers: 3, Users: []sse.PresentUser{{ID: "ada", Streams: 2}, {ID: "watcher", Streams: 1}}})
	adaLeaves()
	left := converge(sse.Presence{Subscribers: 2, Users: []sse.PresentUser{{ID: "ada", Streams: 1}, {ID: "watcher", Streams: 1}}})
	t.Logf("presence converged on both instances %v after the joins, %v after a leave", joined, left)

	// The watcher on B heard of the join on A.
	for {
		ev, err := watcher.Next()
		require.NoError(t, err)
		if ev.Event != "presence" {
			continue
		}
		var p sse.Presence
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &p))
		if p.Subscribers == 2 && len(p.Users) == 2 {
			break // the state after ada's first tab left
		}
	}
}

// An instance that stops refreshing its entries (a crash) drops out of the
// presence once their time to live passed, by Redis's clock.
func TestPresenceOfACrashedInstanceExpires(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	alive := sseredis.New(newClient(t, redisAddr), sseredis.WithPrefix(prefix))
	crashed := sseredis.New(newClient(t, redisAddr), sseredis.WithPrefix(prefix))
	ctx := context.Background()
	require.NoError(t, alive.SetPresence(ctx, "room", sse.Presence{Subscribers: 1, Users: []sse.PresentUser{{ID: "ada", Streams: 1}}}, time.Minute))
	require.NoError(t, crashed.SetPresence(ctx, "room", sse.Presence{Subscribers: 2, Users: []sse.PresentUser{{ID: "ada", Streams: 1}, {ID: "bob", Streams: 1}}}, 300*time.Millisecond))
	p, err := alive.Presence(ctx, "room")
	require.NoError(t, err)
	assert.Equal(t, sse.Presence{Subscribers: 3, Users: []sse.PresentUser{{ID: "ada", Streams: 2}, {ID: "bob", Streams: 1}}}, p)
	require.Eventually(t, func() bool {
		p, err := alive.Presence(ctx, "room")
		return err == nil && p.Subscribers == 1
	}, guard, 20*time.Millisecond)
	p, _ = alive.Presence(ctx, "room")
	assert.Equal(t, sse.Presence{Subscribers: 1, Users: []sse.PresentUser{{ID: "ada", Streams: 1}}}, p)

	// An empty presence removes the entry at once.
	require.NoError(t, alive.SetPresence(ctx, "room", sse.Presence{}, time.Minute))
	p, _ = alive.Presence(ctx, "room")
	assert.Equal(t, sse.Presence{Users: []sse.PresentUser{}}, p)
}
