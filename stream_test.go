package sse_test

import (
	"bufio"
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitErr receives the handler's result, failing after a generous guard.
func waitErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not return")
		return nil
	}
}

// connect opens GET url as an event stream for the test's lifetime.
func connect(t *testing.T, url string) *ssetest.Stream {
	t.Helper()
	return connectWith(t, url, nil)
}

func TestStreamFlushesEachEvent(t *testing.T) {
	ch := make(chan string)
	result := make(chan error, 1)
	srv := httptest.NewServer(engine(sse.Middleware(), func(c *gin.Context) {
		result <- sse.Stream(c, ch, sse.WithEventName("n"))
	}))
	defer srv.Close()

	s := connect(t, srv.URL+"/events")
	for _, v := range []string{"one", "two\nlines", "three"} {
		ch <- v
		ev, err := s.Next() // arrives while the handler is still running
		require.NoError(t, err)
		assert.Equal(t, sse.ReceivedEvent{Event: "n", Data: v}, ev)
	}
	close(ch)
	require.NoError(t, waitErr(t, result))
	_, err := s.Next()
	assert.ErrorIs(t, err, io.EOF)
}

type reading struct {
	Room string  `json:"room"`
	Temp float64 `json:"temp"`
	Seq  int     `json:"-"`
}

func (r reading) EventName() string { return r.Room }
func (r reading) EventID() string   { return strings.Repeat("i", r.Seq) }

func TestStreamTypedValues(t *testing.T) {
	t.Run("EventNamer and EventIDer", func(t *testing.T) {
		ch := make(chan reading, 2)
		ch <- reading{Room: "kitchen", Temp: 21.5, Seq: 1}
		ch <- reading{Room: "bedroom", Temp: 19, Seq: 2}
		close(ch)
		r := engine(sse.Middleware(), func(c *gin.Context) { assert.NoError(t, sse.Stream(c, ch)) })
		rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
		require.NoError(t, err)
		assert.Equal(t, []sse.ReceivedEvent{
			{ID: "i", Event: "kitchen", Data: `{"room":"kitchen","temp":21.5}`},
			{ID: "ii", Event: "bedroom", Data: `{"room":"bedroom","temp":19}`},
		}, rec.Events)
	})
	t.Run("plain values as JSON with a fixed name", func(t *testing.T) {
		ch := make(chan map[string]int, 1)
		ch <- map[string]int{"n": 1}
		close(ch)
		r := engine(sse.Middleware(), func(c *gin.Context) {
			assert.NoError(t, sse.Stream(c, ch, sse.WithEventName("count")))
		})
		rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
		require.NoError(t, err)
		assert.Equal(t, []sse.ReceivedEvent{{Event: "count", Data: `{"n":1}`}}, rec.Events)
	})
	t.Run("events as they are", func(t *testing.T) {
		ch := make(chan sse.Event, 2)
		ch <- sse.Event{ID: "1", Event: "a", Data: "x"}
		ch <- sse.Event{Data: 3}
		close(ch)
		r := engine(sse.Middleware(), func(c *gin.Context) {
			assert.NoError(t, sse.Stream(c, ch, sse.WithEventName("ignored")))
		})
		rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
		require.NoError(t, err)
		assert.Equal(t, []sse.ReceivedEvent{{ID: "1", Event: "a", Data: "x"}, {ID: "1", Data: "3"}}, rec.Events)
	})
}

func TestStreamInvalidValueEndsWithError(t *testing.T) {
	ch := make(chan sse.Event, 3)
	ch <- sse.Event{Data: "ok"}
	ch <- sse.Event{ID: "bad\nid", Data: "x"}
	ch <- sse.Event{Data: "never"}
	var err error
	r := engine(sse.Middleware(), func(c *gin.Context) { err = sse.Stream(c, ch) })
	rec, rerr := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
	require.NoError(t, rerr)
	require.ErrorIs(t, err, sse.ErrInvalidEvent)
	assert.Equal(t, []sse.ReceivedEvent{{Data: "ok"}}, rec.Events)
	assert.NotContains(t, rec.Body, "bad")
}

func TestStreamHeartbeat(t *testing.T) {
	ch := make(chan int) // stays idle
	result := make(chan error, 1)
	srv := httptest.NewServer(engine(sse.Middleware(sse.WithHeartbeat(20*time.Millisecond)), func(c *gin.Context) {
		result <- sse.Stream(c, ch)
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	var lines []string
	for len(lines) < 3 {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if line != "\n" {
			lines = append(lines, line)
		}
	}
	assert.Equal(t, []string{": ok\n", ": heartbeat\n", ": heartbeat\n"}, lines)
	cancel()
	assert.ErrorIs(t, waitErr(t, result), sse.ErrClientGone)
}

func TestStreamHeartbeatEvent(t *testing.T) {
	ch := make(chan int) // stays idle
	result := make(chan error, 1)
	ping := sse.Event{Event: "ping", Data: `{"type": "ping"}`}
	srv := httptest.NewServer(engine(sse.Middleware(sse.WithHeartbeat(20*time.Millisecond)), func(c *gin.Context) {
		result <- sse.Stream(c, ch, sse.WithHeartbeatEvent(ping))
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	dec := sse.NewDecoder(res.Body)
	for range 2 {
		ev, err := dec.Decode()
		require.NoError(t, err)
		assert.Equal(t, sse.ReceivedEvent{Event: "ping", Data: `{"type": "ping"}`}, ev)
	}
	cancel()
	assert.ErrorIs(t, waitErr(t, result), sse.ErrClientGone)
}

// An invalid heartbeat event is an error before Stream writes anything: a
// handler of a request with a body (whose headers wait for the first
// write) can still answer with a status of its own.
func TestStreamInvalidHeartbeatEvent(t *testing.T) {
	for name, ev := range map[string]sse.Event{
		"name with a line break": {Event: "ping\ndata: injected"},
		"data that is not JSON":  {Event: "ping", Data: func() {}},
	} {
		t.Run(name, func(t *testing.T) {
			result := make(chan error, 1)
			r := gin.New()
			r.POST("/events", sse.Middleware(), func(c *gin.Context) {
				err := sse.Stream(c, make(chan int), sse.WithHeartbeatEvent(ev))
				result <- err
				c.String(http.StatusInternalServerError, "no stream")
			})
			srv := httptest.NewServer(r)
			defer srv.Close()
			res, err := http.Post(srv.URL+"/events", "application/json", strings.NewReader("{}"))
			require.NoError(t, err)
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			assert.ErrorIs(t, waitErr(t, result), sse.ErrInvalidEvent)
			assert.Equal(t, http.StatusInternalServerError, res.StatusCode)
			assert.Equal(t, "no stream", string(body))
		})
	}
}

func TestStreamDoneEndsStream(t *testing.T) {
	shutdown := make(chan struct{})
	ch := make(chan int)
	result := make(chan error, 1)
	srv := httptest.NewServer(engine(sse.Middleware(sse.WithDone(shutdown)), func(c *gin.Context) {
		result <- sse.Stream(c, ch)
	}))
	defer srv.Close()

	s := connect(t, srv.URL+"/events")
	close(shutdown)
	require.NoError(t, waitErr(t, result))
	_, err := s.Next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestStreamSeq(t *testing.T) {
	words := []string{"Hello", ",", " world"}
	r := engine(sse.Middleware(), func(c *gin.Context) {
		assert.NoError(t, sse.StreamSeq(c, slices.Values(words), sse.WithEventName("token")))
	})
	rec, err := ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
	require.NoError(t, err)
	require.Len(t, rec.Events, 3)
	for i, ev := range rec.Events {
		assert.Equal(t, sse.ReceivedEvent{Event: "token", Data: words[i]}, ev)
	}

	// A client that left stops the sequence.
	ctx, cancel := context.WithCancel(context.Background())
	pulled := 0
	seq := func(yield func(int) bool) {
		for i := 0; ; i++ {
			pulled++
			if i == 2 {
				cancel()
			}
			if !yield(i) {
				return
			}
		}
	}
	var serr error
	r = engine(sse.Middleware(), func(c *gin.Context) { serr = sse.StreamSeq(c, seq) })
	rec, err = ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil).WithContext(ctx))
	require.NoError(t, err)
	assert.ErrorIs(t, serr, sse.ErrClientGone)
	// The sequence runs ahead by at most one value: the one it was
	// yielding when the client left.
	assert.GreaterOrEqual(t, pulled, 3)
	assert.LessOrEqual(t, pulled, 4)
	// Value 1 was taken before the client left, and may or may not have
	// been written by then; nothing after it is.
	require.NotEmpty(t, rec.Events)
	assert.LessOrEqual(t, len(rec.Events), 2)
	for i, ev := range rec.Events {
		assert.Equal(t, strconv.Itoa(i), ev.Data)
	}

	// Keys of a map, say, work as well.
	r = engine(func(c *gin.Context) {
		assert.NoError(t, sse.StreamSeq(c, maps.Keys(map[string]bool{"k": true})))
	})
	rec, err = ssetest.Record(r, httptest.NewRequest(http.MethodGet, "/events", nil))
	require.NoError(t, err)
	assert.Equal(t, []sse.ReceivedEvent{{Data: "k"}}, rec.Events)
}

// The helpers work on a bare gin.CreateTestContext, without the middleware:
// they set the headers with the first write.
func TestHelpersWithoutMiddleware(t *testing.T) {
	rec := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(rec)
	require.NoError(t, sse.SSEvent(c, "progress", 42))
	require.NoError(t, sse.Send(c, sse.Event{ID: "2", Data: []byte("raw")}))
	require.NoError(t, sse.Comment(c, "note"))
	require.NoError(t, sse.SSEvent(c, "", map[string]string{"a": "b"}))

	assert.Equal(t, "text/event-stream; charset=utf-8", rec.Header().Get("Content-Type"))
	assert.True(t, rec.Flushed)
	assert.Equal(t, "event: progress\ndata: 42\n\nid: 2\ndata: raw\n\n: note\ndata: {\"a\":\"b\"}\n\n", rec.Body.String())
	assert.Equal(t, int64(3), sse.WriterFrom(c).Events())

	err := sse.SSEvent(c, "bad\nname", 1)
	assert.ErrorIs(t, err, sse.ErrInvalidEvent)
	assert.ErrorIs(t, sse.SSEvent(c, "", func() {}), sse.ErrInvalidEvent)
}

// gin's own c.Stream needs CloseNotify, which panics on a recorder; ours
// runs there and ends when the channel closes.
func TestStreamOnTestContext(t *testing.T) {
	rec := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(rec)
	ch := make(chan int, 2)
	ch <- 1
	ch <- 2
	close(ch)
	require.NoError(t, sse.Stream(c, ch))
	events, err := ssetest.ParseString(rec.Body.String())
	require.NoError(t, err)
	assert.Equal(t, []sse.ReceivedEvent{{Data: "1"}, {Data: "2"}}, events)
}
