// Command clock is the smallest gin-sse app: a page whose clock is pushed
// by the server once a second, with a progress bar fed by sse.SSEvent.
//
//	go run ./_example/clock
//
// then open http://localhost:1337.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"log"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
)

//go:embed index.html
var page []byte

// tick is one clock event; its EventName makes it a named "tick" event.
type tick struct {
	Time string `json:"time"`
	Unix int64  `json:"unix"`
}

func (tick) EventName() string { return "tick" }

// ticks sends the time every interval until ctx ends.
func ticks(ctx context.Context, interval time.Duration) <-chan tick {
	ch := make(chan tick)
	go func() {
		defer close(ch)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				select {
				case ch <- tick{Time: now.Format(time.TimeOnly), Unix: now.Unix()}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch
}

func main() {
	addr := flag.String("addr", "localhost:1337", "listen address")
	interval := flag.Duration("interval", time.Second, "time between clock events")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Streams end when shutdown starts, so srv.Shutdown does not wait for them.
	shutdown := make(chan struct{})

	r := gin.Default()
	r.GET("/", func(c *gin.Context) { c.Data(http.StatusOK, "text/html; charset=utf-8", page) })
	events := r.Group("/", sse.Middleware(sse.WithDone(shutdown), sse.WithRetry(time.Second)))
	events.GET("/clock", func(c *gin.Context) {
		if err := sse.Stream(c, ticks(c.Request.Context(), *interval)); err != nil && !errors.Is(err, sse.ErrClientGone) {
			log.Printf("clock stream: %v", err)
		}
	})
	events.GET("/progress", func(c *gin.Context) {
		for pct := 0; pct <= 100; pct += 10 {
			if err := sse.SSEvent(c, "progress", pct); err != nil {
				return
			}
			select {
			case <-time.After(300 * time.Millisecond):
			case <-c.Request.Context().Done():
				return
			case <-shutdown:
				return
			}
		}
		_ = sse.SSEvent(c, "done", "finished")
	})

	// ReadTimeout bounds the reading of a request, body included; the
	// server clears the read deadline once a request is read, so streams
	// are not cut. No WriteTimeout: it would end every stream.
	srv := &http.Server{Addr: *addr, Handler: r, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	srv.RegisterOnShutdown(func() { close(shutdown) })
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}()
	log.Printf("clock example on http://%s", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
