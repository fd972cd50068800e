package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/client"
)

// record is one event as a client or the truth saw it.
type record struct{ id, topic, data string }

// endData marks the last event of a topic.
const endData = "end"

// newBrokerServer serves b's handler on /events?topic=... .
func newBrokerServer(t *testing.T, b *sse.Broker, opts ...sse.HandlerOption) *server {
	t.Helper()
	r := gin.New()
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic"), opts...))
	s := startServer(t, r)
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	return s
}

func eventsURL(addr string, topics []string) string {
	q := url.Values{"topic": topics}
	return "http://" + addr + "/events?" + q.Encode()
}

// newTransport gives each test its own connections, closed at its end.
func newTransport(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// checkSequence compares what a client got with what it should have got
// and returns the losses and duplicates.
func checkSequence(t *testing.T, name string, want, got []record) (lost, dup int) {
	t.Helper()
	seen := make(map[string]int, len(got))
	for _, r := range got {
		seen[r.id]++
		if seen[r.id] == 2 {
			dup++
		}
	}
	for _, r := range want {
		if seen[r.id] == 0 {
			lost++
		}
	}
	if !slices.Equal(want, got) {
		i := 0
		for i < len(want) && i < len(got) && want[i] == got[i] {
			i++
		}
		t.Errorf("%s: got %d events, want %d (lost %d, duplicates %d); first difference at %d", name, len(got), len(want), lost, dup, i)
	}
	return lost, dup
}

// TestFaultsExactlyOnce runs N clients through a faulty proxy while
// publishers send M events on several topics, restarts the server midway,
// and checks that each client got exactly its topics' events, in order.
func TestFaultsExactlyOnce(t *testing.T) {
	start := time.Now()
	sc := scale()
	topics := []string{"t0", "t1", "t2", "t3"}
	nClients, nPublishers, total := 8*sc, 4, 2000*sc

	b, err := sse.NewBroker() // the defaults
	require.NoError(t, err)
	srv := newBrokerServer(t, b)
	p := newProxy(t, srv.addr, faultConfig{
		minBudget: 50, maxBudget: 6000, chunk: 97,
		delayProb: 0.05, maxDelay: 2 * time.Millisecond,
		stallProb: 0.005, maxStall: 50 * time.Millisecond,
	})
	ctx := testCtx(t, time.Duration(30+15*sc)*time.Second)

	// The truth: a Go subscription on every topic, opened before publishing.
	truthSub, err := b.Subscribe(ctx, topics, "")
	require.NoError(t, err)
	want := total + len(topics)
	truthDone := make(chan []record, 1)
	go func() {
		var recs []record
		for len(recs) < want {
			ev, err := truthSub.Next()
			if err != nil {
				break
			}
			recs = append(recs, record{ev.ID, ev.Event, fmt.Sprint(ev.Data)})
		}
		truthDone <- recs
	}()
	// Clients resume from here, so that a first connection cut before its
	// first event loses nothing either.
	startID, err := b.Publish(context.Background(), "ctl", sse.Event{Data: "start"})
	require.NoError(t, err)

	hc := newTransport(t)
	type result struct {
		topics []string
		got    []record
		opens  int
		err    error
	}
	results := make([]*result, nClients)
	var wg sync.WaitGroup
	for i := range nClients {
		var ts []string
		for len(ts) == 0 {
			for _, tp := range topics {
				if rand.IntN(2) == 0 {
					ts = append(ts, tp)
				}
			}
		}
		res := &result{topics: ts}
		results[i] = res
		c := client.New(eventsURL(p.addr(), ts),
			client.WithHTTPClient(hc),
			client.WithRetry(time.Duration(5+rand.IntN(16))*time.Millisecond),
			client.WithMaxBackoff(40*time.Millisecond),
			client.WithLastEventID(startID),
			client.OnOpen(func(*http.Response) { res.opens++ }),
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ends := map[string]bool{}
			res.err = c.Run(ctx, func(ev sse.ReceivedEvent) error {
				d := fmt.Sprint(ev.Data)
				res.got = append(res.got, record{ev.ID, ev.Event, d})
				if d == endData {
					ends[ev.Event] = true
					if len(ends) == len(ts) {
						return errDone
					}
				}
				return nil
			})
		}()
	}

	// Publishers, paced so that the run spans reconnects; the server is
	// restarted when half the events are out.
	var published atomic.Int64
	restart := make(chan struct{})
	restarted := make(chan error, 1)
	go func() {
		select {
		case <-restart:
			restarted <- srv.restart()
		case <-ctx.Done():
			restarted <- ctx.Err()
		}
	}()
	var pubWG sync.WaitGroup
	pubErrs := make(chan error, nPublishers)
	for w := range nPublishers {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			tick := time.NewTicker(500 * time.Microsecond)
			defer tick.Stop()
			for i := range total / nPublishers {
				tp := topics[rand.IntN(len(topics))]
				if _, err := b.Publish(context.Background(), tp, sse.Event{Event: tp, Data: fmt.Sprintf("p%d-%d", w, i)}); err != nil {
					pubErrs <- err
					return
				}
				if published.Add(1) == int64(total/2) {
					close(restart)
				}
				<-tick.C
			}
		}()
	}
	pubWG.Wait()
	close(pubErrs)
	for err := range pubErrs {
		require.NoError(t, err)
	}
	for _, tp := range topics {
		_, err := b.Publish(context.Background(), tp, sse.Event{Event: tp, Data: endData})
		require.NoError(t, err)
	}
	require.NoError(t, <-restarted, "restart")
	truth := <-truthDone
	require.Len(t, truth, want, "truth subscription")

	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	select {
	case <-clientsDone:
	case <-ctx.Done():
		<-clientsDone // Run returns at once on ctx.Done
	}

	checked, lost, dup, opens := 0, 0, 0, 0
	for i, res := range results {
		assert.ErrorIs(t, res.err, errDone, "client %d", i)
		var w []record
		for _, r := range truth {
			if slices.Contains(res.topics, r.topic) {
				w = append(w, r)
			}
		}
		l, d := checkSequence(t, fmt.Sprintf("client %d %v", i, res.topics), w, res.got)
		checked += len(res.got)
		lost += l
		dup += d
		opens += res.opens
	}
	assert.Zero(t, lost, "losses")
	assert.Zero(t, dup, "duplicates")
	assert.Greater(t, p.cuts.Load(), int64(nClients), "the proxy should cut connections")
	t.Logf("scale %d: %d clients, %d events published on %d topics, server restarted once", sc, nClients, total, len(topics))
	t.Logf("proxy: %d connections, %d cut (mid-stream at a random byte), %d stalls, %d delays, %d bytes forwarded; client opens %d",
		p.conns.Load(), p.cuts.Load(), p.stalls.Load(), p.delays.Load(), p.bytes.Load(), opens)
	t.Logf("events checked %d, losses %d, duplicates %d, in %v", checked, lost, dup, time.Since(start).Round(time.Millisecond))
}

// TestSlowClientCatchesUp blocks a client's callback while megabytes of
// events are published, more than the connection buffers hold, then checks
// that it gets every event on the same connection: it reads them from the
// log at its own pace.
func TestSlowClientCatchesUp(t *testing.T) {
	start := time.Now()
	b, err := sse.NewBroker() // the defaults
	require.NoError(t, err)
	srv := newBrokerServer(t, b)
	ctx := testCtx(t, 30*time.Second)

	startID, err := b.Publish(context.Background(), "ctl", sse.Event{Data: "start"})
	require.NoError(t, err)
	opened := make(chan struct{}, 64)
	release := make(chan struct{})
	var got []record
	opens := 0
	c := client.New(eventsURL(srv.addr, []string{"s"}),
		client.WithHTTPClient(newTransport(t)),
		client.WithRetry(10*time.Millisecond), client.WithMaxBackoff(40*time.Millisecond),
		client.WithLastEventID(startID),
		client.OnOpen(func(*http.Response) { opens++; opened <- struct{}{} }),
	)
	runErr := make(chan error, 1)
	go func() {
		runErr <- c.Run(ctx, func(ev sse.ReceivedEvent) error {
			d := fmt.Sprint(ev.Data)
			got = append(got, record{ev.ID, ev.Event, d})
			if len(got) == 1 {
				select { // a slow consumer: stop reading until released
				case <-release:
				case <-ctx.Done():
				}
			}
			if d == endData {
				return errDone
			}
			return nil
		})
	}()
	select {
	case <-opened:
	case <-ctx.Done():
		t.Fatal("client did not connect")
	}

	payload := strings.Repeat("x", 16<<10)
	var want []record
	publish := func(data string) {
		t.Helper()
		id, err := b.Publish(context.Background(), "s", sse.Event{Event: "s", Data: data})
		require.NoError(t, err)
		want = append(want, record{id, "s", data})
	}
	for i := range 400 { // 6.4 MB
		publish(fmt.Sprintf("%d-%s", i, payload))
	}
	close(release)
	for i := range 20 {
		publish(fmt.Sprintf("after-%d", i))
	}
	publish(endData)
	require.ErrorIs(t, <-runErr, errDone)
	lost, dup := checkSequence(t, "slow client", want, got)
	assert.Equal(t, 1, opens, "the slow client keeps its connection")
	assert.Zero(t, b.Stats().Lost)
	t.Logf("slow client: %d events of 16 KiB published while it did not read, %d connections; events checked %d, losses %d, duplicates %d, in %v",
		len(want)-21, opens, len(got), lost, dup, time.Since(start).Round(time.Millisecond))
}
