package faults

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-sse/sse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawReader is a client on a raw connection that counts the events it
// reads (blank lines), with a small buffer of its own.
type rawReader struct {
	conn   net.Conn
	events atomic.Int64
}

func dialReader(t *testing.T, addr, lastID string) *rawReader {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	req := "GET /events?topic=t HTTP/1.1\r\nHost: x\r\n"
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	_, err = io.WriteString(conn, req+"\r\n")
	require.NoError(t, err)
	return &rawReader{conn: conn}
}

// read counts events until the connection closes.
func (r *rawReader) read() {
	buf := make([]byte, 4096)
	var prev byte
	for {
		n, err := r.conn.Read(buf)
		if n > 0 {
			c := bytes.Count(buf[:n], []byte("\n\n"))
			if prev == '\n' && buf[0] == '\n' {
				c++
			}
			prev = buf[n-1]
			r.events.Add(int64(c))
		}
		if err != nil {
			return
		}
	}
}

// heapAfterGC returns the live heap.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// peakHeap samples the live heap (as the last collection found it) until
// stop is called, and returns its peak. Live, not allocated: the garbage
// between two collections grows with how far the collector lags behind,
// which depends on the machine's load, not on what the broker keeps (on
// this test's burst: allocated peaks of 60 to 67 MiB, and live peaks of
// about 29 MiB).
func peakHeap() (stop func() uint64) {
	done := make(chan struct{})
	var peak uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		for {
			metrics.Read(live)
			peak = max(peak, live[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak }
}

// With the default options, a 4 MB burst to 1,000 subscribers adds no more
// heap than the history plus 32 KiB per subscriber (the streams share the
// history's frames and write them in bounded batches); 1,000 clients
// reconnecting at once from the start of that history stay far below
// 200 MB; and once everyone left, the heap is back to its baseline.
func TestMemoryBurstAndReplayStorm(t *testing.T) {
	const subs, events, size = 1000, 4096, 1024 // 4 MiB
	b, err := sse.NewBroker()
	require.NoError(t, err)
	srv := newBrokerServer(t, b)
	ctx := testCtx(t, 120*time.Second)
	payload := strings.Repeat("x", size)

	first, err := b.Publish(ctx, "t", sse.Event{Data: "start"})
	require.NoError(t, err)
	connectAll := func(lastID string) ([]*rawReader, *sync.WaitGroup) {
		readers := make([]*rawReader, subs)
		var wg sync.WaitGroup
		for i := range readers {
			readers[i] = dialReader(t, srv.addr, lastID)
			wg.Add(1)
			go func() { defer wg.Done(); readers[i].read() }()
		}
		eventually(t, 30*time.Second, "the subscribers", func() bool { return b.Subscribers("t") == subs })
		return readers, &wg
	}
	waitEvents := func(readers []*rawReader, n int64) {
		eventually(t, 60*time.Second, "every event at every subscriber", func() bool {
			for _, r := range readers {
				if r.events.Load() < n {
					return false
				}
			}
			return true
		})
	}
	closeAll := func(readers []*rawReader, wg *sync.WaitGroup) {
		for _, r := range readers {
			_ = r.conn.Close()
		}
		wg.Wait()
		eventually(t, 30*time.Second, "the streams to end", func() bool { return b.Subscribers("") == 0 })
	}

	// A collector that runs often keeps the heap's figures close to what
	// is live (at most a tenth more), which is what is measured.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	empty := heapAfterGC()
	readers, wg := connectAll("")
	baseline := heapAfterGC() // 1,000 idle streams and their clients
	stop := peakHeap()
	for range events {
		_, err := b.Publish(ctx, "t", sse.Event{Data: payload})
		require.NoError(t, err)
	}
	waitEvents(readers, 1+events) // the first comment counts as one
	burstPeak := stop()
	retained := uint64(b.Stats().RetainedBytes)
	allowed := (baseline + retained + subs*32<<10) * 11 / 10
	t.Logf("burst of %d × %d B to %d subscribers: heap %.1f MiB idle, peak %.1f MiB; history %.1f MiB; allowed %.1f MiB",
		events, size, subs, mib(baseline), mib(burstPeak), mib(retained), mib(allowed))
	assert.LessOrEqual(t, burstPeak, allowed, "the history plus 32 KiB per subscriber (and a tenth for the collector)")
	closeAll(readers, wg)
	withHistory := heapAfterGC() // everyone left; the history stays

	stop = peakHeap()
	readers, wg = connectAll(first)
	waitEvents(readers, 1+events)
	stormPeak := stop()
	t.Logf("replay storm: %d clients replaying %d events each: heap peak %.1f MiB", subs, events, mib(stormPeak))
	assert.Less(t, stormPeak, uint64(200<<20))
	closeAll(readers, wg)
	after := heapAfterGC()
	t.Logf("after everyone left: heap %.1f MiB, against %.1f MiB after the burst's clients left (%.1f MiB before any stream or history)",
		mib(after), mib(withHistory), mib(empty))
	assert.LessOrEqual(t, after, withHistory+withHistory/10, "back to the history alone, within 10%")
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
