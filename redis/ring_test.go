package sseredis_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
)

// ringClient is a go-redis Ring over servers, closed at the end of t.
func ringClient(t *testing.T, servers []*redisServer) *redis.Ring {
	t.Helper()
	addrs := map[string]string{}
	for i, s := range servers {
		addrs["shard"+strconv.Itoa(i)] = s.addr
	}
	r := redis.NewRing(&redis.RingOptions{Addrs: addrs, HeartbeatFrequency: 50 * time.Millisecond,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// Several independent Redis servers, as shards of a go-redis Ring: the
// topics spread over them, an event goes to several topics at once when
// they share a shard, and a shard that dies and comes back empty moves its
// topics with their loss signalled, never silently.
func TestRing(t *testing.T) {
	needRedis(t)
	var servers []*redisServer
	for range 2 {
		srv, err := startRedis("", 0)
		require.NoError(t, err)
		t.Cleanup(srv.stop)
		servers = append(servers, srv)
	}
	prefix := testPrefix(t)
	opts := []sseredis.Option{sseredis.WithPrefix(prefix), sseredis.WithErrorHandler(func(error) {}),
		sseredis.WithBackoff(20*time.Millisecond, 200*time.Millisecond)}
	a := newNodeWith(t, ringClient(t, servers), opts...)
	b := newNodeWith(t, ringClient(t, servers), opts...)
	ring := ringClient(t, servers)

	var topics []string
	shards := map[string][]string{}
	for i := range 20 {
		topic := "t" + strconv.Itoa(i)
		topics = append(topics, topic)
		c, err := ring.GetShardClientForKey(a.backend.Key(topic))
		require.NoError(t, err)
		shards[c.Options().Addr] = append(shards[c.Options().Addr], topic)
	}
	require.Len(t, shards, 2, "the topics spread over both servers")

	s := a.connect(t, "", topics...)
	var ids []string
	for _, topic := range topics {
		ids = append(ids, b.publish(t, topic, topic))
	}
	got := map[string]int{}
	for range topics {
		got[next(t, s).Data]++
	}
	for _, topic := range topics {
		assert.Equal(t, 1, got[topic], topic)
	}
	for i, topic := range topics {
		c, err := ring.GetShardClientForKey(a.backend.Key(topic))
		require.NoError(t, err)
		n, err := c.Exists(context.Background(), a.backend.Key(topic)).Result()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "%s is stored on its own shard", topic)
		if i < 2 {
			b.publish(t, topic, "again")
			replay := a.connect(t, ids[i], topic)
			assert.Equal(t, "again", next(t, replay).Data, "replay of %s", topic)
		}
	}
	for range 2 {
		assert.Equal(t, "again", next(t, s).Data)
	}

	// Several topics at once: only on one shard.
	var x, y string // topics on different shards
	for _, ts := range shards {
		if x == "" {
			x = ts[0]
		} else {
			y = ts[0]
		}
	}
	_, err := b.broker.PublishTopics(context.Background(), []string{x, y}, sse.Event{Data: "x"})
	assert.ErrorIs(t, err, sseredis.ErrCrossSlot)
	room := a.connect(t, "", "{room1}chat", "{room1}typing")
	_, err = b.broker.PublishTopics(context.Background(), []string{"{room1}chat", "{room1}typing"}, sse.Event{Data: "both"})
	require.NoError(t, err)
	assert.Equal(t, "both", next(t, room).Data, "once")

	// The shard of t0 dies: the ring moves t0 to the other one, and the
	// stream hears of the loss before the next event of t0.
	c0, err := ring.GetShardClientForKey(a.backend.Key("t0"))
	require.NoError(t, err)
	var dead *redisServer
	for _, srv := range servers {
		if srv.addr == c0.Options().Addr {
			dead = srv
		}
	}
	dead.kill()
	require.Eventually(t, func() bool {
		c, err := ring.GetShardClientForKey(a.backend.Key("t0"))
		return err == nil && c.Options().Addr != dead.addr
	}, guard, 20*time.Millisecond, "the ring did not move t0")
	require.Eventually(t, func() bool {
		_, err := b.broker.Publish(context.Background(), "t0", sse.Event{Event: "t0", Data: "moved"})
		return err == nil
	}, guard, 50*time.Millisecond)
	lost := 0
	for ev := next(t, s); ev.Data != "moved"; ev = next(t, s) {
		require.Equal(t, sse.LostEventName, ev.Event, "nothing else was published: %v", ev)
		lost++
	}
	assert.Equal(t, 1, lost, "the move is signalled once")

	// It comes back, empty: t0 moves back, with a loss signalled again.
	require.NoError(t, dead.restart())
	require.Eventually(t, func() bool {
		c, err := ring.GetShardClientForKey(a.backend.Key("t0"))
		return err == nil && c.Options().Addr == dead.addr
	}, guard, 20*time.Millisecond, "the ring did not move t0 back")
	require.Eventually(t, func() bool {
		_, err := b.broker.Publish(context.Background(), "t0", sse.Event{Event: "t0", Data: "back"})
		return err == nil
	}, guard, 50*time.Millisecond)
	lost = 0
	for ev := next(t, s); ev.Data != "back"; ev = next(t, s) {
		require.Equal(t, sse.LostEventName, ev.Event, "nothing else was published: %v", ev)
		lost++
	}
	assert.Equal(t, 1, lost)
}
