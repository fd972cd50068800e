package sse_test

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
	"github.com/gin-sse/sse/ssetest"
)

// presenceServer serves b's streams of topic "room", identifying users by
// the X-User header (and naming them by X-Name).
func presenceServer(t *testing.T, b *sse.Broker) *httptest.Server {
	t.Helper()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", b.Handler(sse.Topics("room")))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func identify(c *gin.Context) (string, any) {
	if u := c.GetHeader("X-User"); u != "" {
		return u, map[string]string{"name": c.GetHeader("X-Name")}
	}
	return "", nil
}

func connectAs(t *testing.T, ctx context.Context, srv *httptest.Server, user string) *ssetest.Stream {
	t.Helper()
	h := http.Header{}
	if user != "" {
		h.Set("X-User", user)
		h.Set("X-Name", "Name of "+user)
	}
	s, err := ssetest.Connect(ctx, nil, srv.URL+"/events", h)
	require.NoError(t, err)
	return s
}

func TestPresenceCountsUsersOnce(t *testing.T) {
	b, err := sse.NewBroker(sse.WithPresence(identify))
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	srv := presenceServer(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ada1 := connectAs(t, ctx, srv, "ada")
	connectAs(t, ctx, srv, "ada") // a second tab
	bob := connectAs(t, ctx, srv, "bob")
	connectAs(t, ctx, srv, "") // anonymous
	want := sse.Presence{Subscribers: 4, Users: []sse.PresentUser{
		{ID: "ada", Info: json.RawMessage(`{"name":"Name of ada"}`), Streams: 2},
		{ID: "bob", Info: json.RawMessage(`{"name":"Name of bob"}`), Streams: 1},
	}}
	require.Eventually(t, func() bool {
		p, err := b.Presence(ctx, "room")
		return err == nil && p.Subscribers == 4
	}, 5*time.Second, time.Millisecond)
	p, err := b.Presence(ctx, "room")
	require.NoError(t, err)
	assert.Equal(t, want, p)

	_ = ada1.Close()
	_ = bob.Close()
	require.Eventually(t, func() bool {
		p, err := b.Presence(ctx, "room")
		return err == nil && p.Subscribers == 2
	}, 5*time.Second, time.Millisecond)
	p, _ = b.Presence(ctx, "room")
	assert.Equal(t, []sse.PresentUser{{ID: "ada", Info: json.RawMessage(`{"name":"Name of ada"}`), Streams: 1}}, p.Users, "ada still has a tab")

	empty, err := b.Presence(ctx, "elsewhere")
	require.NoError(t, err)
	assert.Equal(t, sse.Presence{Users: []sse.PresentUser{}}, empty)
}

func TestPresenceEvents(t *testing.T) {
	b, err := sse.NewBroker(sse.WithPresence(identify), sse.WithPresenceEvents("presence", nil))
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	srv := presenceServer(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	watcher := connectAs(t, ctx, srv, "ada")
	next := func() sse.Presence {
		t.Helper()
		ev, err := watcher.Next()
		require.NoError(t, err)
		require.Equal(t, "presence", ev.Event)
		var p sse.Presence
		require.NoError(t, json.Unmarshal([]byte(ev.Data), &p))
		return p
	}
	// Its own join may come before or after the stream started: skip to
	// the state with bob.
	bobCtx, bobLeaves := context.WithCancel(ctx)
	connectAs(t, bobCtx, srv, "bob")
	p := next()
	for p.Subscribers != 2 {
		p = next()
	}
	assert.Len(t, p.Users, 2)
	bobLeaves()
	p = next()
	assert.Equal(t, 1, p.Subscribers)
	assert.Equal(t, "ada", p.Users[0].ID)
}

func TestNoPresenceCountsStreams(t *testing.T) {
	b, err := sse.NewBroker()
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	sub, err := b.Subscribe(context.Background(), []string{"room"}, "")
	require.NoError(t, err)
	defer sub.Close()
	p, err := b.Presence(context.Background(), "room")
	require.NoError(t, err)
	assert.Equal(t, sse.Presence{Subscribers: 1, Users: []sse.PresentUser{}}, p)
}
