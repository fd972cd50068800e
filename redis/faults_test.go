package sseredis_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ownRedis starts a redis-server of the test's own (it stops, pauses or
// flushes it), or fails the test without the binary.
func ownRedis(t *testing.T, dir string) *redisServer {
	t.Helper()
	needRedis(t)
	if redisBinary == "" {
		t.Fatal("this test needs the redis-server binary (apt-get install -y redis-server), not only SSE_REDIS_ADDR")
	}
	srv, err := startRedis(dir, 0)
	require.NoError(t, err)
	t.Cleanup(srv.stop)
	return srv
}

// An instance receives the events of the topics it serves, not every
// event: instance A serves 10 of 1,000 topics and gets 1% of the events
// published on instance B.
func TestOnlyServedTopicsReachAnInstance(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	client := newClient(t, redisAddr)
	got := make(chan sse.Message, 10000)
	a := sseredis.New(client, sseredis.WithPrefix(prefix))
	require.NoError(t, a.Start(func(m sse.Message) { got <- m }))
	t.Cleanup(func() { assert.NoError(t, a.Close()) })
	b := sseredis.New(newClient(t, redisAddr), sseredis.WithPrefix(prefix))
	require.NoError(t, b.Start(func(sse.Message) {}))
	t.Cleanup(func() { assert.NoError(t, b.Close()) })

	const topics, served, each = 1000, 10, 5
	for i := range served {
		_, err := a.Watch(context.Background(), "topic"+strconv.Itoa(i*(topics/served)))
		require.NoError(t, err)
	}
	// Publish in rounds through every topic; the last round's last event
	// goes to a served topic, so that once it arrives all have.
	for r := range each {
		for i := range topics {
			_, err := b.Publish(context.Background(), []string{"topic" + strconv.Itoa((i+1)%topics)}, "", []byte("data: "+strconv.Itoa(r)+"\n\n"))
			require.NoError(t, err)
		}
	}
	count := map[string]int{}
	for n := 0; n < served*each; n++ {
		select {
		case m := <-got:
			require.Nil(t, m.Lost)
			count[m.Topic]++
		case <-time.After(guard):
			t.Fatalf("A got %d of the %d events of its topics", n, served*each)
		}
	}
	for topic, n := range count {
		assert.Equal(t, each, n, topic)
	}
	// Nothing else is on its way: A's connection is subscribed to its
	// topics' channels only.
	n, err := client.PubSubShardNumSub(context.Background(), a.Key("topic0"), a.Key("topic1")).Result()
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{a.Key("topic0"): 1, a.Key("topic1"): 0}, n)
	select {
	case m := <-got:
		t.Fatalf("A got an event of a topic it does not serve: %+v", m)
	default:
	}
	t.Logf("A received %d of the %d events published (%.1f%%)", served*each, topics*each, 100*float64(served*each)/float64(topics*each))
}

// Redis restarts empty (no persistence) or is flushed: the streams that
// were reading a topic get the events-lost signal with the reason
// data-loss, then the new events; a client that reconnects with an id of
// before gets the same signal. Nothing is skipped silently.
func TestDataLossIsSignalled(t *testing.T) {
	for _, how := range []string{"flushall", "restart"} {
		t.Run(how, func(t *testing.T) {
			srv := ownRedis(t, "")
			prefix := testPrefix(t)
			backoff := sseredis.WithBackoff(10*time.Millisecond, 50*time.Millisecond)
			a, b := newNode(t, srv.addr, prefix, backoff), newNode(t, srv.addr, prefix, backoff)
			s := a.connect(t, "", "t")
			before := b.publish(t, "t", "before")
			require.Equal(t, before, next(t, s).ID)

			switch how {
			case "flushall":
				require.NoError(t, newClient(t, srv.addr).FlushAll(context.Background()).Err())
			case "restart":
				srv.stop()
				require.NoError(t, srv.restart())
			}
			var after string
			require.Eventually(t, func() bool {
				id, err := b.broker.Publish(context.Background(), "t", sse.Event{Data: "after"})
				after = id
				return err == nil
			}, guard, 20*time.Millisecond)
			ev := next(t, s)
			assert.Equal(t, sse.LostEventName, ev.Event)
			assert.Contains(t, ev.Data, `"reason":"data-loss"`)
			ev = next(t, s)
			assert.Equal(t, "after", ev.Data)
			assert.Equal(t, after, ev.ID)

			r := b.connect(t, before, "t")
			assert.Equal(t, "data-loss", r.Response.Header.Get(sse.HeaderEventsLost))
			assert.Equal(t, sse.LostEventName, next(t, r).Event)
			b.publish(t, "t", "live")
			assert.Equal(t, "live", next(t, r).Data, "the live events follow")
		})
	}
}

// Redis stalls longer than go-redis's read timeout, so go-redis sends the
// publish again: the event is stored once, delivered once and Publish
// returns its one id. A stall longer than the backend's timeout makes
// Publish fail with ErrUnavailable in time.
func TestStalledRedisStoresOnce(t *testing.T) {
	srv := ownRedis(t, "")
	prefix := testPrefix(t)
	admin := newClient(t, srv.addr)
	stalling := redis.NewClient(&redis.Options{Addr: srv.addr, ReadTimeout: 200 * time.Millisecond, MaxRetries: 5})
	t.Cleanup(func() { _ = stalling.Close() })
	// Connections ready in the pool, so that go-redis's retries reach the
	// server (a new connection's handshake would time out).
	var warm sync.WaitGroup
	for range 8 {
		warm.Go(func() { _ = stalling.BLPop(context.Background(), 50*time.Millisecond, prefix+"none").Err() })
	}
	warm.Wait()
	be := sseredis.New(stalling, sseredis.WithPrefix(prefix), sseredis.WithTimeout(10*time.Second), sseredis.WithErrorHandler(func(error) {}))
	b, err := sse.NewBroker(sse.WithBackend(be))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Shutdown(context.Background())) })
	sub, err := b.Subscribe(context.Background(), []string{"t"}, "")
	require.NoError(t, err)
	first, err := b.Publish(context.Background(), "t", sse.Event{Data: "first"}) // Redis has the script
	require.NoError(t, err)
	ev, err := sub.Next()
	require.NoError(t, err)
	require.Equal(t, first, ev.ID)

	calls := func() int {
		stats, err := admin.Info(context.Background(), "commandstats").Result()
		require.NoError(t, err)
		_, rest, _ := strings.Cut(stats, "cmdstat_evalsha:calls=")
		n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
		return n
	}
	// DEBUG SLEEP stalls the whole server: the attempts go-redis sends
	// meanwhile are all read, and run, when it wakes up.
	probe := redis.NewClient(&redis.Options{Addr: srv.addr, ReadTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = probe.Close() })
	require.NoError(t, probe.Ping(context.Background()).Err())
	before := calls()
	sleeping := make(chan error, 1)
	go func() { sleeping <- admin.Do(context.Background(), "DEBUG", "SLEEP", "1").Err() }()
	require.Eventually(t, func() bool { return probe.Ping(context.Background()).Err() != nil }, guard, 10*time.Millisecond, "Redis sleeps")
	start := time.Now()
	id, err := b.Publish(context.Background(), "t", sse.Event{Data: "once"})
	require.NoError(t, err, "a retry after the stall gets the id of the first attempt")
	assert.Greater(t, time.Since(start), 500*time.Millisecond, "the publish was held by the stall")
	require.NoError(t, <-sleeping)
	assert.Greater(t, calls()-before, 1, "go-redis sent the publish more than once")
	n, err := admin.XLen(context.Background(), be.Key("t")).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(2), n, "stored once")
	ev, err = sub.Next()
	require.NoError(t, err)
	assert.Equal(t, id, ev.ID)
	sentinel, err := b.Publish(context.Background(), "t", sse.Event{Data: "next"})
	require.NoError(t, err)
	ev, err = sub.Next()
	require.NoError(t, err)
	assert.Equal(t, sentinel, ev.ID, "delivered once")

	// The backend's own timeout bounds a publish whatever the stall.
	quick := sseredis.New(stalling, sseredis.WithPrefix(prefix), sseredis.WithTimeout(300*time.Millisecond))
	require.NoError(t, admin.Do(context.Background(), "CLIENT", "PAUSE", "3000", "WRITE").Err())
	t.Cleanup(func() { _ = admin.Do(context.Background(), "CLIENT", "UNPAUSE").Err() })
	start = time.Now()
	_, err = quick.Publish(context.Background(), []string{"t"}, "", []byte("data: late\n\n"))
	assert.ErrorIs(t, err, sseredis.ErrUnavailable)
	assert.Less(t, time.Since(start), 2*time.Second)
}

// An instance starts while Redis is down: it serves no stream until Redis
// is back (a stream gets a "retry:" answer), then works.
func TestStartWhileRedisDown(t *testing.T) {
	srv := ownRedis(t, "")
	srv.stop()
	prefix := testPrefix(t)
	n := newNode(t, srv.addr, prefix, sseredis.WithTimeout(300*time.Millisecond), sseredis.WithBackoff(10*time.Millisecond, 50*time.Millisecond))

	res, err := http.Get(n.url + "?topic=t")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, string(body), "\nretry: ", "come back later")
	_, err = n.broker.Publish(context.Background(), "t", sse.Event{Data: "x"})
	assert.ErrorIs(t, err, sseredis.ErrUnavailable)
	assert.ErrorIs(t, n.backend.Ready(context.Background()), sseredis.ErrUnavailable)

	require.NoError(t, srv.restart())
	require.Eventually(t, func() bool { return n.backend.Ready(context.Background()) == nil }, guard, 20*time.Millisecond, "ready once Redis is back")
	var s *sse.Subscription
	require.Eventually(t, func() bool {
		sub, err := n.broker.Subscribe(t.Context(), []string{"t"}, "")
		if err != nil {
			return false
		}
		t.Cleanup(sub.Close)
		s = sub
		return true
	}, guard, 20*time.Millisecond)
	id := n.publish(t, "t", "x")
	ev, err := s.Next()
	require.NoError(t, err)
	assert.Equal(t, id, ev.ID)
}

// 50 clients reconnect at once with an id from before a 10 MB history:
// each gets all of it, and the replay holds a page at a time, not the
// history once per client.
func TestReplayStormMemory(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	n := newNode(t, redisAddr, prefix, sseredis.WithMaxLen(0))
	const events, size, clients = 1000, 10 << 10, 50
	data := strings.Repeat("x", size)
	first := ""
	for i := range events {
		id, err := n.broker.Publish(context.Background(), "big", sse.Event{Data: data})
		require.NoError(t, err)
		if i == 0 {
			first = id
		}
	}
	fresh := newNode(t, redisAddr, prefix) // nothing of it in memory
	// Less garbage between collections, so that the peak is what the
	// replays hold rather than what the collector has not freed yet.
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 4*guard)
			defer cancel()
			sub, err := fresh.broker.Subscribe(ctx, []string{"big"}, first)
			if err != nil {
				errs <- err
				return
			}
			defer sub.Close()
			for i := 1; i < events; i++ {
				ev, err := sub.Next()
				if err == nil && len(ev.Data) != size {
					err = fmt.Errorf("event %d: %d bytes", i, len(ev.Data))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	grown := int64(peak) - int64(base.HeapInuse)
	t.Logf("peak heap %.1f MiB over a baseline of %.1f MiB", float64(grown)/(1<<20), float64(base.HeapInuse)/(1<<20))
	assert.Less(t, grown, int64(clients*events*size/4), "the history is %d MiB; clients x history would be %d MiB", events*size>>20, clients*events*size>>20)
}

// Redis comes back without the last entries an instance delivered (as
// after a failover to a replica that lacked them): its streams get the
// data-loss signal, then the events that follow, and none they had again.
func TestLostTailIsSignalledOnce(t *testing.T) {
	srv := ownRedis(t, "")
	prefix := testPrefix(t)
	a := newNode(t, srv.addr, prefix, sseredis.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*guard)
	defer cancel()
	s, err := a.broker.Subscribe(ctx, []string{"t"}, "")
	require.NoError(t, err)
	c := newClient(t, srv.addr)
	a.publish(t, "t", "e1")
	dump, err := c.Dump(context.Background(), a.backend.Key("t")).Result()
	require.NoError(t, err)
	a.publish(t, "t", "e2")
	e3 := a.publish(t, "t", "e3")
	for _, want := range []string{"e1", "e2", "e3"} {
		ev, err := s.Next()
		require.NoError(t, err)
		require.Equal(t, want, ev.Data)
	}
	// The stream as it was after e1; the reader notices on reconnect.
	require.NoError(t, c.RestoreReplace(context.Background(), a.backend.Key("t"), 0, dump).Err())
	require.NoError(t, c.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err())
	// Ids are times: a store that lost entries gives out their ids again
	// only within the millisecond they were given (a failover takes
	// longer than that).
	require.Eventually(t, func() bool {
		now, err := c.Time(context.Background()).Result()
		return err == nil && strconv.FormatInt(now.UnixMilli(), 10) > strings.Split(e3, "-")[0]
	}, guard, time.Millisecond)
	a.publish(t, "t", "e4")
	ev, err := s.Next()
	require.NoError(t, err)
	assert.Equal(t, sse.LostEventName, ev.Event)
	assert.Contains(t, ev.Data, `"reason":"data-loss"`)
	ev, err = s.Next()
	require.NoError(t, err)
	assert.Equal(t, "e4", ev.Data, "not e1 again")
}
