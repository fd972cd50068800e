package sse_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gin-sse/sse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decodeAll decodes r to its end and returns the events and the final error.
func decodeAll(r io.Reader, opts ...sse.DecoderOption) ([]sse.ReceivedEvent, error) {
	dec := sse.NewDecoder(r, opts...)
	var events []sse.ReceivedEvent
	for {
		ev, err := dec.Decode()
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
}

func TestDecoder(t *testing.T) {
	ev := func(id, name, data string) sse.ReceivedEvent {
		return sse.ReceivedEvent{ID: id, Event: name, Data: data}
	}
	tests := []struct {
		name   string
		stream string
		want   []sse.ReceivedEvent
		end    error
	}{
		{"spec example: space optional", "data: test\n\ndata:test\n\n", []sse.ReceivedEvent{ev("", "", "test"), ev("", "", "test")}, io.EOF},
		{"spec example: field without colon", "data\n\ndata\ndata\n\ndata:", []sse.ReceivedEvent{ev("", "", ""), ev("", "", "\n")}, io.ErrUnexpectedEOF},
		{"multi-line data joined with LF", "data: YHOO\ndata: +2\ndata: 10\n\n", []sse.ReceivedEvent{ev("", "", "YHOO\n+2\n10")}, io.EOF},
		{"CR line ends", "event: a\rdata: 1\r\r", []sse.ReceivedEvent{ev("", "a", "1")}, io.EOF},
		{"CRLF line ends", "id: 5\r\ndata: 1\r\n\r\n", []sse.ReceivedEvent{ev("5", "", "1")}, io.EOF},
		{"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", []sse.ReceivedEvent{ev("", "", "a\nb\nc")}, io.EOF},
		{"BOM skipped once", "\xEF\xBB\xBFdata: x\n\n", []sse.ReceivedEvent{ev("", "", "x")}, io.EOF},
		{"second BOM is part of the field name", "\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n", nil, io.EOF},
		{"comments ignored", ": hi\ndata: x\n:\n\n", []sse.ReceivedEvent{ev("", "", "x")}, io.EOF},
		{"only one space stripped", "data:  x\n\n", []sse.ReceivedEvent{ev("", "", " x")}, io.EOF},
		{"unknown fields ignored", "foo: bar\ndata: x\n\n", []sse.ReceivedEvent{ev("", "", "x")}, io.EOF},
		{"no dispatch without data", "event: a\nid: 3\n\ndata: x\n\n", []sse.ReceivedEvent{ev("3", "", "x")}, io.EOF},
		{"id persists", "id: 1\ndata: a\n\ndata: b\n\n", []sse.ReceivedEvent{ev("1", "", "a"), ev("1", "", "b")}, io.EOF},
		{"empty id resets", "id: 1\ndata: a\n\nid\ndata: b\n\n", []sse.ReceivedEvent{ev("1", "", "a"), ev("", "", "b")}, io.EOF},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n", []sse.ReceivedEvent{ev("1", "", "a"), ev("1", "", "b")}, io.EOF},
		{"event name reset after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n", []sse.ReceivedEvent{ev("", "a", "1"), ev("", "", "2")}, io.EOF},
		{"incomplete event discarded", "data: a\n\ndata: b\n", []sse.ReceivedEvent{ev("", "", "a")}, io.ErrUnexpectedEOF},
		{"empty stream", "", nil, io.EOF},
		{"data with colon", "data: a:b\n\n", []sse.ReceivedEvent{ev("", "", "a:b")}, io.EOF},
		{"NUL and invalid UTF-8 pass through", "data: a\x00\xff\n\n", []sse.ReceivedEvent{ev("", "", "a\x00\xff")}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tt.stream), iotest.OneByteReader(strings.NewReader(tt.stream)), iotest.HalfReader(strings.NewReader(tt.stream))} {
				got, err := decodeAll(r)
				assert.Equal(t, tt.want, got)
				assert.ErrorIs(t, err, tt.end)
			}
		})
	}
}

func TestDecoderRetry(t *testing.T) {
	tests := []struct {
		stream string
		want   time.Duration
		ok     bool
	}{
		{"retry: 2500\ndata: x\n\n", 2500 * time.Millisecond, true},
		{"retry:0\ndata: x\n\n", 0, true},
		{"retry: 12a\ndata: x\n\n", 0, false},
		{"retry: -1\ndata: x\n\n", 0, false},
		{"retry: \ndata: x\n\n", 0, false},
		{"retry:  5\ndata: x\n\n", 0, false},
		{"retry: 99999999999999999999\ndata: x\n\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.stream, func(t *testing.T) {
			dec := sse.NewDecoder(strings.NewReader(tt.stream))
			ev, err := dec.Decode()
			require.NoError(t, err)
			assert.Equal(t, tt.want, ev.Retry)
			got, ok := dec.Retry()
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
	// A retry field applies even in a block that dispatches nothing, and
	// is reported only on the event whose lines held it.
	dec := sse.NewDecoder(strings.NewReader("retry: 10\n\ndata: a\n\n"))
	ev, err := dec.Decode()
	require.NoError(t, err)
	assert.Zero(t, ev.Retry)
	got, ok := dec.Retry()
	assert.True(t, ok)
	assert.Equal(t, 10*time.Millisecond, got)
}

func TestDecoderLastEventID(t *testing.T) {
	dec := sse.NewDecoder(strings.NewReader("id: 1\ndata: a\n\nid: 2\n\n"))
	_, err := dec.Decode()
	require.NoError(t, err)
	assert.Equal(t, "1", dec.LastEventID())
	_, err = dec.Decode()
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, "2", dec.LastEventID(), "an id without data still moves the resume point")
}

func TestDecoderMaxEventSize(t *testing.T) {
	long := strings.Repeat("y", 100)
	tests := []struct {
		name   string
		stream string
		events int
	}{
		{"long line", "data: " + long + "\n\n", 0},
		{"many short lines", strings.Repeat("data: yyyyyyyyy\n", 10) + "\n", 0},
		{"long comment", ": " + long + "\n", 0},
		{"line without end", "data: " + long, 0},
		{"fits, then too large", "data: a\n\ndata: " + long + "\n\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(tt.stream), iotest.OneByteReader(strings.NewReader(tt.stream))} {
				events, err := decodeAll(r, sse.WithMaxEventSize(64))
				require.ErrorIs(t, err, sse.ErrEventTooLarge)
				assert.Len(t, events, tt.events)
			}
		})
	}
	// The limit counts whole events: lines up to it pass.
	ok := "data: " + strings.Repeat("z", 57) + "\n\n" // 64 bytes + the blank line
	events, err := decodeAll(strings.NewReader(ok), sse.WithMaxEventSize(64))
	require.ErrorIs(t, err, io.EOF)
	assert.Len(t, events, 1)
	// No fixed line limit: a line far larger than the read buffer is fine.
	huge := strings.Repeat("h", 3<<20)
	events, err = decodeAll(strings.NewReader("data: "+huge+"\n\n"), sse.WithMaxEventSize(0))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, events, 1)
	assert.Equal(t, huge, events[0].Data)
}

func TestDecoderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom))
	dec := sse.NewDecoder(r)
	ev, err := dec.Decode()
	require.NoError(t, err)
	assert.Equal(t, "a", ev.Data)
	_, err = dec.Decode()
	require.ErrorIs(t, err, boom)
	_, err = dec.Decode()
	require.ErrorIs(t, err, boom, "errors are final")
}

func TestDecoderCutEventDoesNotMoveLastEventID(t *testing.T) {
	dec := sse.NewDecoder(strings.NewReader("id: 1\ndata: a\n\nid: 2\ndata: b\n"))
	_, err := dec.Decode()
	require.NoError(t, err)
	_, err = dec.Decode()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Equal(t, "1", dec.LastEventID(), "event 2 never arrived: resume after 1")
}

func TestDecoderCommentAtEndIsCleanEOF(t *testing.T) {
	events, err := decodeAll(strings.NewReader("id: 1\ndata: a\n\n: heartbeat\n"))
	require.ErrorIs(t, err, io.EOF)
	assert.NotErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Len(t, events, 1)
}

func TestDecoderStartsWithLastEventID(t *testing.T) {
	dec := sse.NewDecoder(strings.NewReader("\xEF\xBB\xBFdata: a\n\nid\ndata: b\n\n"), sse.WithLastEventID("41"))
	assert.Equal(t, "41", dec.LastEventID())
	ev, err := dec.Decode()
	require.NoError(t, err)
	assert.Equal(t, sse.ReceivedEvent{ID: "41", Data: "a"}, ev, "the id carries over to events without one")
	ev, err = dec.Decode()
	require.NoError(t, err)
	assert.Equal(t, sse.ReceivedEvent{Data: "b"}, ev, "an empty id still resets it")
}
