package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/client"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bodyTransport answers every request with body as an event stream, one
// byte per read when oneByte is set.
type bodyTransport struct {
	body    []byte
	oneByte bool
}

func (t bodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var r io.Reader = bytes.NewReader(t.body)
	if t.oneByte {
		r = iotest.OneByteReader(r)
	}
	return &http.Response{
		StatusCode: http.StatusOK,
		Status:     "200 OK",
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       io.NopCloser(r),
		Request:    req,
	}, nil
}

// FuzzClient serves arbitrary bytes as an event stream to a one-shot
// client, from the start or resuming with a last event ID. It must not panic or hang, must deliver exactly the events the
// decoder finds, and must end with nil, io.ErrUnexpectedEOF or
// sse.ErrEventTooLarge.
func FuzzClient(f *testing.F) {
	for _, s := range []string{
		"", "data: x\n\n", "id: 1\nevent: e\ndata: a\ndata: b\n\n",
		"\xEF\xBB\xBFdata: bom\r\n\r\n", "retry: 10\ndata\n\n", "id: a\x00b\ndata: nul\n\n",
		": comment\n\ndata: cut", "data:\r\rdata: cr\r\r", "id\ndata: reset\n\n",
	} {
		f.Add([]byte(s), false, false)
		f.Add([]byte(s), true, true)
	}
	const maxSize = 256
	f.Fuzz(func(t *testing.T, body []byte, oneByte, resume bool) {
		stream, opts := body, []client.Option(nil)
		if resume { // resuming: the last event ID "L" holds until the stream sets one
			stream = append([]byte("id: L\n\n"), bytes.TrimPrefix(body, []byte("\xEF\xBB\xBF"))...)
			opts = append(opts, client.WithLastEventID("L"))
		}
		want, wantErr := ssetest.Parse(bytes.NewReader(stream), sse.WithMaxEventSize(maxSize))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := client.New("http://fuzz.invalid/events", append(opts, client.WithoutReconnect(),
			client.WithMaxEventSize(maxSize),
			client.WithHTTPClient(&http.Client{Transport: bodyTransport{body, oneByte}}))...)
		var got []sse.ReceivedEvent
		err := c.Run(ctx, func(ev sse.ReceivedEvent) error {
			got = append(got, ev)
			return nil
		})
		require.NoError(t, ctx.Err(), "client hung")
		switch {
		case err == nil:
			assert.NoError(t, wantErr)
		case errors.Is(err, io.ErrUnexpectedEOF):
			assert.ErrorIs(t, wantErr, io.ErrUnexpectedEOF)
		case errors.Is(err, sse.ErrEventTooLarge):
			assert.ErrorIs(t, wantErr, sse.ErrEventTooLarge)
		default:
			t.Fatalf("undocumented error: %v", err)
		}
		assert.Equal(t, want, got)
	})
}
