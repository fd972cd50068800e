package sse

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lagBackend is a Backend in memory whose delivery to this process lags
// behind its store until told to catch up, like a shared store whose
// reader lags behind other servers. Ids are numbers, one for each publish,
// the same in each of its topics.
type lagBackend struct {
	mu         sync.Mutex
	msgs       []Message // every message stored, in order
	delivered  int       // how many of msgs were delivered
	watched    map[string]bool
	watches    int
	deliver    func(Message)
	failReplay error
	lostBefore map[string]int // per topic: ids up to it were lost by the store
}

func newLagBackend() *lagBackend {
	return &lagBackend{watched: map[string]bool{}, lostBefore: map[string]int{}}
}

func (l *lagBackend) Start(deliver func(Message)) error {
	l.deliver = deliver
	return nil
}

func (l *lagBackend) Watch(_ context.Context, topic string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watched[topic] = true
	l.watches++
	pos := ""
	for _, m := range l.msgs[:l.delivered] {
		if slices.Contains(m.Topics, topic) {
			pos = m.ID
		}
	}
	return pos, nil
}

func (l *lagBackend) Unwatch(topic string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.watched, topic)
}

func (l *lagBackend) isWatched(topic string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.watched[topic]
}

func (l *lagBackend) Publish(_ context.Context, topics []string, _ string, body []byte) (Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := Message{ID: strconv.Itoa(len(l.msgs) + 1), Topics: slices.Clone(topics), Body: body}
	l.msgs = append(l.msgs, msg)
	return msg, nil
}

// catchUp delivers every stored message not delivered yet, once for each
// of its watched topics.
func (l *lagBackend) catchUp() {
	l.mu.Lock()
	pending := l.msgs[l.delivered:]
	l.delivered = len(l.msgs)
	var out []Message
	for _, m := range pending {
		for _, t := range m.Topics {
			if l.watched[t] {
				m.Topic = t
				out = append(out, m)
			}
		}
	}
	l.mu.Unlock()
	for _, m := range out {
		l.deliver(m)
	}
}

// lose makes the store lose every event of topic so far, and tells the
// brokers that watch it.
func (l *lagBackend) lose(topic string) {
	l.mu.Lock()
	l.lostBefore[topic] = len(l.msgs)
	l.delivered = len(l.msgs)
	watched := l.watched[topic]
	l.mu.Unlock()
	if watched {
		l.deliver(Message{ID: strconv.Itoa(len(l.msgs)), Topic: topic, Lost: ErrDataLoss})
	}
}

func (l *lagBackend) Replay(_ context.Context, topic, after, until string, limit int) ([]Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failReplay != nil {
		return nil, l.failReplay
	}
	a, u := 0, 0
	var err error
	if after != "" {
		if a, err = strconv.Atoi(after); err != nil || a > len(l.msgs) || !slices.Contains(l.msgs[a-1].Topics, topic) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownEventID, after)
		}
	}
	if a < l.lostBefore[topic] {
		return nil, fmt.Errorf("%w: %q", ErrDataLoss, after)
	}
	if until != "" {
		if u, err = strconv.Atoi(until); err != nil {
			return nil, err
		}
	}
	var out []Message
	for _, m := range l.msgs[a:max(a, u)] {
		if slices.Contains(m.Topics, topic) && len(out) < limit {
			m.Topic = topic
			out = append(out, m)
		}
	}
	return out, nil
}

func (l *lagBackend) CompareIDs(a, b string) (int, error) {
	if a == "" || b == "" {
		return cmp.Compare(len(a), len(b)), nil
	}
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%w: %q, %q", ErrMalformedEventID, a, b)
	}
	return cmp.Compare(x, y), nil
}

func (l *lagBackend) Close() error { return nil }

func publishTo(t testing.TB, b *Broker, data string, topics ...string) {
	t.Helper()
	_, err := b.PublishTopics(context.Background(), topics, Event{Data: data})
	require.NoError(t, err)
}

func datas(frames [][]byte) []string {
	var out []string
	for _, f := range frames {
		_, body, _ := strings.Cut(string(f), "data: ")
		out = append(out, strings.TrimSuffix(body, "\n\n"))
	}
	return out
}

// A client that reconnects with an id this process has not delivered yet
// (another server sent it) gets the later events once, not twice.
func TestBrokerClientAheadOfDelivery(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag))
	keep, _ := sub(t, b, []string{"t"}, "") // the topic is watched
	for range 2 {
		publishTo(t, b, "x", "t")
	}
	lag.catchUp() // this process has delivered 1 and 2
	for range 3 {
		publishTo(t, b, "x", "t")
	}
	s, lost := sub(t, b, []string{"t"}, "4")
	require.NoError(t, lost)
	lag.catchUp() // 3, 4 and 5 arrive: the client has 3 and 4
	publishTo(t, b, "x", "t")
	lag.catchUp()
	assert.Equal(t, []string{"5", "6"}, ids(takeAll(s)))
	assert.Equal(t, []string{"1", "2", "3", "4", "5", "6"}, ids(takeAll(keep)))

	// An id from the future that the store does not know is lost, not
	// waited for forever.
	_, lost = sub(t, b, []string{"t"}, "99")
	assert.ErrorIs(t, lost, ErrUnknownEventID)
}

// With a backend, a reconnect is served from the local logs while they hold
// the client's id, and from the backend for older history, a page at a
// time, with no gap and no duplicate at the hand-off.
func TestBrokerBackendHistoryOlderThanTheLogs(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag), WithTopicPolicy(func(string) TopicPolicy { return TopicPolicy{MaxEvents: 3} }))
	keep, _ := sub(t, b, []string{"t"}, "")
	n := 2*maxReplayPage + 10
	for range n {
		publishTo(t, b, "x", "t")
	}
	lag.catchUp() // the log keeps the last 3
	takeAll(keep)
	last := strconv.Itoa(n)
	s, lost := sub(t, b, []string{"t"}, strconv.Itoa(n-2))
	require.NoError(t, lost)
	assert.Equal(t, []string{strconv.Itoa(n - 1), last}, ids(takeAll(s)), "from the log")

	old, lost := sub(t, b, []string{"t"}, "2")
	require.NoError(t, lost)
	publishTo(t, b, "x", "t")
	lag.catchUp()
	var got []string
	for old.replaying() || len(got) == 0 {
		require.NoError(t, old.refill(context.Background()))
		assert.LessOrEqual(t, len(old.page), maxReplayPage)
		frames, _ := old.take(nil)
		got = append(got, ids(frames)...)
	}
	got = append(got, ids(takeAll(old))...)
	var want []string
	for i := 3; i <= n+1; i++ {
		want = append(want, strconv.Itoa(i))
	}
	assert.Equal(t, want, got, "from the backend in pages, then the log")
}

// A stream on several topics gets ids that hold its position in each, and
// an event published to several of them once, also across a reconnect
// that resumes from such an id, with the history split between the
// backend and the logs.
func TestBrokerBackendSeveralTopicsExactlyOnce(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag), WithTopicPolicy(func(string) TopicPolicy { return TopicPolicy{MaxEvents: 2} }))
	s, _ := sub(t, b, []string{"b", "a"}, "")
	publishTo(t, b, "a1", "a")
	publishTo(t, b, "b1", "b")
	publishTo(t, b, "ab1", "a", "b")
	lag.catchUp()
	frames := takeAll(s)
	assert.Equal(t, []string{"a1", "b1", "ab1"}, datas(frames))
	resume := idOf(frames[1]) // after a1 and b1
	assert.Equal(t, s.sum+":1,2", resume, "the position in a, then b")

	publishTo(t, b, "a2", "a")
	publishTo(t, b, "ab2", "b", "a")
	publishTo(t, b, "b2", "b")
	publishTo(t, b, "a3", "a")
	lag.catchUp()
	assert.Equal(t, []string{"a2", "ab2", "b2", "a3"}, datas(takeAll(s)))

	r, lost := sub(t, b, []string{"a", "b"}, resume)
	require.NoError(t, lost)
	got := datas(takeAll(r))
	slices.Sort(got) // the order across topics is the backend's
	assert.Equal(t, []string{"a2", "a3", "ab1", "ab2", "b2"}, got)

	_, lost = sub(t, b, []string{"a", "c"}, resume)
	assert.ErrorIs(t, lost, ErrUnknownEventID, "an id of another set of topics")
	_, lost = sub(t, b, []string{"a", "b"}, "1")
	assert.ErrorIs(t, lost, ErrUnknownEventID, "an id of one topic")
}

// A gap the backend reports reaches the streams in band, once, with its
// reason; a reconnect from before it gets the same signal.
func TestBrokerBackendGapIsSignalled(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag))
	s, _ := sub(t, b, []string{"t"}, "")
	publishTo(t, b, "1", "t")
	lag.catchUp()
	require.Len(t, takeAll(s), 1)
	publishTo(t, b, "2", "t")
	lag.lose("t")
	publishTo(t, b, "3", "t")
	lag.catchUp()
	frames := takeAll(s)
	require.Len(t, frames, 2)
	assert.Contains(t, string(frames[0]), `"reason":"data-loss"`)
	assert.Equal(t, "3", idOf(frames[1]))

	_, lost := sub(t, b, []string{"t"}, "1")
	assert.ErrorIs(t, lost, ErrDataLoss)
}

// A topic is watched while it has subscribers, and no longer after.
func TestBrokerBackendWatchesServedTopics(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag))
	s1, _ := sub(t, b, []string{"t"}, "")
	s2, _ := sub(t, b, []string{"t", "u"}, "")
	assert.True(t, lag.isWatched("t"))
	assert.Equal(t, 2, lag.watches, "once for each topic")
	b.remove(s1, nil)
	assert.True(t, lag.isWatched("t"))
	b.remove(s2, nil)
	assert.False(t, lag.isWatched("t"))
	assert.False(t, lag.isWatched("u"))
	assert.Zero(t, b.Stats().Topics)
}

// When the store cannot replay, the handler asks the client to come back
// later with the same Last-Event-ID: a 200 stream with only a retry field,
// since an error status ends a browser's EventSource for good.
func TestBrokerReplayFailureAsksToRetry(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag), WithRetryAfter(7*time.Second))
	publishTo(t, b, "x", "t")
	lag.failReplay = fmt.Errorf("store down")

	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", b.Handler(Topics("t")))
	req := httptest.NewRequest(http.MethodGet, "/events", nil)
	req.Header.Set("Last-Event-ID", "")
	req.Header.Set("Last-Event-ID", "0")
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, ContentType, rec.Header().Get("Content-Type"))
	assert.Equal(t, ": ok\n\n: replay unavailable, retry later\nretry: 7000\n\n", rec.Body.String())
	assert.Zero(t, b.Subscribers(""))

	_, err := b.Subscribe(context.Background(), []string{"t"}, "")
	require.NoError(t, err, "without an id there is nothing to replay")
	_, err = b.Subscribe(context.Background(), []string{"t"}, "0")
	assert.ErrorIs(t, err, ErrReplayFailed)
}

// A reconnect on several topics whose history is partly in the logs is
// replayed up to one point for all its topics, and the logs go on after
// it: an event both replayed and in a log is sent once.
func TestBrokerBackendReplayThenLogsOnce(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag), WithTopicPolicy(func(string) TopicPolicy { return TopicPolicy{MaxEvents: 2} }))
	keep, _ := sub(t, b, []string{"a", "b"}, "")
	for i := range 5 {
		publishTo(t, b, "a"+strconv.Itoa(i+1), "a") // ids 1 to 5
	}
	for i := range 3 {
		publishTo(t, b, "b"+strconv.Itoa(i+1), "b") // ids 6 to 8
	}
	lag.catchUp() // the logs keep a4, a5 and b2, b3
	takeAll(keep)
	r, lost := sub(t, b, []string{"a", "b"}, keep.sum+":1,")
	require.NoError(t, lost)
	assert.Equal(t, []string{"a2", "a3", "a4", "a5", "b1", "b2", "b3"}, datas(takeAll(r)))
}

// eagerBackend delivers from inside Watch, before it returns, as a backend
// may: delivery has begun.
type eagerBackend struct{ *lagBackend }

func (e eagerBackend) Watch(ctx context.Context, topic string) (string, error) {
	pos, err := e.lagBackend.Watch(ctx, topic)
	e.catchUp()
	return pos, err
}

// What the backend delivers between the start of delivery and the end of
// Watch is kept.
func TestBrokerBackendDeliveryDuringWatch(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(eagerBackend{lag}))
	publishTo(t, b, "1", "t")
	lag.catchUp() // the position is 1
	publishTo(t, b, "2", "t")
	s, lost := sub(t, b, []string{"t"}, "1")
	require.NoError(t, lost)
	publishTo(t, b, "3", "t")
	lag.catchUp()
	assert.Equal(t, []string{"2", "3"}, ids(takeAll(s)))
}

// An id the logs do not know, with initial events: the lost signal and
// the current state, and nothing older after it.
func TestBrokerBackendUnknownIDWithInitialEvents(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag))
	keep, _ := sub(t, b, []string{"t", "u"}, "")
	publishTo(t, b, "1", "t")
	publishTo(t, b, "2", "u")
	publishTo(t, b, "3", "t")
	lag.catchUp()
	takeAll(keep)
	initial := func([]string) ([]Event, error) { return []Event{{Data: "state"}}, nil }
	s, lost, err := b.subscribe(context.Background(), SubscriberInfo{Topics: []string{"t"}, LastEventID: "2"}, nil, initial)
	require.NoError(t, err)
	defer b.remove(s, nil)
	assert.ErrorIs(t, lost, ErrUnknownEventID)
	frames := takeAll(s)
	require.Len(t, frames, 2)
	assert.Contains(t, string(frames[0]), LostEventName)
	assert.Equal(t, "state", datas(frames)[1])
	assert.Equal(t, "3", idOf(frames[1]), "the state is as of the newest event")
}

// A client ahead of this process's delivery whose log drops frames before
// it reads them gets none of those it had.
func TestBrokerBackendAheadThroughAnOverrun(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag), WithTopicPolicy(func(string) TopicPolicy { return TopicPolicy{MaxEvents: 2} }))
	keep, _ := sub(t, b, []string{"t"}, "")
	publishTo(t, b, "x", "t")
	publishTo(t, b, "x", "t")
	lag.catchUp()
	takeAll(keep)
	for range 3 {
		publishTo(t, b, "x", "t")
	}
	s, lost := sub(t, b, []string{"t"}, "4") // another server sent 3 and 4
	require.NoError(t, lost)
	lag.catchUp() // 3, 4, 5 arrive; the log keeps 4 and 5
	assert.Equal(t, []string{"5"}, ids(takeAll(s)))
}

// A stream on several topics that falls behind one topic's log replays
// all its topics up to the same point: an event of several topics still
// comes after the earlier events of each.
func TestBrokerBackendOverrunKeepsEachTopicsOrder(t *testing.T) {
	lag := newLagBackend()
	b := newTestBroker(t, WithBackend(lag), WithTopicPolicy(func(string) TopicPolicy { return TopicPolicy{MaxEvents: 2} }))
	s, _ := sub(t, b, []string{"a", "b"}, "")
	publishTo(t, b, "b1", "b")
	publishTo(t, b, "ab", "a", "b")
	for i := 2; i <= 4; i++ {
		publishTo(t, b, "a"+strconv.Itoa(i), "a")
	}
	lag.catchUp() // a's log keeps a3 and a4: s fell behind it
	got := datas(takeAll(s))
	assert.Equal(t, []string{"b1", "ab", "a2", "a3", "a4"}, got)
}
