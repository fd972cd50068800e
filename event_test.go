package sse_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventEncoding(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	tests := []struct {
		name string
		ev   sse.Event
		want string
		// the data a browser rebuilds; defaults to ev.Data
		data string
	}{
		{"data only", sse.Event{Data: "hello"}, "data: hello\n\n", ""},
		{"all fields", sse.Event{ID: "7", Event: "tick", Data: "x", Retry: 1500 * time.Millisecond},
			"id: 7\nevent: tick\nretry: 1500\ndata: x\n\n", ""},
		{"empty data dispatches", sse.Event{Event: "ping", Data: ""}, "event: ping\ndata: \n\n", ""},
		{"nil data writes no data line", sse.Event{ID: "9"}, "id: 9\n\n", ""},
		{"LF", sse.Event{Data: "a\nb"}, "data: a\ndata: b\n\n", ""},
		{"CR", sse.Event{Data: "a\rb"}, "data: a\ndata: b\n\n", "a\nb"},
		{"CRLF", sse.Event{Data: "a\r\nb"}, "data: a\ndata: b\n\n", "a\nb"},
		{"CR CR LF", sse.Event{Data: "a\r\r\nb"}, "data: a\ndata: \ndata: b\n\n", "a\n\nb"},
		{"trailing LF", sse.Event{Data: "a\n"}, "data: a\ndata: \n\n", ""},
		{"only LF", sse.Event{Data: "\n"}, "data: \ndata: \n\n", ""},
		{"leading space kept", sse.Event{Data: " x"}, "data:  x\n\n", ""},
		{"colon in data", sse.Event{Data: "a: b"}, "data: a: b\n\n", ""},
		{"unicode", sse.Event{ID: "ü", Event: "日本", Data: "héllo 🌍"}, "id: ü\nevent: 日本\ndata: héllo 🌍\n\n", ""},
		{"bytes", sse.Event{Data: []byte("a\nb")}, "data: a\ndata: b\n\n", ""},
		{"raw JSON verbatim", sse.Event{Data: json.RawMessage("{\n\"a\": 1}")}, "data: {\ndata: \"a\": 1}\n\n", ""},
		{"JSON struct", sse.Event{Data: struct {
			A int    `json:"a"`
			B string `json:"b"`
		}{1, "x\ny"}}, "data: {\"a\":1,\"b\":\"x\\ny\"}\n\n", ""},
		{"JSON number", sse.Event{Data: 42}, "data: 42\n\n", ""},
		{"JSON nil pointer", sse.Event{Data: (*int)(nil)}, "data: null\n\n", ""},
		{"comment", sse.Event{Comment: "a\nb", Data: "x"}, ": a\n: b\ndata: x\n\n", ""},
		{"reset id", sse.Event{ResetID: true, Data: "x"}, "id: \ndata: x\n\n", ""},
		{"sub-millisecond retry truncates", sse.Event{Retry: 2500 * time.Microsecond, Data: "x"}, "retry: 2\ndata: x\n\n", ""},
		{"retry under 1ms is 1ms, not 0", sse.Event{Retry: 500 * time.Microsecond, Data: "x"}, "retry: 1\ndata: x\n\n", ""},
		{"CR-only lines", sse.Event{Data: "a\rb\rc\n"}, "data: a\ndata: b\ndata: c\ndata: \n\n", "a\nb\nc\n"},
		{"large", sse.Event{Data: big}, "data: " + big + "\n\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ev.AppendTo([]byte("prefix"))
			require.NoError(t, err)
			assert.Equal(t, "prefix"+tt.want, string(got))
			assert.Equal(t, tt.want, tt.ev.String())

			var buf bytes.Buffer
			n, err := tt.ev.WriteTo(&buf)
			require.NoError(t, err)
			assert.Equal(t, int64(len(tt.want)), n)
			assert.Equal(t, tt.want, buf.String())

			// What a spec-conformant parser rebuilds.
			events, err := ssetest.ParseString(tt.want, sse.WithMaxEventSize(len(tt.want)))
			require.NoError(t, err)
			if tt.ev.Data == nil {
				assert.Empty(t, events)
				return
			}
			require.Len(t, events, 1)
			want := tt.data
			if want == "" {
				switch d := tt.ev.Data.(type) {
				case string:
					want = d
				case []byte:
					want = string(d)
				case json.RawMessage:
					want = string(d)
				default:
					b, err := json.Marshal(d)
					require.NoError(t, err)
					want = string(b)
				}
			}
			assert.Equal(t, want, events[0].Data)
			assert.Equal(t, tt.ev.ID, events[0].ID)
			assert.Equal(t, tt.ev.Event, events[0].Event)
		})
	}
}

func TestEventRefusesInjection(t *testing.T) {
	tests := []struct {
		name string
		ev   sse.Event
		err  error
	}{
		{"LF in id", sse.Event{ID: "1\ndata: evil", Data: "x"}, sse.ErrInvalidEvent},
		{"CR in id", sse.Event{ID: "1\revent: evil", Data: "x"}, sse.ErrInvalidEvent},
		{"NUL in id", sse.Event{ID: "1\x00", Data: "x"}, sse.ErrInvalidEvent},
		{"LF in event", sse.Event{Event: "a\n\ndata: evil", Data: "x"}, sse.ErrInvalidEvent},
		{"CR in event", sse.Event{Event: "a\r", Data: "x"}, sse.ErrInvalidEvent},
		{"reset with id", sse.Event{ID: "1", ResetID: true, Data: "x"}, sse.ErrInvalidEvent},
		{"negative retry", sse.Event{Retry: -time.Second, Data: "x"}, sse.ErrInvalidEvent},
		{"unencodable data", sse.Event{ID: "1", Event: "e", Data: make(chan int)}, sse.ErrInvalidEvent},
		{"unencodable comment and data", sse.Event{Comment: "c", Data: func() {}}, sse.ErrInvalidEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := tt.ev.AppendTo(dst)
			require.ErrorIs(t, err, tt.err)
			assert.Equal(t, "keep", string(got), "nothing may be appended")

			var buf bytes.Buffer
			_, err = tt.ev.WriteTo(&buf)
			require.ErrorIs(t, err, tt.err)
			assert.Zero(t, buf.Len())
			assert.Contains(t, tt.ev.String(), "invalid event")
		})
	}
	// NUL is allowed in an event name and in data.
	_, err := sse.Event{Event: "a\x00", Data: "b\x00"}.AppendTo(nil)
	require.NoError(t, err)
}

func TestAppendComment(t *testing.T) {
	assert.Equal(t, ": \n", string(sse.AppendComment(nil, "")))
	assert.Equal(t, ": a\n: \n: b\n", string(sse.AppendComment(nil, "a\r\n\rb")))
	events, err := ssetest.ParseString(string(sse.AppendComment(nil, "x\ndata: evil\n\n")) + "\n")
	require.NoError(t, err)
	assert.Empty(t, events, "a comment can never become a field")
}
