package sse_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gin-sse/sse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// roundTripSeed is one (id, event, data) input of FuzzRoundTrip.
type roundTripSeed struct{ id, event, data string }

// roundTripSeeds returns the seed corpus shared by FuzzRoundTrip and
// TestRoundTripSeeds.
func roundTripSeeds() []roundTripSeed {
	var seeds []roundTripSeed
	values := []string{
		"",
		"\r",
		"\n",
		"\r\n",
		"\r\r\n\n",
		"\x00",
		" x",
		"  x",
		"\xEF\xBB\xBF",
		"\xff\xfe",
		"data: injected\n\nevent: x",
		":comment",
		"a\n",
	}
	for _, v := range values {
		seeds = append(seeds,
			roundTripSeed{"", "", v},  // as data
			roundTripSeed{v, "", "x"}, // as id
			roundTripSeed{"", v, "x"}, // as event name
		)
	}
	seeds = append(seeds,
		roundTripSeed{"", "", ""},
		roundTripSeed{"42", "update", "hello"},
		roundTripSeed{"\xEF\xBB\xBF", "\xEF\xBB\xBF", "\xEF\xBB\xBF"},
		roundTripSeed{"1", "message", strings.Repeat("x", 1<<20)},
	)
	return seeds
}

// checkRoundTrip encodes an event with the given fields and checks that the
// decoder gives the same fields back, or that the encoder refused the event
// for a good reason.
func checkRoundTrip(t *testing.T, id, event, data string) {
	t.Helper()
	b, err := sse.Event{ID: id, Event: event, Data: data}.AppendTo(nil)
	if err != nil {
		require.ErrorIs(t, err, sse.ErrInvalidEvent)
		if strings.ContainsAny(id, "\r\n\x00") {
			assert.Contains(t, err.Error(), "invalid event: id ", "the id is reported first")
		} else {
			assert.True(t, strings.ContainsAny(event, "\r\n"), "refused event name %q", event)
			assert.Contains(t, err.Error(), "invalid event: name ")
		}
		assert.Empty(t, b, "AppendTo(nil) returned bytes with an error")
		return
	}
	require.False(t, strings.ContainsAny(id, "\r\n\x00"), "invalid id %q was accepted", id)
	require.False(t, strings.ContainsAny(event, "\r\n"), "invalid event name %q was accepted", event)

	dec := sse.NewDecoder(bytes.NewReader(b), sse.WithMaxEventSize(len(b)+16))
	got, err := dec.Decode()
	require.NoError(t, err, "wire %q", truncate(b))
	_, err = dec.Decode()
	require.ErrorIs(t, err, io.EOF, "wire %q", truncate(b))

	assert.Equal(t, id, got.ID, "id; wire %q", truncate(b))
	assert.Equal(t, event, got.Event, "event; wire %q", truncate(b))
	want := strings.ReplaceAll(data, "\r\n", "\n")
	want = strings.ReplaceAll(want, "\r", "\n")
	assert.Equal(t, want, got.Data, "data; wire %q", truncate(b))
}

// truncate shortens b for failure messages.
func truncate(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%s...(%d bytes)", b[:200], len(b))
	}
	return string(b)
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range roundTripSeeds() {
		f.Add(s.id, s.event, s.data)
	}
	f.Fuzz(func(t *testing.T, id, event, data string) {
		checkRoundTrip(t, id, event, data)
	})
}

func TestRoundTripSeeds(t *testing.T) {
	for i, s := range roundTripSeeds() {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			checkRoundTrip(t, s.id, s.event, s.data)
		})
	}
}

// decodeStream decodes r until the first error, failing the test if that
// takes more than limit calls.
func decodeStream(t *testing.T, r io.Reader, limit int) ([]sse.ReceivedEvent, error) {
	t.Helper()
	dec := sse.NewDecoder(r, sse.WithMaxEventSize(1<<16))
	var events []sse.ReceivedEvent
	for i := 0; i < limit; i++ {
		ev, err := dec.Decode()
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
	t.Fatalf("decoder still returning events after %d calls", limit)
	return nil, nil
}

func FuzzDecoder(f *testing.F) {
	for _, s := range []string{
		"",
		"data: test\n\n",
		"data: test\n\ndata:test\n\n",
		"data\n\ndata\ndata\n\ndata:",
		"\xEF\xBB\xBFdata: x\r\n\r\n",
		"\xEF\xBB",
		"id: 1\x00\ndata: a\n\n",
		"retry: 12a\n",
		"retry: 1000\ndata: x\n\n",
		": c\r\rdata:a\r\r",
		"event: a\rdata: 1\r\r\n",
		"id: 1\ndata: a\n\nid\ndata: b\n\n",
		"data: " + strings.Repeat("y", 1<<16) + "\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		limit := len(stream) + 2
		events, err := decodeStream(t, bytes.NewReader(stream), limit)
		require.True(t, err == io.EOF || err == io.ErrUnexpectedEOF || errors.Is(err, sse.ErrEventTooLarge),
			"unexpected final error %v", err)
		for _, ev := range events {
			assert.False(t, strings.ContainsAny(ev.ID, "\x00\r\n"), "decoded id %q", ev.ID)
		}

		oneEvents, oneErr := decodeStream(t, iotest.OneByteReader(bytes.NewReader(stream)), limit)
		assert.Equal(t, events, oneEvents, "events differ when read one byte at a time")
		if errors.Is(err, sse.ErrEventTooLarge) {
			assert.ErrorIs(t, oneErr, sse.ErrEventTooLarge, "final error differs when read one byte at a time")
		} else {
			assert.Equal(t, err, oneErr, "final error differs when read one byte at a time")
		}
	})
}
