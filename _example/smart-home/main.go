// Command smart-home is a live dashboard of three rooms: every change of a
// light, blind or curtain, made on the page, with curl or by the built-in
// simulator, reaches every open page at once through the broker, and a page
// that reconnects gets exactly the changes it missed.
//
//	go run ./_example/smart-home
//
// then open http://localhost:1337 (in two browsers, if you like), and try:
//
//	curl -N localhost:1337/smart-home?room=kitchen
//	curl -X POST localhost:1337/rooms/kitchen -d '{"lights":"off"}'
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
)

//go:embed index.html
var page []byte

// rooms lists the rooms (in page order) and the devices of each.
var rooms = []struct {
	name    string
	devices []string
}{
	{"kitchen", []string{"lights", "blinds"}},
	{"livingroom", []string{"lights", "curtains"}},
	{"bedroom", []string{"lights", "curtains"}},
}

// values gives the two values of each kind of device.
var values = map[string][2]string{
	"lights":   {"on", "off"},
	"blinds":   {"open", "closed"},
	"curtains": {"open", "closed"},
}

// RoomState is a room's state: the data of the room's event on the stream
// and the answer of GET and POST /rooms/:room.
type RoomState struct {
	Room     string `json:"room"`
	Lights   string `json:"lights"`
	Blinds   string `json:"blinds,omitempty"`
	Curtains string `json:"curtains,omitempty"`
	// Updated is when the state last changed, in UTC with nanoseconds
	// (fixed width, so that two values compare as strings).
	Updated string `json:"updated"`
}

const updatedLayout = "2006-01-02T15:04:05.000000000Z07:00"

// field returns the field of a device by name, or nil for an unknown name.
func (s *RoomState) field(name string) *string {
	switch name {
	case "lights":
		return &s.Lights
	case "blinds":
		return &s.Blinds
	case "curtains":
		return &s.Curtains
	}
	return nil
}

// device returns the field of one of the room's devices, or nil when the
// room has no such device.
func (s *RoomState) device(name string) *string {
	if f := s.field(name); f != nil && *f != "" {
		return f
	}
	return nil
}

// Limits on what a client sends.
const (
	// maxBody bounds the body of POST /rooms/:room: a change is a few dozen
	// bytes. A longer body gets 413 and is not read further.
	maxBody = 4 << 10
	// maxRoomValues bounds the room= values of a stream request: there are
	// three rooms, so many more is a mistake or an attack.
	maxRoomValues = 64
	// maxEcho bounds what an error answer repeats of the client's input,
	// and maxDetail the detail of a decoding error.
	maxEcho   = 32
	maxDetail = 80
)

// clip returns s cut to at most n bytes (on a rune boundary), with "…"
// when it was cut: error answers name what was wrong without echoing a
// long input back.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Errors of a change request; the handler answers them with 400.
var (
	errUnknownRoom   = errors.New("unknown room")
	errUnknownDevice = errors.New("unknown device")
	errBadValue      = errors.New("bad value")
	errNoChange      = errors.New("no device given")
)

// home holds the state of every room. Changes are published to the broker
// under the same lock that guards the state, so the events of a room go out
// in the order of its changes.
type home struct {
	b     *sse.Broker
	mu    sync.Mutex
	state map[string]*RoomState
}

func newHome(b *sse.Broker) *home {
	h := &home{b: b, state: make(map[string]*RoomState)}
	now := time.Now().UTC().Format(updatedLayout)
	for _, r := range rooms {
		s := &RoomState{Room: r.name, Updated: now}
		for _, d := range r.devices {
			*s.field(d) = values[d][0]
		}
		h.state[r.name] = s
	}
	return h
}

// event is the room's named event carrying its state. The broker gives it
// its id.
func event(s RoomState) sse.Event {
	return sse.Event{Event: s.Room, Data: s}
}

// get returns a copy of a room's state.
func (h *home) get(room string) (RoomState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.state[room]
	if !ok {
		return RoomState{}, false
	}
	return *s, true
}

// set applies changes (device → value) to room and publishes the room's new
// state. Nothing changes unless every device and value is valid and the
// event is published.
func (h *home) set(room string, changes map[string]string) (RoomState, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur, ok := h.state[room]
	if !ok {
		return RoomState{}, fmt.Errorf("%w %q", errUnknownRoom, clip(room, maxEcho))
	}
	if len(changes) == 0 {
		return RoomState{}, errNoChange
	}
	next := *cur
	for dev, v := range changes {
		f := next.device(dev)
		if f == nil {
			return RoomState{}, fmt.Errorf("%w %q in room %q", errUnknownDevice, clip(dev, maxEcho), room)
		}
		if vals := values[dev]; v != vals[0] && v != vals[1] {
			return RoomState{}, fmt.Errorf("%w %q for %s: want %q or %q", errBadValue, clip(v, maxEcho), dev, vals[0], vals[1])
		}
		*f = v
	}
	next.Updated = time.Now().UTC().Format(updatedLayout)
	if _, err := h.b.Publish(context.Background(), room, event(next)); err != nil {
		return RoomState{}, err
	}
	*cur = next
	return next, nil
}

// initial gives a client that has nothing to resume from the current state
// of each room it subscribed to.
func (h *home) initial(_ *gin.Context, topics []string) ([]sse.Event, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	events := make([]sse.Event, 0, len(topics))
	for _, t := range topics {
		events = append(events, event(*h.state[t]))
	}
	return events, nil
}

// simulate toggles a random device of a random room every lo to hi until
// ctx is done.
func (h *home) simulate(ctx context.Context, lo, hi time.Duration) {
	for {
		wait := lo
		if hi > lo {
			wait += rand.N(hi - lo)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		r := rooms[rand.N(len(rooms))]
		dev := r.devices[rand.N(len(r.devices))]
		cur, _ := h.get(r.name)
		v := values[dev][0]
		if *cur.device(dev) == v {
			v = values[dev][1]
		}
		if _, err := h.set(r.name, map[string]string{dev: v}); err != nil && !errors.Is(err, sse.ErrBrokerClosed) {
			log.Printf("simulator: %v", err)
		}
	}
}

// topics subscribes a stream to the rooms of ?room=kitchen&room=bedroom, or
// to every room when the query has no room= at all. A malformed query, more
// than maxRoomValues room= values or an empty or invalid name get 400 and an
// unknown room 404, never a wider subscription. The broker answers with the
// error's text, so names in it are clipped.
//
// The query is parsed strictly: c.QueryArray skips malformed pairs and
// gives nothing at all beyond 10,000 pairs, and since no room means every
// room, a bad query would quietly subscribe to all of them.
func topics(c *gin.Context) ([]string, error) {
	q, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		return nil, errors.New("malformed query string")
	}
	names, ok := q["room"]
	if !ok {
		all := make([]string, len(rooms))
		for i, r := range rooms {
			all[i] = r.name
		}
		return all, nil
	}
	if len(names) > maxRoomValues {
		return nil, fmt.Errorf("too many room= values: at most %d", maxRoomValues)
	}
	for _, name := range names {
		if err := checkRoom(name); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// checkRoom returns nil for a room's name, otherwise the broker's error for
// the name: sse.ErrInvalidTopic (400) for an empty name, one longer than
// 256 bytes or one with a control character, sse.ErrUnknownTopic (404) for
// another one.
func checkRoom(name string) error {
	for _, r := range rooms {
		if r.name == name {
			return nil
		}
	}
	invalid := name == "" || len(name) > 256
	for i := 0; i < len(name) && !invalid; i++ {
		invalid = name[i] < 0x20 || name[i] == 0x7f
	}
	if invalid {
		return fmt.Errorf("%w: %q", sse.ErrInvalidTopic, clip(name, maxEcho))
	}
	return fmt.Errorf("%w: %q", sse.ErrUnknownTopic, clip(name, maxEcho))
}

func newRouter(b *sse.Broker, h *home, retry time.Duration, debug bool) *gin.Engine {
	r := gin.New()
	r.Use(gin.Recovery())
	if debug {
		r.Use(gin.Logger())
	}
	_ = r.SetTrustedProxies(nil)

	r.GET("/", func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", page) })
	r.GET("/smart-home", b.Handler(topics,
		sse.WithRetry(retry),
		sse.WithInitialEvents(h.initial), // a new page starts with every room's state
	))
	r.GET("/rooms", func(c *gin.Context) {
		all := make([]RoomState, 0, len(rooms))
		for _, r := range rooms {
			s, _ := h.get(r.name)
			all = append(all, s)
		}
		c.JSON(http.StatusOK, all)
	})
	r.GET("/rooms/:room", func(c *gin.Context) {
		s, ok := h.get(c.Param("room"))
		if !ok {
			c.JSON(http.StatusNotFound, gin.H{"error": fmt.Sprintf("%v %q", errUnknownRoom, clip(c.Param("room"), maxEcho))})
			return
		}
		c.JSON(http.StatusOK, s)
	})
	r.POST("/rooms/:room", func(c *gin.Context) {
		tooLarge := gin.H{"error": fmt.Sprintf("body larger than %d bytes", maxBody)}
		if c.Request.ContentLength > maxBody {
			c.JSON(http.StatusRequestEntityTooLarge, tooLarge)
			return
		}
		// The whole body, at most maxBody bytes of it, is read before it
		// is decoded; the server's ReadTimeout bounds how long that takes.
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxBody)
		var changes map[string]string
		if err := c.ShouldBindBodyWithJSON(&changes); err != nil {
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe):
				c.JSON(http.StatusRequestEntityTooLarge, tooLarge)
			case errors.Is(err, os.ErrDeadlineExceeded):
				c.JSON(http.StatusRequestTimeout, gin.H{"error": "body not received in time"})
			default:
				c.JSON(http.StatusBadRequest, gin.H{"error": `body must be a JSON object such as {"lights":"on"}: ` + clip(err.Error(), maxDetail)})
			}
			return
		}
		s, err := h.set(c.Param("room"), changes)
		switch {
		case errors.Is(err, sse.ErrBrokerClosed):
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": "shutting down"})
		case err != nil && (errors.Is(err, errUnknownRoom) || errors.Is(err, errUnknownDevice) ||
			errors.Is(err, errBadValue) || errors.Is(err, errNoChange)):
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		case err != nil:
			c.JSON(http.StatusInternalServerError, gin.H{"error": err.Error()})
		default:
			c.JSON(http.StatusOK, s)
		}
	})
	return r
}

func main() {
	addr := flag.String("addr", "localhost:1337", "listen address")
	simulate := flag.Bool("simulate", true, "toggle random devices at random intervals")
	simMin := flag.Duration("simulate-min", 2*time.Second, "shortest interval between simulated changes")
	simMax := flag.Duration("simulate-max", 6*time.Second, "longest interval between simulated changes")
	retry := flag.Duration("retry", time.Second, "how long browsers wait before reconnecting (sent as retry:)")
	history := flag.Int("history", 1000, "events kept per room for clients that reconnect")
	readTimeout := flag.Duration("read-timeout", 30*time.Second, "longest time to read a request, body included (streams are not cut)")
	debug := flag.Bool("debug", false, "gin debug mode and request logging")
	flag.Parse()
	if *readTimeout <= 0 {
		log.Fatalf("need -read-timeout > 0, got %v", *readTimeout)
	}
	if *simMin <= 0 || *simMax < *simMin {
		log.Fatalf("need 0 < -simulate-min <= -simulate-max, got %v and %v", *simMin, *simMax)
	}
	if !*debug {
		gin.SetMode(gin.ReleaseMode)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	names := make([]string, len(rooms))
	for i, r := range rooms {
		names[i] = r.name
	}
	b, err := sse.NewBroker(
		sse.WithTopics(names...), // any other ?room= gets 404
		sse.WithTopicPolicy(func(string) sse.TopicPolicy { return sse.TopicPolicy{MaxEvents: *history} }),
	)
	if err != nil {
		log.Fatal(err)
	}
	h := newHome(b)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// ReadTimeout bounds the reading of a request and its body (and, as
	// IdleTimeout is unset, how long an idle connection is kept). It does
	// not touch streams: the server clears the read deadline once a request
	// is read. No WriteTimeout, which would cut every stream: the broker
	// sets write deadlines itself.
	srv := &http.Server{
		Handler:           newRouter(b, h, *retry, *debug),
		ReadHeaderTimeout: min(10*time.Second, *readTimeout),
		ReadTimeout:       *readTimeout,
	}
	// Streams never end by themselves: the broker ends them when the server
	// shuts down, so srv.Shutdown returns at once.
	srv.RegisterOnShutdown(func() { _ = b.Shutdown(context.Background()) })

	var wg sync.WaitGroup
	if *simulate {
		wg.Go(func() { h.simulate(ctx, *simMin, *simMax) })
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("smart-home example on http://%s", ln.Addr())

	select {
	case err := <-served:
		log.Fatal(err)
	case <-ctx.Done():
	}
	stop() // a second Ctrl-C ends the process at once
	log.Print("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Printf("shutdown: %v", err)
	}
	wg.Wait()
}
