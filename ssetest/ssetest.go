// Package ssetest helps test handlers that send server-sent events: record
// a handler and get its events back, or read events from a live stream as
// they arrive. It parses with [sse.Decoder], the same parser as the rest of
// the project.
package ssetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gin-sse/sse"
)

// Parse decodes every complete event in r. An event cut off by the end of
// r is left out and reported as [io.ErrUnexpectedEOF] along with the events
// before it.
func Parse(r io.Reader, opts ...sse.DecoderOption) ([]sse.ReceivedEvent, error) {
	dec := sse.NewDecoder(r, opts...)
	var events []sse.ReceivedEvent
	for {
		ev, err := dec.Decode()
		if err == io.EOF {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
}

// ParseString decodes every complete event in s, like [Parse].
func ParseString(s string, opts ...sse.DecoderOption) ([]sse.ReceivedEvent, error) {
	return Parse(strings.NewReader(s), opts...)
}

// Recording is the result of [Record].
type Recording struct {
	// Status, Header and Body are the recorded response.
	Status int
	Header http.Header
	Body   string
	// Events are the events decoded from Body.
	Events []sse.ReceivedEvent
}

// Record serves req with h (a *gin.Engine, say) on an
// httptest.ResponseRecorder and decodes the events of the response. The
// handler must return by itself: end its stream by closing its channel, or
// give req a context that is canceled. Record reports a decoding error,
// such as an event cut off at the end, along with the recording.
func Record(h http.Handler, req *http.Request) (*Recording, error) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body := rec.Body.String()
	events, err := ParseString(body)
	return &Recording{Status: res.StatusCode, Header: res.Header, Body: body, Events: events}, err
}

// ErrNotEventStream reports a response that is not an event stream.
var ErrNotEventStream = errors.New("ssetest: response is not an event stream")

// Stream reads events from a live response as they arrive.
type Stream struct {
	// Response is the stream's response; its Body is read by Next.
	Response *http.Response
	dec      *sse.Decoder
}

// Connect sends a GET request for url with header (may be nil) and
// Accept: text/event-stream, using client (nil means
// http.DefaultClient). It fails with an error wrapping [ErrNotEventStream]
// unless the answer is 200 with Content-Type text/event-stream; the
// response is then closed.
func Connect(ctx context.Context, client *http.Client, url string, header http.Header) (*Stream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		_ = res.Body.Close()
		return nil, fmt.Errorf("%w: status %d, Content-Type %q", ErrNotEventStream, res.StatusCode, res.Header.Get("Content-Type"))
	}
	return &Stream{Response: res, dec: sse.NewDecoder(res.Body)}, nil
}

// Next blocks until the next event arrives and returns it. It returns
// [io.EOF] when the stream ended cleanly.
func (s *Stream) Next() (sse.ReceivedEvent, error) {
	return s.dec.Decode()
}

// LastEventID returns the last event ID the stream set so far.
func (s *Stream) LastEventID() string {
	return s.dec.LastEventID()
}

// Close closes the response body, which ends the stream for the server.
func (s *Stream) Close() error {
	return s.Response.Body.Close()
}
