// Command example serves a broker with its Prometheus metrics:
//
//	go run ./example                      # from the metrics folder
//	curl -N 'localhost:1337/events?topic=news' &
//	curl -d 'hello' 'localhost:1337/publish?topic=news'
//	curl localhost:1337/metrics | grep '^sse_'
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gin-sse/sse"
	ssemetrics "github.com/gin-sse/sse/metrics"
)

// newRouter serves GET /events?topic=..., POST /publish?topic=... (the
// body is the event's data) and GET /metrics from reg.
func newRouter(b *sse.Broker, reg *prometheus.Registry) *gin.Engine {
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic")))
	r.POST("/publish", func(c *gin.Context) {
		body, err := io.ReadAll(io.LimitReader(c.Request.Body, 64<<10))
		if err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		id, err := b.Publish(c.Request.Context(), c.Query("topic"), sse.Event{Data: string(body)})
		if err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"id": id})
	})
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	return r
}

// newBroker returns a broker whose metrics are registered with reg.
func newBroker(reg *prometheus.Registry) (*sse.Broker, error) {
	m := ssemetrics.New(
		// One series per kind of topic ("user:42" and "user:7" are both
		// "user"), never one per topic.
		ssemetrics.WithTopicLabel(func(topic string) string {
			for i := range len(topic) {
				if topic[i] == ':' {
					return topic[:i]
				}
			}
			return topic
		}),
	)
	reg.MustRegister(m)
	return sse.NewBroker(sse.WithObserver(m))
}

func main() {
	addr := flag.String("addr", "localhost:1337", "listen address")
	flag.Parse()
	gin.SetMode(gin.ReleaseMode)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b, err := newBroker(reg)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: newRouter(b, reg), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(func() { _ = b.Shutdown(context.Background()) })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("metrics example on http://%s", ln.Addr())
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
}
