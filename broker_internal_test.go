package sse

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/gin-gonic/gin"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An event published to many subscribers is encoded once: every
// subscriber's queue holds the same frame, not a copy.
func TestBrokerEncodesOnce(t *testing.T) {
	b, err := NewBroker()
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()
	var subs []*subscriber
	for i := range 100 {
		topics := []string{"a"}
		if i%2 == 0 {
			topics = append(topics, "b")
		}
		s, _, err := b.subscribe(context.Background(), topics, "", "", nil)
		require.NoError(t, err)
		subs = append(subs, s)
	}
	_, err = b.PublishTopics(context.Background(), []string{"a", "b"}, Event{Event: "x", Data: map[string]int{"n": 1}})
	require.NoError(t, err)
	first := subs[0].take()
	require.Len(t, first, 1)
	for _, s := range subs[1:] {
		q := s.take()
		require.Len(t, q, 1, "once, even when subscribed to both topics")
		assert.Same(t, first[0], q[0])
	}
	for _, s := range subs {
		b.remove(s, false)
	}
}

// BenchmarkBrokerPublishBytes measures a publish as in scenario (d) of
// bench/: one subscriber, a reused []byte of 27 bytes as Data, no name.
func BenchmarkBrokerPublishBytes(b *testing.B) {
	br, err := NewBroker(WithQueueSize(1 << 30))
	if err != nil {
		b.Fatal(err)
	}
	s, _, err := br.subscribe(context.Background(), []string{"t"}, "", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	data := []byte("123456 1764620000000000000 ")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := br.Publish("t", Event{Data: data}); err != nil {
			b.Fatal(err)
		}
		if i++; i%64 == 0 { // a stream that keeps up
			s.take()
		}
	}
	br.remove(s, false)
	_ = br.Shutdown(context.Background())
}

// BenchmarkBrokerPublish measures one publish fanned out to N subscribers'
// queues (the publisher's side of the fan-out; the subscribers' writes are
// measured in bench/).
func BenchmarkBrokerPublish(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(strconv.Itoa(n)+"subs", func(b *testing.B) {
			br, err := NewBroker(WithQueueSize(1 << 30))
			if err != nil {
				b.Fatal(err)
			}
			subs := make([]*subscriber, n)
			for i := range subs {
				if subs[i], _, err = br.subscribe(context.Background(), []string{"t"}, "", "", nil); err != nil {
					b.Fatal(err)
				}
			}
			ev := Event{Event: "update", Data: "The quick brown fox jumps over the lazy dog."}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := br.Publish("t", ev); err != nil {
					b.Fatal(err)
				}
				if i++; i%1024 == 0 { // keep the queues from growing without bound
					for _, s := range subs {
						s.take()
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			for _, s := range subs {
				br.remove(s, false)
			}
			_ = br.Shutdown(context.Background())
		})
	}
}

func TestCheckTopics(t *testing.T) {
	b := &Broker{}
	shared := []string{"a", "b", "a", "c", "b"}
	got, err := b.checkTopics(shared)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c"}, got)
	assert.Equal(t, []string{"a", "b", "a", "c", "b"}, shared, "the caller's slice is left alone")
	got, err = b.checkTopics([]string{"x", "y"})
	require.NoError(t, err)
	assert.Equal(t, []string{"x", "y"}, got)
	_, err = b.checkTopics([]string{"x", "bad\x7f"})
	assert.ErrorIs(t, err, ErrInvalidTopic)
}

// lagBackend stores events at once but delivers them only when told, like a
// shared store whose reader in this process lags behind other servers.
type lagBackend struct {
	mu         sync.Mutex
	msgs       []Message
	delivered  int
	deliver    func(Message)
	failReplay error
}

func (l *lagBackend) Start(deliver func(Message)) (string, error) {
	l.deliver = deliver
	return "0", nil
}

func (l *lagBackend) Publish(_ context.Context, topics []string, _ string, body []byte) (Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := Message{ID: strconv.Itoa(len(l.msgs) + 1), Topics: topics, Body: body}
	l.msgs = append(l.msgs, msg)
	return msg, nil
}

// catchUp delivers every stored message not delivered yet.
func (l *lagBackend) catchUp() {
	l.mu.Lock()
	pending := l.msgs[l.delivered:]
	l.delivered = len(l.msgs)
	l.mu.Unlock()
	for _, m := range pending {
		l.deliver(m)
	}
}

func (l *lagBackend) Replay(_ context.Context, _ []string, after, until string) ([]Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failReplay != nil {
		return nil, l.failReplay
	}
	a, err1 := strconv.Atoi(after)
	u, err2 := strconv.Atoi(until)
	if err1 != nil || err2 != nil || a > len(l.msgs) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEventID, after)
	}
	if u < a {
		return nil, nil
	}
	return slices.Clone(l.msgs[a:u]), nil
}

func (l *lagBackend) CompareIDs(a, b string) (int, error) {
	x, err1 := strconv.Atoi(a)
	y, err2 := strconv.Atoi(b)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return cmp.Compare(x, y), nil
}

func (l *lagBackend) Close() error { return nil }

func queuedIDs(s *subscriber) []string {
	var ids []string
	for _, f := range s.take() {
		ids = append(ids, f.id)
	}
	return ids
}

// A client that reconnects with an id this process has not delivered yet
// (another server sent it) gets the later events once, not twice.
func TestBrokerClientAheadOfDelivery(t *testing.T) {
	lag := &lagBackend{}
	b, err := NewBroker(WithBackend(lag))
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()
	for range 2 {
		_, err := b.Publish("t", Event{Data: "x"})
		require.NoError(t, err)
	}
	lag.catchUp() // this process has delivered 1 and 2
	for range 3 {
		_, err := b.Publish("t", Event{Data: "x"})
		require.NoError(t, err)
	}
	s, lost, err := b.subscribe(context.Background(), []string{"t"}, "4", "", nil)
	require.NoError(t, err)
	defer b.remove(s, false)
	require.NoError(t, lost)
	lag.catchUp() // 3, 4 and 5 arrive: the client has 3 and 4
	_, err = b.Publish("t", Event{Data: "x"})
	require.NoError(t, err)
	lag.catchUp()
	assert.Equal(t, []string{"5", "6"}, queuedIDs(s))

	// An id from the future that the store does not know is lost, not
	// waited for forever.
	f, lost, err := b.subscribe(context.Background(), []string{"t"}, "99", "", nil)
	require.NoError(t, err)
	defer b.remove(f, false)
	assert.ErrorIs(t, lost, ErrUnknownEventID)
}

// When the store cannot replay, the handler asks the client to come back
// later with the same Last-Event-ID: a 200 stream with only a retry field,
// since an error status ends a browser's EventSource for good.
func TestBrokerReplayFailureAsksToRetry(t *testing.T) {
	lag := &lagBackend{failReplay: errors.New("store down")}
	b, err := NewBroker(WithBackend(lag), WithRetryAfter(7*time.Second))
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()
	_, err = b.Publish("t", Event{Data: "x"})
	require.NoError(t, err)
	lag.catchUp()

	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.GET("/events", b.Handler(Topics("t")))
	req := httptest.NewRequest(http.MethodGet, "/events", nil)
	req.Header.Set("Last-Event-ID", "0")
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, ContentType, rec.Header().Get("Content-Type"))
	assert.Equal(t, ": ok\n\n: replay unavailable, retry later\nretry: 7000\n\n", rec.Body.String())
	assert.Zero(t, b.Subscribers(""))

	_, err = b.Subscribe(context.Background(), []string{"t"}, "0")
	assert.ErrorIs(t, err, ErrReplayFailed)
}

// Subscribers removed in any order leave every topic's list exact: each
// remaining subscriber gets the events of its topics once, and the
// others none.
func TestBrokerTopicListsAfterRemovals(t *testing.T) {
	b, err := NewBroker()
	require.NoError(t, err)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, b.Shutdown(ctx), "every subscriber was removed")
	}()
	all := []string{"a", "b", "c"}
	var subs []*subscriber
	for i := range 60 {
		var topics []string
		for k, tp := range all {
			if i&(1<<k) != 0 || k == i%3 {
				topics = append(topics, tp)
			}
		}
		s, _, err := b.subscribe(context.Background(), topics, "", "", nil)
		require.NoError(t, err)
		subs = append(subs, s)
	}
	// Remove two thirds, in an order that is neither insertion order nor
	// its reverse.
	live := map[*subscriber]bool{}
	for _, s := range subs {
		live[s] = true
	}
	for _, i := range []int{7, 0, 59, 31, 2, 44, 13, 58, 1, 30, 20, 41, 5, 50, 8, 11, 23, 35, 47, 53, 4, 16, 28, 40, 52, 10, 22, 34, 46, 56, 14, 26, 38} {
		b.remove(subs[i], false)
		live[subs[i]] = false
	}
	for _, tp := range all {
		_, err := b.Publish(tp, Event{Data: tp})
		require.NoError(t, err)
	}
	b.mu.Lock()
	for tp, list := range b.topics {
		for i, s := range list {
			k := slices.IndexFunc(s.slots, func(sl slot) bool { return sl.topic == tp })
			require.GreaterOrEqual(t, k, 0)
			assert.Equal(t, i, s.slots[k].i, "slot of a subscriber of %s", tp)
		}
	}
	b.mu.Unlock()
	for _, s := range subs {
		got := s.take()
		if !live[s] {
			assert.Empty(t, got, "a removed subscriber gets nothing")
			continue
		}
		var names []string
		for _, f := range got {
			names = append(names, string(f.wire[len(f.wire)-3:len(f.wire)-2]))
		}
		assert.Equal(t, s.info.Topics, names, "each event of its topics, once")
		b.remove(s, false)
	}
}

// With the in-memory backend an event is one buffer: the frame queued for
// live subscribers is "id: <id>\n" and the body, and a replay after a
// reconnect reuses the same frame instead of building another.
func TestBrokerReplayReusesFrames(t *testing.T) {
	b, err := NewBroker()
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()
	live, _, err := b.subscribe(context.Background(), []string{"t"}, "", "", nil)
	require.NoError(t, err)
	var ids []string
	for i := range 3 {
		id, err := b.Publish("t", Event{Event: "n", Data: strconv.Itoa(i)})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	frames := slices.Clone(live.take())
	require.Len(t, frames, 3)
	for i, f := range frames {
		assert.Equal(t, "id: "+ids[i]+"\nevent: n\ndata: "+strconv.Itoa(i)+"\n\n", string(f.wire))
		assert.Equal(t, ids[i], f.id)
	}
	back, _, err := b.subscribe(context.Background(), []string{"t"}, ids[0], "", nil)
	require.NoError(t, err)
	replayed := back.take()
	require.Len(t, replayed, 2)
	assert.Same(t, frames[1], replayed[0])
	assert.Same(t, frames[2], replayed[1])
	b.remove(live, false)
	b.remove(back, false)
}

// A stream's write buffer grown for a large backlog is kept while backlogs
// of that size go on now and then, and dropped once no write has needed a
// quarter of it for a second.
func TestDeliveryShrink(t *testing.T) {
	const s = int64(time.Second)
	d := delivery{buf: make([]byte, 0, 32<<10)}
	d.shrink(10 * s)
	assert.Equal(t, 32<<10, cap(d.buf), "a small buffer is always kept")
	d.buf = make([]byte, 100<<10, 256<<10)
	d.shrink(10 * s)
	assert.Equal(t, 256<<10, cap(d.buf), "kept: the last backlog used over a quarter")
	d.buf = d.buf[:10<<10]
	d.shrink(10*s + s/2)
	assert.Equal(t, 256<<10, cap(d.buf), "kept: a large backlog half a second ago")
	d.buf = d.buf[:70<<10]
	d.shrink(11*s + s/4)
	d.buf = d.buf[:0]
	d.shrink(12 * s)
	assert.Equal(t, 256<<10, cap(d.buf), "kept: a large backlog 0.75 s ago")
	d.shrink(12*s + s/4)
	assert.Nil(t, d.buf, "dropped: no large backlog for a second")
}

// A subscribe hook may reorder the Topics it is given without harm to the
// broker's own lists.
func TestBrokerHookReordersTopics(t *testing.T) {
	b, err := NewBroker(WithOnSubscribe(func(info SubscriberInfo) { slices.Reverse(info.Topics) }))
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()
	one, _, err := b.subscribe(context.Background(), []string{"a"}, "", "", nil)
	require.NoError(t, err)
	two, _, err := b.subscribe(context.Background(), []string{"a", "b"}, "", "", nil)
	require.NoError(t, err)
	three, _, err := b.subscribe(context.Background(), []string{"b", "a"}, "", "", nil)
	require.NoError(t, err)
	b.remove(one, false)
	b.remove(two, false)
	for _, tp := range []string{"a", "b"} {
		_, err := b.Publish(tp, Event{Data: tp})
		require.NoError(t, err)
	}
	assert.Len(t, three.take(), 2)
	assert.Equal(t, map[string]int{"a": 1, "b": 1}, b.Stats().Topics)
	b.remove(three, false)
	assert.Empty(t, b.Stats().Topics)
}

// prefixBackend wraps the in-memory backend and puts "x" in front of its
// ids, as a backend that namespaces ids would.
type prefixBackend struct{ m *MemoryBackend }

func (p prefixBackend) Start(deliver func(Message)) (string, error) {
	pos, err := p.m.Start(func(msg Message) { msg.ID = "x" + msg.ID; deliver(msg) })
	return "x" + pos, err
}

func (p prefixBackend) Publish(ctx context.Context, topics []string, id string, body []byte) (Message, error) {
	msg, err := p.m.Publish(ctx, topics, id, body)
	msg.ID = "x" + msg.ID
	return msg, err
}

func (p prefixBackend) Replay(ctx context.Context, topics []string, after, until string) ([]Message, error) {
	msgs, err := p.m.Replay(ctx, topics, after[1:], until[1:])
	for i := range msgs {
		msgs[i].ID = "x" + msgs[i].ID
	}
	return msgs, err
}

func (p prefixBackend) Close() error { return p.m.Close() }

// Streams write the ids a wrapping backend gives, live and replayed.
func TestBrokerWrappedBackendIDs(t *testing.T) {
	b, err := NewBroker(WithBackend(prefixBackend{NewMemoryBackend(100, 0, 0)}))
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()
	live, _, err := b.subscribe(context.Background(), []string{"t"}, "", "", nil)
	require.NoError(t, err)
	first, err := b.Publish("t", Event{Data: "1"})
	require.NoError(t, err)
	second, err := b.Publish("t", Event{Data: "2"})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(second, "x"), second)
	got := live.take()
	require.Len(t, got, 2)
	assert.Equal(t, "id: "+second+"\ndata: 2\n\n", string(got[1].wire))
	back, _, err := b.subscribe(context.Background(), []string{"t"}, first, "", nil)
	require.NoError(t, err)
	replayed := back.take()
	require.Len(t, replayed, 1)
	assert.Equal(t, "id: "+second+"\ndata: 2\n\n", string(replayed[0].wire))
	b.remove(live, false)
	b.remove(back, false)
}

// A topic's list gives back the room a crowd of subscribers grew once most
// of them have left.
func TestBrokerTopicListShrinks(t *testing.T) {
	b, err := NewBroker()
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()
	var subs []*subscriber
	for range 1000 {
		s, _, err := b.subscribe(context.Background(), []string{"t"}, "", "", nil)
		require.NoError(t, err)
		subs = append(subs, s)
	}
	for _, s := range subs[:990] {
		b.remove(s, false)
	}
	b.mu.Lock()
	list := b.topics["t"]
	b.mu.Unlock()
	assert.Len(t, list, 10)
	assert.LessOrEqual(t, cap(list), 64)
	_, err = b.Publish("t", Event{Data: "x"})
	require.NoError(t, err)
	for _, s := range subs[990:] {
		assert.Len(t, s.take(), 1)
		b.remove(s, false)
	}
}

// BenchmarkBrokerReplay measures a reconnect that replays the 100 events
// it missed (of a 1,000-event history), as in a reconnect storm.
func BenchmarkBrokerReplay(b *testing.B) {
	br, err := NewBroker()
	if err != nil {
		b.Fatal(err)
	}
	var resume string
	for i := range 1000 {
		id, err := br.Publish("t", Event{Event: "update", Data: "The quick brown fox jumps over the lazy dog."})
		if err != nil {
			b.Fatal(err)
		}
		if i == 899 {
			resume = id
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		s, _, err := br.subscribe(context.Background(), []string{"t"}, resume, "", nil)
		if err != nil {
			b.Fatal(err)
		}
		if n := len(s.take()); n != 100 {
			b.Fatalf("replayed %d events, want 100", n)
		}
		br.remove(s, false)
	}
	_ = br.Shutdown(context.Background())
}

func TestSizeHintIsAnUpperBound(t *testing.T) {
	events := []Event{
		{},
		{Data: ""},
		{Data: "x"},
		{ID: "7", Event: "update", Data: "a\nb\rc\r\nd", Retry: time.Duration(math.MaxInt64), Comment: "c\r\nd\re\n"},
		{ResetID: true, Data: []byte("\r\r\n\n")},
		{Data: json.RawMessage(`{"a":1}`)},
		{Data: map[string]int{"a": 1}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	piece := func() string {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteByte("ab\r\n"[rng.IntN(4)])
		}
		return b.String()
	}
	for range 2000 {
		events = append(events, Event{Comment: piece(), Data: piece()}, Event{Data: []byte(piece())})
	}
	for _, ev := range events {
		wire, err := ev.AppendTo(nil)
		require.NoError(t, err)
		assert.LessOrEqual(t, len(wire), ev.sizeHint(), "%q", wire)
	}
}

func TestFrameBufSizeClasses(t *testing.T) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	classes := map[uint32]bool{}
	for _, c := range ms.BySize {
		classes[c.Size] = true
	}
	for i, c := range frameBufs {
		size := uint32(unsafe.Sizeof(frame{})) + uint32(c.n)
		assert.True(t, classes[size], "frame with %d bytes: %d is not a size class", c.n, size)
		if i > 0 {
			assert.Greater(t, c.n, frameBufs[i-1].n, "sorted")
		}
		f, buf := c.alloc()
		assert.NotNil(t, f)
		assert.Equal(t, 0, len(buf))
		assert.Equal(t, c.n, cap(buf))
		assert.Equal(t, 1.0, testing.AllocsPerRun(10, func() { f, buf = c.alloc() }))
	}
	f, buf := newFrameBuf(frameBufs[len(frameBufs)-1].n + 1)
	assert.NotNil(t, f)
	assert.Equal(t, frameBufs[len(frameBufs)-1].n+1, cap(buf))
}

// An id the broker returns shares its event's bytes only when the event is
// small, so that keeping ids never keeps large events alive.
func TestPublishedIDsOwnTheirBytesForLargeEvents(t *testing.T) {
	b, err := NewBroker()
	require.NoError(t, err)
	defer func() { _ = b.Shutdown(context.Background()) }()
	inside := func(id string, f *frame) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(id)))
		start := uintptr(unsafe.Pointer(unsafe.SliceData(f.wire)))
		return p >= start && p < start+uintptr(len(f.wire))
	}
	for _, size := range []int{10, 200, 300, 5000} {
		id, err := b.Publish("t", Event{Data: strings.Repeat("x", size)})
		require.NoError(t, err)
		f := b.mem.at(b.mem.n - 1).f
		require.Equal(t, id, f.id)
		assert.Equal(t, len(f.wire) <= 256, inside(id, f), "%d bytes of data", size)
		msgs, err := b.mem.Replay(context.Background(), []string{"t"}, b.mem.id(b.mem.seq-1), id)
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		assert.Equal(t, id, msgs[0].ID)
		assert.Equal(t, len(f.wire) <= 256, inside(msgs[0].ID, f), "message id, %d bytes of data", size)
	}
}

// A kicked subscriber's last frames are the ones queued before the kick:
// drain returns them with the reason, and nothing is queued after it.
func TestSubscriberDrainAfterKick(t *testing.T) {
	b, err := NewBroker(WithQueueSize(2))
	require.NoError(t, err)
	defer func() { require.NoError(t, b.Shutdown(context.Background())) }()
	s, _, err := b.subscribe(context.Background(), []string{"t"}, "", "", nil)
	require.NoError(t, err)
	defer b.remove(s, false)

	frames, reason := s.drain()
	require.Empty(t, frames)
	require.NoError(t, reason)

	var ids []string
	for range 3 { // the third overflows the queue of 2: a slow kick
		id, err := b.Publish("t", Event{Data: "x"})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	_, err = b.Publish("t", Event{Data: "after the kick"})
	require.NoError(t, err)

	frames, reason = s.drain()
	assert.ErrorIs(t, reason, ErrSlowSubscriber)
	var got []string
	for _, f := range frames {
		got = append(got, f.id)
	}
	assert.Equal(t, ids[:2], got, "the frames queued before the kick, and no later one")
	frames, reason = s.drain()
	assert.Empty(t, frames)
	assert.ErrorIs(t, reason, ErrSlowSubscriber, "the reason stays")
	assert.ErrorIs(t, s.kicked(), ErrSlowSubscriber)
}

// The sweep runs only while there are streams: it stops once the last one
// ended, starts again with the next, and stops at Shutdown.
func TestBrokerSweepRunsWhileThereAreStreams(t *testing.T) {
	b, err := NewBroker()
	require.NoError(t, err)
	r := gin.New()
	r.GET("/events", b.Handler(Topics("t"), WithHeartbeat(0)))
	srv := httptest.NewServer(r)
	defer srv.Close()
	sweeping := func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.sweeping
	}
	open := func() context.CancelFunc {
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode)
		return func() { cancel(); _ = res.Body.Close() }
	}
	for range 2 {
		leave := open()
		require.Eventually(t, func() bool { return b.Subscribers("") == 1 }, 5*time.Second, time.Millisecond)
		assert.True(t, sweeping())
		leave()
		require.Eventually(t, func() bool { return b.Subscribers("") == 0 }, 5*time.Second, time.Millisecond,
			"the sweep ends the stream of a client that left")
		require.Eventually(t, func() bool { return !sweeping() }, 5*time.Second, time.Millisecond,
			"the sweep stops with the last stream")
	}
	leave := open()
	defer leave()
	require.Eventually(t, func() bool { return b.Subscribers("") == 1 }, 5*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, b.Shutdown(ctx))
	assert.False(t, sweeping(), "Shutdown stops the sweep")
}
