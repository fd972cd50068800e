package sse

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memBackend returns a started backend with a settable clock.
func memBackend(t *testing.T, count int, age time.Duration, bytes int) (*MemoryBackend, *time.Time) {
	t.Helper()
	m := NewMemoryBackend(count, age, bytes)
	now := time.Unix(1_000_000, 0)
	m.now = func() time.Time { return now }
	m.shareStamps = false // every publish reads the settable clock
	_, err := m.Start(func(Message) {})
	require.NoError(t, err)
	return m, &now
}

func publishN(t *testing.T, m *MemoryBackend, n int, topic string) []string {
	t.Helper()
	var ids []string
	for i := range n {
		msg, err := m.Publish(context.Background(), []string{topic}, "", []byte("data: "+strconv.Itoa(i)+"\n\n"))
		require.NoError(t, err)
		ids = append(ids, msg.ID)
	}
	return ids
}

func msgIDs(msgs []Message) []string {
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestMemoryBackendTrims(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		m, _ := memBackend(t, 3, 0, 0)
		ids := publishN(t, m, 10, "a")
		assert.Equal(t, 3, m.Len())
		got, err := m.Replay(context.Background(), []string{"a"}, ids[6], ids[9])
		require.NoError(t, err)
		assert.Equal(t, ids[7:], msgIDs(got))
		_, err = m.Replay(context.Background(), []string{"a"}, ids[5], ids[9])
		assert.ErrorIs(t, err, ErrHistoryExpired)
		assert.ErrorIs(t, err, ErrEventsLost)
	})
	t.Run("bytes", func(t *testing.T) {
		m, _ := memBackend(t, 0, 0, 100)
		publishN(t, m, 50, "a")
		assert.LessOrEqual(t, m.bytes, 100)
		assert.Positive(t, m.Len())
	})
	t.Run("age keeps the newest", func(t *testing.T) {
		m, now := memBackend(t, 0, time.Minute, 0)
		ids := publishN(t, m, 3, "a")
		*now = now.Add(time.Hour)
		got, err := m.Replay(context.Background(), []string{"a"}, ids[2], ids[2])
		require.NoError(t, err, "an up-to-date client resumes however old the last event")
		assert.Empty(t, got)
		assert.Equal(t, 1, m.Len())
		_, err = m.Replay(context.Background(), []string{"a"}, ids[0], ids[2])
		assert.ErrorIs(t, err, ErrHistoryExpired)

		// The same holds for an event's own id.
		own, err := m.Publish(context.Background(), []string{"a"}, "order-42", []byte("data: x\n\n"))
		require.NoError(t, err)
		*now = now.Add(time.Hour)
		_, err = m.Replay(context.Background(), []string{"a"}, own.ID, own.ID)
		assert.NoError(t, err)
	})
}

func TestMemoryBackendReplay(t *testing.T) {
	m, _ := memBackend(t, 100, 0, 0)
	start, err := NewMemoryBackend(1, 0, 0).Start(func(Message) {})
	require.NoError(t, err)
	a := publishN(t, m, 2, "a")
	b := publishN(t, m, 2, "b")
	both, err := m.Publish(context.Background(), []string{"a", "b"}, "", []byte("data: ab\n\n"))
	require.NoError(t, err)

	got, err := m.Replay(context.Background(), []string{"a"}, a[0], both.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{a[1], both.ID}, msgIDs(got))
	got, err = m.Replay(context.Background(), []string{"a", "b"}, a[0], b[1])
	require.NoError(t, err)
	assert.Equal(t, []string{a[1], b[0], b[1]}, msgIDs(got), "merged in publish order, up to until")

	got, err = m.Replay(context.Background(), []string{"a"}, both.ID, both.ID)
	require.NoError(t, err)
	assert.NotNil(t, got, "nothing missed: an empty list")
	assert.Empty(t, got)

	for _, bad := range []string{"nope", start, m.epoch + "-99", m.epoch + "-x"} {
		_, err = m.Replay(context.Background(), []string{"a"}, bad, both.ID)
		assert.ErrorIs(t, err, ErrUnknownEventID, bad)
	}
	_, err = m.Publish(context.Background(), []string{"a"}, a[0], nil)
	assert.ErrorIs(t, err, ErrDuplicateID)

	_, err = m.Start(func(Message) {})
	assert.ErrorIs(t, err, ErrBackendStarted, "one backend serves one broker")
	require.NoError(t, m.Close())
	_, err = m.Publish(context.Background(), []string{"a"}, "", nil)
	assert.ErrorIs(t, err, ErrBackendClosed)
}

func TestIncDecimal(t *testing.T) {
	b := []byte("ep-0")
	for want := uint64(1); want <= 100500; want++ {
		b = incDecimal(b)
		if got := string(b); got != "ep-"+strconv.FormatUint(want, 10) {
			t.Fatalf("after %d increments: %q", want, got)
		}
	}
}

// The room a broker leaves for an id follows the ids' length; an id that
// outgrew it (more digits appeared meanwhile) is written with a copy.
func TestMemoryBackendIDRoom(t *testing.T) {
	m, _ := memBackend(t, 100, 0, 0)
	body := []byte("data: x\n\n")
	publish := func(room int) entry {
		t.Helper()
		f, buf := newFrameBuf(room + len(body))
		f.setTopics("t", nil)
		e, err := m.publishFramed(f, "", append(buf[:room], body...), room)
		require.NoError(t, err)
		assert.Equal(t, "id: "+e.f.id+"\n"+string(body), string(e.f.wire))
		return e
	}
	for range 9 {
		publish(len("id: \n") + m.idRoom())
	}
	assert.Equal(t, len(m.epoch)+len("-9")+1, m.idRoom(), "room for one more digit")
	e := publish(len("id: \n") + m.idRoom()) // 9 -> 10: fits in the room
	assert.Equal(t, m.epoch+"-10", e.f.id)
	assert.Equal(t, len(m.epoch)+len("-10")+1, m.idRoom())

	e = publish(len("id: \n") + len(m.epoch)) // no room for the id: copied
	assert.Equal(t, m.epoch+"-11", e.f.id)
	assert.Equal(t, m.epoch+"-11", e.f.ownedID())

	// A broker's publish goes through the room too.
	b, err := NewBroker()
	require.NoError(t, err)
	defer func() { _ = b.Shutdown(context.Background()) }()
	for i := 1; i <= 120; i++ {
		id, err := b.Publish("t", Event{Data: "x"})
		require.NoError(t, err)
		assert.Equal(t, b.mem.epoch+"-"+strconv.Itoa(i), id)
	}
	frames, err := b.mem.replayFrames([]string{"t"}, b.mem.epoch+"-0", b.mem.epoch+"-120")
	require.NoError(t, err)
	require.Len(t, frames, 120)
	for i, f := range frames {
		assert.Equal(t, "id: "+b.mem.epoch+"-"+strconv.Itoa(i+1)+"\ndata: x\n\n", string(f.wire))
	}
}

// The byte limit counts each event's encoding with its id (all but the
// "id: " and the line break around it), and messages keep the topics they
// were published with, nil included.
func TestMemoryBackendBytesCountIDs(t *testing.T) {
	const limit = 100
	m, _ := memBackend(t, 0, 0, limit)
	var sizes []int
	for i := range 50 {
		msg, err := m.Publish(context.Background(), nil, "", []byte(fmt.Sprintf("data: %d\n\n", i)))
		require.NoError(t, err)
		assert.Nil(t, msg.Topics)
		sizes = append(sizes, len(msg.ID)+len(msg.Body))
	}
	want, sum := 0, 0
	for i := len(sizes) - 1; i >= 0 && sum+sizes[i] <= limit; i-- {
		sum += sizes[i]
		want++
	}
	assert.Equal(t, want, m.Len())
	assert.Less(t, want, limit/len("data: 49\n\n"), "ids are counted")
}

// Publishes in quick succession share a clock reading: at most
// stampReuse of them, until it expires; the times stored stay in order.
func TestMemoryBackendSharesStamps(t *testing.T) {
	m := NewMemoryBackend(0, time.Hour, 0)
	require.True(t, m.shareStamps, "an age limit of an hour allows sharing")
	defer m.Close()
	now := time.Unix(1_000_000, 0)
	m.now = func() time.Time { now = now.Add(time.Millisecond); return now }
	_, err := m.Start(func(Message) {})
	require.NoError(t, err)

	var times []time.Time
	for range 2 * stampReuse {
		msg, err := m.Publish(context.Background(), []string{"t"}, "", []byte("data: x\n\n"))
		require.NoError(t, err)
		times = append(times, msg.Time)
	}
	first, second := times[0], times[stampReuse]
	for i, tm := range times {
		if i < stampReuse {
			assert.Equal(t, first, tm, "publish %d shares the first reading", i)
		} else {
			assert.Equal(t, second, tm, "publish %d shares the second reading", i)
		}
	}
	assert.Equal(t, time.Millisecond, second.Sub(first), "one more reading for the next stampReuse publishes")

	m.expireStamp() // as its timer does
	msg, err := m.Publish(context.Background(), []string{"t"}, "", []byte("data: x\n\n"))
	require.NoError(t, err)
	assert.Equal(t, time.Millisecond, msg.Time.Sub(second), "a fresh reading once the shared one expired")
	assert.False(t, NewMemoryBackend(0, time.Second, 0).shareStamps, "a short age limit reads the clock for every publish")
}

// The shared reading expires by itself: a publish after stampExpiry reads
// the clock again.
func TestMemoryBackendStampExpires(t *testing.T) {
	m := NewMemoryBackend(0, 0, 0)
	defer m.Close()
	readings := make(chan struct{}, 2*stampReuse)
	m.now = func() time.Time { readings <- struct{}{}; return time.Now() }
	_, err := m.Start(func(Message) {})
	require.NoError(t, err)
	publish := func() {
		_, err := m.Publish(context.Background(), []string{"t"}, "", []byte("data: x\n\n"))
		require.NoError(t, err)
	}
	publish()
	<-readings
	publishes := 0
	require.Eventually(t, func() bool {
		publish()
		publishes++
		select {
		case <-readings:
			return true
		default:
			return false
		}
	}, 5*time.Second, 2*stampExpiry, "a new reading after the shared one expired")
	assert.Less(t, publishes, stampReuse-1, "the reading expired by time, not by count")
}
