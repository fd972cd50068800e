package sse

import (
	"context"
	"strconv"
	"testing"

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
		s, err := b.subscribe(context.Background(), topics, "", "", nil)
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
				if subs[i], err = br.subscribe(context.Background(), []string{"t"}, "", "", nil); err != nil {
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
