package impls

import (
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-sse/sse/bench/internal/load"
)

// Server serves an implementation's stream at /events and the benchmark's
// control endpoints:
//
//	POST /publish?n=N&rate=R&size=S  publish N events in the background,
//	                                 R per second (0: as fast as possible),
//	                                 data padded to S bytes; 202 at once
//	GET  /stats[?mem=1][&gc=1]       load.Stats as JSON (with the runtime's
//	                                 memory figures when mem=1; gc=1 first
//	                                 runs two GCs and returns freed memory
//	                                 to the OS, for the figures after a run)
type Server struct {
	name       string
	impl       Impl
	mux        *http.ServeMux
	published  atomic.Int64
	errors     atomic.Int64
	publishing atomic.Bool

	mu    sync.Mutex
	p50us float64 // percentiles of the publish calls of the last paced
	p99us float64 // Publish (rate > 0), once it ended
	maxUs float64
}

// NewServer returns the server of impl, named name.
func NewServer(name string, impl Impl) *Server {
	s := &Server{name: name, impl: impl, mux: http.NewServeMux()}
	s.mux.Handle("GET /events", impl.Handler())
	s.mux.HandleFunc("POST /publish", s.publish)
	s.mux.HandleFunc("GET /stats", s.stats)
	return s
}

// ServeHTTP serves the stream of the implementation and the control endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("gc") == "1" {
		// Two collections: what sync.Pools hold (net/http's buffers of
		// closed connections) survives the first.
		runtime.GC()
		debug.FreeOSMemory() // runs a GC first
	}
	st := load.Stats{
		Impl:        s.name,
		PID:         os.Getpid(),
		Subscribers: s.impl.Subscribers(),
		Published:   s.published.Load(),
		Publishing:  s.publishing.Load(),
		Errors:      s.errors.Load(),
	}
	if r, ok := s.impl.(interface{ Retained() int }); ok {
		st.Retained = int64(r.Retained())
	}
	s.mu.Lock()
	st.PublishP50us, st.PublishP99us, st.PublishMaxUs = s.p50us, s.p99us, s.maxUs
	s.mu.Unlock()
	if r.URL.Query().Get("mem") == "1" {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		st.Goroutines = runtime.NumGoroutine()
		st.HeapAlloc, st.HeapInuse, st.StackInuse, st.HeapObjects = m.HeapAlloc, m.HeapInuse, m.StackInuse, m.HeapObjects
		st.Sys, st.HeapReleased, st.StackSys, st.MSpanSys = m.Sys, m.HeapReleased, m.StackSys, m.MSpanSys
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err1 := strconv.Atoi(q.Get("n"))
	rate, err2 := strconv.Atoi(q.Get("rate"))
	size, err3 := strconv.Atoi(q.Get("size"))
	topics, burst := 1, 1
	var err4 error
	if v := q.Get("topics"); v != "" {
		topics, err3 = strconv.Atoi(v)
	}
	if v := q.Get("burst"); v != "" {
		burst, err4 = strconv.Atoi(v)
	}
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || n < 0 || rate < 0 || size < 0 || topics < 1 || burst < 1 {
		http.Error(w, "want n, rate, size, topics and burst as non-negative integers", http.StatusBadRequest)
		return
	}
	if _, ok := s.impl.(TopicPublisher); topics > 1 && !ok {
		http.Error(w, s.name+" has no topics", http.StatusBadRequest)
		return
	}
	if !s.publishing.CompareAndSwap(false, true) {
		http.Error(w, "already publishing", http.StatusConflict)
		return
	}
	go func() {
		defer s.publishing.Store(false)
		s.Publish(n, rate, size, topics, burst)
	}()
	w.WriteHeader(http.StatusAccepted)
}

// TopicPublisher is implemented by the implementations that take topics:
// their handler subscribes to the topic in the query parameter "stream".
type TopicPublisher interface {
	PublishTopic(topic string, seq int, data []byte) error
}

// Publish publishes n events, rate per second (0: as fast as possible),
// each stamped with its sequence number and its publish time: the time of
// the call when rate is 0, else the time it is scheduled for. With more
// than one topic, event i goes to topic "t<i mod topics>". With a burst
// above one, events go in bursts of that many at once, at the same average
// rate.
func (s *Server) Publish(n, rate, size, topics, burst int) {
	buf := make([]byte, 0, 64+size)
	var took []time.Duration // how long each publish call took, when paced
	s.mu.Lock()
	s.p50us, s.p99us, s.maxUs = 0, 0, 0 // not the last run's while this one runs
	s.mu.Unlock()
	defer func() {
		slices.Sort(took)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.p50us, s.p99us, s.maxUs = 0, 0, 0
		if len(took) > 0 {
			us := func(d time.Duration) float64 { return float64(d) / 1e3 }
			s.p50us, s.p99us, s.maxUs = us(took[len(took)/2]), us(took[min(len(took)-1, len(took)*99/100)]), us(took[len(took)-1])
		}
	}()
	start := time.Now()
	for i := range n {
		ts := time.Now()
		if rate > 0 {
			// The scheduled time is the event's publish time: an
			// implementation whose Publish blocks (back-pressure) delays
			// the events after it, and that delay is part of their
			// latency (no coordinated omission).
			ts = start.Add(time.Duration(int64(i/burst*burst) * int64(time.Second) / int64(rate)))
			if d := time.Until(ts); d > 0 {
				time.Sleep(d)
			}
		}
		buf = AppendPayload(buf[:0], i, ts.UnixNano(), size)
		var err error
		var t0 time.Time
		if rate > 0 { // as fast as possible, the clock would slow the loop
			t0 = time.Now()
		}
		if topics > 1 {
			err = s.impl.(TopicPublisher).PublishTopic("t"+strconv.Itoa(i%topics), i, buf)
		} else {
			err = s.impl.Publish(i, buf)
		}
		if rate > 0 {
			took = append(took, time.Since(t0))
		}
		if err != nil {
			s.errors.Add(1)
		}
		s.published.Add(1)
	}
}
