package sse_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/ssetest"
)

// serve runs one GET request against r and prints the response body.
func serve(r http.Handler, target string) {
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	fmt.Print(rec.Body.String())
}

func ExampleSSEvent() {
	r := gin.New()
	r.GET("/progress", sse.Middleware(), func(c *gin.Context) {
		for pct := 0; pct <= 100; pct += 50 {
			if err := sse.SSEvent(c, "progress", pct); err != nil {
				return // the client left or the write failed
			}
		}
	})
	serve(r, "/progress")
	// Output:
	// : ok
	//
	// event: progress
	// data: 0
	//
	// event: progress
	// data: 50
	//
	// event: progress
	// data: 100
}

type price struct {
	Symbol string  `json:"symbol"`
	Value  float64 `json:"value"`
}

// EventName makes every price a "price" event.
func (price) EventName() string { return "price" }

func ExampleStream() {
	r := gin.New()
	r.GET("/prices", sse.Middleware(sse.WithHeartbeat(30*time.Second)), func(c *gin.Context) {
		ch := make(chan price)
		go func() {
			defer close(ch)
			for _, v := range []float64{101.5, 102} {
				select {
				case ch <- price{"ACME", v}:
				case <-c.Request.Context().Done():
					return
				}
			}
		}()
		// Returns nil when ch closes, ErrClientGone when the client leaves.
		if err := sse.Stream(c, ch); err != nil {
			_ = c.Error(err)
		}
	})
	serve(r, "/prices")
	// Output:
	// : ok
	//
	// event: price
	// data: {"symbol":"ACME","value":101.5}
	//
	// event: price
	// data: {"symbol":"ACME","value":102}
}

func ExampleMiddleware() {
	r := gin.New()
	r.GET("/events",
		sse.Middleware(sse.WithRetry(time.Second), sse.WithWriteTimeout(5*time.Second)),
		func(c *gin.Context) {
			_ = sse.Send(c, sse.Event{ID: "1", Event: "hello", Data: "resume after " + sse.LastEventID(c)})
		})
	serve(r, "/events?lastEventId=0")
	// Output:
	// : ok
	// retry: 1000
	//
	// id: 1
	// event: hello
	// data: resume after 0
}

func ExampleNoContent() {
	r := gin.New()
	finished := func(c *gin.Context) {
		if c.Query("job") == "done" {
			_ = sse.NoContent(c) // EventSource stops reconnecting
		}
	}
	r.GET("/jobs", finished, sse.Middleware(), func(c *gin.Context) {})
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jobs?job=done", nil))
	fmt.Println(rec.Code)
	// Output: 204
}

func ExampleEvent_AppendTo() {
	ev := sse.Event{ID: "7", Event: "note", Data: "two\nlines"}
	b, err := ev.AppendTo(nil)
	fmt.Printf("%q %v\n", b, err)

	_, err = sse.Event{ID: "7\ndata: injected", Data: "x"}.AppendTo(nil)
	fmt.Println(err)
	// Output:
	// "id: 7\nevent: note\ndata: two\ndata: lines\n\n" <nil>
	// sse: invalid event: id "7\ndata: injected" contains CR, LF or NUL
}

func ExampleDecoder() {
	stream := "\xEF\xBB\xBFid: 1\r\nevent: greet\r\ndata: hello\r\ndata: world\r\n\r\n: heartbeat\n"
	dec := sse.NewDecoder(strings.NewReader(stream))
	for {
		ev, err := dec.Decode()
		if err != nil {
			fmt.Println(err)
			break
		}
		fmt.Printf("%s %s %q\n", ev.ID, ev.Event, ev.Data)
	}
	// Output:
	// 1 greet "hello\nworld"
	// EOF
}

func ExampleBroker() {
	b, err := sse.NewBroker()
	if err != nil {
		panic(err)
	}
	defer func() { _ = b.Shutdown(context.Background()) }()
	r := gin.New()
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic")))
	r.POST("/rooms/:room", func(c *gin.Context) {
		room := c.Param("room")
		if _, err := b.Publish(c.Request.Context(), room, sse.Event{Event: room, Data: c.PostForm("state")}); err != nil {
			c.AbortWithStatus(http.StatusInternalServerError)
			return
		}
		c.Status(http.StatusNoContent)
	})
	srv := httptest.NewServer(r)
	defer srv.Close()
	set := func(room, state string) {
		res, err := http.PostForm(srv.URL+"/rooms/"+room, url.Values{"state": {state}})
		if err != nil {
			panic(err)
		}
		_ = res.Body.Close()
	}
	ctx := context.Background()

	// A browser's EventSource("/events?topic=kitchen") gets the kitchen's
	// events, and no other room's.
	s, err := ssetest.Connect(ctx, srv.Client(), srv.URL+"/events?topic=kitchen", nil)
	if err != nil {
		panic(err)
	}
	set("kitchen", "lights on")
	set("hall", "door open")
	set("kitchen", "oven on")
	var last sse.ReceivedEvent
	for range 2 {
		last, _ = s.Next()
		fmt.Println(last.Event, last.Data)
	}
	_ = s.Close()

	// While it is away, the kitchen changes; it reconnects with the id of
	// the last event it got, and gets exactly what it missed.
	set("kitchen", "oven off")
	s, err = ssetest.Connect(ctx, srv.Client(), srv.URL+"/events?topic=kitchen", http.Header{"Last-Event-ID": {last.ID}})
	if err != nil {
		panic(err)
	}
	defer func() { _ = s.Close() }()
	ev, _ := s.Next()
	fmt.Println(ev.Event, ev.Data)
	// Output:
	// kitchen lights on
	// kitchen oven on
	// kitchen oven off
}
