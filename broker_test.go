package sse_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newBroker returns a broker that is shut down when the test ends.
func newBroker(t *testing.T, opts ...sse.BrokerOption) *sse.Broker {
	t.Helper()
	b, err := sse.NewBroker(opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, b.Shutdown(ctx))
	})
	return b
}

// brokerServer serves b on GET /events?topic=... and returns its URL.
func brokerServer(t *testing.T, b *sse.Broker, opts ...sse.HandlerOption) string {
	t.Helper()
	r := gin.New()
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic"), opts...))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL + "/events"
}

// connectWith opens an event stream with extra headers.
func connectWith(t *testing.T, url string, header http.Header) *ssetest.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	s, err := ssetest.Connect(ctx, nil, url, header)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitSubscribers waits until the broker has n subscribers.
func waitSubscribers(t *testing.T, b *sse.Broker, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return b.Subscribers("") == n }, 5*time.Second, time.Millisecond)
}

func publish(t *testing.T, b *sse.Broker, topic string, data any) string {
	t.Helper()
	id, err := b.Publish(context.Background(), topic, sse.Event{Event: topic, Data: data})
	require.NoError(t, err)
	return id
}

func TestBrokerFanOut(t *testing.T) {
	b := newBroker(t)
	url := brokerServer(t, b)
	const clients, events = 20, 100
	streams := make([]*ssetest.Stream, clients)
	for i := range streams {
		streams[i] = connect(t, url+"?topic=news")
	}
	other := connect(t, url+"?topic=sport")
	waitSubscribers(t, b, clients+1)
	assert.Equal(t, 2, b.Stats().Topics)
	assert.Equal(t, clients, b.Subscribers("news"))

	var ids []string
	for i := range events {
		ids = append(ids, publish(t, b, "news", strconv.Itoa(i)))
	}
	publish(t, b, "sport", "goal")
	for _, s := range streams {
		for i := range events {
			ev, err := s.Next()
			require.NoError(t, err)
			require.Equal(t, sse.ReceivedEvent{ID: ids[i], Event: "news", Data: strconv.Itoa(i)}, ev)
		}
	}
	ev, err := other.Next()
	require.NoError(t, err)
	assert.Equal(t, "goal", ev.Data, "other topics are not mixed in")

	st := b.Stats()
	assert.Equal(t, uint64(events+1), st.Published)
	// A stream counts its events once its write returns, which may be
	// after the client has read them.
	require.Eventually(t, func() bool { return b.Stats().Delivered == clients*events+1 }, 5*time.Second, time.Millisecond,
		"delivered: %d", b.Stats().Delivered)
}

func TestBrokerIDsAreMonotonic(t *testing.T) {
	b := newBroker(t)
	sub, err := b.Subscribe(context.Background(), []string{"a", "b"}, "")
	require.NoError(t, err)
	defer sub.Close()
	first := publish(t, b, "a", "1")
	second := publish(t, b, "b", "2")
	assert.NotEqual(t, first, second)
	for _, want := range []string{first, second} {
		ev, err := sub.Next()
		require.NoError(t, err)
		assert.Equal(t, want, ev.ID)
	}
	// An event published to several topics reaches a subscriber of both once.
	id, err := b.PublishTopics(context.Background(), []string{"a", "b"}, sse.Event{Data: "both"})
	require.NoError(t, err)
	publish(t, b, "a", "after")
	ev, err := sub.Next()
	require.NoError(t, err)
	assert.Equal(t, sse.ReceivedEvent{ID: id, Data: "both"}, ev)
	ev, err = sub.Next()
	require.NoError(t, err)
	assert.Equal(t, "after", ev.Data)
}

func TestBrokerPublishRefusesBadInput(t *testing.T) {
	b := newBroker(t, sse.WithTopics("a"))
	tests := []struct {
		topics []string
		ev     sse.Event
		err    error
	}{
		{nil, sse.Event{Data: "x"}, sse.ErrNoTopics},
		{[]string{""}, sse.Event{Data: "x"}, sse.ErrInvalidTopic},
		{[]string{"a\n"}, sse.Event{Data: "x"}, sse.ErrInvalidTopic},
		{[]string{"b"}, sse.Event{Data: "x"}, sse.ErrUnknownTopic},
		{[]string{"a"}, sse.Event{Event: "x\ny", Data: "x"}, sse.ErrInvalidEvent},
		{[]string{"a"}, sse.Event{ID: "x\ny", Data: "x"}, sse.ErrInvalidEvent},
		{[]string{"a"}, sse.Event{ResetID: true, Data: "x"}, sse.ErrInvalidEvent},
		{[]string{"a"}, sse.Event{Data: make(chan int)}, sse.ErrInvalidEvent},
		// The event's own encoding errors come first, then its id's.
		{[]string{"a"}, sse.Event{ID: "x\ny", Data: make(chan int)}, sse.ErrInvalidEvent},
		{[]string{"a"}, sse.Event{ID: strings.Repeat("x", 300), Event: "x\ny"}, sse.ErrInvalidEvent},
		{[]string{"a"}, sse.Event{ID: strings.Repeat("x", 300), Data: "x"}, sse.ErrInvalidEvent},
	}
	for _, tt := range tests {
		_, err := b.PublishTopics(context.Background(), tt.topics, tt.ev)
		assert.ErrorIs(t, err, tt.err, "%q %v", tt.topics, tt.ev)
	}
	assert.Zero(t, b.Stats().Published, "nothing was published")

	_, err := b.Publish(context.Background(), "a", sse.Event{ID: "mine", Data: "x"})
	require.NoError(t, err)
	_, err = b.Publish(context.Background(), "a", sse.Event{ID: "mine", Data: "y"})
	assert.ErrorIs(t, err, sse.ErrDuplicateID)
}

func TestBrokerReplay(t *testing.T) {
	b := newBroker(t)
	url := brokerServer(t, b)
	var ids []string
	for i := range 5 {
		ids = append(ids, publish(t, b, "news", strconv.Itoa(i)))
	}
	publish(t, b, "other", "x")

	s := connectWith(t, url+"?topic=news", http.Header{"Last-Event-Id": {ids[1]}})
	assert.Empty(t, s.Response.Header.Get(sse.HeaderEventsLost))
	waitSubscribers(t, b, 1)
	live := publish(t, b, "news", "live")
	for i := 2; i < 5; i++ {
		ev, err := s.Next()
		require.NoError(t, err)
		assert.Equal(t, sse.ReceivedEvent{ID: ids[i], Event: "news", Data: strconv.Itoa(i)}, ev)
	}
	ev, err := s.Next()
	require.NoError(t, err)
	assert.Equal(t, sse.ReceivedEvent{ID: live, Event: "news", Data: "live"}, ev)

	// The query fallback works too, and a custom event id resumes as well.
	custom, err := b.Publish(context.Background(), "news", sse.Event{ID: "custom-1", Data: "c"})
	require.NoError(t, err)
	assert.Equal(t, "custom-1", custom)
	after := publish(t, b, "news", "after custom")
	s2 := connect(t, url+"?topic=news&lastEventId=custom-1")
	ev, err = s2.Next()
	require.NoError(t, err)
	assert.Equal(t, after, ev.ID)
}

func TestBrokerEventsLostSignal(t *testing.T) {
	b := newBroker(t, sse.WithTopicPolicy(func(string) sse.TopicPolicy { return sse.TopicPolicy{MaxEvents: 3} }))
	url := brokerServer(t, b)
	var ids []string
	for i := range 10 {
		ids = append(ids, publish(t, b, "news", strconv.Itoa(i)))
	}
	tests := []struct {
		name   string
		url    string
		header string
		reason string
	}{
		{"expired", url + "?topic=news", ids[2], "expired"},
		{"unknown", url + "?topic=news", "no-such-id", "unknown"},
		{"from another epoch", url + "?topic=news", "zzzz-3", "unknown"},
		{"malformed", url + "?topic=news&lastEventId=%00bad", "", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set("Last-Event-ID", tt.header)
			}
			s := connectWith(t, tt.url, h)
			assert.Equal(t, http.StatusOK, s.Response.StatusCode)
			assert.Equal(t, tt.reason, s.Response.Header.Get(sse.HeaderEventsLost))
			ev, err := s.Next()
			require.NoError(t, err)
			assert.Equal(t, sse.LostEventName, ev.Event)
			assert.Empty(t, ev.ID, "the signal has no id of its own")
			var data map[string]string
			require.NoError(t, json.Unmarshal([]byte(ev.Data), &data))
			assert.Equal(t, tt.reason, data["reason"])
			// Then the oldest events still kept.
			for _, want := range ids[len(ids)-3:] {
				ev, err := s.Next()
				require.NoError(t, err)
				assert.Equal(t, want, ev.ID)
			}

			waitSubscribers(t, b, 1)
			live := publish(t, b, "news", "live")
			ids = append(ids, live)
			ev, err = s.Next()
			require.NoError(t, err)
			assert.Equal(t, live, ev.ID)
			require.NoError(t, s.Close())
			waitSubscribers(t, b, 0)
		})
	}
	// The oldest id still kept replays fine.
	n := len(ids)
	sub, err := b.Subscribe(context.Background(), []string{"news"}, ids[n-4])
	require.NoError(t, err)
	defer sub.Close()
	assert.NoError(t, sub.Lost())
	for _, want := range ids[n-3:] {
		ev, err := sub.Next()
		require.NoError(t, err)
		assert.Equal(t, want, ev.ID)
	}
}

// Random disconnects and reconnects with Last-Event-ID while publishers
// run: every client ends with the complete sequence, in order, once.
func TestBrokerReplayUnderConcurrency(t *testing.T) {
	b := newBroker(t)
	url := brokerServer(t, b)
	const publishers, perPublisher, clients = 4, 150, 12
	total := publishers * perPublisher

	// A subscription that never disconnects sees the publish order.
	witness, err := b.Subscribe(context.Background(), []string{"t"}, "")
	require.NoError(t, err)
	defer witness.Close()

	var pubWG sync.WaitGroup
	start := make(chan struct{})
	for p := range publishers {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			<-start
			for i := range perPublisher {
				_, err := b.Publish(context.Background(), "t", sse.Event{Data: fmt.Sprintf("%d-%d", p, i)})
				assert.NoError(t, err)
			}
		}()
	}

	results := make([][]sse.ReceivedEvent, clients)
	var cliWG, ready sync.WaitGroup
	for c := range clients {
		cliWG.Add(1)
		ready.Add(1)
		go func() {
			defer cliWG.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			var got []sse.ReceivedEvent
			last := ""
			for first := true; len(got) < total; first = false {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				h := http.Header{}
				if last != "" {
					h.Set("Last-Event-ID", last)
				}
				s, err := ssetest.Connect(ctx, nil, url+"?topic=t", h)
				if first {
					ready.Done() // subscribed before the first publish
				}
				if !assert.NoError(t, err) {
					cancel()
					return
				}
				for n := rng.IntN(120) + 1; n > 0 && len(got) < total; n-- {
					ev, err := s.Next()
					if !assert.NoError(t, err) {
						break
					}
					got = append(got, ev)
					last = ev.ID
				}
				_ = s.Close()
				cancel()
			}
			results[c] = got
		}()
	}
	ready.Wait()
	close(start)
	pubWG.Wait()
	cliWG.Wait()

	want := make([]sse.ReceivedEvent, total)
	for i := range want {
		want[i], err = witness.Next()
		require.NoError(t, err)
	}
	for c, got := range results {
		require.Len(t, got, total, "client %d", c)
		for i := range got {
			require.Equal(t, want[i].ID, got[i].ID, "client %d event %d", c, i)
			require.Equal(t, want[i].Data, got[i].Data, "client %d event %d", c, i)
		}
	}
}

// A client that never reads slows nobody: the others get every event at
// once, and the stuck one is ended by the write timeout.
func TestBrokerSlowClientIsolation(t *testing.T) {
	b := newBroker(t)
	url := brokerServer(t, b, sse.WithWriteTimeout(200*time.Millisecond))

	// The stuck client: a raw connection that sends a request and never reads.
	addr := url[len("http://"):]
	addr = addr[:len(addr)-len("/events")]
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /events?topic=t HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	require.NoError(t, err)

	fast := connect(t, url+"?topic=t")
	waitSubscribers(t, b, 2)

	// Publish in step with the fast client: it gets each event at once
	// while the stuck one's connection fills up.
	big := string(make([]byte, 64<<10))
	const events = 200
	var ids []string
	for i := range events {
		ids = append(ids, publish(t, b, "t", big))
		ev, err := fast.Next()
		require.NoError(t, err)
		require.Equal(t, ids[i], ev.ID)
	}
	waitSubscribers(t, b, 1) // the write timeout ended the stuck one

	// Reconnecting from its last event gets the rest.
	sub, err := b.Subscribe(context.Background(), []string{"t"}, ids[10])
	require.NoError(t, err)
	defer sub.Close()
	for i := 11; i < events; i++ {
		ev, err := sub.Next()
		require.NoError(t, err)
		require.Equal(t, ids[i], ev.ID)
	}
}

func TestBrokerLimits(t *testing.T) {
	b := newBroker(t, sse.WithMaxSubscribers(2), sse.WithRetryAfter(7*time.Second))
	url := brokerServer(t, b)
	connect(t, url+"?topic=a")
	connect(t, url+"?topic=a")
	res, err := http.Get(url + "?topic=a")
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	assert.Equal(t, "7", res.Header.Get("Retry-After"))
	body, _ := io.ReadAll(res.Body)
	assert.Contains(t, string(body), sse.ErrTooManySubscribers.Error())

	b2 := newBroker(t, sse.WithMaxPerIP(1))
	url2 := brokerServer(t, b2)
	connect(t, url2+"?topic=a")
	res2, err := http.Get(url2 + "?topic=b")
	require.NoError(t, err)
	defer res2.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, res2.StatusCode)
	assert.Equal(t, "5", res2.Header.Get("Retry-After"))
}

// The per-IP limit counts the connection's address: a forged
// X-Forwarded-For does not get around it. Behind a trusted proxy,
// WithClientIP((*gin.Context).ClientIP) counts the forwarded address.
func TestBrokerPerIPLimitAndForwardedFor(t *testing.T) {
	get := func(url, forwarded string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		req.Header.Set("X-Forwarded-For", forwarded)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = res.Body.Close() })
		return res
	}
	b := newBroker(t, sse.WithMaxPerIP(1))
	url := brokerServer(t, b) + "?topic=a"
	assert.Equal(t, http.StatusOK, get(url, "10.0.0.1").StatusCode)
	assert.Equal(t, http.StatusTooManyRequests, get(url, "10.0.0.2").StatusCode, "a forged header is not a new client")

	proxied := newBroker(t, sse.WithMaxPerIP(1), sse.WithClientIP((*gin.Context).ClientIP))
	r := gin.New()
	require.NoError(t, r.SetTrustedProxies([]string{"127.0.0.1"}))
	r.GET("/events", proxied.Handler(sse.TopicsFromQuery("topic")))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	url = srv.URL + "/events?topic=a"
	assert.Equal(t, http.StatusOK, get(url, "10.0.0.1").StatusCode)
	assert.Equal(t, http.StatusOK, get(url, "10.0.0.2").StatusCode, "another client behind the trusted proxy")
	assert.Equal(t, http.StatusTooManyRequests, get(url, "10.0.0.1").StatusCode)
}

// A query that does not parse, or more topics than WithMaxTopics, is a 400:
// never a subscription to part of what was asked.
func TestBrokerTopicsQueryRefusals(t *testing.T) {
	b := newBroker(t, sse.WithMaxTopics(3))
	url := brokerServer(t, b)
	for _, q := range []string{"?topic=a&x=%zz", "?topic=a;topic=b", "?topic=a&topic=b&topic=c&topic=d", "?topic=", "?other=a"} {
		res, err := http.Get(url + q)
		require.NoError(t, err)
		_ = res.Body.Close()
		assert.Equal(t, http.StatusBadRequest, res.StatusCode, q)
	}
	s := connect(t, url+"?topic=a&topic=b&topic=a&topic=c") // duplicates count once
	id := publish(t, b, "c", "x")
	ev, err := s.Next()
	require.NoError(t, err)
	assert.Equal(t, id, ev.ID)
}

func TestBrokerHandlerRefusals(t *testing.T) {
	b := newBroker(t, sse.WithTopics("public", "secret", "vip"))
	authorize := sse.WithAuthorize(func(c *gin.Context, topics []string) error {
		if c.GetHeader("X-User") == "" {
			return &sse.StatusError{StatusCode: http.StatusUnauthorized, Err: errors.New("login required")}
		}
		for _, t := range topics {
			if t == "secret" {
				return fmt.Errorf("topic %q is not yours", t)
			}
		}
		return nil
	})
	r := gin.New()
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic"), authorize))
	r.GET("/rooms/:room", b.Handler(sse.TopicsFromParam("room"), authorize))
	srv := httptest.NewServer(r)
	defer srv.Close()

	tests := []struct {
		path   string
		user   string
		status int
		err    string
	}{
		{"/events", "ann", http.StatusBadRequest, "no topics"},
		{"/events?topic=", "ann", http.StatusBadRequest, "invalid topic"},
		{"/events?topic=nope", "ann", http.StatusNotFound, "unknown topic"},
		{"/events?topic=public", "", http.StatusUnauthorized, "login required"},
		{"/events?topic=public&topic=secret", "ann", http.StatusForbidden, "forbidden"},
		{"/rooms/secret", "ann", http.StatusForbidden, "not yours"},
		{"/events?topic=public&topic=vip", "ann", http.StatusOK, ""},
		{"/rooms/vip", "ann", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			require.NoError(t, err)
			if tt.user != "" {
				req.Header.Set("X-User", tt.user)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res, err := http.DefaultClient.Do(req.WithContext(ctx))
			require.NoError(t, err)
			defer res.Body.Close()
			assert.Equal(t, tt.status, res.StatusCode)
			if tt.status != http.StatusOK {
				var body map[string]string
				require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
				assert.Contains(t, body["error"], tt.err)
			}
		})
	}
	waitSubscribers(t, b, 0)
}

func TestBrokerHooksAndStats(t *testing.T) {
	var mu sync.Mutex
	var log []string
	var b *sse.Broker
	b = newBroker(t,
		sse.WithOnSubscribe(func(i sse.SubscriberInfo) {
			mu.Lock()
			log = append(log, fmt.Sprintf("+%v", i.Topics))
			mu.Unlock()
			// Hooks may publish: the live-users count works like this.
			_, err := b.Publish(context.Background(), "count", sse.Event{Data: strconv.Itoa(b.Subscribers(""))})
			assert.NoError(t, err)
		}),
		sse.WithOnUnsubscribe(func(i sse.SubscriberInfo) {
			mu.Lock()
			log = append(log, fmt.Sprintf("-%v", i.Topics))
			mu.Unlock()
		}))
	s1, err := b.Subscribe(context.Background(), []string{"count"}, "")
	require.NoError(t, err)
	s2, err := b.Subscribe(context.Background(), []string{"count", "x"}, "")
	require.NoError(t, err)
	for _, want := range []string{"1", "2"} {
		ev, err := s1.Next()
		require.NoError(t, err)
		assert.Equal(t, want, ev.Data)
	}
	st := b.Stats()
	assert.Equal(t, 2, st.Subscribers)
	assert.Equal(t, 2, st.Topics)
	assert.Equal(t, 2, b.Subscribers("count"))
	s2.Close()
	s2.Close()
	assert.Equal(t, 1, b.Subscribers(""))
	assert.Equal(t, 0, b.Subscribers("x"))
	ev, err := s2.Next() // what was queued is still read
	require.NoError(t, err)
	assert.Equal(t, "2", ev.Data)
	_, err = s2.Next()
	assert.ErrorIs(t, err, sse.ErrSubscriptionClosed)

	ctx, cancel := context.WithCancel(context.Background())
	_, err = b.Subscribe(ctx, []string{"y"}, "")
	require.NoError(t, err)
	cancel() // a canceled context ends the subscription by itself
	require.Eventually(t, func() bool { return b.Subscribers("y") == 0 }, 5*time.Second, time.Millisecond)
	s1.Close()
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"+[count]", "+[count x]", "-[count x]", "+[y]", "-[y]", "-[count]"}, log)
}

// Shutdown ends every stream, after what was already queued and a final
// event; srv.Shutdown then returns at once.
func TestBrokerShutdownWithManyStreams(t *testing.T) {
	const streams = 5000
	b, err := sse.NewBroker(sse.WithShutdownEvent(sse.Event{Event: "bye", Data: "restarting", Retry: 2 * time.Second}))
	require.NoError(t, err)
	r := gin.New()
	r.GET("/events", b.Handler(sse.Topics("all")))
	srv := httptest.NewUnstartedServer(r)
	srv.Config.RegisterOnShutdown(func() { _ = b.Shutdown(context.Background()) })
	srv.Start()
	defer srv.Close()

	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: streams}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	conns := make([]*ssetest.Stream, streams)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := ssetest.Connect(context.Background(), client, srv.URL+"/events", nil)
			if assert.NoError(t, err) {
				conns[i] = s
			}
		}()
	}
	wg.Wait()
	waitSubscribers(t, b, streams)
	id := publish(t, b, "all", "last news")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, srv.Config.Shutdown(ctx), "srv.Shutdown returns once the broker ended the streams")
	assert.Zero(t, b.Subscribers(""))

	for _, s := range conns[:50] {
		ev, err := s.Next()
		require.NoError(t, err)
		assert.Equal(t, sse.ReceivedEvent{ID: id, Event: "all", Data: "last news"}, ev)
		ev, err = s.Next()
		require.NoError(t, err)
		assert.Equal(t, sse.ReceivedEvent{ID: id, Event: "bye", Data: "restarting", Retry: 2 * time.Second}, ev)
		_, err = s.Next()
		assert.ErrorIs(t, err, io.EOF)
	}
	for _, s := range conns {
		_ = s.Close()
	}
	_, err = b.Publish(context.Background(), "all", sse.Event{Data: "late"})
	assert.ErrorIs(t, err, sse.ErrBrokerClosed)
	res, err := b.Subscribe(context.Background(), []string{"all"}, "")
	assert.Nil(t, res)
	assert.ErrorIs(t, err, sse.ErrBrokerClosed)
}

// A fresh client starts with the current state, then live events; one that
// resumes gets only what it missed; one whose id was lost gets the signal,
// then the state.
func TestBrokerInitialEvents(t *testing.T) {
	var mu sync.Mutex
	state := map[string]string{"kitchen": "off", "bedroom": "off"}
	b := newBroker(t, sse.WithTopicPolicy(func(string) sse.TopicPolicy { return sse.TopicPolicy{MaxEvents: 2} }))
	initial := sse.WithInitialEvents(func(c *gin.Context, topics []string) ([]sse.Event, error) {
		mu.Lock()
		defer mu.Unlock()
		var evs []sse.Event
		for _, room := range topics {
			evs = append(evs, sse.Event{Event: room, Data: state[room]})
		}
		return evs, nil
	})
	url := brokerServer(t, b, initial)
	set := func(room, v string) string {
		mu.Lock()
		state[room] = v
		mu.Unlock()
		return publish(t, b, room, v)
	}
	pos := set("kitchen", "on")

	s := connect(t, url+"?topic=kitchen&topic=bedroom")
	var got []sse.ReceivedEvent
	for range 2 {
		ev, err := s.Next()
		require.NoError(t, err)
		got = append(got, ev)
	}
	assert.Equal(t, []sse.ReceivedEvent{{ID: pos, Event: "kitchen", Data: "on"}, {ID: pos, Event: "bedroom", Data: "off"}}, got)
	live := set("bedroom", "on")
	ev, err := s.Next()
	require.NoError(t, err)
	assert.Equal(t, sse.ReceivedEvent{ID: live, Event: "bedroom", Data: "on"}, ev)
	require.NoError(t, s.Close())

	// Resuming from the initial state's id replays the change after it.
	r := connectWith(t, url+"?topic=bedroom", http.Header{"Last-Event-Id": {pos}})
	ev, err = r.Next()
	require.NoError(t, err)
	assert.Equal(t, sse.ReceivedEvent{ID: live, Event: "bedroom", Data: "on"}, ev)

	// Another topic's events leave the bedroom's history alone.
	for range 3 {
		set("kitchen", "dim")
	}
	r = connectWith(t, url+"?topic=bedroom", http.Header{"Last-Event-Id": {pos}})
	ev, err = r.Next()
	require.NoError(t, err)
	assert.Equal(t, sse.ReceivedEvent{ID: live, Event: "bedroom", Data: "on"}, ev)

	// An id that fell out of the history: the signal, then the state.
	var newest string
	for range 3 {
		newest = set("bedroom", "dim")
	}
	l := connectWith(t, url+"?topic=bedroom", http.Header{"Last-Event-Id": {pos}})
	assert.Equal(t, "expired", l.Response.Header.Get(sse.HeaderEventsLost))
	ev, err = l.Next()
	require.NoError(t, err)
	assert.Equal(t, sse.LostEventName, ev.Event)
	ev, err = l.Next()
	require.NoError(t, err)
	assert.Equal(t, sse.ReceivedEvent{ID: newest, Event: "bedroom", Data: "dim"}, ev, "the state, as of the newest event")
}

// A client far behind catches up even when the subscribe hook publishes at
// once: the replay and the live events come from the same log.
func TestBrokerReplayThenLive(t *testing.T) {
	var b *sse.Broker
	b = newBroker(t, sse.WithOnSubscribe(func(sse.SubscriberInfo) {
		_, err := b.Publish(context.Background(), "presence", sse.Event{Data: "joined"})
		assert.NoError(t, err)
	}))
	url := brokerServer(t, b)
	var ids []string
	for i := range 100 {
		ids = append(ids, publish(t, b, "t", strconv.Itoa(i)))
	}
	s := connectWith(t, url+"?topic=t&topic=presence", http.Header{"Last-Event-Id": {ids[0]}})
	for i := 1; i < 100; i++ {
		ev, err := s.Next()
		require.NoError(t, err)
		require.Equal(t, ids[i], ev.ID)
	}
	ev, err := s.Next()
	require.NoError(t, err)
	assert.Equal(t, "joined", ev.Data)
}

// A Go subscription whose reader sees the shutdown leaves the broker, so
// Shutdown completes; one whose context is already done is refused
// cleanly.
func TestBrokerSubscriptionLifecycle(t *testing.T) {
	b, err := sse.NewBroker()
	require.NoError(t, err)
	sub, err := b.Subscribe(context.Background(), []string{"t"}, "")
	require.NoError(t, err)
	publish(t, b, "t", "before")
	done := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			_, err = sub.Next()
		}
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, b.Shutdown(ctx))
	assert.ErrorIs(t, waitErr(t, done), sse.ErrBrokerClosed)

	b2 := newBroker(t)
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for range 200 {
		s, err := b2.Subscribe(canceled, []string{"t"}, "")
		require.NoError(t, err)
		_, err = s.Next()
		assert.ErrorIs(t, err, context.Canceled)
		s.Close()
	}
	waitSubscribers(t, b2, 0)
}

// Shutdown does not wait for Go subscriptions nobody reads, even with the
// context.Background() of the README's wiring: it ends them, and the
// unsubscribe hook hears of each.
func TestBrokerShutdownEndsUnreadSubscriptions(t *testing.T) {
	left := make(chan []string, 2)
	b, err := sse.NewBroker(sse.WithOnUnsubscribe(func(i sse.SubscriberInfo) { left <- i.Topics }))
	require.NoError(t, err)
	unread, err := b.Subscribe(context.Background(), []string{"a"}, "")
	require.NoError(t, err)
	publish(t, b, "a", "never read")
	done := make(chan error, 1)
	go func() { done <- b.Shutdown(context.Background()) }()
	require.NoError(t, waitErr(t, done))
	assert.Equal(t, []string{"a"}, <-left)
	ev, err := unread.Next() // what was published before is still read
	require.NoError(t, err)
	assert.Equal(t, "never read", ev.Data)
	_, err = unread.Next()
	assert.ErrorIs(t, err, sse.ErrBrokerClosed)
}

func TestBrokerRefusesBeforeSubscribing(t *testing.T) {
	var hooks int
	b := newBroker(t, sse.WithOnSubscribe(func(sse.SubscriberInfo) { hooks++ }))
	r := gin.New()
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic"),
		sse.WithRequireAccept(),
		sse.WithInitialEvents(func(*gin.Context, []string) ([]sse.Event, error) { hooks++; return nil, nil }),
		sse.WithAuthorize(func(c *gin.Context, _ []string) error {
			if c.Query("anon") != "" {
				return &sse.StatusError{StatusCode: http.StatusUnauthorized}
			}
			return nil
		})))
	req := httptest.NewRequest(http.MethodGet, "/events?topic=a", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Last-Event-ID", "whatever")
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusNotAcceptable, rec.Code)
	assert.Empty(t, rec.Header().Get(sse.HeaderEventsLost))

	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events?topic=a&anon=1", nil))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Contains(t, rec.Body.String(), "Unauthorized")
	assert.Zero(t, hooks, "a refused request never subscribes")

	_, err := b.Publish(context.Background(), "a", sse.Event{ID: strings.Repeat("x", 257), Data: "x"})
	assert.ErrorIs(t, err, sse.ErrInvalidEvent)
}

// A stream ends soon after its client leaves, with no heartbeat or event
// to write: the broker's sweep notices the request's context ended. The
// other streams, one of them on two topics, go on.
func TestBrokerStreamEndsWhenClientLeaves(t *testing.T) {
	left := make(chan []string, 4)
	b := newBroker(t, sse.WithOnUnsubscribe(func(i sse.SubscriberInfo) { left <- i.Topics }))
	url := brokerServer(t, b, sse.WithHeartbeat(0))
	stay := connect(t, url+"?topic=a&topic=b")
	leave := connect(t, url+"?topic=a")
	waitSubscribers(t, b, 2)

	require.NoError(t, leave.Close())
	select {
	case topics := <-left:
		assert.Equal(t, []string{"a"}, topics)
	case <-time.After(5 * time.Second):
		t.Fatal("the stream of a client that left did not end")
	}
	assert.Equal(t, 1, b.Subscribers("a"))
	assert.Equal(t, 1, b.Subscribers("b"))
	publish(t, b, "b", "still here")
	ev, err := stay.Next()
	require.NoError(t, err)
	assert.Equal(t, "still here", ev.Data)
}

// readComments reads lines of br until the first event's data line, and
// returns the comment lines before it.
func readComments(t *testing.T, br *bufio.Reader) (comments []string, data string) {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		switch {
		case strings.HasPrefix(line, ":"):
			comments = append(comments, strings.TrimSpace(line))
		case strings.HasPrefix(line, "data: "):
			return comments, strings.TrimSpace(strings.TrimPrefix(line, "data: "))
		}
	}
}

// openRaw opens url and returns a reader of its body.
func openRaw(t *testing.T, url string) *bufio.Reader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = res.Body.Close() })
	require.Equal(t, http.StatusOK, res.StatusCode)
	return bufio.NewReader(res.Body)
}

// An idle broker stream gets heartbeat comments at the route's interval;
// a route that turns them off gets none, however long the others waited.
func TestBrokerHeartbeat(t *testing.T) {
	b := newBroker(t)
	r := gin.New()
	r.GET("/beat", b.Handler(sse.Topics("beat"), sse.WithHeartbeat(30*time.Millisecond)))
	r.GET("/quiet", b.Handler(sse.Topics("quiet"), sse.WithHeartbeat(0)))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	beat := openRaw(t, srv.URL+"/beat")
	quiet := openRaw(t, srv.URL+"/quiet")
	waitSubscribers(t, b, 2)

	var beats []string
	for len(beats) < 4 { // the first comment, then three heartbeats
		line, err := beat.ReadString('\n')
		require.NoError(t, err)
		if line != "\n" {
			beats = append(beats, line)
		}
	}
	assert.Equal(t, []string{": ok\n", ": heartbeat\n", ": heartbeat\n", ": heartbeat\n"}, beats)

	publish(t, b, "quiet", "x")
	comments, data := readComments(t, quiet)
	assert.Equal(t, []string{": ok"}, comments, "no heartbeat on a route that turned them off")
	assert.Equal(t, "x", data)
}
