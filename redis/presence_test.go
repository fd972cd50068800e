package sseredis_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/gin-sse/sse/ssetest"
)

// presenceNode is an instance with presence on one Redis: its streams of
// topic "room" identify their user by the X-User header.
func presenceNode(t *testing.T, prefix string, opts ...sse.BrokerOption) (*sse.Broker, string) {
	t.Helper()
	backend := sseredis.New(newClient(t, redisAddr), sseredis.WithPrefix(prefix), sseredis.WithErrorHandler(func(error) {}))
	b, err := sse.NewBroker(append([]sse.BrokerOption{sse.WithBackend(backend),
		sse.WithPresence(func(c *gin.Context) (string, any) { return c.GetHeader("X-User"), nil }),
		sse.WithPresenceEvents("presence", nil)}, opts...)...)
	require.NoError(t, err)
	return b, serveBroker(t, b, b.Handler(sse.Topics("room")))
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

// A change of presence is announced once on the topic, by the instance
// where it happened: the other instances see the event and do not repeat
// it when they refresh their entries.
func TestPresenceAnnouncedOnce(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	const ttl = 600 * time.Millisecond // a refresh every 200 ms
	_, urlA := presenceNode(t, prefix, sse.WithPresenceTTL(ttl))
	nodeB, urlB := presenceNode(t, prefix, sse.WithPresenceTTL(ttl))
	ctx, cancel := context.WithTimeout(context.Background(), 3*guard)
	defer cancel()
	connect := func(url, user string) *ssetest.Stream {
		s, err := ssetest.Connect(ctx, nil, url, http.Header{"X-User": {user}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	watcher := connect(urlB, "watcher")
	// B announces after it wrote its entry: A then counts the watcher.
	var announced []string
	for len(announced) == 0 {
		ev, err := watcher.Next()
		require.NoError(t, err)
		if ev.Event == "presence" {
			announced = append(announced, ev.Data)
		}
	}
	connect(urlA, "ada")
	// Four refreshes of both instances, then a mark to read up to.
	time.Sleep(4 * ttl / 3)
	_, err := nodeB.Publish(ctx, "room", sse.Event{Event: "mark", Data: "."})
	require.NoError(t, err)
	for {
		ev, err := watcher.Next()
		require.NoError(t, err)
		if ev.Event == "mark" {
			break
		}
		if ev.Event == "presence" {
			announced = append(announced, ev.Data)
		}
	}
	assert.Equal(t, []string{
		`{"subscribers":1,"users":[{"id":"watcher","streams":1}]}`,
		`{"subscribers":2,"users":[{"id":"ada","streams":1},{"id":"watcher","streams":1}]}`,
	}, announced)
}

// BenchmarkPresenceManyTopics measures how long the presence of 10,240
// topics (160 streams of 64 topics each, opened at once) takes to be in
// Redis, from the first connect: each topic is written once.
func BenchmarkPresenceManyTopics(b *testing.B) {
	needRedis(b)
	const streams, perStream = 160, sse.DefaultMaxTopics
	client := newClient(b, redisAddr)
	backend := sseredis.New(client, sseredis.WithPrefix(testPrefix(b)), sseredis.WithErrorHandler(func(error) {}))
	broker, err := sse.NewBroker(sse.WithBackend(backend), sse.WithPresence(nil))
	require.NoError(b, err)
	events := serveBroker(b, broker, broker.Handler(sse.TopicsFromQuery("topic")))
	urls := make([]string, streams)
	keys := make([]string, 0, streams*perStream)
	for i := range urls {
		q := url.Values{}
		for j := range perStream {
			topic := fmt.Sprintf("p%d-%d", i, j)
			q.Add("topic", topic)
			keys = append(keys, backend.Key(topic)+":p")
		}
		urls[i] = events + "?" + q.Encode()
	}
	// stored returns how many of the topics have an entry in Redis.
	stored := func() int {
		pipe := client.Pipeline()
		cmds := make([]*redis.IntCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.HLen(context.Background(), k)
		}
		_, _ = pipe.Exec(context.Background())
		n := 0
		for _, c := range cmds {
			if c.Val() > 0 {
				n++
			}
		}
		return n
	}
	var total time.Duration
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		var wg sync.WaitGroup
		for _, u := range urls {
			wg.Go(func() {
				s, err := ssetest.Connect(ctx, nil, u, nil)
				if err == nil {
					<-ctx.Done()
					_ = s.Close()
				}
			})
		}
		for stored() < len(keys) {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		cancel()
		wg.Wait()
		for stored() > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/join")
}
