package faults

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gin-sse/sse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readStream reads events from url until it has n, and returns their ids
// and data in order, and how many connections that took (always one: the
// reader never reconnects).
func readStream(ctx context.Context, hc *http.Client, url string, n int, ready chan<- struct{}) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	ready <- struct{}{}
	dec := sse.NewDecoder(bufio.NewReaderSize(res.Body, 64<<10))
	data := make([]string, 0, n)
	for len(data) < n {
		ev, err := dec.Decode()
		if err != nil {
			return data, fmt.Errorf("after %d events: %w", len(data), err)
		}
		if ev.Event == sse.LostEventName {
			return data, fmt.Errorf("after %d events: %s", len(data), ev.Data)
		}
		data = append(data, ev.Data)
	}
	return data, nil
}

// A burst of 20,000 events published in a loop, with the default options,
// reaches each of 1, 10 and 100 subscribers in full, in order, on its one
// connection.
func TestBurstReachesEverySubscriber(t *testing.T) {
	const events = 20000
	for _, subs := range []int{1, 10, 100} {
		t.Run(strconv.Itoa(subs), func(t *testing.T) {
			b, err := sse.NewBroker()
			require.NoError(t, err)
			srv := newBrokerServer(t, b)
			ctx := testCtx(t, 60*time.Second)
			hc := newTransport(t)
			ready := make(chan struct{}, subs)
			results := make([][]string, subs)
			errs := make([]error, subs)
			var wg sync.WaitGroup
			for i := range subs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], errs[i] = readStream(ctx, hc, eventsURL(srv.addr, []string{"burst"}), events, ready)
				}()
			}
			for range subs {
				select {
				case <-ready:
				case <-ctx.Done():
					t.Fatal("subscribers did not connect")
				}
			}
			start := time.Now()
			for i := range events {
				_, err := b.Publish(ctx, "burst", sse.Event{Data: strconv.Itoa(i)})
				require.NoError(t, err)
			}
			wg.Wait()
			for i := range subs {
				require.NoError(t, errs[i], "subscriber %d", i)
				for k, d := range results[i] {
					if d != strconv.Itoa(k) {
						t.Fatalf("subscriber %d: event %d is %q", i, k, d)
					}
				}
			}
			st := b.Stats()
			assert.Zero(t, st.Lost)
			t.Logf("%d subscribers × %d events: all delivered on one connection each in %v", subs, events, time.Since(start).Round(time.Millisecond))
		})
	}
}

// A client away while 10,000 events go to its topic (ten seconds at 1,000
// events/s), and a quiet user among 10,000 one-user topics while 100,000
// events go to the others, get exactly what they missed on reconnecting.
func TestReconnectGetsWhatItMissed(t *testing.T) {
	b, err := sse.NewBroker()
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	ctx := testCtx(t, 30*time.Second)

	last, err := b.Publish(ctx, "feed", sse.Event{Data: "seen"})
	require.NoError(t, err)
	var want []string
	for i := range 10000 {
		id, err := b.Publish(ctx, "feed", sse.Event{Data: strconv.Itoa(i)})
		require.NoError(t, err)
		want = append(want, id)
	}
	s, err := b.Subscribe(ctx, []string{"feed"}, last)
	require.NoError(t, err)
	require.NoError(t, s.Lost())
	for _, id := range want {
		ev, err := s.Next()
		require.NoError(t, err)
		require.Equal(t, id, ev.ID)
	}
	s.Close()

	quietLast, err := b.Publish(ctx, "user:quiet", sse.Event{Data: "seen"})
	require.NoError(t, err)
	var missed []string
	for i := range 100000 {
		topic := "user:" + strconv.Itoa(i%10000)
		if i%25000 == 0 {
			id, err := b.Publish(ctx, "user:quiet", sse.Event{Data: "for you"})
			require.NoError(t, err)
			missed = append(missed, id)
		}
		_, err := b.Publish(ctx, topic, sse.Event{Data: "x"})
		require.NoError(t, err)
	}
	q, err := b.Subscribe(ctx, []string{"user:quiet"}, quietLast)
	require.NoError(t, err)
	defer q.Close()
	require.NoError(t, q.Lost())
	for _, id := range missed {
		ev, err := q.Next()
		require.NoError(t, err)
		require.Equal(t, sse.ReceivedEvent{ID: id, Data: "for you"}, ev)
	}
	more, err := b.Publish(ctx, "user:quiet", sse.Event{Data: "live"})
	require.NoError(t, err)
	ev, err := q.Next()
	require.NoError(t, err)
	assert.Equal(t, more, ev.ID, "then the live events, with nothing in between")
}
