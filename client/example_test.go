package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/client"
)

// A client that reads a stream to its end. Without WithoutReconnect it
// would reconnect after the end, with Last-Event-ID: 2, for ever.
func ExampleClient_Events() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "id: 1\nevent: greeting\ndata: hello\n\nid: 2\ndata: world\n\n")
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.New(srv.URL, client.WithoutReconnect())
	for ev, err := range c.Events(ctx) {
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Printf("%s %q %s\n", ev.ID, ev.Event, ev.Data)
	}
	fmt.Println("last event ID:", c.LastEventID())
	// Output:
	// 1 "greeting" hello
	// 2 "" world
	// last event ID: 2
}

// A long-lived subscription: it reconnects after errors and clean ends,
// resuming with Last-Event-ID, until ctx is canceled or the server answers
// 204 (or another status, or another Content-Type).
func ExampleClient_Run() {
	c := client.New("https://example.com/events?topic=kitchen",
		client.WithHeader("Authorization", "Bearer token"),
		client.OnError(func(err error) { fmt.Println("connection lost:", err) }),
		client.OnRetry(func(attempt int, delay time.Duration) {
			fmt.Printf("reconnecting in %v (attempt %d)\n", delay, attempt)
		}),
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = func() error { // not run: there is no server behind example.com
		return c.Run(ctx, func(ev sse.ReceivedEvent) error {
			fmt.Println(ev.Data)
			return nil
		})
	}
}
