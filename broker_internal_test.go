package sse

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestBroker(t testing.TB, opts ...BrokerOption) *Broker {
	t.Helper()
	b, err := NewBroker(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Shutdown(context.Background())) })
	return b
}

// sub subscribes a stream without an HTTP connection, removed at the end
// of t.
func sub(t testing.TB, b *Broker, topics []string, lastID string) (*stream, error) {
	t.Helper()
	s, lost, err := b.subscribe(context.Background(), SubscriberInfo{Topics: topics, LastEventID: lastID}, nil, nil)
	require.NoError(t, err)
	t.Cleanup(func() { b.remove(s, nil) })
	return s, lost
}

// takeAll takes every frame s has to send, reading what it replays from
// a backend as serve does.
func takeAll(s *stream) [][]byte {
	var all [][]byte
	for {
		if err := s.refill(context.Background()); err != nil {
			panic(err)
		}
		frames, _ := s.take(nil)
		if len(frames) == 0 && !s.replaying() {
			return all
		}
		all = append(all, frames...)
	}
}

// ids returns the ids of frames, "" for one without.
func ids(frames [][]byte) []string {
	var out []string
	for _, wire := range frames {
		out = append(out, idOf(wire))
	}
	return out
}

// idOf returns the id of a frame's encoding, "" for none.
func idOf(wire []byte) string {
	rest, ok := strings.CutPrefix(string(wire), "id: ")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "\n")
	return id
}

func publishN(t testing.TB, b *Broker, topic string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		id, err := b.Publish(context.Background(), topic, Event{Data: strconv.Itoa(i)})
		require.NoError(t, err)
		out = append(out, id)
	}
	return out
}

// An event published to many subscribers is encoded once: every stream
// of a topic writes the same bytes of its log, and a stream of two of its
// topics gets it once.
func TestBrokerEncodesOnce(t *testing.T) {
	b := newTestBroker(t)
	var streams []*stream
	for i := range 100 {
		topics := []string{"a"}
		if i%2 == 0 {
			topics = append(topics, "b")
		}
		s, _ := sub(t, b, topics, "")
		streams = append(streams, s)
	}
	_, err := b.PublishTopics(context.Background(), []string{"a", "b"}, Event{Event: "x", Data: map[string]int{"n": 1}})
	require.NoError(t, err)
	first := takeAll(streams[0])
	require.Len(t, first, 1)
	for _, s := range streams[1:] {
		got := takeAll(s)
		require.Len(t, got, 1, "once, even when subscribed to both topics")
		assert.Same(t, &first[0][0], &got[0][0], "the log's bytes, not a copy")
	}
}

// Streams of several topics get the events of all of them merged in
// publish order, each once.
func TestBrokerMergesTopicsInOrder(t *testing.T) {
	b := newTestBroker(t)
	s, _ := sub(t, b, []string{"a", "b", "c"}, "")
	rng := rand.New(rand.NewPCG(1, 2))
	var want []string
	for range 500 {
		topics := []string{"a", "b", "c", "d"}[:rng.IntN(4)+1]
		rng.Shuffle(len(topics), func(i, j int) { topics[i], topics[j] = topics[j], topics[i] })
		id, err := b.PublishTopics(context.Background(), topics, Event{Data: "x"})
		require.NoError(t, err)
		if slices.ContainsFunc(topics, func(t string) bool { return t != "d" }) {
			want = append(want, id)
		}
	}
	assert.Equal(t, want, ids(takeAll(s)))
}

func TestCheckTopics(t *testing.T) {
	b := &Broker{}
	shared := []string{"a", "b", "a", "c", "b"}
	got, err := b.checkTopics(shared, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c"}, got)
	assert.Equal(t, []string{"a", "b", "a", "c", "b"}, shared, "the caller's slice is left alone")
	many := make([]string, 0, 5000)
	for i := range 5000 {
		many = append(many, strconv.Itoa(i%2500))
	}
	got, err = b.checkTopics(many, 0)
	require.NoError(t, err)
	assert.Len(t, got, 2500)
	_, err = b.checkTopics(many, 64)
	assert.ErrorIs(t, err, ErrTooManyTopics)
	_, err = b.checkTopics([]string{"x", "bad\x7f"}, 0)
	assert.ErrorIs(t, err, ErrInvalidTopic)
}

// Each topic has its own history: a quiet topic's events stay while others
// are busy, and a reconnect replays exactly the missed events of its
// topics.
func TestBrokerHistoryPerTopic(t *testing.T) {
	b := newTestBroker(t, WithTopicPolicy(func(string) TopicPolicy { return TopicPolicy{MaxEvents: 100} }))
	quiet := publishN(t, b, "quiet", 1)
	for i := range 1000 {
		publishN(t, b, "busy"+strconv.Itoa(i%10), 1)
	}
	mine, err := b.Publish(context.Background(), "quiet", Event{Data: "missed"})
	require.NoError(t, err)
	s, lost := sub(t, b, []string{"quiet"}, quiet[0])
	require.NoError(t, lost)
	assert.Equal(t, []string{mine}, ids(takeAll(s)))
}

// A burst larger than the history: every stream gets the newest events it
// can, and one in-band events-lost signal for each gap, never a silent gap.
// Random burst sizes, reader speeds and limits.
func TestBrokerOverrunIsSignalled(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		policy := TopicPolicy{MaxEvents: rng.IntN(50) + 1}
		b := newTestBroker(t, WithTopicPolicy(func(string) TopicPolicy { return policy }))
		topics := [][]string{{"a"}, {"b"}, {"a", "b"}}
		type reader struct {
			s     *stream
			speed int
			got   [][]byte
		}
		var readers []*reader
		for i := range 6 {
			s, _ := sub(t, b, topics[i%3], "")
			readers = append(readers, &reader{s: s, speed: rng.IntN(40) + 1})
		}
		type event struct {
			id     string
			topics []string
		}
		var published []event
		for range rng.IntN(20) + 5 {
			for range rng.IntN(200) {
				tp := topics[rng.IntN(3)]
				id, err := b.PublishTopics(context.Background(), tp, Event{Data: "x"})
				require.NoError(t, err)
				published = append(published, event{id, tp})
			}
			for _, r := range readers {
				for range r.speed {
					frames, _ := r.s.take(nil)
					r.got = append(r.got, frames...)
					if len(frames) == 0 {
						break
					}
				}
			}
		}
		for i, r := range readers {
			r.got = append(r.got, takeAll(r.s)...)
			var want []string // the ids of the events of its topics
			for _, ev := range published {
				if slices.ContainsFunc(ev.topics, func(t string) bool { return slices.Contains(r.s.info.Topics, t) }) {
					want = append(want, ev.id)
				}
			}
			next := 0 // index in want of the next event expected
			lostBefore := false
			for _, wire := range r.got {
				if strings.Contains(string(wire), "event: "+LostEventName+"\n") { // the signal
					require.False(t, lostBefore, "seed %d reader %d: two signals in a row", seed, i)
					lostBefore = true
					continue
				}
				id := idOf(wire)
				k := slices.Index(want, id)
				require.GreaterOrEqual(t, k, next, "seed %d reader %d: %s out of order or twice", seed, i, id)
				if k > next {
					require.True(t, lostBefore, "seed %d reader %d: silent gap before %s", seed, i, id)
				}
				lostBefore = false
				next = k + 1
			}
			require.Equal(t, len(want), next, "seed %d reader %d: the newest event arrives", seed, i)
		}
	}
}

// A latest-only topic keeps one event; a reader that fell behind skips to
// it without a loss signal.
func TestBrokerLatestOnly(t *testing.T) {
	b := newTestBroker(t, WithTopicPolicy(func(t string) TopicPolicy { return TopicPolicy{LatestOnly: t == "count"} }))
	s, _ := sub(t, b, []string{"count"}, "")
	got := publishN(t, b, "count", 10)
	assert.Equal(t, got[9:], ids(takeAll(s)))
	assert.Equal(t, 1, b.Stats().RetainedEvents)

	// Its chunks stay as small as what it keeps, and so does the broker's
	// list of entries behind an older event of another topic, without an
	// age limit to trim it.
	for _, br := range []*Broker{b, newTestBroker(t, WithRetention(1<<20, 0),
		WithTopicPolicy(func(t string) TopicPolicy { return TopicPolicy{LatestOnly: t == "count"} }))} {
		publishN(t, br, "other", 1)
		publishN(t, br, "count", 10_000)
		st := br.Stats()
		assert.Equal(t, 2, st.RetainedEvents)
		assert.LessOrEqual(t, st.RetainedBytes, 2*(2*minChunk+entryOverhead))
		br.mu.Lock()
		assert.LessOrEqual(t, br.all.n, 2*br.count+64)
		br.mu.Unlock()
	}
}

// The history is bounded by bytes and by age, over all topics.
func TestBrokerRetention(t *testing.T) {
	b := newTestBroker(t, WithRetention(10_000, 0))
	for i := range 1000 {
		_, err := b.Publish(context.Background(), "t"+strconv.Itoa(i%7), Event{Data: strings.Repeat("x", 100)})
		require.NoError(t, err)
	}
	st := b.Stats()
	assert.LessOrEqual(t, st.RetainedBytes, 10_000)
	assert.Greater(t, st.RetainedBytes, 9_000)

	aged := newTestBroker(t, WithRetention(0, 50*time.Millisecond))
	publishN(t, aged, "a", 5)
	publishN(t, aged, "b", 5)
	assert.Equal(t, 10, aged.Stats().RetainedEvents)
	require.Eventually(t, func() bool {
		st := aged.Stats()
		return st.RetainedEvents == 1 && st.Topics == 1
	}, 5*time.Second, 5*time.Millisecond, "old events go without new publishes; the newest stays; empty logs are freed")
}

// A topic's log goes once it has neither events nor subscribers; a crowd
// that leaves leaves nothing behind.
func TestBrokerFreesTopics(t *testing.T) {
	b := newTestBroker(t, WithRetention(1, 0)) // keeps the newest event only
	var streams []*stream
	for i := range 1000 {
		s, _, err := b.subscribe(context.Background(), SubscriberInfo{Topics: []string{"u" + strconv.Itoa(i)}}, nil, nil)
		require.NoError(t, err)
		take, _ := s.take(nil) // parks it
		require.Empty(t, take)
		streams = append(streams, s)
	}
	assert.Equal(t, 1000, b.Stats().Topics)
	for _, s := range streams {
		b.remove(s, nil)
	}
	publishN(t, b, "other", 2)
	b.mu.Lock()
	defer b.mu.Unlock()
	assert.Equal(t, []string{"other"}, slices.Collect(func(yield func(string) bool) {
		for k := range b.logs {
			yield(k)
		}
	}))
	assert.Empty(t, b.subs)
}

// A subscribe hook may reorder the Topics it is given without harm to the
// broker.
func TestBrokerHookReordersTopics(t *testing.T) {
	b := newTestBroker(t, WithOnSubscribe(func(i SubscriberInfo) { slices.Reverse(i.Topics) }))
	s, _ := sub(t, b, []string{"a", "b"}, "")
	a, err := b.Publish(context.Background(), "a", Event{Data: "1"})
	require.NoError(t, err)
	bb, err := b.Publish(context.Background(), "b", Event{Data: "2"})
	require.NoError(t, err)
	assert.Equal(t, []string{a, bb}, ids(takeAll(s)))
}

// The signal's data names the reason and the client's last id.
func TestLostFrame(t *testing.T) {
	f := lostFrame(fmt.Errorf("%w: x", ErrHistoryExpired), "7", "9")
	body, _ := strings.CutPrefix(string(f.wire), "id: 9\nevent: events-lost\ndata: ")
	var data map[string]string
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(body)), &data))
	assert.Equal(t, map[string]string{"reason": "expired", "lastEventId": "7"}, data)
}

func TestSizeHintIsAnUpperBound(t *testing.T) {
	for _, ev := range []Event{
		{Data: ""},
		{ID: "1", Event: "e", Data: "a\nb\r\nc\rd", Retry: time.Second, Comment: "x\ny"},
		{Data: []byte(strings.Repeat("\r", 100))},
		{Data: strings.Repeat("a\n", 100)},
	} {
		b, err := ev.AppendTo(nil)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, ev.sizeHint(), len(b), "%q", b)
	}
}

// BenchmarkBrokerPublish measures one publish to a topic with N parked
// subscribers, and their taking it (the writes are measured in bench/).
func BenchmarkBrokerPublish(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(strconv.Itoa(n)+"subs", func(b *testing.B) {
			br := newTestBroker(b)
			streams := make([]*stream, n)
			for i := range streams {
				streams[i], _ = sub(b, br, []string{"t"}, "")
			}
			ev := Event{Event: "update", Data: "The quick brown fox jumps over the lazy dog."}
			var frames [][]byte
			b.ReportAllocs()
			for b.Loop() {
				if _, err := br.Publish(context.Background(), "t", ev); err != nil {
					b.Fatal(err)
				}
				for _, s := range streams {
					frames, _ = s.take(frames[:0])
					frames, _ = s.take(frames[:0]) // parks it
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// BenchmarkBrokerReplay measures a reconnect that replays the 100 events
// it missed, as in a reconnect storm.
func BenchmarkBrokerReplay(b *testing.B) {
	br := newTestBroker(b)
	ids := publishN(b, br, "t", 1000)
	b.ReportAllocs()
	for b.Loop() {
		s, _, err := br.subscribe(context.Background(), SubscriberInfo{Topics: []string{"t"}, LastEventID: ids[899]}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if got := takeAll(s); len(got) != 100 {
			b.Fatal(len(got))
		}
		br.remove(s, nil)
	}
}

// BenchmarkBrokerBurst measures bench/'s scenario (d) in process: a fresh
// broker with its default options and one subscriber, 200,000 small events
// published as fast as possible, which the subscriber takes in batches.
// The history keeps them all, so its growth and the collector's work on it
// are part of the cost.
func BenchmarkBrokerBurst(b *testing.B) {
	const events = 200_000
	data := []byte("12345 1700000000000000000 xxxxx")
	var frames [][]byte
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		runtime.GC() // as in a fresh process
		br, err := NewBroker()
		if err != nil {
			b.Fatal(err)
		}
		s, _, err := br.subscribe(context.Background(), SubscriberInfo{Topics: []string{"t"}}, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for i := range events {
			if _, err := br.Publish(context.Background(), "t", Event{Data: data}); err != nil {
				b.Fatal(err)
			}
			if i%256 == 255 {
				for {
					frames, _ = s.take(frames[:0])
					if len(frames) == 0 {
						break
					}
				}
			}
		}
		b.StopTimer()
		br.remove(s, nil)
		if err := br.Shutdown(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}
