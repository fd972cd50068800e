// Command live-users shows how many people have the page open right now.
// The number is the broker's real subscriber count, pushed to every page
// whenever someone arrives or leaves.
//
//	go run ./_example/live-users
//
// then open http://localhost:1337 in two tabs, or watch the raw stream with
//
//	curl -N localhost:1337/live-users
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
)

//go:embed index.html
var page []byte

// topic is the broker topic every page subscribes to.
const topic = "live-users"

// counter publishes the number of subscribers whenever it changes.
type counter struct {
	b  *sse.Broker
	mu sync.Mutex // orders the reads and publishes of concurrent hooks
}

// event is the current count as a default "message" event whose data is
// the number itself.
func (c *counter) event() sse.Event {
	return sse.Event{Data: strconv.Itoa(c.b.Subscribers(topic))}
}

// publish sends the current count. The hooks of a join and a leave can run
// at the same time; reading and publishing under one lock makes the last
// event out carry the latest count.
func (c *counter) publish(sse.SubscriberInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.b.Publish(context.Background(), topic, c.event()); err != nil && !errors.Is(err, sse.ErrBrokerClosed) {
		log.Printf("publish: %v", err)
	}
}

func main() {
	addr := flag.String("addr", "localhost:1337", "listen address")
	retry := flag.Duration("retry", time.Second, "how long browsers wait before reconnecting (sent as retry:)")
	heartbeat := flag.Duration("heartbeat", sse.DefaultHeartbeat, "interval of keep-alive comments on idle streams (0: none)")
	debug := flag.Bool("debug", false, "gin debug mode and request logging")
	flag.Parse()
	if !*debug {
		gin.SetMode(gin.ReleaseMode)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	c := &counter{}
	b, err := sse.NewBroker(
		sse.WithTopics(topic),
		// A reconnect only needs the latest count.
		sse.WithTopicPolicy(func(string) sse.TopicPolicy { return sse.TopicPolicy{LatestOnly: true} }),
		// Everyone hears about every arrival and departure...
		sse.WithOnSubscribe(c.publish),
		sse.WithOnUnsubscribe(c.publish),
	)
	if err != nil {
		log.Fatal(err)
	}
	c.b = b

	r := gin.New()
	r.Use(gin.Recovery())
	if *debug {
		r.Use(gin.Logger())
	}
	_ = r.SetTrustedProxies(nil)
	r.GET("/", func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", page) })
	r.GET("/live-users", b.Handler(sse.Topics(topic),
		sse.WithRetry(*retry),
		sse.WithHeartbeat(*heartbeat),
		// ...and a new page starts with the current count (itself included).
		sse.WithInitialEvents(func(*gin.Context, []string) ([]sse.Event, error) {
			return []sse.Event{c.event()}, nil
		}),
	))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// ReadTimeout bounds the reading of a request, body included; the
	// server clears the read deadline once a request is read, so streams
	// are not cut. No WriteTimeout: it would end every stream.
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	// Streams never end by themselves: the broker ends them when the server
	// shuts down, so srv.Shutdown returns at once.
	srv.RegisterOnShutdown(func() { _ = b.Shutdown(context.Background()) })

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("live-users example on http://%s", ln.Addr())

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
}
