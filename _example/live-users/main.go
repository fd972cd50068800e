// Command live-users shows how many people have the page open right now,
// on every instance of the app: the broker's presence (WithPresence),
// pushed to every page as a "presence" event whenever someone arrives or
// leaves (WithPresenceEvents).
//
//	go run .                           # from this folder: one instance
//
// then open http://localhost:1337 in two tabs, or watch the raw stream with
//
//	curl -N localhost:1337/live-users
//
// With -redis, instances that share a Redis count together: open a tab on
// each, and both show 2.
//
//	go run . -addr localhost:1337 -redis localhost:6379 &
//	go run . -addr localhost:1338 -redis localhost:6379 &
//
// It is a module of its own, since it uses the Redis backend's module.
package main

import (
	"context"
	_ "embed"
	"flag"
	"log"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
)

//go:embed index.html
var page []byte

// topic is the broker topic every page subscribes to.
const topic = "live-users"

func main() {
	addr := flag.String("addr", "localhost:1337", "listen address")
	retry := flag.Duration("retry", time.Second, "how long browsers wait before reconnecting (sent as retry:)")
	heartbeat := flag.Duration("heartbeat", sse.DefaultHeartbeat, "interval of keep-alive comments on idle streams (0: none)")
	debug := flag.Bool("debug", false, "gin debug mode and request logging")
	redisAddr := flag.String("redis", "", "a Redis (host:port) to count together with the other instances that share it")
	prefix := flag.String("prefix", "live-users:", "with -redis, the key prefix the instances share")
	flag.Parse()
	if !*debug {
		gin.SetMode(gin.ReleaseMode)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	opts := []sse.BrokerOption{
		sse.WithTopics(topic),
		// A reconnect only needs the latest count.
		sse.WithTopicPolicy(func(string) sse.TopicPolicy { return sse.TopicPolicy{LatestOnly: true} }),
		// Every page hears of every arrival and departure, on any
		// instance, its own included.
		sse.WithPresenceEvents("presence", nil),
	}
	if *redisAddr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: *redisAddr})
		defer func() { _ = rdb.Close() }()
		opts = append(opts, sse.WithBackend(sseredis.New(rdb, sseredis.WithPrefix(*prefix))))
	}
	b, err := sse.NewBroker(opts...)
	if err != nil {
		log.Fatal(err)
	}

	r := gin.New()
	r.Use(gin.Recovery())
	if *debug {
		r.Use(gin.Logger())
	}
	_ = r.SetTrustedProxies(nil)
	r.GET("/", func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", page) })
	r.GET("/live-users", b.Handler(sse.Topics(topic), sse.WithRetry(*retry), sse.WithHeartbeat(*heartbeat)))

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
