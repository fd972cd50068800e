// Command cluster shows several instances of a Gin app sharing topics,
// event ids and Last-Event-ID replay through Redis: a chat page whose
// messages, posted on any instance, reach the pages of every instance.
//
//	redis-server --port 6379 --bind 127.0.0.1 --save '' --daemonize no &
//	go run ./example/cluster -addr localhost:1337 -name A &
//	go run ./example/cluster -addr localhost:1338 -name B &
//
// then open http://localhost:1337 and http://localhost:1338 (from the redis
// folder of the repository). With -peers, a page whose instance stops
// answering goes on with another one, from the last event it got.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"html/template"
	"log"
	"net"
	"net/http"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/redis/go-redis/v9"
)

//go:embed index.html
var pageSource string

var page = template.Must(template.New("index").Parse(pageSource))

// message is the data of one "chat" event.
type message struct {
	From string `json:"from"` // the instance it was posted on
	Text string `json:"text"`
	Time string `json:"time"`
}

// pageData fills the page's template.
type pageData struct {
	Name  string
	Peers []string
}

// maxText bounds a posted message.
const maxText = 500

// newRouter serves the page, the stream of topic "chat" and POST /publish
// for the instance called name. peers are the base URLs of the other
// instances (http://host:port), which the page moves to when this one
// stops answering: their pages may read this one's stream and publish
// through it (CORS).
func newRouter(b *sse.Broker, name string, peers []string) *gin.Engine {
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/", func(c *gin.Context) {
		c.Header("Content-Type", "text/html; charset=utf-8")
		if err := page.Execute(c.Writer, pageData{Name: name, Peers: peers}); err != nil {
			log.Printf("page: %v", err)
		}
	})
	cors := func(c *gin.Context) {
		if o := c.GetHeader("Origin"); slices.Contains(peers, o) {
			c.Header("Access-Control-Allow-Origin", o)
			c.Header("Vary", "Origin")
		}
	}
	// A page that moved here from another instance opens the stream with
	// the last id it got in the query (a new EventSource sends no
	// Last-Event-ID header): it gets exactly what it missed.
	r.GET("/events", cors, b.Handler(sse.Topics("chat"), sse.WithRetry(time.Second), sse.WithLastEventIDQuery("lastEventId")))
	r.POST("/publish", cors, func(c *gin.Context) {
		text := strings.TrimSpace(c.PostForm("text"))
		if text == "" || len(text) > maxText {
			c.JSON(http.StatusBadRequest, gin.H{"error": "text: 1 to 500 bytes"})
			return
		}
		id, err := b.Publish(c.Request.Context(), "chat", sse.Event{Event: "chat", Data: message{From: name, Text: text, Time: time.Now().Format(time.TimeOnly)}})
		switch {
		case errors.Is(err, sseredis.ErrUnavailable):
			c.Header("Retry-After", "1")
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": "Redis is unavailable, try again"})
		case errors.Is(err, sse.ErrBrokerClosed):
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": "shutting down"})
		case err != nil:
			c.JSON(http.StatusInternalServerError, gin.H{"error": err.Error()})
		default:
			c.JSON(http.StatusOK, gin.H{"id": id, "instance": name})
		}
	})
	return r
}

func main() {
	addr := flag.String("addr", "localhost:1337", "listen address")
	redisAddr := flag.String("redis", "localhost:6379", "Redis address")
	name := flag.String("name", "", "instance name, shown in the page and put in each event (default: the -addr)")
	prefix := flag.String("prefix", "sse-cluster:", "Redis key prefix (the instances that share it share the events)")
	peerList := flag.String("peers", "", "comma-separated base URLs of the other instances (http://localhost:1338): the page moves to one of them when this one stops answering")
	debug := flag.Bool("debug", false, "Gin debug mode")
	flag.Parse()
	if *name == "" {
		*name = *addr
	}
	if !*debug {
		gin.SetMode(gin.ReleaseMode)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr})
	defer func() { _ = rdb.Close() }()
	b, err := sse.NewBroker(
		sse.WithBackend(sseredis.New(rdb, sseredis.WithPrefix(*prefix))),
	)
	if err != nil {
		log.Fatal(err) // an invalid key prefix: the broker starts even while Redis is down
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	var peers []string
	for p := range strings.SplitSeq(*peerList, ",") {
		if p = strings.TrimRight(strings.TrimSpace(p), "/"); p != "" {
			peers = append(peers, p)
		}
	}
	srv := &http.Server{Handler: newRouter(b, *name, peers), ReadHeaderTimeout: 10 * time.Second}
	// Streams never end by themselves: the broker ends them (and stops its
	// Redis reader) when the server shuts down, so srv.Shutdown returns at
	// once. The hook runs in its own goroutine: main waits for it before
	// closing the Redis client.
	brokerDone := make(chan struct{})
	srv.RegisterOnShutdown(func() {
		defer close(brokerDone)
		if err := b.Shutdown(context.Background()); err != nil {
			log.Printf("broker shutdown: %v", err)
		}
	})

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("cluster example %q on http://%s, Redis %s, prefix %q", *name, ln.Addr(), *redisAddr, *prefix)

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
	select {
	case <-brokerDone:
	case <-sctx.Done():
		log.Printf("broker shutdown: %v", sctx.Err())
	}
}
