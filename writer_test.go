package sse_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noFlushWriter is a ResponseWriter that cannot flush.
type noFlushWriter struct {
	header http.Header
	body   []byte
	status int
}

func (w *noFlushWriter) Header() http.Header {
	if w.header == nil {
		w.header = http.Header{}
	}
	return w.header
}
func (w *noFlushWriter) Write(p []byte) (int, error) {
	w.body = append(w.body, p...)
	return len(p), nil
}
func (w *noFlushWriter) WriteHeader(code int) { w.status = code }

// failingWriter fails every write.
type failingWriter struct{ httptest.ResponseRecorder }

var errBrokenPipe = errors.New("broken pipe")

func (w *failingWriter) Write([]byte) (int, error) { return 0, errBrokenPipe }

func TestWriterOnRecorder(t *testing.T) {
	rec := httptest.NewRecorder()
	w := sse.NewWriter(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.NoError(t, w.Send(sse.Event{ID: "1", Event: "a", Data: "x"}))
	assert.True(t, rec.Flushed)
	require.NoError(t, w.Comment("hi"))
	require.NoError(t, w.Send(sse.Event{Data: map[string]int{"n": 2}}))

	res := rec.Result()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/event-stream; charset=utf-8", res.Header.Get("Content-Type"))
	assert.Equal(t, "no-cache, no-transform", res.Header.Get("Cache-Control"))
	assert.Equal(t, "no", res.Header.Get("X-Accel-Buffering"))
	assert.Equal(t, "keep-alive", res.Header.Get("Connection"))
	want := "id: 1\nevent: a\ndata: x\n\n: hi\ndata: {\"n\":2}\n\n"
	assert.Equal(t, want, rec.Body.String())
	assert.Equal(t, int64(2), w.Events())
	assert.Equal(t, int64(len(want)), w.Bytes())
	assert.NoError(t, w.Err())
}

func TestWriterInvalidEventWritesNothing(t *testing.T) {
	rec := httptest.NewRecorder()
	w := sse.NewWriter(rec, nil)
	require.NoError(t, w.Send(sse.Event{Data: "a"}))
	before := rec.Body.String()
	for _, ev := range []sse.Event{{ID: "x\ny", Data: "b"}, {Event: "\r", Data: "b"}, {Data: make(chan int)}} {
		assert.Error(t, w.Send(ev))
	}
	assert.Equal(t, before, rec.Body.String())
	assert.Equal(t, int64(1), w.Events())
	require.NoError(t, w.Send(sse.Event{Data: "c"}), "an invalid event does not end the stream")
	events, err := ssetest.ParseString(rec.Body.String())
	require.NoError(t, err)
	require.Len(t, events, 2)
	assert.Equal(t, "c", events[1].Data)
}

func TestWriterCannotFlush(t *testing.T) {
	nf := &noFlushWriter{}
	w := sse.NewWriter(nf, nil)
	require.ErrorIs(t, w.Send(sse.Event{Data: "x"}), sse.ErrNoFlusher)
	require.ErrorIs(t, w.Flush(), sse.ErrNoFlusher)
	assert.Empty(t, nf.body, "nothing may reach a writer that cannot flush")
	assert.Empty(t, nf.header)
	assert.Zero(t, nf.status)
}

func TestWriterAfterClientGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rec := httptest.NewRecorder()
	w := sse.NewWriter(rec, httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx))
	require.NoError(t, w.Send(sse.Event{Data: "a"}))
	n := rec.Body.Len()
	cancel()
	err := w.Send(sse.Event{Data: "b"})
	require.ErrorIs(t, err, sse.ErrClientGone)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, w.Comment("c"), sse.ErrClientGone)
	assert.ErrorIs(t, w.Err(), sse.ErrClientGone)
	assert.Equal(t, n, rec.Body.Len())
}

func TestWriterWriteFailureIsFinal(t *testing.T) {
	fw := &failingWriter{ResponseRecorder: *httptest.NewRecorder()}
	w := sse.NewWriter(fw, nil)
	err := w.Send(sse.Event{Data: "a"})
	require.ErrorIs(t, err, sse.ErrWriteFailed)
	require.ErrorIs(t, err, errBrokenPipe)
	assert.Equal(t, err, w.Send(sse.Event{Data: "b"}))
	assert.Equal(t, err, w.Err())
	assert.Zero(t, w.Events())
}

func TestWriterConcurrentSends(t *testing.T) {
	rec := httptest.NewRecorder()
	w := sse.NewWriter(rec, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				assert.NoError(t, w.Send(sse.Event{Event: "g", Data: []byte{byte('a' + g), byte('0' + i%10)}}))
			}
		}()
	}
	wg.Wait()
	events, err := ssetest.ParseString(rec.Body.String())
	require.NoError(t, err)
	assert.Len(t, events, 400, "events never interleave")
	assert.Equal(t, int64(400), w.Events())
}
