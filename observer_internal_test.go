package sse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu           sync.Mutex
	subscribed   []SubscriberInfo
	unsubscribed []error
	published    [][]string
	publishErrs  []error
	delivered    int
	lost         []error
	backendErrs  []string
	lags         []time.Duration
}

func (r *recorder) Subscribed(info SubscriberInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subscribed = append(r.subscribed, info)
}

func (r *recorder) Unsubscribed(_ SubscriberInfo, reason error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unsubscribed = append(r.unsubscribed, reason)
}

func (r *recorder) Published(topics []string, took time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, slices.Clone(topics))
	r.publishErrs = append(r.publishErrs, err)
}

func (r *recorder) Delivered(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered += n
}

func (r *recorder) Lost(reason error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = append(r.lost, reason)
}

func (r *recorder) BackendError(op string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backendErrs = append(r.backendErrs, op)
}

func (r *recorder) BackendDelivered(lag time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lags = append(r.lags, lag)
}

// snapshot returns a copy of what r was told, under its lock.
func (r *recorder) snapshot() recorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorder{
		subscribed: slices.Clone(r.subscribed), unsubscribed: slices.Clone(r.unsubscribed),
		published: slices.Clone(r.published), publishErrs: slices.Clone(r.publishErrs), delivered: r.delivered,
		lost: slices.Clone(r.lost), backendErrs: slices.Clone(r.backendErrs), lags: slices.Clone(r.lags),
	}
}

func TestObserverStreams(t *testing.T) {
	rec := &recorder{}
	b := newTestBroker(t, WithObserver(rec))
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", b.Handler(TopicsFromQuery("topic")))
	srv := httptest.NewServer(r)
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events?topic=a&topic=b", nil)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	dec := NewDecoder(res.Body)
	require.Eventually(t, func() bool { return len(rec.snapshot().subscribed) == 1 }, 5*time.Second, time.Millisecond)
	for _, topic := range []string{"a", "b", "c"} {
		_, err := b.Publish(context.Background(), topic, Event{Data: topic})
		require.NoError(t, err)
	}
	_, err = b.PublishTopics(context.Background(), []string{"a", "b"}, Event{Data: "ab"})
	require.NoError(t, err)
	_, err = b.Publish(context.Background(), "a", Event{Data: "x", ID: "bad\nid"})
	require.ErrorIs(t, err, ErrInvalidEvent)
	for range 3 {
		_, err := dec.Decode()
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return rec.snapshot().delivered == 3 }, 5*time.Second, time.Millisecond)
	cancel()
	_ = res.Body.Close()
	require.Eventually(t, func() bool { return len(rec.snapshot().unsubscribed) == 1 }, 5*time.Second, time.Millisecond)

	got := rec.snapshot()
	assert.Equal(t, []string{"a", "b"}, got.subscribed[0].Topics)
	assert.Equal(t, "127.0.0.1", got.subscribed[0].ClientIP)
	assert.ErrorIs(t, got.unsubscribed[0], ErrClientGone)
	assert.Equal(t, [][]string{{"a"}, {"b"}, {"c"}, {"a", "b"}, {"a"}}, got.published)
	assert.ErrorIs(t, got.publishErrs[4], ErrInvalidEvent)
	assert.NoError(t, errors.Join(got.publishErrs[:4]...))
	assert.Empty(t, got.lost)

	// A reconnect with an id the broker never gave: one loss signal.
	rec2 := &recorder{}
	b2 := newTestBroker(t, WithObserver(rec2))
	sub, err := b2.Subscribe(context.Background(), []string{"a"}, "nonsense")
	require.NoError(t, err)
	sub.Close()
	got = rec2.snapshot()
	require.Len(t, got.lost, 1)
	assert.ErrorIs(t, got.lost[0], ErrEventsLost)
	assert.Equal(t, []error{nil}, got.unsubscribed, "closed: no reason")
}

func TestObserverSubscriptionEnds(t *testing.T) {
	rec := &recorder{}
	b, err := NewBroker(WithObserver(rec))
	require.NoError(t, err)

	ctx, cancel := context.WithCancelCause(context.Background())
	_, err = b.Subscribe(ctx, []string{"t"}, "")
	require.NoError(t, err)
	gone := errors.New("the caller gave up")
	cancel(gone)
	require.Eventually(t, func() bool { return len(rec.snapshot().unsubscribed) == 1 }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, rec.snapshot().unsubscribed[0], gone)

	_, err = b.Subscribe(context.Background(), []string{"t"}, "")
	require.NoError(t, err)
	require.NoError(t, b.Shutdown(context.Background()))
	got := rec.snapshot()
	require.Len(t, got.unsubscribed, 2)
	assert.ErrorIs(t, got.unsubscribed[1], ErrBrokerClosed)
	assert.Len(t, got.subscribed, 2)
}

// A subscriber refused while joining is neither subscribed nor
// unsubscribed.
func TestObserverRefusedJoin(t *testing.T) {
	rec := &recorder{}
	var hooks []string
	b := newTestBroker(t, WithObserver(rec),
		WithOnSubscribe(func(SubscriberInfo) { hooks = append(hooks, "sub") }),
		WithOnUnsubscribe(func(SubscriberInfo) { hooks = append(hooks, "unsub") }))
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", b.Handler(Topics("t"), WithInitialEvents(func(*gin.Context, []string) ([]Event, error) {
		return nil, errors.New("no state")
	})))
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/events", nil))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	got := rec.snapshot()
	assert.Empty(t, got.subscribed)
	assert.Empty(t, got.unsubscribed)
	assert.Empty(t, hooks)
}

func TestObserverBackend(t *testing.T) {
	rec := &recorder{}
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag), WithObserver(rec))
	sub, err := b.Subscribe(context.Background(), []string{"t"}, "")
	require.NoError(t, err)
	defer sub.Close()
	publishTo(t, b, "one", "t")
	lag.mu.Lock()
	lag.msgs[0].Time = time.Now().Add(-time.Second) // published a second ago
	lag.mu.Unlock()
	lag.catchUp()
	ev, err := sub.Next()
	require.NoError(t, err)
	assert.Equal(t, "one", ev.Data)

	lag.lose("t")
	publishTo(t, b, "two", "t")
	lag.catchUp()
	ev, err = sub.Next()
	require.NoError(t, err)
	assert.Equal(t, LostEventName, ev.Event)

	lag.failReplay = fmt.Errorf("store down")
	_, err = b.Subscribe(context.Background(), []string{"u"}, "0")
	require.ErrorIs(t, err, ErrReplayFailed)

	got := rec.snapshot()
	require.NotEmpty(t, got.lags)
	assert.GreaterOrEqual(t, got.lags[0], time.Second)
	require.Len(t, got.lost, 1)
	assert.ErrorIs(t, got.lost[0], ErrDataLoss)
	assert.Equal(t, []string{"replay"}, got.backendErrs)
	assert.Equal(t, 3, got.delivered, "one, the loss signal (an event too) and two")
}

// However Subscribe and Shutdown interleave, a subscriber's unsubscribe
// hooks run after its subscribe hooks, and only if those ran.
func TestHooksInOrderAtShutdown(t *testing.T) {
	for range 20 {
		var mu sync.Mutex
		var order []string
		hook := func(kind string) func(SubscriberInfo) {
			return func(info SubscriberInfo) {
				mu.Lock()
				order = append(order, kind+" "+info.LastEventID)
				mu.Unlock()
			}
		}
		b, err := NewBroker(WithOnSubscribe(hook("sub")), WithOnUnsubscribe(hook("unsub")))
		require.NoError(t, err)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() { _, _ = b.Subscribe(context.Background(), []string{"t"}, fmt.Sprint("x", i)) })
		}
		require.NoError(t, b.Shutdown(context.Background()))
		wg.Wait()
		mu.Lock()
		seen := map[string]bool{}
		for _, e := range order {
			kind, tag, _ := strings.Cut(e, " ")
			if kind == "sub" {
				seen[tag] = true
			} else {
				assert.True(t, seen[tag], "unsubscribe hook of %s before its subscribe hook: %v", tag, order)
			}
		}
		mu.Unlock()
	}
}

// The presence events the broker publishes itself are not the
// application's publishes: the observer does not count them, nor their
// failure when the broker shuts down.
func TestObserverLeavesOutPresenceEvents(t *testing.T) {
	rec := &recorder{}
	b, err := NewBroker(WithObserver(rec), WithPresenceEvents("presence", nil))
	require.NoError(t, err)
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", b.Handler(Topics("room")))
	srv := httptest.NewServer(r)
	defer srv.Close()

	res, err := http.Get(srv.URL + "/events")
	require.NoError(t, err)
	defer res.Body.Close()
	dec := NewDecoder(res.Body)
	for { // its own join, announced on the topic
		ev, err := dec.Decode()
		require.NoError(t, err)
		if ev.Event == "presence" {
			break
		}
	}
	require.NoError(t, b.Shutdown(context.Background()))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Empty(t, rec.published)
	assert.Empty(t, rec.publishErrs)
}
