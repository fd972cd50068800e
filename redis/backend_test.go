package sseredis_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Publish on one server, receive on the other: two brokers share topics
// and ids through Redis.
func TestTwoBrokersShareRedis(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	a, b := newNode(t, redisAddr, prefix), newNode(t, redisAddr, prefix)
	onB := b.connect(t, "", "kitchen")
	onA := a.connect(t, "", "kitchen", "hall")

	id := a.publish(t, "kitchen", "21.5")
	ev := next(t, onB)
	assert.Equal(t, id, ev.ID)
	assert.Equal(t, "kitchen", ev.Event)
	assert.Equal(t, "21.5", ev.Data)
	ev = next(t, onA)
	assert.Equal(t, "21.5", ev.Data, "the publishing server's own subscribers get it too")
	assert.Regexp(t, `^[0-9a-z]+:,`+id+`$`, ev.ID, "a stream on two topics: its position in hall (none yet), then kitchen")

	id2 := b.publish(t, "kitchen", "22")
	assert.Equal(t, "22", next(t, onA).Data)
	assert.Equal(t, id2, next(t, onB).ID)

	// One event on two topics reaches a subscriber of both once, with
	// the same id in both.
	id3, err := b.broker.PublishTopics(context.Background(), []string{"kitchen", "hall"}, sse.Event{Data: "both"})
	require.NoError(t, err)
	id4 := a.publish(t, "hall", "hall only")
	ev = next(t, onA)
	assert.Equal(t, "both", ev.Data)
	assert.Contains(t, ev.ID, id3, "its position in the topic whose copy came first")
	assert.Equal(t, "hall only", next(t, onA).Data)
	assert.Equal(t, id3, next(t, onB).ID)
	assert.Less(t, id3, id4)

	_, err = a.broker.Publish(context.Background(), "kitchen", sse.Event{ID: "mine", Data: "x"})
	assert.ErrorIs(t, err, sseredis.ErrOwnID)
}

// A client that read some events on A and reconnects to B with its
// Last-Event-ID gets exactly the events it missed, in order, on all its
// topics, then the live ones.
func TestReconnectToOtherServer(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	a, b := newNode(t, redisAddr, prefix), newNode(t, redisAddr, prefix)
	s := a.connect(t, "", "x", "y")
	var all []string
	for i := range 4 {
		a.publish(t, []string{"x", "y"}[i%2], strconv.Itoa(i))
		all = append(all, strconv.Itoa(i))
	}
	for i := range 2 {
		require.Equal(t, strconv.Itoa(i), next(t, s).Data)
	}
	last := s.LastEventID()
	require.NoError(t, s.Close())

	// Missed while away: published on both servers, some on another
	// topic, some on both.
	for i := 4; i < 12; i++ {
		n := []*node{a, b}[i%2]
		topics := [][]string{{"x"}, {"y"}, {"z"}, {"x", "y"}}[i%4]
		_, err := n.broker.PublishTopics(context.Background(), topics, sse.Event{Event: strings.Join(topics, "+"), Data: strconv.Itoa(i)})
		require.NoError(t, err)
		if topics[0] != "z" {
			all = append(all, strconv.Itoa(i))
		}
	}
	// B's reader may not have delivered all of them yet, nor even the
	// client's last one: either way the client gets each missed event
	// once, in each topic's order.
	s = b.connect(t, last, "x", "y")
	assert.Empty(t, s.Response.Header.Get(sse.HeaderEventsLost))
	got := map[string][]string{}
	for range all[2:] {
		ev := next(t, s)
		got[ev.Event] = append(got[ev.Event], ev.Data)
	}
	assert.Equal(t, map[string][]string{"x": {"2", "4", "8"}, "y": {"3", "5", "9"}, "x+y": {"7", "11"}}, got)
	a.publish(t, "y", "live")
	assert.Equal(t, "live", next(t, s).Data)

	// And again from the id of the last event: nothing but what follows.
	last = s.LastEventID()
	require.NoError(t, s.Close())
	s = a.connect(t, last, "y", "x")
	b.publish(t, "x", "after")
	assert.Equal(t, "after", next(t, s).Data)
}

// Redis goes away mid-stream and comes back (with its data, from its
// append-only file): Publish fails with ErrUnavailable meanwhile, open
// streams stay open, and afterwards they get every event published after
// the recovery exactly once.
func TestRedisRestart(t *testing.T) {
	needRedis(t)
	if redisBinary == "" {
		if os.Getenv("SSE_REDIS_REQUIRED") == "1" {
			t.Fatal("SSE_REDIS_REQUIRED=1 but redis-server is not installed: the restart test needs it")
		}
		t.Skip("needs redis-server to restart it (SSE_REDIS_ADDR is set)")
	}
	srv, err := startRedis(t.TempDir(), 0)
	require.NoError(t, err)
	t.Cleanup(srv.stop)

	readErrs := make(chan error, 100)
	onError := sseredis.WithErrorHandler(func(err error) {
		select {
		case readErrs <- err:
		default:
		}
	})
	prefix := testPrefix(t)
	backoff := sseredis.WithBackoff(10*time.Millisecond, 100*time.Millisecond)
	a := newNode(t, srv.addr, prefix, backoff)
	b := newNode(t, srv.addr, prefix, backoff, onError)
	onA, onB := a.connect(t, "", "t"), b.connect(t, "", "t")

	before := a.publish(t, "t", "before")
	require.Equal(t, before, next(t, onA).ID)
	require.Equal(t, before, next(t, onB).ID)

	// A raw stream, to see its heartbeats (comments) while Redis is down.
	raw := b.connect(t, "", "t")
	lines := bufio.NewReader(raw.Response.Body)

	srv.stop()
	for heartbeats := 0; heartbeats < 2; {
		line, err := lines.ReadString('\n')
		require.NoError(t, err, "the stream stays open while Redis is down")
		if strings.HasPrefix(line, ": heartbeat") {
			heartbeats++
		}
	}
	// A stream that needs Redis meanwhile (on a topic this broker does not
	// serve yet, it has nothing of it in memory) is asked to come back
	// later with the same Last-Event-ID: a short stream holding a retry
	// field (an error status would end a browser's EventSource for good).
	res, err := http.Get(a.url + "?topic=u&lastEventId=" + before)
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, sse.ContentType, res.Header.Get("Content-Type"))
	assert.Contains(t, string(body), "\nretry: ")
	assert.NotContains(t, string(body), "\nid:", "the client keeps its Last-Event-ID")
	_, err = a.broker.Publish(context.Background(), "t", sse.Event{Data: "while down"})
	require.Error(t, err)
	assert.ErrorIs(t, err, sseredis.ErrUnavailable)
	select { // B's reader noticed
	case err := <-readErrs:
		assert.ErrorIs(t, err, sseredis.ErrUnavailable)
	case <-time.After(guard):
		t.Fatal("the reader reported no error while Redis was down")
	}

	require.NoError(t, srv.restart())
	// Publish as soon as Redis answers again: the readers may still be
	// waiting to reconnect; they resume from the last id they delivered.
	var after []string
	deadline := time.Now().Add(guard)
	for len(after) < 3 {
		id, err := a.broker.Publish(context.Background(), "t", sse.Event{Data: "after " + strconv.Itoa(len(after))})
		if err != nil {
			require.ErrorIs(t, err, sseredis.ErrUnavailable)
			require.True(t, time.Now().Before(deadline), "Redis did not come back: %v", err)
			continue
		}
		after = append(after, id)
	}
	for i, id := range after {
		assert.Equal(t, id, next(t, onA).ID, "A, event %d after the restart", i)
		assert.Equal(t, id, next(t, onB).ID, "B, event %d after the restart", i)
	}
	// The history survived the restart: replay across it.
	s := b.connect(t, before, "t")
	for _, id := range after {
		assert.Equal(t, id, next(t, s).ID)
	}
}

// With a small history, a stale Last-Event-ID gets the broker's
// events-lost signal; unknown and malformed ones too.
func TestTrimmedHistorySignalsLost(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	n := newNode(t, redisAddr, prefix, sseredis.WithMaxLen(10))
	old := n.publish(t, "t", "old")
	var last string
	for i := range 300 { // MAXLEN ~ trims whole radix nodes of 100 entries
		last = n.publish(t, "t", strconv.Itoa(i))
	}
	// A broker keeps recent events in memory and asks Redis only for older
	// ones: a broker that started after the publishes has none of them.
	fresh := newNode(t, redisAddr, prefix, sseredis.WithMaxLen(10))
	cases := []struct{ lastID, reason string }{
		{old, "expired"},
		{"99999999999999-0", "data-loss"},
		{"not-an-id", "malformed"},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			s := fresh.connect(t, c.lastID, "t")
			assert.Equal(t, c.reason, s.Response.Header.Get(sse.HeaderEventsLost))
			ev := next(t, s)
			assert.Equal(t, sse.LostEventName, ev.Event)
			assert.Contains(t, ev.Data, `"reason":"`+c.reason+`"`)
			live := n.publish(t, "t", "live")
			for ev.ID != live { // live events follow
				ev = next(t, s)
			}
		})
	}
	t.Run("recent", func(t *testing.T) {
		s := n.connect(t, last, "t")
		assert.Empty(t, s.Response.Header.Get(sse.HeaderEventsLost))
		live := n.publish(t, "t", "live")
		ev := next(t, s)
		if ev.ID != live { // the live events of the subtests above
			for ev.ID != live {
				assert.NotEqual(t, sse.LostEventName, ev.Event)
				ev = next(t, s)
			}
		}
	})
}

// startBackend starts a backend on its own prefix, delivering into a
// channel, and watches topics.
func startBackend(t *testing.T, client redis.UniversalClient, topics []string, opts ...sseredis.Option) (*sseredis.Backend, <-chan sse.Message) {
	t.Helper()
	opts = append([]sseredis.Option{sseredis.WithPrefix(testPrefix(t))}, opts...)
	be := sseredis.New(client, opts...)
	ch := make(chan sse.Message, 10000)
	require.NoError(t, be.Start(func(m sse.Message) { ch <- m }))
	t.Cleanup(func() { assert.NoError(t, be.Close()) })
	for _, topic := range topics {
		_, err := be.Watch(context.Background(), topic)
		require.NoError(t, err)
	}
	return be, ch
}

func pub(t *testing.T, be *sseredis.Backend, topics ...string) string {
	t.Helper()
	msg, err := be.Publish(context.Background(), topics, "", []byte("data: x\n\n"))
	require.NoError(t, err)
	return msg.ID
}

func ids(msgs []sse.Message) []string {
	out := []string{}
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

func TestReplay(t *testing.T) {
	needRedis(t)
	ctx := context.Background()
	client := newClient(t, redisAddr)
	be, delivered := startBackend(t, client, []string{"a", "b"})

	// a, b, a+b, c, b, a: ids are ordered in each topic (topics may
	// have the same ids)
	e := []string{pub(t, be, "a"), pub(t, be, "b"), pub(t, be, "a", "b"), pub(t, be, "c"), pub(t, be, "b"), pub(t, be, "a")}
	// Delivered once for each watched topic, in each topic's order, with
	// all its topics; c is not watched.
	want := []string{"a " + e[0], "b " + e[1], "a " + e[2], "b " + e[2], "b " + e[4], "a " + e[5]}
	var got []string
	for range want {
		select {
		case m := <-delivered:
			assert.Equal(t, "data: x\n\n", string(m.Body))
			if m.ID == e[2] {
				assert.Equal(t, []string{"a", "b"}, m.Topics)
			}
			got = append(got, m.Topic+" "+m.ID)
		case <-time.After(guard):
			t.Fatalf("not delivered: %q", want[len(got):])
		}
	}
	assert.ElementsMatch(t, want, got)
	assert.Less(t, slices.Index(got, "a "+e[0]), slices.Index(got, "a "+e[2]))
	assert.Less(t, slices.Index(got, "b "+e[2]), slices.Index(got, "b "+e[4]))

	cases := []struct {
		name         string
		topic        string
		after, until string
		limit        int
		want         []string
		err          error
	}{
		{"all from the start", "a", "", e[5], 10, []string{e[0], e[2], e[5]}, nil},
		{"0-0 is the start", "b", "0-0", e[5], 10, []string{e[1], e[2], e[4]}, nil},
		{"a page", "a", "", e[5], 2, []string{e[0], e[2]}, nil},
		{"the next page", "a", e[2], e[5], 2, []string{e[5]}, nil},
		{"no until: only checks", "a", e[0], "", 10, []string{}, nil},
		{"up to until", "b", e[1], e[2], 10, []string{e[2]}, nil},
		{"after == until", "a", e[2], e[2], 10, []string{}, nil},
		{"after beyond until", "a", e[5], e[2], 10, []string{}, nil},
		{"up to date", "c", e[3], "", 10, []string{}, nil},
		{"newer than the stream", "a", "99999999999999-0", "", 10, nil, sse.ErrDataLoss},
		{"never given out", "a", idTime(t, e[0]) + "-999999", "", 10, nil, sse.ErrDataLoss},
		{"malformed", "a", "1-x", "", 10, nil, sse.ErrMalformedEventID},
		{"not an id", "a", "hello", "", 10, nil, sse.ErrMalformedEventID},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := be.Replay(ctx, c.topic, c.after, c.until, c.limit)
			if c.err != nil {
				assert.ErrorIs(t, err, c.err)
				assert.ErrorIs(t, err, sse.ErrEventsLost)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, ids(got))
		})
	}

	_, err := be.Publish(ctx, []string{"a"}, "own", nil)
	assert.ErrorIs(t, err, sseredis.ErrOwnID)
	assert.ErrorIs(t, be.Start(func(sse.Message) {}), sse.ErrBackendStarted)

	// A second backend on the same prefix watches from the last id and
	// replays the same history: ids hold across servers and restarts.
	other := sseredis.New(client, sseredis.WithPrefix(strings.TrimSuffix(be.Key(""), "{}")))
	require.NoError(t, other.Start(func(sse.Message) {}))
	pos, err := other.Watch(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, e[5], pos)
	pos, err = other.Watch(ctx, "never")
	require.NoError(t, err)
	assert.Empty(t, pos, "a topic without events")
	got2, err := other.Replay(ctx, "b", e[1], e[5], 10)
	require.NoError(t, err)
	assert.Equal(t, []string{e[2], e[4]}, ids(got2))
	require.NoError(t, other.Close())
	_, err = other.Publish(ctx, []string{"a"}, "", nil)
	assert.ErrorIs(t, err, sse.ErrBackendClosed)
}

// Trimming: the id just before the oldest entry kept still replays (nothing
// after it is lost); an older one is expired.
func TestReplayAfterTrim(t *testing.T) {
	needRedis(t)
	ctx := context.Background()
	client := newClient(t, redisAddr)
	be, _ := startBackend(t, client, nil, sseredis.WithMaxLen(10))
	var e []string
	for range 250 {
		e = append(e, pub(t, be, "a"))
	}
	kept, err := client.XRange(ctx, be.Key("a"), "-", "+").Result()
	require.NoError(t, err)
	require.Less(t, len(kept), 250, "trimmed")
	require.GreaterOrEqual(t, len(kept), 10)
	firstIdx := 250 - len(kept)
	require.Equal(t, e[firstIdx], kept[0].ID)

	got, err := be.Replay(ctx, "a", e[firstIdx-1], e[249], 1000)
	require.NoError(t, err)
	assert.Equal(t, e[firstIdx:], ids(got))
	got, err = be.Replay(ctx, "a", e[firstIdx], e[249], 1000)
	require.NoError(t, err)
	assert.Equal(t, e[firstIdx+1:], ids(got))
	for _, after := range []string{e[firstIdx-2], e[0], "0-0", ""} {
		_, err = be.Replay(ctx, "a", after, e[249], 1000)
		assert.ErrorIs(t, err, sse.ErrHistoryExpired, after)
	}
}

func TestMaxAge(t *testing.T) {
	needRedis(t)
	ctx := context.Background()
	client := newClient(t, redisAddr)
	be, _ := startBackend(t, client, nil, sseredis.WithMaxLen(0), sseredis.WithMaxAge(time.Millisecond))
	first := pub(t, be, "a")
	// MINID ~ trims whole radix nodes: fill more than one, with a clock
	// tick between the first node and the last entry.
	var last string
	for range 250 {
		last = pub(t, be, "a")
	}
	for idTime(t, last) == idTime(t, first) {
		last = pub(t, be, "a")
	}
	last = pub(t, be, "a")
	n, err := client.XLen(ctx, be.Key("a")).Result()
	require.NoError(t, err)
	assert.Less(t, n, int64(252), "old entries trimmed")
	assert.Positive(t, n, "the newest entry is kept")
	_, err = be.Replay(ctx, "a", first, last, 10)
	assert.ErrorIs(t, err, sse.ErrHistoryExpired)
}

func idTime(t *testing.T, id string) string {
	t.Helper()
	ms, _, ok := cut(id)
	require.True(t, ok)
	return ms
}

func cut(id string) (string, string, bool) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			return id[:i], id[i+1:], true
		}
	}
	return "", "", false
}

// Close stops the reader promptly, even while it waits for messages, and
// leaves no goroutine behind.
func TestCloseNoLeak(t *testing.T) {
	needRedis(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	client := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer func() { _ = client.Close() }()
	be := sseredis.New(client, sseredis.WithPrefix(testPrefix(t)))
	var delivered atomic.Int64
	require.NoError(t, be.Start(func(sse.Message) { delivered.Add(1) }))
	_, err := be.Watch(context.Background(), "a")
	require.NoError(t, err)
	pub(t, be, "a")
	start := time.Now()
	require.NoError(t, be.Close())
	assert.Less(t, time.Since(start), 5*time.Second, "Close unblocks the reader")
	require.NoError(t, be.Close(), "a second Close is harmless")

	// Start on an unreachable Redis works; what needs Redis fails with a
	// testable error within the timeout.
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer func() { _ = down.Close() }()
	be = sseredis.New(down, sseredis.WithTimeout(200*time.Millisecond), sseredis.WithErrorHandler(func(error) {}))
	require.NoError(t, be.Start(func(sse.Message) {}))
	start = time.Now()
	_, err = be.Watch(context.Background(), "a")
	assert.ErrorIs(t, err, sseredis.ErrUnavailable)
	_, err = be.Publish(context.Background(), []string{"a"}, "", []byte("data: x\n\n"))
	assert.ErrorIs(t, err, sseredis.ErrUnavailable)
	_, err = be.Replay(context.Background(), "a", "", "", 10)
	assert.ErrorIs(t, err, sseredis.ErrUnavailable)
	assert.Less(t, time.Since(start), 3*time.Second)
	require.NoError(t, be.Close())
}

// Many concurrent publishers on two backends: each reader delivers every
// event once, in the same order.
func TestConcurrentPublishOrder(t *testing.T) {
	needRedis(t)
	client := newClient(t, redisAddr)
	one, d1 := startBackend(t, client, []string{"a"})
	two := sseredis.New(newClient(t, redisAddr), sseredis.WithPrefix(strings.TrimSuffix(one.Key(""), "{}")))
	d2 := make(chan sse.Message, 1000)
	require.NoError(t, two.Start(func(m sse.Message) { d2 <- m }))
	t.Cleanup(func() { assert.NoError(t, two.Close()) })
	_, err := two.Watch(context.Background(), "a")
	require.NoError(t, err)

	var wg sync.WaitGroup
	var errs atomic.Int64
	for i := range 8 {
		be := []*sseredis.Backend{one, two}[i%2]
		wg.Go(func() {
			for range 50 {
				if _, err := be.Publish(context.Background(), []string{"a"}, "", []byte("data: x\n\n")); err != nil {
					errs.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.Zero(t, errs.Load())
	recv := func(ch <-chan sse.Message) []string {
		var out []string
		for range 400 {
			select {
			case m := <-ch:
				require.Nil(t, m.Lost)
				out = append(out, m.ID)
			case <-time.After(guard):
				t.Fatal("not all delivered")
			}
		}
		return out
	}
	got1, got2 := recv(d1), recv(d2)
	assert.Equal(t, got1, got2)
	for i := 1; i < len(got1); i++ {
		assert.NotEqual(t, got1[i-1], got1[i])
	}
}

// An app instance that restarts (a new broker and backend on the same
// Redis, started after the events were published) still replays what a
// client missed: the history lives in Redis, not in the process.
func TestAppRestartKeepsReplay(t *testing.T) {
	needRedis(t)
	prefix := testPrefix(t)
	old := newNode(t, redisAddr, prefix)
	s := old.connect(t, "", "x")
	var ids []string
	for i := range 5 {
		ids = append(ids, old.publish(t, "x", strconv.Itoa(i)))
	}
	for i := range 2 {
		require.Equal(t, ids[i], next(t, s).ID)
	}
	last := s.LastEventID()
	require.NoError(t, s.Close())

	restarted := newNode(t, redisAddr, prefix) // starts after every event above
	s = restarted.connect(t, last, "x")
	assert.Empty(t, s.Response.Header.Get(sse.HeaderEventsLost))
	for _, want := range ids[2:] {
		ev := next(t, s)
		assert.Equal(t, want, ev.ID)
	}
	live := restarted.publish(t, "x", "after restart")
	assert.Equal(t, live, next(t, s).ID)
}
