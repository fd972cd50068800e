// Package load is the benchmark's load generator: it opens many event
// streams to a server, makes it publish, checks that every stream got every
// event exactly once and in order, and measures throughput, latency and the
// server's CPU time and memory.
package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one load run.
type Config struct {
	// URL is the server's base URL, as http://127.0.0.1:8089.
	URL string
	// Clients is the number of streams opened.
	Clients int
	// Events is the number of events the server is asked to publish.
	Events int
	// Rate is events per second (0: as fast as possible).
	Rate int
	// Size pads each event's data to this many bytes.
	Size int
	// Topics spreads the streams and the events over this many topics:
	// stream k subscribes to topic k mod Topics, event n goes to topic n
	// mod Topics (0 or 1: one topic for all).
	Topics int
	// Idle measures the server's RSS with no stream and with Clients
	// streams open (after Settle).
	Idle   bool
	Settle time.Duration
	// Linger, with Idle, is how long after the last stream closed the
	// server's goroutines and heap are read. A write deadline that
	// net/http's HTTP/2 server armed for a stream that closed meanwhile
	// keeps that stream's state (and its connection's) until it passes:
	// past the write timeout (gin-sse's default is 10 s), the heap shows
	// what stays for good.
	Linger time.Duration
	// Stall ends the run when no event arrived for this long.
	Stall time.Duration
	// ConnectTimeout bounds the wait for all streams to be subscribed.
	ConnectTimeout time.Duration
	// SourceAddrs spreads the streams over this many loopback source
	// addresses (127.0.0.2 and up), so that repeated runs do not run out of
	// ephemeral ports; 0 lets the kernel choose.
	SourceAddrs int
	// Dialers is the number of connections being opened at once.
	Dialers int
	// ReadBuffer is the size of each stream's parse buffer.
	ReadBuffer int
	// H2C opens the streams as HTTP/2 streams (h2c, without TLS) over
	// this many connections, spread evenly, instead of one HTTP/1.1
	// connection each; the server must accept h2c (sseserver -h2c) and
	// allow Clients/H2C streams on one connection.
	H2C int
	// Extra are the base URLs of more servers that share the events of
	// URL's (through Redis): the streams are spread over URL and them,
	// the events are published through URL, and the server CPU time is
	// that of all of them.
	Extra []string
}

func (c *Config) defaults() {
	if c.Stall <= 0 {
		c.Stall = 10 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 90 * time.Second
	}
	if c.Dialers <= 0 {
		c.Dialers = 64
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = 16 << 10
	}
	if c.Idle && c.Settle <= 0 {
		c.Settle = 2 * time.Second
	}
}

// Result is what one run measured.
type Result struct {
	Impl    string `json:"impl"`
	Clients int    `json:"clients"`
	Events  int    `json:"events"`
	Rate    int    `json:"rate"`
	Size    int    `json:"size"`

	// Delivered counts distinct events received, over all streams.
	Delivered int64 `json:"delivered"`
	// Lost, Dup and Reordered are summed over the streams; FailedStreams
	// ended (or never started) before getting every event.
	Lost          int64  `json:"lost"`
	Dup           int64  `json:"dup"`
	Reordered     int64  `json:"reordered"`
	Malformed     int64  `json:"malformed"`
	FailedStreams int    `json:"failed_streams"`
	Error         string `json:"error,omitempty"`

	ConnectSeconds float64 `json:"connect_seconds"`
	// Seconds runs from the first event's publish time to the last
	// receipt; EventsPerSec is Delivered over it.
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Latencies from publish to receipt, in microseconds.
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
	MaxUs float64 `json:"max_us"`

	// ServerCPUNs is the server's user+system CPU time from the publish
	// request to the last receipt.
	ServerCPUNs   int64   `json:"server_cpu_ns"`
	CPUNsPerEvent float64 `json:"cpu_ns_per_event"`
	RSSBaseKB     int64   `json:"rss_base_kb,omitempty"`
	RSSKB         int64   `json:"rss_kb,omitempty"`
	RSSPerConnKB  float64 `json:"rss_per_conn_kb,omitempty"`
	// With Idle: the server's Go heap and stacks per stream (runtime
	// figures with and without the streams), in bytes.
	HeapPerConn      float64 `json:"heap_per_conn,omitempty"`
	StackPerConn     float64 `json:"stack_per_conn,omitempty"`
	ServerPublished  int64   `json:"server_published"`
	ServerPublishErr int64   `json:"server_publish_errors"`
	// How long the server's publish calls took, in microseconds.
	PublishP50us float64 `json:"publish_p50_us,omitempty"`
	PublishP99us float64 `json:"publish_p99_us,omitempty"`
	PublishMaxUs float64 `json:"publish_max_us,omitempty"`
	// With Idle: the server's goroutines and live heap before the streams
	// opened and once they all closed (after a collection).
	GoroutinesBase  int    `json:"goroutines_base,omitempty"`
	GoroutinesAfter int    `json:"goroutines_after,omitempty"`
	HeapBase        uint64 `json:"heap_base,omitempty"`
	HeapAfter       uint64 `json:"heap_after,omitempty"`
}

// OK reports whether every stream got every event exactly once, in order.
func (r *Result) OK() bool {
	return r.Error == "" && r.Lost == 0 && r.Dup == 0 && r.Reordered == 0 && r.Malformed == 0 &&
		r.FailedStreams == 0 && r.ServerPublishErr == 0
}

// Stats is the answer of the benchmark server's GET /stats.
type Stats struct {
	Impl        string `json:"impl"`
	PID         int    `json:"pid"`
	Subscribers int    `json:"subscribers"`
	Published   int64  `json:"published"`
	Publishing  bool   `json:"publishing"`
	Errors      int64  `json:"errors"`
	// Retained is the memory of the history an implementation keeps for
	// replay, in bytes, for those that report it.
	Retained int64 `json:"retained,omitempty"`
	// How long the publish calls of the last POST /publish took, in
	// microseconds.
	PublishP50us float64 `json:"publish_p50_us,omitempty"`
	PublishP99us float64 `json:"publish_p99_us,omitempty"`
	PublishMaxUs float64 `json:"publish_max_us,omitempty"`
	// With ?mem=1: the Go runtime's view of memory.
	Goroutines  int    `json:"goroutines,omitempty"`
	HeapAlloc   uint64 `json:"heap_alloc,omitempty"` // live, after a GC
	HeapInuse   uint64 `json:"heap_inuse,omitempty"`
	StackInuse  uint64 `json:"stack_inuse,omitempty"`
	HeapObjects uint64 `json:"heap_objects,omitempty"`
	// Sys is all memory the runtime got from the OS, HeapReleased the part
	// of it returned; StackSys and MSpanSys are parts of Sys.
	Sys          uint64 `json:"sys,omitempty"`
	HeapReleased uint64 `json:"heap_released,omitempty"`
	StackSys     uint64 `json:"stack_sys,omitempty"`
	MSpanSys     uint64 `json:"mspan_sys,omitempty"`
}

// stream is one client connection and what it received.
type stream struct {
	events int // the events of its topic
	total  int // the events of the run
	topic  int
	topics int

	mu     sync.Mutex
	conn   net.Conn           // HTTP/1.1
	cancel context.CancelFunc // HTTP/2: ends the request
	closed bool

	seen      []uint64 // bitset of sequence numbers
	distinct  int
	maxSeq    int
	dup       int64
	reordered int64
	malformed int64
	lat       []int64 // ns
	firstPub  int64   // smallest publish time seen
	lastRecv  int64
	err       error
}

// run is shared by the streams of one run.
type run struct {
	delivered atomic.Int64
	complete  atomic.Int64
	failed    atomic.Int64

	mu  sync.Mutex
	err error // the first stream error
}

func (r *run) fail(err error) {
	r.failed.Add(1)
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
}

func (r *run) firstErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// close closes the stream's connection, now or as soon as it is dialed.
func (s *stream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn != nil {
		_ = s.conn.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
}

// Run performs one load run against cfg.URL.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	res := Result{Clients: cfg.Clients, Events: cfg.Events, Rate: cfg.Rate, Size: cfg.Size}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return res, err
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	st, err := waitStats(ctx, hc, cfg.URL, 10*time.Second)
	if err != nil {
		return res, err
	}
	res.Impl = st.Impl
	pid := st.PID
	bases := append([]string{cfg.URL}, cfg.Extra...)
	hosts, pids := []string{u.Host}, []int{pid}
	for _, base := range cfg.Extra {
		xu, err := url.Parse(base)
		if err != nil {
			return res, err
		}
		xst, err := waitStats(ctx, hc, base, 10*time.Second)
		if err != nil {
			return res, err
		}
		hosts, pids = append(hosts, xu.Host), append(pids, xst.PID)
	}
	var mem0 Stats
	if cfg.Idle {
		res.RSSBaseKB, _ = ReadRSS(pid)
		mem0, _ = GetStats(ctx, hc, cfg.URL+"/stats?mem=1&gc=1")
		res.GoroutinesBase, res.HeapBase = mem0.Goroutines, mem0.HeapAlloc
	}

	topics := max(cfg.Topics, 1)
	path := func(topic int) string {
		name := "t"
		if topics > 1 {
			name += strconv.Itoa(topic)
		}
		return "/events?stream=" + name
	}
	var transports []*http.Transport
	// With HTTP/2, the first stream of each transport to each server opens
	// alone: streams started while its connection is being made would
	// each make one of their own.
	var opened []chan struct{} // by transport and server, closed once its first stream opened
	var leading []bool
	if cfg.H2C > 0 {
		for i := range cfg.H2C {
			transports = append(transports, h2cTransport(sourceAddr(cfg, i)))
		}
		for range cfg.H2C * len(hosts) {
			opened = append(opened, make(chan struct{}))
			leading = append(leading, false)
		}
		defer func() {
			for _, t := range transports {
				t.CloseIdleConnections()
			}
		}()
	}
	var r run
	streams := make([]*stream, cfg.Clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, cfg.Dialers)
	offset := rand.IntN(256)
	connectStart := time.Now()
	for i := range streams {
		topic := i % topics
		want := cfg.Events / topics
		if topic < cfg.Events%topics {
			want++
		}
		s := &stream{events: want, total: cfg.Events, topic: topic, topics: topics,
			seen: make([]uint64, (cfg.Events+63)/64), maxSeq: -1, firstPub: 1<<63 - 1, lat: make([]int64, 0, want)}
		host := hosts[i%len(hosts)]
		streams[i] = s
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		wg.Add(1)
		if transports != nil {
			k := i%len(transports)*len(hosts) + i%len(hosts)
			leader := !leading[k]
			leading[k] = true
			go func() {
				defer wg.Done()
				if !leader {
					select {
					case <-opened[k]:
					case <-ctx.Done():
					}
				}
				body, err := s.open(ctx, transports[i%len(transports)], "http://"+host+path(topic))
				if leader {
					close(opened[k])
				}
				<-sem
				if err != nil {
					s.err = err
					r.fail(err)
					return
				}
				defer func() { _ = body.Close() }()
				s.readBody(&r, body, cfg.ReadBuffer)
			}()
			continue
		}
		var local net.Addr
		if cfg.SourceAddrs > 0 {
			local = sourceAddr(cfg, offset+i)
		}
		req := []byte("GET " + path(topic) + " HTTP/1.1\r\nHost: " + host +
			"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
		go func() {
			defer wg.Done()
			err := s.dial(host, local, req)
			<-sem
			if err != nil {
				s.err = err
				r.fail(err)
				return
			}
			s.read(&r, cfg.ReadBuffer)
		}()
	}
	defer func() {
		for _, s := range streams {
			if s != nil {
				s.close()
			}
		}
		wg.Wait()
	}()

	// Wait until the server has every stream subscribed.
	deadline := time.Now().Add(cfg.ConnectTimeout)
	for {
		subscribers := 0
		for _, base := range bases {
			st, err = GetStats(ctx, hc, base)
			if err != nil {
				return res, err
			}
			subscribers += st.Subscribers
		}
		if subscribers >= cfg.Clients {
			break
		}
		if n := r.failed.Load(); n > 0 {
			return res, fmt.Errorf("%d streams failed: %v", n, r.firstErr())
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("only %d of %d streams subscribed after %v", subscribers, cfg.Clients, cfg.ConnectTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.ConnectSeconds = time.Since(connectStart).Seconds()

	cpuOf := func() (ns int64) {
		for _, p := range pids {
			c, _ := ReadCPU(p)
			ns += c
		}
		return ns
	}
	cpu0 := cpuOf()
	q := fmt.Sprintf("%s/publish?n=%d&rate=%d&size=%d&topics=%d", cfg.URL, cfg.Events, cfg.Rate, cfg.Size, topics)
	resp, err := hc.Post(q, "text/plain", nil)
	if err != nil {
		return res, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return res, fmt.Errorf("publish: %s", resp.Status)
	}

	// Wait until every stream is complete, or nothing arrives for Stall.
	last, lastChange := int64(-1), time.Now()
	for r.complete.Load() < int64(cfg.Clients) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if d := r.delivered.Load(); d != last {
			last, lastChange = d, time.Now()
		} else if time.Since(lastChange) > cfg.Stall {
			res.Error = fmt.Sprintf("stalled: no event for %v, %d of %d streams complete", cfg.Stall, r.complete.Load(), cfg.Clients)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.ServerCPUNs = cpuOf() - cpu0
	if cfg.Idle {
		time.Sleep(cfg.Settle)
		res.RSSKB, _ = ReadRSS(pid)
		if cfg.Clients > 0 {
			n := float64(cfg.Clients)
			res.RSSPerConnKB = float64(res.RSSKB-res.RSSBaseKB) / n
			if mem1, err := GetStats(ctx, hc, cfg.URL+"/stats?mem=1&gc=1"); err == nil { // live, as mem0
				res.HeapPerConn = (float64(mem1.HeapInuse) - float64(mem0.HeapInuse)) / n
				res.StackPerConn = (float64(mem1.StackInuse) - float64(mem0.StackInuse)) / n
			}
		}
	}
	if st, err := GetStats(ctx, hc, cfg.URL); err == nil {
		res.ServerPublished, res.ServerPublishErr = st.Published, st.Errors
		res.PublishP50us, res.PublishP99us, res.PublishMaxUs = st.PublishP50us, st.PublishP99us, st.PublishMaxUs
	}
	// A short grace period catches duplicates sent after the last event.
	time.Sleep(50 * time.Millisecond)
	for _, s := range streams {
		s.close()
	}
	wg.Wait()
	for _, t := range transports { // their connections, idle now
		t.CloseIdleConnections()
	}
	summarize(&res, streams)
	if cfg.Idle { // what is left once every stream closed
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if st, err := GetStats(ctx, hc, cfg.URL); err != nil || st.Subscribers == 0 {
				break
			}
		}
		time.Sleep(cfg.Linger)
		if st, err := GetStats(ctx, hc, cfg.URL+"/stats?mem=1&gc=1"); err == nil {
			res.GoroutinesAfter, res.HeapAfter = st.Goroutines, st.HeapAlloc
		}
	}
	return res, nil
}

func summarize(res *Result, streams []*stream) {
	firstPub, lastRecv := int64(1<<63-1), int64(0)
	total := 0
	for _, s := range streams {
		total += len(s.lat)
	}
	lat := make([]int64, 0, total)
	for _, s := range streams {
		res.Delivered += int64(s.distinct)
		res.Lost += int64(s.events - s.distinct)
		res.Dup += s.dup
		res.Reordered += s.reordered
		res.Malformed += s.malformed
		if s.distinct < s.events {
			res.FailedStreams++
		}
		firstPub = min(firstPub, s.firstPub)
		lastRecv = max(lastRecv, s.lastRecv)
		lat = append(lat, s.lat...)
	}
	if res.Delivered > 0 && lastRecv > firstPub {
		res.Seconds = float64(lastRecv-firstPub) / 1e9
		res.EventsPerSec = float64(res.Delivered) / res.Seconds
	}
	if res.Delivered > 0 {
		res.CPUNsPerEvent = float64(res.ServerCPUNs) / float64(res.Delivered)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50us = float64(lat[len(lat)/2]) / 1e3
		res.P99us = float64(lat[min(len(lat)-1, len(lat)*99/100)]) / 1e3
		res.MaxUs = float64(lat[len(lat)-1]) / 1e3
	}
}

// sourceAddr is the loopback source address of connection i.
func sourceAddr(cfg Config, i int) net.Addr {
	if cfg.SourceAddrs <= 0 {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%min(cfg.SourceAddrs, 250)))}
}

// h2cTransport returns a client of HTTP/2 without TLS (prior knowledge)
// from the source address local. It keeps its streams on one connection
// while the server allows them, and opens another beyond.
func h2cTransport(local net.Addr) *http.Transport {
	t := &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: local, Timeout: 10 * time.Second}).DialContext,
		Protocols:   new(http.Protocols),
	}
	t.Protocols.SetUnencryptedHTTP2(true)
	return t
}

// open starts the stream's request over t, an HTTP/2 transport, and
// returns its body once the response's header checked out.
func (s *stream) open(ctx context.Context, t *http.Transport, u string) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return nil, context.Canceled
	}
	s.cancel = cancel
	s.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := t.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("status %s over %s", resp.Status, resp.Proto)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("content type %q", ct)
	}
	return resp.Body, nil
}

func (s *stream) dial(host string, local net.Addr, req []byte) error {
	d := net.Dialer{LocalAddr: local, Timeout: 10 * time.Second}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		var c net.Conn
		if c, err = d.Dial("tcp", host); err != nil {
			continue
		}
		if _, err = c.Write(req); err != nil {
			_ = c.Close()
			continue
		}
		s.mu.Lock()
		s.conn = c
		if s.closed {
			_ = c.Close()
		}
		s.mu.Unlock()
		return nil
	}
	return err
}

// read parses the stream until the connection is closed. Only what the
// servers under test send is handled: LF line ends, data/id/event fields
// and comments.
func (s *stream) read(r *run, bufSize int) {
	br := bufio.NewReaderSize(s.conn, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	switch {
	case err != nil:
		s.err = err
	case resp.StatusCode != http.StatusOK:
		s.err = fmt.Errorf("status %s", resp.Status)
	default:
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			s.err = fmt.Errorf("content type %q", ct)
		}
	}
	if s.err != nil { // the body's errors are readBody's to report
		if resp != nil {
			_ = resp.Body.Close()
		}
		r.fail(s.err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	s.readBody(r, resp.Body, bufSize)
}

// readBody parses an SSE body until it ends.
func (s *stream) readBody(r *run, rd io.Reader, bufSize int) {
	complete := false
	defer func() {
		if !complete && s.err != nil {
			r.fail(s.err)
		}
	}()
	body := bufio.NewReaderSize(rd, bufSize)
	var data []byte
	hasData := false
	for {
		line, err := body.ReadSlice('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !complete {
				s.err = err
			}
			return
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		switch {
		case len(line) == 0:
			if hasData {
				s.event(data)
				r.delivered.Add(1)
				if !complete && s.distinct == s.events {
					complete = true
					r.complete.Add(1)
				}
			}
			data, hasData = data[:0], false
		case bytes.HasPrefix(line, []byte("data:")):
			v := line[5:]
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, v...)
			hasData = true
		}
	}
}

// event records one event whose data is "<seq> <publish unix ns> ...".
func (s *stream) event(data []byte) {
	now := time.Now().UnixNano()
	seq, rest, ok := parseInt(data)
	var ts int64
	if ok {
		ts, _, ok = parseInt(rest)
	}
	if !ok || seq < 0 || int(seq) >= s.total || int(seq)%s.topics != s.topic {
		s.malformed++
		return
	}
	i := int(seq)
	w, bit := i/64, uint64(1)<<(i%64)
	if s.seen[w]&bit != 0 {
		s.dup++
		return
	}
	s.seen[w] |= bit
	s.distinct++
	if i < s.maxSeq {
		s.reordered++
	} else {
		s.maxSeq = i
	}
	s.lat = append(s.lat, now-ts)
	s.firstPub = min(s.firstPub, ts)
	s.lastRecv = now
}

// parseInt reads a decimal number ended by a space or the end of p.
func parseInt(p []byte) (int64, []byte, bool) {
	var n int64
	i := 0
	for ; i < len(p) && p[i] != ' '; i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return 0, nil, false
		}
		n = n*10 + int64(c-'0')
	}
	if i == 0 {
		return 0, nil, false
	}
	if i < len(p) {
		i++
	}
	return n, p[i:], true
}

// GetStats reads base+"/stats", or the stats URL u itself.
func GetStats(ctx context.Context, hc *http.Client, u string) (Stats, error) {
	var st Stats
	if !strings.Contains(u, "/stats") {
		u += "/stats"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return st, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("stats: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitStats polls /stats until the server answers.
func waitStats(ctx context.Context, hc *http.Client, base string, wait time.Duration) (Stats, error) {
	deadline := time.Now().Add(wait)
	for {
		st, err := GetStats(ctx, hc, base)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return st, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
